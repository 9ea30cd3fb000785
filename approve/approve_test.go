package approve

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
)

// waitLimit bounds every wait in these tests; it is a ceiling against a
// hang, never an assertion on how long something took.
const waitLimit = 10 * time.Second

func mustConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// harness is one Approvals with a record of its events.
type harness struct {
	t *testing.T
	*Approvals
	mu     sync.Mutex
	events []Event
	asked  chan Pending // every EventAsked
}

func newHarness(t *testing.T, yaml string, o Options) *harness {
	t.Helper()
	if o.Logger == nil {
		o.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	if o.Secret == nil {
		o.Secret = func(name string) (string, error) { return "secret-" + name, nil }
	}
	a, err := New(mustConfig(t, yaml), o)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, Approvals: a, asked: make(chan Pending, 64)}
	a.Subscribe(func(ev Event) {
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
		if ev.Kind == EventAsked {
			h.asked <- ev.Pending
		}
	})
	t.Cleanup(a.Close)
	return h
}

// waitAsked returns the next approver asked, which must be name.
func (h *harness) waitAsked(name string) Pending {
	h.t.Helper()
	select {
	case p := <-h.asked:
		if p.Approver != name {
			h.t.Fatalf("asked %s, want %s", p.Approver, name)
		}
		return p
	case <-time.After(waitLimit):
		h.t.Fatalf("approver %s was never asked", name)
	}
	return Pending{}
}

// eventKinds lists the events seen for id, as "kind approver".
func (h *harness) eventKinds(id string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, ev := range h.events {
		if ev.Pending.ID == id {
			out = append(out, string(ev.Kind)+" "+ev.Pending.Approver)
		}
	}
	return out
}

// decision runs Decide in the background.
type decision struct{ ch chan action.Decision }

func (h *harness) decide(ctx context.Context, a *action.Action, d action.Decision) decision {
	ch := make(chan action.Decision, 1)
	go func() { ch <- h.Decide(ctx, a, d) }()
	return decision{ch}
}

func (d decision) wait(t *testing.T) action.Decision {
	t.Helper()
	select {
	case got := <-d.ch:
		return got
	case <-time.After(waitLimit):
		t.Fatal("Decide never returned")
	}
	return action.Decision{}
}

func deleteIssue(id string) *action.Action {
	return &action.Action{ID: id, Protocol: action.ProtoHTTP, Endpoint: "github",
		Destination: action.Destination{Host: "api.github.com", Port: 443, TLS: true},
		HTTP:        &action.HTTP{Method: "DELETE", Scheme: "https", Host: "api.github.com", Path: "/repos/acme/app/issues/1"}}
}

func approveOf(approvers ...string) action.Decision {
	return action.Decision{Verdict: action.Approve, Rule: "github-delete", Approvers: approvers,
		Reasons: []action.Reason{{Rule: "github-delete", Reason: "deleting an issue"}}}
}

const twoHumans = `
approvers:
  first: {type: human}
  second: {type: human}
approval:
  default: [first]
`

func TestDecisionsOtherThanApprovePassThrough(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	for _, d := range []action.Decision{action.Denied("r", "no"), {Verdict: action.Allow, Rule: "ok"}} {
		if got := h.Decide(context.Background(), deleteIssue("A"), d); got.Verdict != d.Verdict || got.Approval != nil {
			t.Errorf("Decide(%s) = %+v, want it unchanged", d.Verdict, got)
		}
	}
}

