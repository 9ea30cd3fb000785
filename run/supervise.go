// Package run puts the agent in its own unprivileged user, network and
// mount namespaces whose only network device is a TUN handed back to the
// caller, and supervises it: stdio and the terminal, signals, job control,
// exit status, and leftover descendants. It knows nothing of policy.
package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Agent is a started helper, then the agent it became.
type Agent struct {
	cmd  *exec.Cmd
	pid  int
	ctrl int  // our end of the control socket
	tty  bool // the agent owns the terminal's foreground

	sigs  chan os.Signal
	conts chan os.Signal
}

// SetupError is a failure inside the namespaces before the agent started.
type SetupError struct{ Msg string }

func (e *SetupError) Error() string { return e.Msg }

// Start is Spawn then Setup.
func Start(spec *Spec) (*Agent, int, error) {
	a, err := Spawn()
	if err != nil {
		return nil, -1, err
	}
	fd, err := a.Setup(spec)
	if err != nil {
		return nil, -1, err
	}
	return a, fd, nil
}

// Spawn creates the namespaces and the helper in them,
// then makes this process undumpable: the agent runs as the same uid,
// and could otherwise read our memory, environment and fds through /proc or
// ptrace. It must come first: the kernel lets us write the helper's uid_map
// only while we are dumpable, and no secret may be read before it.
func Spawn() (*Agent, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	helperEnd := os.NewFile(uintptr(pair[1]), "control")
	defer helperEnd.Close()

	uid, gid := os.Getuid(), os.Getgid()
	attr := &syscall.SysProcAttr{
		// A PID namespace of its own: the agent cannot see or signal
		// clawpatrol or any other process of the host.
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		// Map only our own ids, so the agent sees its real uid, never 0.
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		// A non-root uid keeps no capability across execve except ambient
		// ones; these are the helper's, in its own user namespace only.
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP},
		Pdeathsig:   syscall.SIGKILL,
		Setpgid:     true,
	}
	a := &Agent{ctrl: pair[0]}
	if pg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && pg == unix.Getpgrp() {
		// We are the terminal's foreground job: hand the terminal to the
		// agent's process group. Taking it when we are in the background
		// would steal it from whatever holds it.
		attr.Foreground, attr.Ctty, a.tty = true, 0, true
	}
	if selfExe == "" {
		return nil, errors.New("cannot find this program's own path to re-execute it")
	}
	a.cmd = &exec.Cmd{
		Path: selfExe, Args: []string{selfExe, helperArg},
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		// No Dir: the helper enters the working directory itself, so a
		// failure there is reported as what it is.
		ExtraFiles: []*os.File{helperEnd}, SysProcAttr: attr,
	}
	a.sigs = make(chan os.Signal, 16)
	signal.Notify(a.sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("subreaper: %w", err)
	}
	if err := a.cmd.Start(); err != nil {
		unix.Close(pair[0])
		signal.Stop(a.sigs)
		return nil, &NamespaceError{Err: err}
	}
	a.pid = a.cmd.Process.Pid
	// Only after Start: ignored dispositions are inherited across exec.
	signal.Ignore(unix.SIGTTOU, unix.SIGTTIN)
	a.conts = make(chan os.Signal, 4)
	signal.Notify(a.conts, unix.SIGCONT)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		a.Abort()
		return nil, fmt.Errorf("set non-dumpable: %w", err)
	}
	return a, nil
}

// Setup sends the helper its spec and returns the TUN fd once the helper has
// set everything up. The agent does not run until Go is called. On error the
// helper is gone.
func (a *Agent) Setup(spec *Spec) (int, error) {
	b, err := json.Marshal(spec)
	if err == nil {
		err = unix.Sendmsg(a.ctrl, b, nil, nil, 0)
	}
	if err != nil {
		a.Abort()
		return -1, fmt.Errorf("send spec: %w", err)
	}
	fd, err := a.receiveTUN()
	if err != nil {
		a.Abort()
		return -1, err
	}
	return fd, nil
}

// NamespaceError is a failure to create the namespaces at all.
type NamespaceError struct{ Err error }

func (e *NamespaceError) Error() string { return "create namespaces: " + e.Err.Error() }
func (e *NamespaceError) Unwrap() error { return e.Err }

