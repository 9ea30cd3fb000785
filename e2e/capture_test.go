package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// demoConfig maps the name svc.test to a local server.
func demoConfig(addr string) string {
	return fmt.Sprintf(`
endpoints:
  svc:
    hosts: [svc.test]
    ports: [80]
    protocol: tcp
    upstream: %s
`, addr)
}

func TestAllowedServiceThroughMappedName(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := newEnv(t)
	e.config(demoConfig(addr))
	r := e.sh(`curl -sS --connect-timeout 20 http://svc.test/curl && python3 -c 'import urllib.request; print(urllib.request.urlopen("http://svc.test/python", timeout=20).read().decode(), end="")'`)
	if r.code != 0 || r.stdout != "hello from /curl\nhello from /python\n" {
		t.Fatalf("want both requests answered:\n%v", r)
	}
	if hits.Load() != 2 {
		t.Fatalf("server saw %d requests, want 2", hits.Load())
	}
	acts := e.actions()
	if len(acts) != 2 {
		t.Fatalf("want 2 action records, got %d", len(acts))
	}
	for _, a := range acts {
		if a["endpoint"] != "svc" || a["decision"].(map[string]any)["verdict"] != "allow" {
			t.Fatalf("want an allowed action to endpoint svc, got %v", a)
		}
		if a["bytes_down"].(float64) == 0 {
			t.Fatalf("want bytes counted, got %v", a)
		}
	}
}

// TestUnmatchedHostIsRefusedNotHung: an HTTP request to a host no rule
// allows gets clawpatrol's 403 at once; another protocol is cut off; neither
// reaches anything.
func TestUnmatchedHostIsRefusedNotHung(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := newEnv(t)
	e.config(demoConfig(addr))
	r := e.sh(`curl -s -D - --connect-timeout 20 -m 30 http://other.test/; echo "curl=$?"`)
	if !strings.Contains(r.stdout, "HTTP/1.1 403") || !strings.Contains(r.stdout, "X-Clawpatrol-Rule: policy.default") || !strings.Contains(r.stdout, "curl=0") {
		t.Fatalf("want a 403 naming the rule:\n%v", r)
	}
	// A binary protocol (the client speaks first): the connection is closed.
	r = e.run("python3", "-c", `
import socket
s = socket.create_connection(("other.test", 9999), timeout=30)
s.sendall(b"\x00\x01binary hello")
print("got %r" % s.recv(100))
`)
	if r.code != 0 || r.stdout != "got b''\n" {
		t.Fatalf("want the connection closed with nothing sent back:\n%v", r)
	}
	if hits.Load() != 0 {
		t.Fatal("the server was reached")
	}
	acts := e.actions()
	if len(acts) != 2 || acts[0]["protocol"] != "http" || acts[1]["protocol"] != "tcp" {
		t.Fatalf("want one http and one tcp action, got %v", acts)
	}
	for _, a := range acts {
		if a["decision"].(map[string]any)["verdict"] != "deny" || a["destination"].(map[string]any)["host"] != "other.test" {
			t.Fatalf("want denied actions for other.test, got %v", a)
		}
	}
}

func TestAgentCannotReconfigureItsNetwork(t *testing.T) {
	e := newEnv(t)
	for _, cmd := range []string{
		"ip link set tun0 down",
		"ip route add 192.0.2.0/24 dev tun0",
		"ip addr add 192.0.2.1/32 dev lo",
		"unshare -n true",
		"umount /etc/resolv.conf",
		"cat /proc/$PPID/environ",
		"cat /proc/$PPID/maps",
	} {
		r := e.sh(cmd)
		refused := strings.Contains(r.stderr, "not permitted") || strings.Contains(r.stderr, "Permission denied") ||
			strings.Contains(r.stderr, "must be superuser")
		if r.code == 0 || !refused {
			t.Errorf("%q was not refused inside the agent:\n%v", cmd, r)
		}
	}
}

func TestAgentKeepsCallerUID(t *testing.T) {
	e := newEnv(t)
	r := e.sh(`id -u; id -g; grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status`)
	want := fmt.Sprintf("%d\n%d\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n", agentUID, agentGID)
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
}

func TestExitStatus(t *testing.T) {
	e := newEnv(t)
	e.write("notexec", "#!/bin/sh\necho hi\n")
	if err := os.Chmod(e.dir+"/notexec", 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"no-such-command-anywhere"}, 127},
		{[]string{"./notexec"}, 126},
	} {
		if r := e.run(tc.args...); r.code != tc.want {
			t.Errorf("%v: want exit %d\n%v", tc.args, tc.want, r)
		}
	}
	// Killed by SIGINT: clawpatrol re-raises it, so a shell sees 130.
	r := e.hostSh(fmt.Sprintf(`%s run --audit %s -- sh -c 'kill -INT $$'; echo "status=$?"`, bin, e.auditPath()))
	if !strings.Contains(r.stdout, "status=130") {
		t.Fatalf("want status=130:\n%v", r)
	}
}