func TestEveryApproverInOrderMustAllow(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	d := h.decide(context.Background(), deleteIssue("A1"), approveOf("first", "second"))
	p := h.waitAsked("first")
	if p.ID != "A1" || p.Rule != "github-delete" || p.Reason != "deleting an issue" || p.Status != StatusPending {
		t.Errorf("pending = %+v", p)
	}
	if _, err := h.Resolve("A1", Resolution{Verdict: action.Allow, By: "alice", Via: ViaCLI}); err != nil {
		t.Fatal(err)
	}
	h.waitAsked("second")
	if _, err := h.Resolve("A1", Resolution{Verdict: action.Allow, By: "bob", Via: ViaDashboard, Reason: "fine"}); err != nil {
		t.Fatal(err)
	}
	got := d.wait(t)
	if got.Verdict != action.Allow || got.Rule != "github-delete" {
		t.Fatalf("decision = %+v, want allow keeping the rule", got)
	}
	ap := got.Approval
	if ap.Approver != "second" || ap.By != "bob" || ap.Via != ViaDashboard || ap.Reason != "fine" || len(ap.Steps) != 2 ||
		ap.Steps[0].Approver != "first" || ap.Steps[0].By != "alice" || ap.Steps[0].Outcome != action.Allow {
		t.Errorf("approval = %+v", ap)
	}
	if !strings.HasPrefix(got.Reasons[0].Reason, "approved by second [bob via dashboard] after ") || got.Reasons[1].Reason != "deleting an issue" {
		t.Errorf("reasons = %+v", got.Reasons)
	}
	want := []string{"asked first", "answered first", "asked second", "answered second", "done second"}
	if kinds := h.eventKinds("A1"); strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Errorf("events = %v, want %v", kinds, want)
	}
	if len(h.List()) != 0 {
		t.Errorf("pending table keeps %v", h.List())
	}
}

func TestFirstRefusalDenies(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	d := h.decide(context.Background(), deleteIssue("A2"), approveOf("first", "second"))
	h.waitAsked("first")
	if _, err := h.Resolve("A2", Resolution{Verdict: action.Deny, By: "alice", Via: ViaCLI, Reason: "not today"}); err != nil {
		t.Fatal(err)
	}
	got := d.wait(t)
	if got.Verdict != action.Deny || got.Rule != "github-delete" || len(got.Approval.Steps) != 1 {
		t.Fatalf("decision = %+v", got)
	}
	if !strings.HasPrefix(got.Reason(), "approval denied by first [alice via cli] after ") || !strings.HasSuffix(got.Reason(), ": not today") {
		t.Errorf("the agent is told %q", got.Reason())
	}
	for _, k := range h.eventKinds("A2") {
		if strings.HasSuffix(k, "second") {
			t.Errorf("second approver was asked after a refusal: %v", h.eventKinds("A2"))
		}
	}
}

func TestDefaultApprovers(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	d := h.decide(context.Background(), deleteIssue("A3"), approveOf()) // the rule names none
	h.waitAsked("first")                                                // approval.default
	h.Resolve("A3", Resolution{Verdict: action.Allow, Via: ViaCLI})
	if got := d.wait(t); got.Verdict != action.Allow {
		t.Fatalf("decision = %+v", got)
	}

	none := newHarness(t, "approvers: {me: {type: human}}\n", Options{})
	if got := none.Decide(context.Background(), deleteIssue("A4"), approveOf()); got.Verdict != action.Deny ||
		!strings.Contains(got.Reason(), "no approver is named") {
		t.Errorf("no approvers anywhere: %+v", got)
	}
	if got := none.Decide(context.Background(), deleteIssue("A5"), approveOf("ghost")); got.Verdict != action.Deny ||
		!strings.Contains(got.Error, `no approver named "ghost"`) {
		t.Errorf("unknown approver: %+v", got)
	}
}

func TestTimeoutDenies(t *testing.T) {
	h := newHarness(t, twoHumans+"  timeout: 20ms\n", Options{})
	got := h.Decide(context.Background(), deleteIssue("T1"), approveOf("first"))
	if got.Verdict != action.Deny || got.Approval.Via != ViaTimeout || !strings.HasPrefix(got.Reason(), "approval timed out") {
		t.Fatalf("decision = %+v", got)
	}
	if _, err := h.Resolve("T1", Resolution{Verdict: action.Allow, Via: ViaCLI}); err != ErrUnknown {
		t.Errorf("answer after the timeout: %v, want ErrUnknown", err)
	}
}

