package run

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The agent shares the caller's terminal. With TIOCSTI it could push
// keystrokes into the terminal's input queue, and the caller's shell would
// read and run them after the agent exits: a way out of every namespace.
// Kernels keep allowing it on one's own controlling terminal unless
// dev.tty.legacy_tiocsti is 0, so a seccomp filter refuses it (and
// TIOCLINUX, which can do the same on a virtual console).

const (
	auditArchX86_64  = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAArch64 = 0xc00000b7

	seccompDataNR   = 0
	seccompDataArch = 4
	seccompDataArg1 = 24 // low 32 bits of args[1], little-endian

	x32SyscallBit = 0x40000000
)

// terminalFilter is the classic BPF program: ioctl(_, TIOCSTI|TIOCLINUX)
// fails with EPERM; every other system call is allowed.
func terminalFilter() ([]bpf.RawInstruction, error) {
	var arch, ioctl uint32
	switch runtime.GOARCH {
	case "amd64":
		arch, ioctl = auditArchX86_64, 16
	case "arm64":
		arch, ioctl = auditArchAArch64, 29
	default:
		return nil, fmt.Errorf("no terminal filter for %s", runtime.GOARCH)
	}
	allow := bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}
	deny := bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)}
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: seccompDataArch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: arch, SkipFalse: 3},
		/* 2 */ bpf.LoadAbsolute{Off: seccompDataNR, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ioctl, SkipTrue: 4},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: x32SyscallBit | 514, SkipTrue: 3, SkipFalse: 6}, // x32 ioctl
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchI386, SkipFalse: 5},
		/* 6 */ bpf.LoadAbsolute{Off: seccompDataNR, Size: 4},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 54, SkipFalse: 3}, // i386 ioctl
		/* 8 */ bpf.LoadAbsolute{Off: seccompDataArg1, Size: 4},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCSTI, SkipTrue: 2},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCLINUX, SkipTrue: 1},
		/* 11 */ allow,
		/* 12 */ deny,
	}
	return bpf.Assemble(prog)
}

// installTerminalFilter loads the filter into this thread; no_new_privs must
// already be set. It is inherited by the agent across execve.
func installTerminalFilter() error {
	raw, err := terminalFilter()
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}