func TestDNSAnswersEveryNameWithAVirtualIP(t *testing.T) {
	e := newEnv(t)
	r := e.sh(`getent ahostsv4 anything.example.org | head -1; getent ahostsv4 ANYTHING.example.org. | head -1; getent hosts other.invalid`)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("want three answers:\n%v", r)
	}
	first, second := strings.Fields(lines[0])[0], strings.Fields(lines[1])[0]
	if !strings.HasPrefix(first, "198.18.") && !strings.HasPrefix(first, "198.19.") {
		t.Fatalf("want a virtual IP from 198.18.0.0/15, got %q", first)
	}
	if first != second {
		t.Fatalf("the same name (any case) must keep its address: %q vs %q", first, second)
	}
	if strings.Fields(lines[2])[0] == first {
		t.Fatalf("two names share %s", first)
	}
	// Over TCP too (dig +tcp is not installed everywhere; python speaks it).
	r = e.run("python3", "-c", `
import socket, struct
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03tcp\x07example\x00" + struct.pack(">HH", 1, 1)
s = socket.create_connection(("10.0.2.3", 53), timeout=20)
s.sendall(struct.pack(">H", len(q)) + q)
n = struct.unpack(">H", s.recv(2))[0]
a = s.recv(n)
print(".".join(str(b) for b in a[-4:]))
`)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "198.1") {
		t.Fatalf("want a virtual IP over DNS/TCP:\n%v", r)
	}
}

// TestUDP: 443 is refused at once (QUIC falls back to TCP without waiting),
// DNS is answered locally, and other UDP is an action decided by policy.
func TestUDP(t *testing.T) {
	e := newEnv(t)
	r := e.run("python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(30)
s.connect(("192.0.2.7", 443))
s.send(b"quic initial")
try:
    s.recv(10)
    print("answered")
except ConnectionRefusedError:
    print("refused")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"ntp?", ("192.0.2.8", 123))
`)
	if r.code != 0 || r.stdout != "refused\n" {
		t.Fatalf("want UDP/443 refused:\n%v", r)
	}
	acts := e.actions()
	if len(acts) != 1 || acts[0]["protocol"] != "udp" || acts[0]["decision"].(map[string]any)["verdict"] != "deny" {
		t.Fatalf("want one denied udp action (port 123), got %v", acts)
	}
	if d := acts[0]["destination"].(map[string]any); d["port"].(float64) != 123 || d["host"] != "192.0.2.8" {
		t.Fatalf("destination %v", d)
	}
}

// TestLocalAddressesRefused: even an endpoint the policy allows cannot reach
// the metadata address or the host's own addresses unless it maps them with
// upstream.
func TestLocalAddressesRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var hits atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	own := hostAddress(t)
	e := newEnv(t)
	e.config(fmt.Sprintf(`
endpoints:
  metadata:
    hosts: [169.254.169.254]
    ports: [80]
    protocol: tcp
  self:
    hosts: [%s]
    ports: [%d]
    protocol: tcp
`, own, port))
	r := e.sh(fmt.Sprintf(`curl -s --connect-timeout 20 http://169.254.169.254/; echo "a=$?"; curl -s --connect-timeout 20 http://%s:%d/; echo "b=$?"`, own, port))
	if !strings.Contains(r.stdout, "a=7") || !strings.Contains(r.stdout, "b=7") {
		t.Fatalf("want both refused:\n%v", r)
	}
	if hits.Load() != 0 {
		t.Fatal("the host's own address was reached")
	}
	for _, a := range e.actions() {
		if rule := a["decision"].(map[string]any)["rule"]; rule != "local-address" {
			t.Errorf("want local-address, got %v for %v", rule, a["summary"])
		}
	}
}

// hostAddress returns one of this host's non-loopback IPv4 addresses.
func hostAddress(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Fatal("this host has no non-loopback IPv4 address")
	return ""
}

// TestRunsAsTheCallersOwnUser runs clawpatrol as the test process's own
// user — root in CI — where the other tests use an ordinary user: the agent
// keeps that uid and still has no capabilities at all.
func TestRunsAsTheCallersOwnUser(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := newEnv(t)
	e.config(demoConfig(addr))
	cmd := exec.Command(bin, "run", "-c", e.cfg, "--audit", e.auditPath(), "--", "sh", "-c",
		`id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; curl -sS --connect-timeout 20 http://svc.test/self; ip link set tun0 down 2>/dev/null || echo "ip refused"`)
	cmd.Dir = e.dir
	cmd.Env = []string{"PATH=" + agentPath, "HOME=" + e.home, "XDG_STATE_HOME=" + e.home + "/state", "XDG_DATA_HOME=" + e.home + "/data"}
	r := e.exec(cmd)
	want := fmt.Sprintf("%d\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\nhello from /self\nip refused\n", os.Getuid())
	if r.code != 0 || r.stdout != want || hits.Load() != 1 {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
}

// TestAgentHasItsOwnPIDNamespace: the agent sees its own processes only;
// clawpatrol and the rest of the host are not there to read or signal.
func TestAgentHasItsOwnPIDNamespace(t *testing.T) {
	e := newEnv(t)
	r := e.sh(`echo "parent=$PPID"; ls /proc | grep -cE '^[0-9]+$'; cat /proc/1/environ >/dev/null 2>&1 || echo "init unreadable"`)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || lines[0] != "parent=1" || lines[2] != "init unreadable" {
		t.Fatalf("want the agent as pid 2 under clawpatrol's init:\n%v", r)
	}
	if n, _ := strconv.Atoi(lines[1]); n < 2 || n > 5 {
		t.Fatalf("the agent sees %d processes, want only its own", n)
	}
}