func TestPerApproverTimeoutOverrides(t *testing.T) {
	// A short step timeout under a long approval.timeout.
	h := newHarness(t, `
approvers:
  quick: {type: human, timeout: 20ms}
  slow: {type: human, timeout: 1h}
approval:
  timeout: 1h
`, Options{})
	got := h.Decide(context.Background(), deleteIssue("T2"), approveOf("quick"))
	if got.Verdict != action.Deny || got.Approval.Via != ViaTimeout || got.Approval.Approver != "quick" {
		t.Fatalf("quick: %+v", got.Approval)
	}

	// A long step timeout outlives a short approval.timeout.
	h2 := newHarness(t, `
approvers:
  slow: {type: human, timeout: 1h}
approval:
  timeout: 20ms
`, Options{})
	d := h2.decide(context.Background(), deleteIssue("T3"), approveOf("slow"))
	p := h2.waitAsked("slow")
	if time.Until(p.Deadline) < 30*time.Minute {
		t.Errorf("deadline %v is not the step's own", p.Deadline)
	}
	time.Sleep(50 * time.Millisecond) // past approval.timeout
	if _, err := h2.Resolve("T3", Resolution{Verdict: action.Allow, Via: ViaCLI}); err != nil {
		t.Fatal(err)
	}
	if got := d.wait(t); got.Verdict != action.Allow {
		t.Fatalf("slow: %+v", got)
	}
}

func TestNonInteractiveDeniesPeopleAtOnce(t *testing.T) {
	h := newHarness(t, twoHumans, Options{NonInteractive: true})
	got := h.Decide(context.Background(), deleteIssue("N1"), approveOf("first"))
	if got.Verdict != action.Deny || got.Approval.Via != ViaPolicy || !strings.Contains(got.Reason(), "non-interactive") {
		t.Fatalf("decision = %+v", got)
	}
	// The same chain in an interactive session waits for the person.
	h2 := newHarness(t, twoHumans, Options{})
	d := h2.decide(context.Background(), deleteIssue("N2"), approveOf("first"))
	h2.waitAsked("first")
	h2.Resolve("N2", Resolution{Verdict: action.Allow, Via: ViaCLI})
	if got := d.wait(t); got.Verdict != action.Allow {
		t.Fatalf("interactive: %+v", got)
	}
}

