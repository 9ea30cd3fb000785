package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// dashWait bounds each wait on the dashboard; it guards against a hang and
// is never an assertion on how long something took.
const dashWait = 90 * time.Second

// waitFor is the agent's side of a handshake with the test: it blocks
// until the test creates the file.
const waitFor = `w() { while [ ! -e "$1" ]; do sleep 0.05; done; }
`

// dashAgent is one `clawpatrol run --dashboard` in the background.
type dashAgent struct {
	url  string // as printed, with the token
	base string // scheme and host
	wait func() result
}

// startDashboard writes SCRIPT to the file NAME, starts `clawpatrol run
// --dashboard ADDR -- sh NAME` and reads the dashboard's URL from its stderr.
func (e *env) startDashboard(addr, name, script string) *dashAgent {
	e.t.Helper()
	e.write(name, waitFor+script)
	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--dashboard", addr, "--", "/bin/sh", name)
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+e.runtimeDir())
	var out strings.Builder
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 1)
	errDone := make(chan string, 1)
	go func() {
		var rest strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "clawpatrol: dashboard: ") {
				select {
				case lines <- sc.Text():
					continue
				default:
				}
			}
			rest.WriteString(sc.Text() + "\n")
		}
		errDone <- rest.String()
	}()
	a := &dashAgent{wait: func() result {
		stderr := <-errDone
		err := cmd.Wait()
		r := result{stdout: out.String(), stderr: stderr}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		return r
	}}
	select {
	case line := <-lines:
		a.url = regexp.MustCompile(`http://\S+`).FindString(line)
	case <-time.After(dashWait):
		e.t.Fatal("clawpatrol printed no dashboard URL")
	}
	u, err := url.Parse(a.url)
	if err != nil || u.Query().Get("token") == "" {
		e.t.Fatalf("dashboard URL %q: %v", a.url, err)
	}
	a.base = "http://" + u.Host
	return a
}

func (a *dashAgent) token() string {
	u, _ := url.Parse(a.url)
	return u.Query().Get("token")
}

// runtimeDir is a runtime directory of the env's own (short: it holds unix
// sockets), so that `clawpatrol approve` run by other tests of the same
// user never sees, nor decides, this env's approvals.
func (e *env) runtimeDir() string {
	e.t.Helper()
	runtimeDirsMu.Lock()
	defer runtimeDirsMu.Unlock()
	if dir, ok := runtimeDirs[e]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "cpd")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chown(dir, agentUID, agentGID); err != nil {
		e.t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	runtimeDirs[e] = dir
	e.t.Cleanup(func() {
		os.RemoveAll(dir)
		runtimeDirsMu.Lock()
		delete(runtimeDirs, e)
		runtimeDirsMu.Unlock()
	})
	return dir
}

var (
	runtimeDirsMu sync.Mutex
	runtimeDirs   = map[*env]string{}
)

