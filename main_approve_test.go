package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/gate"
)

// runApprove runs `clawpatrol approve ARGS...` through the command's own
// code and prints its error as main does; it returns stdout, stderr and
// the exit status.
func runApprove(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{Name: "clawpatrol", Commands: []*cli.Command{approveCommand()}, Writer: &stdout, ErrWriter: &stderr,
		ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run(append([]string{"clawpatrol", "approve"}, args...))
	if err == nil {
		return stdout.String(), stderr.String(), 0
	}
	code := 2
	var e *exitError
	if errors.As(err, &e) {
		code = e.code
	}
	fmt.Fprintf(&stderr, "clawpatrol: error: %v\n", err)
	if e != nil {
		for _, h := range e.hints {
			fmt.Fprintf(&stderr, "clawpatrol: hint: %s\n", h)
		}
	}
	return stdout.String(), stderr.String(), code
}

// liveSession is a session's approvals listening on its socket in the
// runtime directory, as `clawpatrol run` would have them.
type liveSession struct {
	t *testing.T
	*approve.Approvals
	asked chan string
}

func startSession(t *testing.T, name, yaml string) *liveSession {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	a, err := approve.New(cfg, approve.Options{Session: name, Summary: gate.Summary,
		Secret: func(string) (string, error) { return "s3cret", nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	s := &liveSession{t: t, Approvals: a, asked: make(chan string, 16)}
	a.Subscribe(func(ev approve.Event) {
		if ev.Kind == approve.EventAsked {
			s.asked <- ev.Pending.ID
		}
	})
	return s
}

// ask starts deciding an approve verdict for a DELETE of path and waits
// until the first approver is asked; the channel gets the decision.
func (s *liveSession) ask(id, path string, approvers ...string) chan action.Decision {
	s.t.Helper()
	act := &action.Action{ID: id, Protocol: action.ProtoHTTP, Endpoint: "github",
		Destination: action.Destination{Host: "api.github.com", Port: 443, TLS: true},
		HTTP:        &action.HTTP{Method: "DELETE", Path: path}}
	d := action.Decision{Verdict: action.Approve, Rule: "github-delete", Approvers: approvers,
		Reasons: []action.Reason{{Rule: "github-delete", Reason: "deleting an issue"}}}
	ch := make(chan action.Decision, 1)
	go func() { ch <- s.Decide(context.Background(), act, d) }()
	select {
	case got := <-s.asked:
		if got != id {
			s.t.Fatalf("asked about %s, want %s", got, id)
		}
	case <-time.After(10 * time.Second):
		s.t.Fatalf("%s was never asked", id)
	}
	return ch
}

func waitDecision(t *testing.T, ch chan action.Decision) action.Decision {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no decision")
	}
	return action.Decision{}
}

const humanConfig = `
approvers:
  me: {type: human}
  hook: {type: webhook, url: %q, credential: hook-secret}
approval:
  default: [me]
`

func approveEnv(t *testing.T) string {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	later := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(later.Close)
	return fmt.Sprintf(humanConfig, later.URL)
}

func TestApproveNothingPending(t *testing.T) {
	approveEnv(t)
	stdout, stderr, code := runApprove(t)
	if code != 0 || stdout != "" || stderr != "clawpatrol: no pending approvals\n" {
		t.Errorf("list: %d %q %q", code, stdout, stderr)
	}
	stdout, _, code = runApprove(t, "--json")
	if code != 0 || stdout != "[]\n" {
		t.Errorf("--json: %d %q", code, stdout)
	}
	_, stderr, code = runApprove(t, "01NOPE")
	if code != 1 || !strings.Contains(stderr, "clawpatrol: error: approve: no pending approval with id 01NOPE\nclawpatrol: hint: run `clawpatrol approve`") {
		t.Errorf("unknown id: %d %q", code, stderr)
	}
}

func TestApproveListsEverySessionAndSkipsDeadSockets(t *testing.T) {
	cfg := approveEnv(t)
	one, two := startSession(t, "S1", cfg), startSession(t, "S2", cfg)
	one.ask("01AAA1", "/repos/acme/app/issues/1")
	two.ask("01BBB2", "/repos/acme/app/issues/2")
	// A session that crashed left its socket behind.
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: approve.SocketPath(approve.RuntimeDir(), "S3"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()

	stdout, stderr, code := runApprove(t)
	if code != 0 || stderr != "" {
		t.Fatalf("list: %d %q", code, stderr)
	}
	for _, want := range []string{
		`(?m)^ID\s+APPROVER\s+LEFT\s+SUMMARY\s+RULE$`,
		`(?m)^01AAA1\s+me\s+\S+\s+DELETE /repos/acme/app/issues/1\s+github-delete: deleting an issue$`,
		`(?m)^01BBB2\s+me\s+`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("listing lacks %s:\n%s", want, stdout)
		}
	}

	stdout, _, code = runApprove(t, "--json")
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || code != 0 || len(got) != 2 {
		t.Fatalf("--json: %d %v\n%s", code, err, stdout)
	}
	first := got[0]
	if first["id"] != "01AAA1" || first["session"] != "S1" || first["summary"] != "DELETE /repos/acme/app/issues/1" ||
		first["rule"] != "github-delete" || first["reason"] != "deleting an issue" || first["deadline"] == nil ||
		fmt.Sprint(first["approvers"]) != "[me]" {
		t.Errorf("--json element: %v", first)
	}
}

func TestApproveDecides(t *testing.T) {
	cfg := approveEnv(t)
	s := startSession(t, "S1", cfg)
	allowed := s.ask("01AAA1", "/repos/acme/app/issues/1")
	denied := s.ask("01BBB2", "/repos/acme/app/issues/2")

	// A unique prefix will do; flags may follow the id.
	_, stderr, code := runApprove(t, "01aaa", "--reason", "cleanup was asked for")
	if code != 0 || stderr != "clawpatrol: approved 01AAA1: DELETE /repos/acme/app/issues/1\n" {
		t.Fatalf("approve: %d %q", code, stderr)
	}
	d := waitDecision(t, allowed)
	me, _ := user.Current()
	if d.Verdict != action.Allow || d.Approval.Via != approve.ViaCLI || d.Approval.By != me.Username || d.Approval.Reason != "cleanup was asked for" {
		t.Errorf("decision = %+v", d.Approval)
	}

	_, stderr, code = runApprove(t, "01BBB2", "--deny", "--reason=not this one")
	if code != 0 || !strings.HasPrefix(stderr, "clawpatrol: denied 01BBB2") {
		t.Fatalf("deny: %d %q", code, stderr)
	}
	if d := waitDecision(t, denied); d.Verdict != action.Deny || !strings.HasSuffix(d.Reason(), ": not this one") {
		t.Errorf("decision = %+v", d)
	}

	// Decided: gone from every list.
	_, stderr, code = runApprove(t, "01AAA1")
	if code != 1 || !strings.Contains(stderr, "no pending approval with id 01AAA1") {
		t.Errorf("again: %d %q", code, stderr)
	}
}

func TestApproveAmbiguousPrefix(t *testing.T) {
	cfg := approveEnv(t)
	startSession(t, "S1", cfg).ask("01ABC1", "/a")
	startSession(t, "S2", cfg).ask("01ABC2", "/b")
	_, stderr, code := runApprove(t, "01ABC")
	if code != 1 || !strings.Contains(stderr, "01ABC matches more than one pending approval\nclawpatrol: hint: give more of the id") {
		t.Errorf("%d %q", code, stderr)
	}
}

func TestApproveCannotAllowAnotherApproversStep(t *testing.T) {
	cfg := approveEnv(t)
	s := startSession(t, "S1", cfg)
	ch := s.ask("01HOOK", "/x", "hook") // a webhook that answers later
	_, stderr, code := runApprove(t, "01HOOK")
	if code != 1 || !strings.Contains(stderr, "01HOOK waits for approver hook (type webhook)") || !strings.Contains(stderr, "hint: `clawpatrol approve 01HOOK --deny` still denies it") {
		t.Errorf("allow: %d %q", code, stderr)
	}
	if _, stderr, code := runApprove(t, "01HOOK", "--deny"); code != 0 {
		t.Errorf("deny: %d %q", code, stderr)
	}
	if d := waitDecision(t, ch); d.Verdict != action.Deny || d.Approval.Via != approve.ViaCLI {
		t.Errorf("decision = %+v", d.Approval)
	}
}

func TestApproveUsage(t *testing.T) {
	approveEnv(t)
	for _, args := range [][]string{
		{"a", "b"},
		{"--deny"},
		{"--reason", "x"},
		{"--json", "ID"},
		{"ID", "--json"},
		{"ID", "--bogus"},
		{"ID", "--reason"},
		{"--bogus"},
	} {
		_, stderr, code := runApprove(t, args...)
		if code != 2 {
			t.Errorf("approve %v: status %d, want 2 (%q)", args, code, stderr)
		}
	}
}

func TestApproveSocketIsPrivate(t *testing.T) {
	cfg := approveEnv(t)
	startSession(t, "S1", cfg)
	path := approve.SocketPath(approve.RuntimeDir(), "S1")
	st, err := os.Stat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v %v", path, st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("runtime dir: %v %v", st.Mode(), err)
	}
}
