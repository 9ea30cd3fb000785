package clickhouse

import (
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

// A real ClickHouse server (Debian's clickhouse-server package, 18.16),
// started once for the package's tests: its config.xml copied and
// rewritten for a temp dir and random ports, a users.xml of our own with
// passwords. As root the server runs as nobody.

const (
	chUser     = "app"
	chPassword = "real-Secret-8c7b6a" // the secret the agent must never see
)

type chServer struct {
	dir  string
	port int
	cred *syscall.Credential
	cmd  *exec.Cmd
	err  error
}

var (
	serverOnce sync.Once
	server     *chServer
)

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *chServer {
	t.Helper()
	serverOnce.Do(func() {
		server = &chServer{}
		server.err = server.start()
	})
	if server.err != nil {
		t.Fatalf("clickhouse test server: %v (install Debian's clickhouse-server package)", server.err)
	}
	return server
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil && server.dir != "" {
		server.stop()
	}
	os.Exit(code)
}

const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>10000000000</max_memory_usage></default></profiles>
    <users>
        <default><password>%[1]s-default</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
        <%[2]s><password>%[1]s</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></%[2]s>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`

func (s *chServer) start() error {
	if _, err := os.Stat("/usr/sbin/clickhouse-server"); err != nil {
		return err
	}
	conf, err := os.ReadFile("/etc/clickhouse-server/config.xml")
	if err != nil {
		return err
	}
	if s.dir, err = os.MkdirTemp("", "clawpatrol-clickhouse-"); err != nil {
		return err
	}
	if s.cred, err = inspecttest.ServerUser("nobody"); err != nil {
		return err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = inspecttest.FreePort(); err != nil {
			return err
		}
	}
	s.port = ports[0]
	c := string(conf)
	for _, r := range []struct{ re, with string }{
		{`<http_port>\d+</http_port>`, fmt.Sprintf("<http_port>%d</http_port>", ports[0])},
		{`<tcp_port>\d+</tcp_port>`, fmt.Sprintf("<tcp_port>%d</tcp_port>", ports[1])},
		{`<interserver_http_port>\d+</interserver_http_port>`, fmt.Sprintf("<interserver_http_port>%d</interserver_http_port>", ports[2])},
		{`\s*<https_port>\d+</https_port>`, ""},
		{`\s*<tcp_port_secure>\d+</tcp_port_secure>`, ""},
		{`\s*<listen_host>::1</listen_host>`, ""},
		{`/var/lib/clickhouse/`, s.dir + "/data/"},
		{`/var/log/clickhouse-server`, s.dir + "/log"},
		{`<users_config>[^<]*</users_config>`, "<users_config>" + filepath.Join(s.dir, "users.xml") + "</users_config>"},
	} {
		c = regexp.MustCompile(r.re).ReplaceAllString(c, r.with)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "config.xml"), []byte(c), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(fmt.Sprintf(usersXML, chPassword, chUser)), 0o644); err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(s.dir, "data"), 0o755)
	os.MkdirAll(filepath.Join(s.dir, "log"), 0o755)
	if err := inspecttest.Own(s.dir, s.cred); err != nil {
		return err
	}
	s.cmd = exec.Command("/usr/sbin/clickhouse-server", "--config-file="+filepath.Join(s.dir, "config.xml"))
	s.cmd.Dir = s.dir
	if out, err := os.Create(filepath.Join(s.dir, "out.log")); err == nil {
		s.cmd.Stdout, s.cmd.Stderr = out, out
	}
	if s.cred != nil {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	go s.cmd.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := nethttp.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", s.port))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) == "Ok.\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "out.log"))
			return fmt.Errorf("clickhouse-server did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = s.query("CREATE TABLE rows (s String) ENGINE = Log")
	return err
}

func (s *chServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() {
			for {
				if err := s.cmd.Process.Signal(syscall.Signal(0)); err != nil {
					close(done)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
		}
	}
	os.RemoveAll(s.dir)
}

// query runs one query directly (not through clawpatrol), with POST.
func (s *chServer) query(q string) (string, error) {
	req, _ := nethttp.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/?query=%s", s.port, url.QueryEscape(q)), nil)
	req.Header.Set("X-ClickHouse-User", chUser)
	req.Header.Set("X-ClickHouse-Key", chPassword)
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return strings.TrimSpace(string(body)), nil
}
