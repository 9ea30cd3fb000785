package run

import (
	"encoding/binary"
	"runtime"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompData lays out struct seccomp_data for the filter as the kernel
// presents it to a little-endian machine. The kernel's loads are in native
// order, x/net/bpf's VM loads in network order: each 32-bit word is written
// big-endian here so both read the same numbers.
func seccompData(nr, arch uint32, arg1 uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], arch)
	binary.BigEndian.PutUint32(b[24:], uint32(arg1))     // low half first on little-endian
	binary.BigEndian.PutUint32(b[28:], uint32(arg1>>32)) // then the high half
	return b
}

func TestTerminalFilter(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Fatalf("this table is for amd64; add one for %s", runtime.GOARCH)
	}
	raw, err := terminalFilter()
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	deny := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	for _, tc := range []struct {
		name       string
		nr, arch   uint32
		arg1       uint64
		wantDenied bool
	}{
		{"ioctl TIOCSTI", 16, auditArchX86_64, unix.TIOCSTI, true},
		{"ioctl TIOCSTI with high bits set", 16, auditArchX86_64, 0xffffffff00000000 | unix.TIOCSTI, true},
		{"ioctl TIOCLINUX", 16, auditArchX86_64, unix.TIOCLINUX, true},
		{"ioctl TIOCGWINSZ", 16, auditArchX86_64, unix.TIOCGWINSZ, false},
		{"x32 ioctl TIOCSTI", x32SyscallBit | 514, auditArchX86_64, unix.TIOCSTI, true},
		{"i386 ioctl TIOCSTI", 54, auditArchI386, unix.TIOCSTI, true},
		{"i386 read", 3, auditArchI386, unix.TIOCSTI, false},
		{"write with TIOCSTI's number", 1, auditArchX86_64, unix.TIOCSTI, false},
	} {
		got, err := vm.Run(seccompData(tc.nr, tc.arch, tc.arg1))
		if err != nil {
			t.Fatal(err)
		}
		if denied := uint32(got) == deny; denied != tc.wantDenied {
			t.Errorf("%s: result %#x, want denied %v", tc.name, got, tc.wantDenied)
		}
	}
}
