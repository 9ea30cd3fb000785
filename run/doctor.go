package run

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Check is one doctor finding.
type Check struct {
	Name  string
	OK    bool
	Err   string
	Hints []string
}

// Doctor checks that this host can run agents: the real mechanism is tried
// (a helper creates the namespaces and the TUN device, then is discarded),
// because Ubuntu's AppArmor restriction lets the namespace be created and
// only fails the first privileged operation inside it.
func Doctor() []Check {
	var checks []Check
	tun := Check{Name: "/dev/net/tun", OK: true}
	if st, err := os.Stat("/dev/net/tun"); err != nil {
		tun.OK, tun.Err = false, err.Error()
		tun.Hints = []string{"load the tun module: sudo modprobe tun"}
	} else if unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK) != nil {
		tun.OK, tun.Err = false, fmt.Sprintf("mode %04o: not usable by ordinary users", st.Mode().Perm())
		tun.Hints = tunHints()
	}
	checks = append(checks, tun)

	ns := Check{Name: "user namespaces", OK: true}
	if v, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(v)) == "0" {
		ns.OK, ns.Err = false, "user.max_user_namespaces is 0"
		ns.Hints = []string{"allow user namespaces: sudo sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)"}
	}
	if v, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(v)) == "0" {
		ns.OK, ns.Err = false, "kernel.unprivileged_userns_clone is 0"
		ns.Hints = []string{"allow unprivileged user namespaces: sudo sysctl -w kernel.unprivileged_userns_clone=1"}
	}
	checks = append(checks, ns)

	probe := Check{Name: "namespaces, TUN and routes (a real trial)", OK: true}
	if err := Probe(); err != nil {
		probe.OK, probe.Err, probe.Hints = false, err.Error(), Hints(err)
	}
	checks = append(checks, probe)
	return checks
}

// Probe creates the namespaces and the TUN device exactly as a run does,
// then discards them.
func Probe() error {
	a, fd, err := Start(&Spec{Command: []string{"true"}, TUN: "tun0", MTU: 1500,
		IP4: probeIP4, IP6: probeIP6})
	if err != nil {
		return err
	}
	unix.Close(fd)
	a.Abort()
	return nil
}

var (
	probeIP4 = netip.MustParsePrefix("10.0.2.100/24")
	probeIP6 = netip.MustParsePrefix("fd00:2::100/64")
)

// Hints says what to do about a failure to set up the agent's namespaces.
func Hints(err error) []string {
	var hints []string
	msg := err.Error()
	var nsErr *NamespaceError
	switch {
	case strings.Contains(msg, "open /dev/net/tun"):
		hints = tunHints()
	case errors.As(err, &nsErr) && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EUSERS)):
		hints = append(hints, "this host refuses unprivileged user namespaces; run `clawpatrol doctor` for the cause")
		hints = append(hints, userNamespaceHints()...)
	case strings.Contains(msg, "enter the working directory"):
		hints = append(hints, "run clawpatrol from a directory your user can enter; root's override of permissions does not reach files of other users inside the agent's namespace")
	case strings.Contains(msg, "operation not permitted") || strings.Contains(msg, "permission denied"):
		hints = append(hints, userNamespaceHints()...)
	}
	return hints
}

func tunHints() []string {
	return []string{
		"/dev/net/tun must be readable and writable by you (most distributions ship it 0666)",
		"fix it once: sudo chmod 0666 /dev/net/tun",
		"or for good, with a udev rule: echo 'KERNEL==\"tun\", MODE=\"0666\"' | sudo tee /etc/udev/rules.d/60-tun.rules",
	}
}

// userNamespaceHints covers Ubuntu's AppArmor restriction: the fix is a
// profile for this binary, never turning the restriction off host-wide.
func userNamespaceHints() []string {
	v, err := os.ReadFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
	if err != nil || strings.TrimSpace(string(v)) != "1" {
		return nil
	}
	exe, _ := os.Executable()
	return []string{
		"AppArmor restricts unprivileged user namespaces on this host (kernel.apparmor_restrict_unprivileged_userns=1)",
		"allow them for this binary only, with a profile:",
		"  sudo tee /etc/apparmor.d/clawpatrol <<'EOF'",
		"  abi <abi/4.0>,",
		"  include <tunables/global>",
		fmt.Sprintf("  profile clawpatrol %s flags=(unconfined) {", exe),
		"    userns,",
		"    include if exists <local/clawpatrol>",
		"  }",
		"  EOF",
		"  sudo apparmor_parser -r /etc/apparmor.d/clawpatrol",
	}
}
