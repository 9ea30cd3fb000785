// Package chtest starts a real ClickHouse server (Debian's
// clickhouse-server package, 18.16) for tests: its config.xml copied and
// rewritten for a temp dir and random ports, a users.xml of our own with
// passwords. As root the server runs as nobody. It serves the ClickHouse
// inspector's tests and the end-to-end tests.
package chtest

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
	"syscall"
	"time"

	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

// The server's login.
const (
	User     = "app"
	Password = "real-Secret-8c7b6a" // the secret the agent must never see
)

// Server is a running test server.
type Server struct {
	Dir  string
	Port int
	cred *syscall.Credential
	cmd  *exec.Cmd
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

// Start starts a server in a new temp dir.
func Start() (*Server, error) {
	s := &Server{}
	return s, s.start()
}

func (s *Server) start() error {
	if _, err := os.Stat("/usr/sbin/clickhouse-server"); err != nil {
		return err
	}
	conf, err := os.ReadFile("/etc/clickhouse-server/config.xml")
	if err != nil {
		return err
	}
	if s.Dir, err = os.MkdirTemp("", "clawpatrol-clickhouse-"); err != nil {
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
	s.Port = ports[0]
	c := string(conf)
	for _, r := range []struct{ re, with string }{
		{`<http_port>\d+</http_port>`, fmt.Sprintf("<http_port>%d</http_port>", ports[0])},
		{`<tcp_port>\d+</tcp_port>`, fmt.Sprintf("<tcp_port>%d</tcp_port>", ports[1])},
		{`<interserver_http_port>\d+</interserver_http_port>`, fmt.Sprintf("<interserver_http_port>%d</interserver_http_port>", ports[2])},
		{`\s*<https_port>\d+</https_port>`, ""},
		{`\s*<tcp_port_secure>\d+</tcp_port_secure>`, ""},
		{`\s*<listen_host>::1</listen_host>`, ""},
		{`/var/lib/clickhouse/`, s.Dir + "/data/"},
		{`/var/log/clickhouse-server`, s.Dir + "/log"},
		{`<users_config>[^<]*</users_config>`, "<users_config>" + filepath.Join(s.Dir, "users.xml") + "</users_config>"},
	} {
		c = regexp.MustCompile(r.re).ReplaceAllString(c, r.with)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "config.xml"), []byte(c), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "users.xml"), []byte(fmt.Sprintf(usersXML, Password, User)), 0o644); err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(s.Dir, "data"), 0o755)
	os.MkdirAll(filepath.Join(s.Dir, "log"), 0o755)
	if err := inspecttest.Own(s.Dir, s.cred); err != nil {
		return err
	}
	s.cmd = exec.Command("/usr/sbin/clickhouse-server", "--config-file="+filepath.Join(s.Dir, "config.xml"))
	s.cmd.Dir = s.Dir
	if out, err := os.Create(filepath.Join(s.Dir, "out.log")); err == nil {
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
		resp, err := nethttp.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", s.Port))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) == "Ok.\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "out.log"))
			return fmt.Errorf("clickhouse-server did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = s.Query("CREATE TABLE rows (s String) ENGINE = Log")
	return err
}

// Stop stops the server and removes its files.
func (s *Server) Stop() {
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
	os.RemoveAll(s.Dir)
}

// Query runs one query directly (not through clawpatrol), with POST.
func (s *Server) Query(q string) (string, error) {
	req, _ := nethttp.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/?query=%s", s.Port, url.QueryEscape(q)), nil)
	req.Header.Set("X-ClickHouse-User", User)
	req.Header.Set("X-ClickHouse-Key", Password)
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
