package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/audit"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

// waitLimit bounds every wait in these tests; it guards against a hang and
// is never an assertion on how long something took.
const waitLimit = 20 * time.Second

// session is one dashboard with real approvals behind it.
type session struct {
	t         *testing.T
	srv       *Server
	approvals *approve.Approvals
	token     string
	base      string
}

func newSession(t *testing.T, addr, socketDir, id, yaml string) *session {
	t.Helper()
	if yaml == "" {
		yaml = "approvers:\n  me: {type: human}\napproval:\n  default: [me]\n"
	}
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	srv, err := Listen(Options{Addr: addr, SocketDir: socketDir, Logger: log,
		Session: SessionInfo{ID: id, Command: []string{"agent", id}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := approve.New(cfg, approve.Options{Logger: log, CallbackURL: srv.CallbackURL(),
		Secret: func(name string) (string, error) { return "secret-" + name, nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv.Attach(a)
	t.Cleanup(func() {
		a.Close()
		srv.Close()
	})
	u, _ := url.Parse(srv.URL())
	return &session{t: t, srv: srv, approvals: a, token: u.Query().Get("token"), base: "http://" + u.Host}
}

// get requests path with the token as a bearer token.
func (s *session) get(path string) *http.Response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp
}

func (s *session) state() snapshot {
	s.t.Helper()
	resp := s.get("/api/state")
	defer resp.Body.Close()
	var st snapshot
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpAction(id, path string) *action.Action {
	return &action.Action{ID: id, Time: time.Now().UTC(), Protocol: action.ProtoHTTP, Endpoint: "svc",
		Destination: action.Destination{Host: "svc.test", Port: 80},
		HTTP:        &action.HTTP{Method: "GET", Path: path, Headers: map[string][]string{"authorization": {"<redacted>"}}}}
}

func record(a *action.Action, d action.Decision) audit.ActionRecord {
	return audit.ActionRecord{ID: a.ID, Time: a.Time.Format(time.RFC3339Nano), Protocol: a.Protocol, Endpoint: a.Endpoint,
		Destination: a.Destination, Summary: a.HTTP.Method + " " + a.HTTP.Path, Decision: d, Input: a}
}

// hold parks an approval for path in s and returns its id and the final
// decision to come.
func (s *session) hold(id, path string) <-chan action.Decision {
	s.t.Helper()
	a := httpAction(id, path)
	d := action.Decision{Verdict: action.Approve, Rule: "needs-ok", Reasons: []action.Reason{{Rule: "needs-ok", Reason: "look first"}}}
	s.srv.Decided(record(a, d))
	out := make(chan action.Decision, 1)
	go func() {
		final := s.approvals.Decide(context.Background(), a, d)
		s.srv.Finished(record(a, final))
		out <- final
	}()
	eventually(s.t, "the approval is pending on the page", func() bool {
		for _, p := range s.state().Pending {
			if p.ID == id {
				return true
			}
		}
		return false
	})
	return out
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatal("timed out")
	}
	var zero T
	return zero
}

func TestAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		remote   bool
		err      error
	}{
		{"7777", "127.0.0.1:7777", false, nil},
		{"localhost:7777", "127.0.0.1:7777", false, nil},
		{"127.0.0.2:1", "127.0.0.2:1", false, nil},
		{"[::1]:7777", "[::1]:7777", false, nil},
		{"0.0.0.0:7777", "", false, ErrRemote},
		{":7777", "", false, ErrRemote},
		{"192.0.2.1:7777", "", false, ErrRemote},
		{"dash.example:7777", "", false, ErrRemote},
		{"0.0.0.0:7777", "0.0.0.0:7777", true, nil},
		{"nonsense", "", false, nil},
		{"127.0.0.1:99999", "", false, nil},
	} {
		got, err := Address(tc.in, tc.remote)
		switch {
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("%q: want %v, got %q, %v", tc.in, tc.err, got, err)
		case tc.want == "" && tc.err == nil && err == nil:
			t.Errorf("%q: want an error, got %q", tc.in, got)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%q: want %q, got %q, %v", tc.in, tc.want, got, err)
		}
	}
}

func TestRemoteBindRefusedWithoutTheFlag(t *testing.T) {
	_, err := Listen(Options{Addr: "0.0.0.0:0", SocketDir: t.TempDir()})
	if !errors.Is(err, ErrRemote) || len(Hints(err)) == 0 {
		t.Fatalf("want a refusal with hints, got %v", err)
	}
}

func TestAccess(t *testing.T) {
	s := newSession(t, "127.0.0.1:0", t.TempDir(), "S1", "")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(path string, cookie *http.Cookie, host string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/", "/api/state", "/api/events", "/static/app.js", "/action/X", "/?token=wrong"} {
		if r := do(p, nil, ""); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", p, r.StatusCode)
		}
	}
	r := do("/?token="+s.token, nil, "")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
		t.Fatalf("token in the query: %d to %q, want a 303 to /", r.StatusCode, r.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, "clawpatrol_dashboard_") {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Value != s.token {
		t.Fatalf("want an HttpOnly SameSite=Strict cookie with the token, got %+v", r.Cookies())
	}
	if r := do("/", cookie, ""); r.StatusCode != http.StatusOK || !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("with the cookie: %d %v", r.StatusCode, r.Header)
	}
	if r := do("/", cookie, "rebound.example:80"); r.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("a foreign Host header: %d, want 421", r.StatusCode)
	}
	// The webhook callback carries its own signature instead of the token.
	resp, err := http.Post(s.base+"/api/webhook/S1", "application/json", strings.NewReader(`{"id":"X","verdict":"allow"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned callback: %d, want 401 from the signature check", resp.StatusCode)
	}
}

// post sends a decision the way the page does, with the given extra headers.
func (s *session) post(id string, form url.Values, header map[string]string) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/api/approvals/"+id, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: s.srv.cookieName(), Value: s.token})
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestDecisionsNeedTheCSRFTokenAndOrigin(t *testing.T) {
	s := newSession(t, "127.0.0.1:0", t.TempDir(), "S1", "")
	done := s.hold("A1", "/held")
	_, csrf := s.srv.secrets()
	allow := url.Values{"verdict": {"allow"}, "reason": {"fine"}}

	if code, out := s.post("A1", allow, nil); code != http.StatusForbidden || out["code"] != "csrf" {
		t.Fatalf("no CSRF token: %d %v, want 403", code, out)
	}
	if code, out := s.post("A1", allow, map[string]string{"X-CSRF-Token": "wrong"}); code != http.StatusForbidden || out["code"] != "csrf" {
		t.Fatalf("wrong CSRF token: %d %v, want 403", code, out)
	}
	if code, _ := s.post("A1", allow, map[string]string{"X-CSRF-Token": csrf, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Fatalf("cross-origin: %d, want 403", code)
	}
	select {
	case d := <-done:
		t.Fatalf("a refused request decided the approval: %+v", d)
	default:
	}
	code, out := s.post("A1", allow, map[string]string{"X-CSRF-Token": csrf, "Origin": s.base, "Sec-Fetch-Site": "same-origin"})
	if code != http.StatusOK || out["ok"] != true {
		t.Fatalf("a proper decision: %d %v", code, out)
	}
	d := wait(t, done)
	if d.Verdict != action.Allow || d.Approval == nil || d.Approval.Via != approve.ViaDashboard || d.Approval.Reason != "fine" {
		t.Fatalf("want an allow via the dashboard, got %+v %+v", d, d.Approval)
	}
	// First decision wins: the second is refused.
	eventually(t, "the outcome on the page", func() bool { return len(s.state().Recent) == 1 })
	if code, out := s.post("A1", url.Values{"verdict": {"deny"}}, map[string]string{"X-CSRF-Token": csrf}); code != http.StatusConflict || out["code"] != "decided" {
		t.Fatalf("a late decision: %d %v, want 409 already decided", code, out)
	}
}

// stream reads server-sent events.
type stream struct {
	t    *testing.T
	body io.ReadCloser
	r    *bufio.Reader
}

func (s *session) stream() *stream {
	s.t.Helper()
	resp := s.get("/api/events")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		s.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	st := &stream{t: s.t, body: resp.Body, r: bufio.NewReader(resp.Body)}
	s.t.Cleanup(func() { resp.Body.Close() })
	return st
}

// next returns the next event named name, skipping others.
func (st *stream) next(name string) []byte {
	st.t.Helper()
	timer := time.AfterFunc(waitLimit, func() { st.body.Close() })
	defer timer.Stop()
	var event string
	for {
		line, err := st.r.ReadString('\n')
		if err != nil {
			st.t.Fatalf("waiting for event %s: %v", name, err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == name:
			return []byte(strings.TrimPrefix(line, "data: "))
		}
	}
}

func TestEventsStreamRowsAndApprovals(t *testing.T) {
	s := newSession(t, "127.0.0.1:0", t.TempDir(), "S1", "")
	st := s.stream()
	var snap snapshot
	if err := json.Unmarshal(st.next("snapshot"), &snap); err != nil || len(snap.Sessions) != 1 || snap.Sessions[0].ID != "S1" {
		t.Fatalf("snapshot: %v %+v", err, snap)
	}
	a := httpAction("R1", "/hello")
	d := action.Decision{Verdict: action.Allow, Rule: "reads", Reasons: []action.Reason{{Rule: "reads", Reason: "reading is fine"}}}
	s.srv.Decided(record(a, d))
	var r row
	json.Unmarshal(st.next("row"), &r)
	if r.ID != "R1" || r.Status != statusOpen || r.Summary != "GET /hello" || r.Rule != "reads" {
		t.Fatalf("decided row: %+v", r)
	}
	rec := record(a, d)
	rec.UpstreamStatus, rec.BytesDown, rec.DurationMS = 200, 42, 1.5
	s.srv.Finished(rec)
	json.Unmarshal(st.next("row"), &r)
	if r.ID != "R1" || r.Status != statusDone || r.BytesDown != 42 || r.UpstreamStatus != 200 {
		t.Fatalf("finished row: %+v", r)
	}
	var head sessionJSON
	json.Unmarshal(st.next("session"), &head)
	if head.Counts["allow"] != 1 || len(head.Endpoints) != 1 || head.Endpoints[0].Endpoint != "svc" || head.Endpoints[0].BytesDown != 42 {
		t.Fatalf("session header: %+v", head)
	}

	done := s.hold("A1", "/held")
	var p approve.Pending
	json.Unmarshal(st.next("pending"), &p)
	if p.ID != "A1" || p.Approver != "me" || p.Input != nil {
		t.Fatalf("pending event: %+v", p)
	}
	// Decided elsewhere (here: the CLI's surface); the page learns the outcome.
	if _, err := s.approvals.Resolve("A1", approve.Resolution{Verdict: action.Deny, By: "alice", Via: approve.ViaCLI, Reason: "no"}); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(st.next("decided"), &p)
	if p.ID != "A1" || p.Status != "deny" || len(p.Steps) != 1 || p.Steps[0].Via != approve.ViaCLI {
		t.Fatalf("decided event: %+v", p)
	}
	wait(t, done)
}

func TestFixtureDownload(t *testing.T) {
	s := newSession(t, "127.0.0.1:0", t.TempDir(), "S1", "")
	done := s.hold("A1", "/held")
	if _, err := s.approvals.Resolve("A1", approve.Resolution{Verdict: action.Allow, By: "alice", Via: approve.ViaDashboard}); err != nil {
		t.Fatal(err)
	}
	wait(t, done)
	eventually(t, "the finished row", func() bool {
		r, _, ok := s.srv.hub.find("A1")
		return ok && r.Status == statusDone
	})
	resp := s.get("/api/actions/A1/fixture")
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("fixture: %d %v", resp.StatusCode, resp.Header)
	}
	f, err := fixtures.Parse(data)
	if err != nil {
		t.Fatalf("the download is not a fixture: %v\n%s", err, data)
	}
	// The fixture expects what the policy said (approve), as run --record does.
	if f.Expect.Verdict != action.Approve || f.Expect.Rule != "needs-ok" || f.Action.HTTP == nil || f.Action.HTTP.Path != "/held" || f.Name != "GET /held" {
		t.Fatalf("fixture: %+v %+v", f, f.Expect)
	}
	if !strings.Contains(string(data), `"<redacted>"`) {
		t.Fatalf("want the redacted header kept readable:\n%s", data)
	}
	if resp := s.get("/api/actions/NOPE/fixture"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown action: %d", resp.StatusCode)
	}
	// The detail page shows it.
	resp = s.get("/action/A1")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"GET /held", "needs-ok", "Download as fixture", "alice", "/api/actions/A1/fixture"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("detail page lacks %q", want)
		}
	}
}

func TestFilters(t *testing.T) {
	s := newSession(t, "127.0.0.1:0", t.TempDir(), "S1", "")
	for i, v := range []action.Verdict{action.Allow, action.Deny, action.Allow} {
		a := httpAction(fmt.Sprintf("R%d", i), "/p")
		if i == 2 {
			a.Endpoint = "other"
		}
		s.srv.Finished(record(a, action.Decision{Verdict: v, Rule: "r"}))
	}
	eventually(t, "three rows", func() bool { return len(s.state().Rows) == 3 })
	for q, want := range map[string]int{"": 3, "?verdict=deny": 1, "?verdict=allow": 2, "?endpoint=other": 1, "?protocol=http": 3, "?protocol=sql": 0} {
		resp := s.get("/api/actions" + q)
		var rows []row
		json.NewDecoder(resp.Body).Decode(&rows)
		resp.Body.Close()
		if len(rows) != want {
			t.Errorf("%q: %d rows, want %d", q, len(rows), want)
		}
	}
}

func TestFeedDropsOldest(t *testing.T) {
	f := newFeed(2)
	for i := range 3 {
		f.push(update{End: &i})
	}
	us, dropped, ok := f.take()
	if !ok || dropped != 1 || len(us) != 2 || *us[0].End != 1 || *us[1].End != 2 {
		t.Fatalf("got %d updates, %d dropped", len(us), dropped)
	}
	f.close()
	if _, _, ok := f.take(); ok {
		t.Fatal("a closed, empty feed still gives")
	}
}

// TestManySessions: a second session on the same address joins the
// first's page; a decision there reaches it; when the first ends, the
// second takes the address over with the same token.
func TestManySessions(t *testing.T) {
	dir := t.TempDir()
	first := newSession(t, "127.0.0.1:0", dir, "S1", "")
	addr := strings.TrimPrefix(first.base, "http://")
	second := newSession(t, addr, dir, "S2", "")
	if first.srv.Joined() || !second.srv.Joined() || second.token != first.token {
		t.Fatalf("joined: %v %v, same token: %v", first.srv.Joined(), second.srv.Joined(), second.token == first.token)
	}
	second.srv.Finished(record(httpAction("R2", "/from-two"), action.Decision{Verdict: action.Allow, Rule: "r"}))
	eventually(t, "the second session's row on the first's page", func() bool {
		st := first.state()
		return len(st.Sessions) == 2 && len(st.Rows) == 1 && st.Rows[0].Session == "S2"
	})

	done := second.hold("A2", "/held") // polls first's page: second.base is the same address
	_, csrf := first.srv.secrets()
	if code, out := first.post("A2", url.Values{"verdict": {"allow"}}, map[string]string{"X-CSRF-Token": csrf}); code != http.StatusOK {
		t.Fatalf("relayed decision: %d %v", code, out)
	}
	if d := wait(t, done); d.Verdict != action.Allow || d.Approval.Via != approve.ViaDashboard {
		t.Fatalf("relayed decision: %+v", d)
	}

	// A webhook's later answer for the second session is relayed too.
	resp, err := http.Post(first.base+"/api/webhook/S2", "application/json", strings.NewReader(`{"id":"A9","verdict":"deny"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("relayed unsigned callback: %d, want the second session's 401", resp.StatusCode)
	}

	first.srv.End(0)
	first.srv.Close()
	eventually(t, "the second session serving the address", func() bool {
		req, _ := http.NewRequest(http.MethodGet, second.base+"/api/state", nil)
		req.Header.Set("Authorization", "Bearer "+first.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st snapshot
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&st) == nil &&
			len(st.Sessions) == 1 && st.Sessions[0].ID == "S2" && len(st.Rows) == 2
	})
	// A third session joins the new owner.
	third := newSession(t, addr, dir, "S3", "")
	if !third.srv.Joined() {
		t.Fatal("the third session did not join")
	}
	eventually(t, "the third session on the page", func() bool { return len(second.state().Sessions) == 2 })
	third.srv.End(3)
	third.srv.Close()
	eventually(t, "the third session's exit on the page", func() bool {
		for _, h := range second.state().Sessions {
			if h.ID == "S3" && h.Exit != nil && *h.Exit == 3 && !h.Running {
				return true
			}
		}
		return false
	})
}

func TestAddressInUseByAnotherProgram(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(Options{Addr: ln.Addr().String(), SocketDir: t.TempDir()})
	if err == nil || len(Hints(err)) == 0 {
		t.Fatalf("want an error with hints, got %v", err)
	}
}

// TestWebhookCallback: a webhook approver that answers later is sent the
// dashboard's callback URL, and its signed answer there settles the step.
func TestWebhookCallback(t *testing.T) {
	asked := make(chan approve.WebhookRequest, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req approve.WebhookRequest
		json.NewDecoder(r.Body).Decode(&req)
		asked <- req
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	s := newSession(t, "127.0.0.1:0", t.TempDir(), "S1", fmt.Sprintf(`
approvers:
  hook: {type: webhook, url: %q, credential: hook}
approval:
  default: [hook]
`, hook.URL))
	done := s.hold("A1", "/held")
	req := wait(t, asked)
	if req.CallbackURL != s.base+"/api/webhook/S1" {
		t.Fatalf("callback URL %q", req.CallbackURL)
	}
	body := []byte(`{"id":"A1","verdict":"allow","by":"ci"}`)
	post, _ := http.NewRequest(http.MethodPost, req.CallbackURL, strings.NewReader(string(body)))
	post.Header.Set(approve.SignatureHeader, approve.Sign("secret-hook", body))
	resp, err := http.DefaultClient.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed callback: %d", resp.StatusCode)
	}
	if d := wait(t, done); d.Verdict != action.Allow || d.Approval.Via != approve.ViaWebhook || d.Approval.By != "ci" {
		t.Fatalf("want an allow via the webhook, got %+v", d.Approval)
	}
}