// touch creates a handshake file in the env's directory.
func (e *env) touch(name string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// waitFile waits until the agent has written want into a file.
func (e *env) waitFile(name, want string) string {
	e.t.Helper()
	deadline := time.Now().Add(dashWait)
	for {
		b, _ := os.ReadFile(filepath.Join(e.dir, name))
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: want %q, have %q", name, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newBrowser starts Debian's chromium, headless, with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI; the page is our own
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a deadline that only guards against a hang.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, dashWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func evaluate[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, dashWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// screenshot saves the viewport as NAME.png: under docs/screenshots when
// UPDATE_SCREENSHOTS is set (for the README), else in a temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := t.TempDir()
	if os.Getenv("UPDATE_SCREENSHOTS") != "" {
		dir = filepath.Join("..", "docs", "screenshots")
		os.MkdirAll(dir, 0o755)
	}
	ctx, cancel := context.WithTimeout(ctx, dashWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardInTheBrowser: a person watches an agent's actions appear
// live, approves one held request with a click and the agent gets its
// answer, denies the next and the agent gets the 403, then downloads a
// fixture that `clawpatrol test` replays.
func TestDashboardInTheBrowser(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "5m")
	agent := e.startDashboard("127.0.0.1:0", "agent.sh", `
w go1; curl -sS -m 120 http://svc.test/hello > out1 2>&1
w go2; curl -sS -m 120 http://svc.test/held > out2 2>&1
curl -s -m 120 -o /dev/null -w "%{http_code}" http://svc.test/held > out3 2>&1
w done`)
	ctx := newBrowser(t)

	// The URL carries the token once; the page then lives on its cookie.
	do(t, ctx, "open the dashboard", chromedp.Navigate(agent.url), chromedp.WaitVisible(chromedp.CSS("#conn.live")))
	if loc := evaluate[string](t, ctx, "location.href"); strings.Contains(loc, "token") {
		t.Fatalf("the token stayed in the address bar: %s", loc)
	}

	// A live action appears while the agent runs curl.
	e.touch("go1")
	e.waitFile("out1", "hello from /hello")
	do(t, ctx, "see the action appear", chromedp.WaitVisible(chromedp.CSS(`#actions tbody tr[data-status="done"]`)))
	if got := evaluate[string](t, ctx, `document.querySelector("#actions tbody tr").textContent`); !strings.Contains(got, "GET /hello") || !strings.Contains(got, "reads") {
		t.Fatalf("the row: %q", got)
	}

	// Approve a held request with a click; the agent's request completes.
	e.touch("go2")
	do(t, ctx, "see the pending approval", chromedp.WaitVisible(chromedp.CSS("#pending li.card")),
		chromedp.SendKeys(chromedp.CSS("#pending li.card input[name=reason]"), "the agent may read this"))
	screenshot(t, ctx, "dashboard-pending")
	if hits.Load() != 1 {
		t.Fatalf("the upstream saw the held request before the approval (%d hits)", hits.Load())
	}
	do(t, ctx, "approve", chromedp.Click(chromedp.CSS("#pending li.card button.approve")))
	e.waitFile("out2", "hello from /held")
	do(t, ctx, "see the approval's outcome", chromedp.WaitVisible(chromedp.CSS(`#recent li[data-status="allow"]`)))

	// Deny the next one; the agent gets the 403.
	do(t, ctx, "see the second approval", chromedp.WaitVisible(chromedp.CSS("#pending li.card")),
		chromedp.SendKeys(chromedp.CSS("#pending li.card input[name=reason]"), "not twice"),
		chromedp.Click(chromedp.CSS("#pending li.card button.deny")))
	e.waitFile("out3", "403")
	do(t, ctx, "see the denial", chromedp.WaitVisible(chromedp.CSS(`#recent li[data-status="deny"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#actions tbody tr[data-status="denied"]`)))
	if hits.Load() != 2 {
		t.Fatalf("want the upstream to see /hello and the approved /held only, saw %d", hits.Load())
	}
	recent := evaluate[string](t, ctx, `document.getElementById("recent").textContent`)
	if !strings.Contains(recent, "via dashboard") || !strings.Contains(recent, "not twice") {
		t.Fatalf("recent decisions: %q", recent)
	}
	screenshot(t, ctx, "dashboard")

	// The approved action's page, and its fixture.
	id := evaluate[string](t, ctx, `document.querySelector('#recent li[data-status="allow"]').dataset.id`)
	downloads := t.TempDir()
	tctx, cancel := context.WithTimeout(ctx, dashWait)
	defer cancel()
	if _, err := chromedp.CallBrowser(tctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "open the action", chromedp.Navigate(agent.base+"/action/"+id), chromedp.WaitVisible(chromedp.CSS("#download")))
	page := evaluate[string](t, ctx, "document.body.textContent")
	for _, want := range []string{"GET /held", "needs-ok", "the agent may read this", "dashboard", `"path": "/held"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the action page lacks %q", want)
		}
	}
	screenshot(t, ctx, "dashboard-action")
	do(t, ctx, "download the fixture", chromedp.Click(chromedp.CSS("#download")))
	var fixture string
	deadline := time.Now().Add(dashWait)
	for fixture == "" {
		matches, _ := filepath.Glob(filepath.Join(downloads, "*.json"))
		if len(matches) > 0 {
			fixture = matches[0]
		} else if time.Now().After(deadline) {
			t.Fatal("no fixture was downloaded")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	replay := e.write("held.json", string(data))
	r := e.exec(e.command("test", "-c", e.cfg, replay))
	if r.code != 0 || !strings.Contains(r.stdout, "ok   "+replay) || !strings.Contains(r.stdout, "1 passed, 0 failed") {
		t.Fatalf("clawpatrol test on the downloaded fixture:\n%v\n%s", r, data)
	}

	e.touch("done")
	res := agent.wait()
	if res.code != 0 {
		t.Fatalf("the agent: %v", res)
	}
	// The URL is printed once, before the agent starts; nothing else.
	if strings.TrimSpace(res.stderr) != "" {
		t.Fatalf("clawpatrol printed more than the dashboard line:\n%s", res.stderr)
	}
}

// hostAddr is one of this host's own non-loopback addresses, if any.
func hostAddr() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr().String()
		}
	}
	return ""
}

// TestDashboardAccess: the agent cannot reach the dashboard even with its
// URL and token; from the host, a request without the token gets 401 and a
// decision without the CSRF token is refused.
func TestDashboardAccess(t *testing.T) {
	addr, hits := serveHTTP(t)
	e := approvalEnv(t, addr, "5m")
	port := freePort(t)
	own := hostAddr()
	agent := e.startDashboard(fmt.Sprintf("127.0.0.1:%d", port), "agent.sh", fmt.Sprintf(`
w go
[ -n "%[2]s" ] && curl -sS -m 10 -D - -o /dev/null "http://%[2]s:%[1]d/" > own 2>&1
curl -sS -m 10 -o /dev/null -w "loopback:%%{http_code}" "$(cat url)" 2>/dev/null; echo " exit=$?" > loopback
curl -sS -m 120 -o /dev/null -w "%%{http_code}" http://svc.test/held > held 2>&1
w done`, port, own))
	e.write("url", agent.url)
	e.touch("go")
	if got := e.waitFile("loopback", "exit="); !strings.Contains(got, "exit=7") {
		t.Fatalf("the agent reached the dashboard on loopback (want curl's exit 7, connection refused): %q", got)
	}
	if own != "" {
		// The host's own address is refused by clawpatrol itself.
		got, _ := os.ReadFile(filepath.Join(e.dir, "own"))
		t.Logf("the agent to %s:%d: %q", own, port, got)
		if !strings.Contains(string(got), "403") || !strings.Contains(string(got), "local-address") {
			t.Fatalf("the agent reached the host's own address %s: %q", own, got)
		}
	}

	// From the host, without the token.
	client := &http.Client{Timeout: dashWait}
	for _, p := range []string{"/", "/api/state", "/api/events", "/?token=not-the-token"} {
		resp, err := client.Get(agent.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s without the token: %d, want 401", p, resp.StatusCode)
		}
	}

	// With the token but without the CSRF token, a decision is refused.
	authed := func(method, path string, body url.Values, csrf string) (int, string) {
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, _ := http.NewRequest(method, agent.base+path, rd)
		req.Header.Set("Authorization", "Bearer "+agent.token())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var pendingID string
	deadline := time.Now().Add(dashWait)
	for pendingID == "" {
		_, body := authed("GET", "/api/approvals", nil, "")
		var ps []map[string]any
		if json.Unmarshal([]byte(body), &ps) == nil && len(ps) > 0 {
			pendingID, _ = ps[0]["id"].(string)
		} else if time.Now().After(deadline) {
			t.Fatal("no pending approval on the dashboard")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code, body := authed("POST", "/api/approvals/"+pendingID, url.Values{"verdict": {"allow"}}, ""); code != http.StatusForbidden {
		t.Fatalf("a decision without the CSRF token: %d %s", code, body)
	}
	if hits.Load() != 0 {
		t.Fatal("the refused decision let the request through")
	}
	// The page's own CSRF token works.
	_, page := authed("GET", "/", nil, "")
	m := regexp.MustCompile(`<meta name="csrf" content="([0-9a-f]+)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	if code, body := authed("POST", "/api/approvals/"+pendingID, url.Values{"verdict": {"deny"}, "reason": {"no"}}, m[1]); code != http.StatusOK {
		t.Fatalf("a decision with the CSRF token: %d %s", code, body)
	}
	if got := e.waitFile("held", "403"); got != "403" {
		t.Fatalf("the denied request: %q", got)
	}
	e.touch("done")
	if r := agent.wait(); r.code != 0 || hits.Load() != 0 {
		t.Fatalf("the agent: %v (upstream hits %d)", r, hits.Load())
	}
}

// TestDashboardManySessions: a second run on the same address joins the
// first's dashboard; when the first ends, the second serves the address.
func TestDashboardManySessions(t *testing.T) {
	addr, _ := serveHTTP(t)
	e := approvalEnv(t, addr, "5m")
	dash := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	first := e.startDashboard(dash, "one.sh", `w go1; curl -sS -m 120 http://svc.test/one > out1 2>&1; w done1`)
	second := e.startDashboard(dash, "two.sh", `w go2; curl -sS -m 120 http://svc.test/two > out2 2>&1; w done2`)
	if first.url != second.url {
		t.Fatalf("want the second session to join the first's page, got %s and %s", first.url, second.url)
	}
	e.touch("go1")
	e.touch("go2")
	e.waitFile("out1", "hello from /one")
	e.waitFile("out2", "hello from /two")

	state := func() (sessions []string, summaries []string, ok bool) {
		req, _ := http.NewRequest("GET", first.base+"/api/state", nil)
		req.Header.Set("Authorization", "Bearer "+first.token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, false
		}
		defer resp.Body.Close()
		var st struct {
			Sessions []struct {
				ID      string `json:"id"`
				Running bool   `json:"running"`
			} `json:"sessions"`
			Rows []struct {
				Summary string `json:"summary"`
				Status  string `json:"status"`
			} `json:"rows"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
			return nil, nil, false
		}
		for _, s := range st.Sessions {
			if s.Running {
				sessions = append(sessions, s.ID)
			}
		}
		for _, r := range st.Rows {
			if r.Status == "done" {
				summaries = append(summaries, r.Summary)
			}
		}
		return sessions, summaries, true
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(dashWait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("both sessions and their actions on one page", func() bool {
		s, rows, ok := state()
		return ok && len(s) == 2 && strings.Contains(strings.Join(rows, ","), "GET /one") && strings.Contains(strings.Join(rows, ","), "GET /two")
	})

	ctx := newBrowser(t)
	do(t, ctx, "see both sessions", chromedp.Navigate(first.url), chromedp.WaitVisible(chromedp.CSS("#conn.live")),
		chromedp.WaitVisible(chromedp.CSS(".session + .session")), chromedp.WaitVisible(chromedp.CSS("td.col-session")))
	screenshot(t, ctx, "dashboard-sessions")

	e.touch("done1")
	if r := first.wait(); r.code != 0 {
		t.Fatalf("first session: %v", r)
	}
	eventually("the second session serving the page alone", func() bool {
		s, rows, ok := state()
		return ok && len(s) == 1 && strings.Join(rows, ",") == "GET /two"
	})
	// The open page carries on with the session that took over.
	do(t, ctx, "see the page follow the takeover", chromedp.WaitNotPresent(chromedp.CSS(".session + .session")),
		chromedp.WaitVisible(chromedp.CSS("#conn.live")))
	e.touch("done2")
	if r := second.wait(); r.code != 0 || strings.TrimSpace(r.stderr) != "" {
		t.Fatalf("second session: %v", r)
	}
}
