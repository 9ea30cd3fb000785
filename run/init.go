package run

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Messages from the helper to the supervisor on the control socket, after
// the agent started.
const (
	msgStopped  = 'Z' // the agent stopped (Ctrl-Z): follow it
	msgSignaled = 'S' // followed by one byte: the signal that killed the agent
	msgContinue = 'C' // supervisor → helper: the job was continued
)

// initAgent runs the agent as a child and is the init of its PID namespace:
// it reaps every orphan, relays the signals the supervisor forwards, and
// tells the supervisor when the agent stops or dies of a signal (PID 1
// cannot stop or be killed by its own signals, so the supervisor mirrors
// them). It returns the agent's exit code; when it returns, the kernel
// kills whatever is left in the namespace.
func initAgent(path string, spec *Spec) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	tty := false
	if pg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pg == unix.Getpgrp() {
		tty = true // the supervisor gave our group the terminal: pass it on
	}
	// ForkExec runs on this locked thread, whose credentials (no
	// capabilities, no_new_privs, the seccomp filter) the child inherits.
	pid, err := syscall.ForkExec(path, spec.Command, &syscall.ProcAttr{
		Env:   spec.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: tty, Ctty: 0},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "clawpatrol: error: %s: %v\n", spec.Command[0], err)
		if errors.Is(err, unix.ENOENT) {
			return 127
		}
		return 126
	}
	exited := make(chan unix.WaitStatus, 1)
	stopped := make(chan struct{}, 1)
	go func() {
		for {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(-1, &ws, unix.WUNTRACED, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			if wpid != pid {
				continue // an orphan, reaped
			}
			if ws.Stopped() {
				stopped <- struct{}{}
				continue
			}
			exited <- ws
			return
		}
	}()
	go func() {
		b := make([]byte, 1)
		for {
			if n, err := unix.Read(controlFD, b); n != 1 || err != nil {
				return
			}
			if b[0] == msgContinue {
				if tty {
					// We are in the background now: SIGTTOU would stop us.
					signal.Ignore(unix.SIGTTOU)
					unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, pid)
				}
				unix.Kill(-pid, unix.SIGCONT)
			}
		}
	}()
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGWINCH && tty {
				continue // the terminal already told the agent's group
			}
			unix.Kill(pid, s.(syscall.Signal))
		case <-stopped:
			unix.Write(controlFD, []byte{msgStopped})
		case ws := <-exited:
			if ws.Signaled() {
				unix.Write(controlFD, []byte{msgSignaled, byte(ws.Signal())})
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}
