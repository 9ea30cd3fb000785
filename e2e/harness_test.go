// Package e2e runs the real clawpatrol binary, as an ordinary user, around
// real programs (curl, python3, ip, unshare) and real local servers.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// bin is the clawpatrol binary under test.
var bin string

// agentUID is the ordinary user the tests run clawpatrol as: the caller
// itself, or nobody when the tests run as root (root takes other code paths).
var agentUID, agentGID = os.Getuid(), os.Getgid()

// root is a world-traversable directory holding the binary and each test's
// files, so that the agent user can reach them.
var root string

// agentPath is the PATH inside tests: Debian's tools, not a user's shims.
const agentPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func TestMain(m *testing.M) {
	os.Exit(mainWithBinary(m))
}

func mainWithBinary(m *testing.M) int {
	var err error
	root, err = os.MkdirTemp("", "clawpatrol-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	os.Chmod(root, 0o755)
	bin = filepath.Join(root, "clawpatrol")
	build := exec.Command("go", "build", "-o", bin, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build clawpatrol:", err)
		return 1
	}
	if os.Getuid() == 0 {
		agentUID, agentGID = 65534, 65534
	}
	return m.Run()
}

// env is one test's world: a directory the agent user owns, with a home.
type env struct {
	t    testing.TB
	dir  string
	home string
	cfg  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir, err := os.MkdirTemp(root, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	home := filepath.Join(dir, "home")
	for _, d := range []string{dir, home} {
		os.MkdirAll(d, 0o755)
		os.Chmod(d, 0o755)
		if err := os.Chown(d, agentUID, agentGID); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, dir: dir, home: home}
}

// config writes the config file the runs use.
func (e *env) config(yaml string) {
	e.t.Helper()
	e.cfg = filepath.Join(e.dir, "clawpatrol.yaml")
	e.write("clawpatrol.yaml", yaml)
}

// write writes a file in the env's directory, owned by the agent user.
func (e *env) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		e.t.Fatal(err)
	}
	os.Chown(p, agentUID, agentGID)
	return p
}

func (e *env) auditPath() string { return filepath.Join(e.dir, "audit.jsonl") }

// command returns clawpatrol ARGS... as the agent user, in the env.
func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = e.dir
	cmd.Env = []string{
		"PATH=" + agentPath, "HOME=" + e.home, "LANG=C.UTF-8",
		"XDG_STATE_HOME=" + filepath.Join(e.home, ".local/state"),
		"XDG_DATA_HOME=" + filepath.Join(e.home, ".local/share"),
		"XDG_CONFIG_HOME=" + filepath.Join(e.home, ".config"),
	}
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(agentUID), Gid: uint32(agentGID)}}
	}
	return cmd
}

// hostSh runs a shell script as the agent user, outside clawpatrol.
func (e *env) hostSh(script string) result {
	e.t.Helper()
	cmd := e.command()
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", script}
	return e.exec(cmd)
}

// result is how one command ended.
type result struct {
	stdout, stderr string
	code           int
}

// run runs `clawpatrol run -- ARGS...` with the env's config and audit log.
func (e *env) run(args ...string) result {
	e.t.Helper()
	full := []string{"run", "--audit", e.auditPath()}
	if e.cfg != "" {
		full = append(full, "-c", e.cfg)
	}
	full = append(append(full, "--"), args...)
	return e.exec(e.command(full...))
}

// sh runs a shell script as the agent.
func (e *env) sh(script string) result {
	e.t.Helper()
	return e.run("/bin/sh", "-c", script)
}

func (e *env) exec(cmd *exec.Cmd) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("run %v: %v", cmd.Args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// auditRecords reads the audit log.
func (e *env) auditRecords() []map[string]any {
	e.t.Helper()
	f, err := os.Open(e.auditPath())
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			e.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

// actions returns the audit log's action records.
func (e *env) actions() []map[string]any {
	var out []map[string]any
	for _, r := range e.auditRecords() {
		if r["event"] == "action" {
			out = append(out, r)
		}
	}
	return out
}

// serveHTTP starts a local HTTP server answering "hello from <path>" and
// counting the requests it saw.
func serveHTTP(t *testing.T) (addr string, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "hello from %s\n", r.URL.Path)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), hits
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}
