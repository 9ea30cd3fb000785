package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// helperArg is argv[1] of the re-executed binary when it is the helper.
const helperArg = "__clawpatrol_helper"

// controlFD is the helper's end of the socketpair (ExtraFiles[0]).
const controlFD = 3

// Spec is what the supervisor tells the helper. It travels over the control
// socket, not argv, so it never shows in the agent's /proc/PID/cmdline.
type Spec struct {
	Command []string
	Env     []string
	Dir     string
	TUN     string
	MTU     int
	IP4     netip.Prefix
	IP6     netip.Prefix
	// Binds are files bind-mounted read-only over targets (resolv.conf,
	// nsswitch.conf, hosts, CA bundles).
	Binds []Bind
	// Masks are paths hidden from the agent: an empty read-only directory
	// over a directory, an empty read-only file over anything else.
	Masks []string
	// Expose are directories that stay visible, read-only, even under a
	// masked directory: the session's files meant for the agent (the CA
	// bundle, placeholder files) live under clawpatrol's masked runtime dir.
	Expose []string
}

// Bind is one read-only bind mount.
type Bind struct {
	Source string
	Target string
	// Optional: skip the bind when Target does not exist.
	Optional bool
}

// selfExe is this binary's path, read before Harden makes /proc/self/exe
// unreadable to us.
var selfExe string

func init() {
	selfExe, _ = os.Executable()
	// The helper sets capabilities, securebits and no_new_privs and then
	// execs the agent; all of these are per-thread, so everything must
	// happen on the one thread that calls execve.
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		runtime.LockOSThread()
	}
}

// IsHelper reports whether this process is the in-namespace helper.
func IsHelper() bool { return len(os.Args) > 1 && os.Args[1] == helperArg }

// Helper is the whole life of the in-namespace helper: it runs as the
// caller's uid inside new user, network, mount and PID namespaces, holding
// only the ambient capabilities NET_ADMIN, SYS_ADMIN and SETPCAP. It
// configures the network and mounts, hands the TUN fd to the supervisor,
// waits for the go-ahead, drops every capability, and starts the agent as
// the init of its PID namespace (see initAgent). It never returns.
func Helper() {
	spec, err := readSpec()
	if err != nil {
		helperFail(err)
	}
	tun, err := setup(spec)
	if err != nil {
		helperFail(err)
	}
	// The TUN fd goes to the supervisor; ours is closed before exec
	// (O_CLOEXEC), so the agent can never inject raw packets.
	if err := unix.Sendmsg(controlFD, []byte{'T'}, unix.UnixRights(tun), nil, 0); err != nil {
		helperFail(fmt.Errorf("send tun fd: %w", err))
	}
	unix.Close(tun)
	b := make([]byte, 1)
	if n, err := unix.Read(controlFD, b); n != 1 || err != nil || b[0] != 'G' {
		os.Exit(125) // the supervisor gave up; it reports why
	}
	// The control socket stays open to report the agent's stops and
	// signals; the agent must not inherit it.
	unix.CloseOnExec(controlFD)
	path, code, err := lookPath(spec.Command[0], spec.Env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clawpatrol: error: %v\n", err)
		os.Exit(code)
	}
	if err := dropPrivileges(); err != nil {
		fmt.Fprintf(os.Stderr, "clawpatrol: error: drop privileges: %v\n", err)
		os.Exit(125)
	}
	if err := installTerminalFilter(); err != nil {
		fmt.Fprintf(os.Stderr, "clawpatrol: error: %v\n", err)
		os.Exit(125)
	}
	// The agent sees us as its parent (PID 1 of its namespace): it must not
	// read our memory or trace us. exec makes the agent dumpable again.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "clawpatrol: error: set non-dumpable: %v\n", err)
		os.Exit(125)
	}
	os.Exit(initAgent(path, spec))
}

// helperFail reports a setup error to the supervisor, which prints it with
// hints, and exits 125 without ever starting the agent.
func helperFail(err error) {
	unix.Sendmsg(controlFD, append([]byte{'E'}, err.Error()...), nil, nil, 0)
	os.Exit(125)
}

func readSpec() (*Spec, error) {
	buf := make([]byte, 4<<20)
	n, err := unix.Read(controlFD, buf)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	var s Spec
	if err := json.Unmarshal(buf[:n], &s); err != nil {
		return nil, fmt.Errorf("decode spec: %w", err)
	}
	if len(s.Command) == 0 {
		return nil, errors.New("no command")
	}
	return &s, nil
}

func setup(s *Spec) (int, error) {
	tun, err := openTUN(s.TUN)
	if err != nil {
		return -1, err
	}
	if err := configureNetwork(s.TUN, s.MTU, s.IP4, s.IP6); err != nil {
		unix.Close(tun)
		return -1, fmt.Errorf("network setup: %w", err)
	}
	if err := setupMounts(s); err != nil {
		unix.Close(tun)
		return -1, err
	}
	// A /proc of the agent's own PID namespace: it sees its own processes
	// only, not clawpatrol's or anyone else's.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		unix.Close(tun)
		return -1, fmt.Errorf("mount /proc for the agent's PID namespace: %w", err)
	}
	if s.Dir != "" {
		// After the mounts, so the agent sees the new view of its directory.
		// Inside the user namespace, root's override of file permissions
		// does not cover files owned by unmapped users.
		if err := os.Chdir(s.Dir); err != nil {
			unix.Close(tun)
			return -1, fmt.Errorf("enter the working directory inside the agent's namespace: %w", err)
		}
	}
	return tun, nil
}

func openTUN(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &TUNError{Op: "open /dev/net/tun", Err: err}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, &TUNError{Op: "TUNSETIFF", Err: err}
	}
	// Without PERSIST the supervisor's last close of the fd unregisters the
	// device synchronously (an RCU barrier): 20-30 ms added to every exit.
	// With it, the device goes with the namespace, asynchronously.
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		unix.Close(fd)
		return -1, &TUNError{Op: "TUNSETPERSIST", Err: err}
	}
	return fd, nil
}

// TUNError is a failure to create the TUN device.
type TUNError struct {
	Op  string
	Err error
}

func (e *TUNError) Error() string { return e.Op + ": " + e.Err.Error() }

// lookPath finds the command in the agent's PATH; the code is the exit
// status SPEC §2 gives a failure: 127 not found, 126 not executable.
func lookPath(cmd string, env []string) (string, int, error) {
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			os.Setenv("PATH", kv[5:])
		}
	}
	path, err := exec.LookPath(cmd)
	if err == nil {
		return path, 0, nil
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return "", 127, fmt.Errorf("%s: command not found", cmd)
	}
	return "", 126, fmt.Errorf("%s: %v", cmd, errors.Unwrap(err))
}
