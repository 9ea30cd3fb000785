package gate

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/audit"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
)

func newGate(t *testing.T, path string, e Engine, monitor bool) *Gate {
	t.Helper()
	log, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return &Gate{Engine: e, Log: log, Session: "S", Monitor: monitor, Logger: zap.NewNop()}
}

func tcpAction(endpoint string) *action.Action {
	return &action.Action{Protocol: action.ProtoTCP, Endpoint: endpoint, TCP: &action.TCP{}, Destination: action.Destination{Host: "h", Port: 1}}
}

func TestBuiltinAndDefault(t *testing.T) {
	for _, tc := range []struct {
		endpoint     string
		defaultAllow bool
		want         action.Verdict
	}{
		{"svc", false, action.Allow},
		{"", false, action.Deny},
		{"", true, action.Allow},
	} {
		g := newGate(t, filepath.Join(t.TempDir(), "a.jsonl"), Builtin{DefaultAllow: tc.defaultAllow}, false)
		if d := g.Decide(context.Background(), tcpAction(tc.endpoint)); d.Verdict != tc.want {
			t.Errorf("endpoint %q default-allow %v: got %v", tc.endpoint, tc.defaultAllow, d.Verdict)
		}
	}
}

func TestMonitorLetsThroughAndRecordsTheVerdict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	g := newGate(t, path, Builtin{}, true)
	a := tcpAction("")
	d := g.Decide(context.Background(), a)
	if d.Verdict != action.Deny || !d.Monitor || !d.Allowed() {
		t.Fatalf("monitor: want a deny that is let through, got %+v", d)
	}
	g.Finish(a, d, action.Outcome{})
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	var rec map[string]any
	json.Unmarshal(sc.Bytes(), &rec)
	dec := rec["decision"].(map[string]any)
	if dec["verdict"] != "deny" || dec["monitor"] != true || rec["id"] == "" {
		t.Fatalf("record: %v", rec)
	}
}

// An audit log that cannot be written stops the traffic.
func TestUnwritableAuditLogDenies(t *testing.T) {
	g := newGate(t, "/dev/full", Builtin{DefaultAllow: true}, true)
	if err := g.Log.Start(audit.SessionStart{Session: "S"}); err == nil {
		t.Fatal("writing to /dev/full succeeded")
	}
	d := g.Decide(context.Background(), tcpAction("svc"))
	if d.Verdict != action.Deny || d.Rule != "audit-log-unwritable" || d.Allowed() {
		t.Fatalf("want a hard deny, got %+v", d)
	}
}

func TestIDsAreUniqueAndSorted(t *testing.T) {
	prev := ""
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 26 || seen[id] || id < prev[:min(len(prev), 10)] {
			t.Fatalf("bad id %q after %q", id, prev)
		}
		seen[id], prev = true, id
	}
}

// observer keeps what a gate tells it.
type observer struct{ decided, finished []audit.ActionRecord }

func (o *observer) Decided(rec audit.ActionRecord)  { o.decided = append(o.decided, rec) }
func (o *observer) Finished(rec audit.ActionRecord) { o.finished = append(o.finished, rec) }

// The observer (the dashboard) sees each action when it is decided and
// again with the record the audit log gets.
func TestObserverSeesDecidedAndFinished(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	g := newGate(t, path, Builtin{}, false)
	o := &observer{}
	g.Observer = o
	a := tcpAction("svc")
	d := g.Decide(context.Background(), a)
	if len(o.decided) != 1 || o.decided[0].ID != a.ID || o.decided[0].Decision.Verdict != action.Allow || len(o.finished) != 0 {
		t.Fatalf("after Decide: %+v", o)
	}
	// The inspector fills in the dialled address after the decision; the
	// observer's record is its own.
	a.Destination.IP = "192.0.2.1"
	if o.decided[0].Input == a || o.decided[0].Input.Destination.IP != "" {
		t.Fatalf("the observer shares the live action: %+v", o.decided[0].Input)
	}
	g.Finish(a, d, action.Outcome{BytesUp: 3})
	if len(o.finished) != 1 || o.finished[0].ID != a.ID || o.finished[0].BytesUp != 3 || o.finished[0].Input.Destination.IP != "192.0.2.1" {
		t.Fatalf("after Finish: want the record the audit log got, got %+v", o.finished)
	}
	f, _ := os.Open(path)
	defer f.Close()
	var rec audit.ActionRecord
	if err := json.NewDecoder(f).Decode(&rec); err != nil || rec.ID != o.finished[0].ID || rec.Summary != o.finished[0].Summary {
		t.Fatalf("audit record %+v, observer's %+v: %v", rec, o.finished[0], err)
	}
}

// A reason that quotes what the agent sent must not carry a secret or a
// placeholder into the audit log.
func TestRecordRedactsReasons(t *testing.T) {
	cfg, _ := config.Parse("c.yaml", []byte("credentials:\n  gh: {from: {env: S}}\n"))
	store, err := creds.Load(context.Background(), cfg, func(string) (string, bool) { return "real-secret-value", true })
	if err != nil {
		t.Fatal(err)
	}
	gh, _ := store.Get("gh")
	path := filepath.Join(t.TempDir(), "a.jsonl")
	g := newGate(t, path, Builtin{}, false)
	g.Creds = store
	a := tcpAction("")
	d := action.Denied("host-mismatch", "Host "+gh.Placeholder+".api.test is not api.test")
	d.Error = "upstream said real-secret-value"
	g.Finish(a, d, action.Outcome{Error: "dial " + gh.Placeholder})
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), gh.Placeholder) || strings.Contains(string(b), "real-secret-value") || !strings.Contains(string(b), "<redacted:gh>") {
		t.Fatalf("record: %s", b)
	}
}