func (a *Agent) receiveTUN() (int, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(a.ctrl, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("helper: %w", err)
	}
	if n == 0 {
		return -1, &SetupError{Msg: "helper exited during setup"}
	}
	if buf[0] == 'E' {
		return -1, &SetupError{Msg: string(buf[1:n])}
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("helper sent no tun fd (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("helper sent no tun fd (%v)", err)
	}
	return fds[0], nil
}

// PID is the agent's process id (in the host's PID namespace).
func (a *Agent) PID() int { return a.pid }

// Go lets the helper drop its capabilities and start the agent. The
// control socket stays open: the helper reports the agent's stops on it.
func (a *Agent) Go() error {
	_, err := unix.Write(a.ctrl, []byte{'G'})
	return err
}

// Abort kills the helper before it started the agent.
func (a *Agent) Abort() {
	unix.Close(a.ctrl)
	unix.Kill(a.pid, unix.SIGKILL)
	var ws unix.WaitStatus
	unix.Wait4(a.pid, &ws, 0, nil)
	signal.Stop(a.sigs)
}

// Status is how the agent ended.
type Status struct {
	Code   int            // exit code, when it exited
	Signal syscall.Signal // the signal that killed it, or 0
}

// ExitCode is the status SPEC §2 gives it: the code, or 128+N for signal N.
func (s Status) ExitCode() int {
	if s.Signal != 0 {
		return 128 + int(s.Signal)
	}
	return s.Code
}

// Wait supervises the agent until it ends: it forwards signals, follows job
// control, reaps every orphan re-parented to us, and when the agent exits
// kills what it left behind. It returns the agent's status.
func (a *Agent) Wait() Status {
	exited := make(chan unix.WaitStatus, 1)
	stopped := make(chan struct{}, 1)
	killedBy := make(chan syscall.Signal, 1)
	ctrlDone := make(chan struct{})
	go func() {
		// The helper is the agent's init and cannot stop or be killed by
		// the agent's signals, so it tells us what happened to the agent.
		defer close(ctrlDone)
		defer unix.Close(a.ctrl)
		b := make([]byte, 2)
		for {
			n, err := unix.Read(a.ctrl, b)
			if n <= 0 || err != nil {
				return
			}
			switch {
			case b[0] == msgStopped:
				stopped <- struct{}{}
			case b[0] == msgSignaled && n == 2:
				killedBy <- syscall.Signal(b[1])
			}
		}
	}()
	go func() {
		// As a subreaper we collect every orphaned descendant too; only
		// the agent's own status matters.
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WUNTRACED, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			if pid != a.pid {
				continue
			}
			if ws.Stopped() {
				continue
			}
			exited <- ws // keep reaping: killDescendants needs it
		}
	}()
	for {
		select {
		case s := <-a.sigs:
			if s == unix.SIGWINCH && a.tty {
				continue // the terminal already told the agent's group
			}
			unix.Kill(a.pid, s.(syscall.Signal))
		case <-stopped:
			a.followStop()
		case ws := <-exited:
			if a.tty {
				unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
			}
			signal.Stop(a.sigs)
			killDescendants()
			// The helper's last message is read by the time its socket
			// closes, which its exit does.
			<-ctrlDone
			select {
			case sig := <-killedBy:
				return Status{Signal: sig}
			default:
			}
			if ws.Signaled() {
				return Status{Signal: ws.Signal()}
			}
			return Status{Code: ws.ExitStatus()}
		}
	}
}

// followStop mirrors the agent's stop (Ctrl-Z) to our parent shell: take
// the terminal back, stop ourselves, and when continued give the terminal
// back and continue the agent's whole process group.
func (a *Agent) followStop() {
	if a.tty {
		unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
	}
	for len(a.conts) > 0 {
		<-a.conts
	}
	unix.Kill(0, unix.SIGSTOP)
	// kill returns before the group stop reaches this thread; wait until
	// we really were continued.
	<-a.conts
	// The helper gives the terminal back to the agent's group and
	// continues it: only it knows that group inside the namespace.
	unix.Write(a.ctrl, []byte{msgContinue})
}

// killDescendants kills whatever the agent left running: daemons it forked
// were re-parented to us, and their network dies with us anyway.
func killDescendants() {
	for range 100 {
		n := 0
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, t := range tasks {
			b, _ := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					unix.Kill(pid, unix.SIGKILL)
					n++
				}
			}
		}
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond) // the reaper collects them
	}
}

// ReRaise ends this process the way the agent ended: with its signal (so a
// shell sees a Ctrl-C as one), else with its exit code.
func ReRaise(s Status) {
	if s.Signal != 0 {
		signal.Reset(s.Signal)
		unix.Kill(unix.Getpid(), s.Signal)
		time.Sleep(100 * time.Millisecond) // delivery is asynchronous
	}
	os.Exit(s.ExitCode())
}

// IsPermission reports whether err is a permission failure.
func IsPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}