func TestFirstDecisionWins(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	d := h.decide(context.Background(), deleteIssue("F1"), approveOf("first"))
	h.waitAsked("first")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		v, via := action.Allow, ViaCLI
		if i%2 == 1 {
			v, via = action.Deny, ViaDashboard
		}
		wg.Go(func() {
			_, err := h.Resolve("F1", Resolution{Verdict: v, Via: via})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch err {
		case nil:
			won++
		case ErrDecided, ErrUnknown:
		default:
			t.Errorf("Resolve: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d answers won, want exactly 1", won)
	}
	got := d.wait(t)
	if got.Verdict != action.Allow && got.Verdict != action.Deny {
		t.Errorf("decision = %+v", got)
	}
}

func TestOnlyTheAskedApproverAllows(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	d := h.decide(context.Background(), deleteIssue("O1"), approveOf("first", "second"))
	h.waitAsked("first")
	if _, err := h.Resolve("O1", Resolution{Verdict: action.Allow, Via: ViaSlack}); err != ErrNotAsked {
		t.Errorf("slack allowing a human step: %v, want ErrNotAsked", err)
	}
	if _, err := h.Resolve("O1", Resolution{Verdict: action.Allow, Via: ViaCLI, Approver: "second"}); err != ErrNotAsked {
		t.Errorf("answer for the wrong step: %v, want ErrNotAsked", err)
	}
	if _, err := h.Resolve("O1", Resolution{Verdict: "maybe", Via: ViaCLI}); err == nil {
		t.Error("a verdict that is neither allow nor deny was taken")
	}
	// Any surface may deny.
	if _, err := h.Resolve("O1", Resolution{Verdict: action.Deny, Via: ViaWebhook, By: "hook"}); err != nil {
		t.Fatal(err)
	}
	if got := d.wait(t); got.Verdict != action.Deny || got.Approval.By != "hook" {
		t.Errorf("decision = %+v", got)
	}
}

func TestCallerGoingAwayDenies(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	d := h.decide(ctx, deleteIssue("G1"), approveOf("first"))
	h.waitAsked("first")
	cancel()
	if got := d.wait(t); got.Verdict != action.Deny || !strings.Contains(got.Reason(), "abandoned") {
		t.Errorf("decision = %+v", got)
	}
}

func TestCloseDeniesWhatIsPending(t *testing.T) {
	h := newHarness(t, twoHumans, Options{})
	d := h.decide(context.Background(), deleteIssue("C1"), approveOf("first"))
	h.waitAsked("first")
	h.Close()
	if got := d.wait(t); got.Verdict != action.Deny || !strings.Contains(got.Reason(), "session ended") {
		t.Errorf("decision = %+v", got)
	}
}

func TestRedactAndSummary(t *testing.T) {
	h := newHarness(t, twoHumans, Options{
		Redact: func(a *action.Action) *action.Action {
			c := *a
			h := *a.HTTP
			h.Body = "<redacted>"
			c.HTTP = &h
			return &c
		},
		Summary: func(a *action.Action) string { return a.HTTP.Method + " " + a.HTTP.Path + "\x1b[2J" },
	})
	act := deleteIssue("R1")
	act.HTTP.Body = "token=hunter2"
	d := h.decide(context.Background(), act, approveOf("first"))
	p := h.waitAsked("first")
	if p.Input.HTTP.Body != "<redacted>" || act.HTTP.Body != "token=hunter2" {
		t.Errorf("approvers see body %q", p.Input.HTTP.Body)
	}
	if p.Summary != "DELETE /repos/acme/app/issues/1\uFFFD[2J" {
		t.Errorf("summary %q keeps control characters", p.Summary)
	}
	h.Resolve("R1", Resolution{Verdict: action.Deny, Via: ViaCLI})
	d.wait(t)
}

const reuseConfig = `
approvers:
  me: {type: human}
approval:
  default: [me]
  reuse: %s
`

func TestReuseWindow(t *testing.T) {
	for _, tc := range []struct {
		reuse string
		asked int // times the human is asked for two identical actions
	}{{"0s", 2}, {"1h", 1}} {
		t.Run("reuse="+tc.reuse, func(t *testing.T) {
			h := newHarness(t, strings.Replace(reuseConfig, "%s", tc.reuse, 1), Options{})
			asked := 0
			for i, id := range []string{"U1", "U2"} {
				d := h.decide(context.Background(), deleteIssue(id), approveOf())
				select {
				case p := <-h.asked:
					asked++
					h.Resolve(p.ID, Resolution{Verdict: action.Allow, By: "alice", Via: ViaCLI})
				case got := <-d.ch:
					if !got.Approval.Reused || got.Approval.ID != id || got.Approval.By != "alice" || i == 0 {
						t.Errorf("reused decision = %+v", got.Approval)
					}
					if got.Verdict != action.Allow {
						t.Errorf("reused verdict %s", got.Verdict)
					}
					continue
				}
				if got := d.wait(t); got.Verdict != action.Allow {
					t.Fatalf("decision = %+v", got)
				}
			}
			if asked != tc.asked {
				t.Errorf("asked %d times, want %d", asked, tc.asked)
			}
		})
	}
}

func TestReuseNeedsTheSameActionWithinTheWindow(t *testing.T) {
	h := newHarness(t, strings.Replace(reuseConfig, "%s", "1m", 1), Options{})
	now := time.Now()
	h.now = func() time.Time { return now }
	allow := func(a *action.Action) {
		d := h.decide(context.Background(), a, approveOf())
		p := h.waitAsked("me")
		h.Resolve(p.ID, Resolution{Verdict: action.Allow, Via: ViaCLI})
		d.wait(t)
	}
	reused := func(a *action.Action) bool {
		d := h.decide(context.Background(), a, approveOf())
		select {
		case p := <-h.asked:
			h.Resolve(p.ID, Resolution{Verdict: action.Deny, Via: ViaCLI})
			d.wait(t)
			return false
		case got := <-d.ch:
			return got.Approval.Reused
		}
	}
	allow(deleteIssue("W1"))
	other := deleteIssue("W2")
	other.HTTP.Path = "/repos/acme/app/issues/2"
	if reused(other) {
		t.Error("another path reused the approval")
	}
	body := deleteIssue("W3")
	body.HTTP.Body = "x"
	if reused(body) {
		t.Error("another body reused the approval")
	}
	truncated := deleteIssue("W4")
	truncated.HTTP.Truncated = true
	allow(truncated)
	truncated.ID = "W5"
	if reused(truncated) {
		t.Error("a truncated body reused an approval: the unseen rest may differ")
	}
	if !reused(deleteIssue("W6")) {
		t.Error("the same action within the window was asked again")
	}
	now = now.Add(2 * time.Minute)
	if reused(deleteIssue("W7")) {
		t.Error("an approval outside the window was reused")
	}
}

func TestReuseJoinsAnIdenticalPendingAction(t *testing.T) {
	h := newHarness(t, strings.Replace(reuseConfig, "%s", "1h", 1), Options{})
	first := h.decide(context.Background(), deleteIssue("J1"), approveOf())
	h.waitAsked("me")
	second := h.decide(context.Background(), deleteIssue("J2"), approveOf())
	h.Resolve("J1", Resolution{Verdict: action.Allow, By: "alice", Via: ViaCLI})
	if got := first.wait(t); got.Verdict != action.Allow || got.Approval.Reused {
		t.Errorf("first = %+v", got.Approval)
	}
	if got := second.wait(t); got.Verdict != action.Allow || got.Approval.ID != "J2" || !got.Approval.Reused {
		t.Errorf("second = %+v", got.Approval)
	}
	// The retry waited on the first (or reused it) rather than asking again.
	select {
	case p := <-h.asked:
		t.Errorf("asked again: %+v", p)
	default:
	}
}

func TestFingerprint(t *testing.T) {
	d := approveOf()
	base := fingerprint(deleteIssue("a"), d, []string{"me"})
	if base == "" || base != fingerprint(deleteIssue("b"), d, []string{"me"}) {
		t.Fatal("ids or times must not change the fingerprint")
	}
	variants := map[string]func(a *action.Action){
		"method":   func(a *action.Action) { a.HTTP.Method = "GET" },
		"query":    func(a *action.Action) { a.HTTP.Query = map[string][]string{"force": {"1"}} },
		"host":     func(a *action.Action) { a.Destination.Host = "evil.example" },
		"port":     func(a *action.Action) { a.Destination.Port = 8443 },
		"endpoint": func(a *action.Action) { a.Endpoint = "other" },
	}
	for name, change := range variants {
		a := deleteIssue("c")
		change(a)
		if fingerprint(a, d, []string{"me"}) == base {
			t.Errorf("%s does not change the fingerprint", name)
		}
	}
	if fingerprint(deleteIssue("d"), d, []string{"oncall"}) == base {
		t.Error("approvers do not change the fingerprint")
	}
	sql := func(stmt string) *action.Action {
		return &action.Action{Protocol: action.ProtoSQL, SQL: &action.SQL{Dialect: "postgres", Statement: stmt}}
	}
	if fingerprint(sql("DELETE FROM a"), d, nil) == fingerprint(sql("DELETE FROM b"), d, nil) {
		t.Error("SQL statements are not told apart")
	}
	k8s := func(name string) *action.Action {
		return &action.Action{Protocol: action.ProtoK8s, K8s: &action.K8s{Verb: "delete", Resource: "pods", Name: name}}
	}
	if fingerprint(k8s("a"), d, nil) == fingerprint(k8s("b"), d, nil) {
		t.Error("k8s names are not told apart")
	}
}

func TestNotifyLineIsOptional(t *testing.T) {
	var lines strings.Builder
	h := newHarness(t, twoHumans, Options{Notify: &lockedWriter{w: &lines}})
	d := h.decide(context.Background(), deleteIssue("M1"), approveOf("first"))
	h.waitAsked("first")
	h.Resolve("M1", Resolution{Verdict: action.Deny, Via: ViaCLI})
	d.wait(t)
	if got := lines.String(); !strings.HasPrefix(got, "clawpatrol: approval needed: M1 ") || !strings.Contains(got, "`clawpatrol approve M1`") ||
		strings.Count(got, "\n") != 1 {
		t.Errorf("notification %q", got)
	}
	// Off by default: nothing but the Notify writer would print it.
	quiet := newHarness(t, twoHumans, Options{})
	if quiet.opts.Notify != nil {
		t.Error("notifications are on by default")
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSocketDirMustBeOurs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, twoHumans, Options{Session: "S1", SocketDir: dir})
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode %v, %v", st.Mode(), err)
	}
	if st, err := os.Stat(SocketPath(dir, "S1")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v", st.Mode(), err)
	}
	h.Close()
	if _, err := os.Stat(SocketPath(dir, "S1")); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Close: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(mustConfig(t, twoHumans), Options{Session: "S2", SocketDir: file}); err == nil {
		t.Error("a socket dir that is a file was accepted")
	}
}
