package approve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack/slacktest"

	"github.com/clawpatrol/clawpatrol/action"
)

// fakeSlack is Slack's Web API (slacktest, with the methods we call bound
// to recorders) plus a Socket Mode endpoint speaking its envelope format:
// hello on connect, envelopes out, acks (envelope_id) back.
type fakeSlack struct {
	srv *slacktest.Server

	mu        sync.Mutex
	posts     []url.Values // chat.postMessage
	updates   []url.Values // chat.update
	ephemeral []url.Values // chat.postEphemeral
	auth      map[string]string
	postError string // chat.postMessage answers ok:false with this

	connected chan struct{}
	conns     []chan any // one per Socket Mode connection, in connection order
	acks      chan string
	posted    chan url.Values
	updated   chan url.Values
	refused   chan url.Values
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{auth: map[string]string{}, connected: make(chan struct{}, 4),
		acks: make(chan string, 16), posted: make(chan url.Values, 16), updated: make(chan url.Values, 16), refused: make(chan url.Values, 16)}
	record := func(method string, list *[]url.Values, ch chan url.Values, answer func(url.Values) string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.mu.Lock()
			f.auth[method] = r.Header.Get("Authorization")
			if tok := r.PostForm.Get("token"); tok != "" {
				f.auth[method] = "Bearer " + tok
			}
			*list = append(*list, r.PostForm)
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, answer(r.PostForm))
			ch <- r.PostForm
		}
	}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", record("chat.postMessage", &f.posts, f.posted, func(v url.Values) string {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.postError != "" {
				return `{"ok":false,"error":"` + f.postError + `"}`
			}
			return `{"ok":true,"channel":"C0AGENTS","ts":"1700000000.000100"}`
		}))
		c.Handle("/chat.update", record("chat.update", &f.updates, f.updated, func(v url.Values) string {
			return `{"ok":true,"channel":"` + v.Get("channel") + `","ts":"` + v.Get("ts") + `"}`
		}))
		c.Handle("/chat.postEphemeral", record("chat.postEphemeral", &f.ephemeral, f.refused, func(url.Values) string {
			return `{"ok":true,"message_ts":"1700000000.000200"}`
		}))
		c.Handle("/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.auth["apps.connections.open"] = r.Header.Get("Authorization")
			f.mu.Unlock()
			fmt.Fprintf(w, `{"ok":true,"url":"ws://%s/link"}`, f.srv.ServerAddr)
		})
		c.Handle("/link", slacktest.Websocket(f.socketMode))
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

// socketMode serves one Socket Mode connection.
func (f *fakeSlack) socketMode(c *websocket.Conn) {
	if err := c.WriteJSON(map[string]any{"type": "hello", "num_connections": 1,
		"connection_info": map[string]any{"app_id": "A0CLAW"}, "debug_info": map[string]any{"host": "fake"}}); err != nil {
		return
	}
	send := make(chan any)
	f.mu.Lock()
	f.conns = append(f.conns, send)
	f.mu.Unlock()
	f.connected <- struct{}{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var m struct {
				EnvelopeID string `json:"envelope_id"`
			}
			if err := c.ReadJSON(&m); err != nil {
				return
			}
			f.acks <- m.EnvelopeID
		}
	}()
	for {
		select {
		case env := <-send:
			if err := c.WriteJSON(env); err != nil {
				return
			}
		case <-done:
			return
		}
	}
}

// click sends a block_actions envelope as Slack does when user presses a
// button of the posted message, and waits for its ack.
func (f *fakeSlack) click(t *testing.T, envelope, user, actionID, value string) {
	t.Helper()
	f.clickOn(t, 0, envelope, user, actionID, value)
}

// clickOn delivers the click on the conn-th connection, as Slack may
// deliver it on any connection of the app.
func (f *fakeSlack) clickOn(t *testing.T, conn int, envelope, user, actionID, value string) {
	t.Helper()
	env := map[string]any{
		"envelope_id": envelope, "type": "interactive", "accepts_response_payload": false,
		"payload": map[string]any{
			"type": "block_actions", "api_app_id": "A0CLAW", "trigger_id": "1.2.3",
			"user":      map[string]any{"id": user, "username": strings.ToLower(user), "name": strings.ToLower(user), "team_id": "T0"},
			"team":      map[string]any{"id": "T0", "domain": "acme"},
			"channel":   map[string]any{"id": "C0AGENTS", "name": "agent-approvals"},
			"container": map[string]any{"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0AGENTS"},
			"actions": []map[string]any{{"action_id": actionID, "block_id": "clawpatrol_decide", "type": "button", "value": value,
				"text": map[string]any{"type": "plain_text", "text": "Approve"}, "action_ts": "1700000001.000000"}},
		},
	}
	f.mu.Lock()
	send := f.conns[conn]
	f.mu.Unlock()
	select {
	case send <- env:
	case <-time.After(waitLimit):
		t.Fatal("no socket mode connection to send on")
	}
	select {
	case id := <-f.acks:
		if id != envelope {
			t.Errorf("ack %q, want %q", id, envelope)
		}
	case <-time.After(waitLimit):
		t.Fatal("envelope never acknowledged")
	}
}

func waitValues(t *testing.T, ch chan url.Values, what string) url.Values {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("no %s", what)
	}
	return nil
}

const slackConfig = `
approvers:
  oncall: {type: slack, channel: "#agent-approvals", credential: slack-bot, app_credential: slack-app, allowed_users: [U0ALICE]}
  anyone: {type: slack, channel: "#agent-approvals", credential: slack-bot, app_credential: slack-app}
  me: {type: human}
approval:
  default: [oncall]
`

func slackHarness(t *testing.T, f *fakeSlack, config string, o Options) *harness {
	o.SlackAPIURL = f.srv.GetAPIURL()
	o.Summary = func(a *action.Action) string { return a.HTTP.Method + " " + a.HTTP.Path }
	o.Secret = func(name string) (string, error) { return "xoxb-or-xapp-" + name, nil }
	h := newHarness(t, config, o)
	select {
	case <-f.connected:
	case <-time.After(waitLimit):
		t.Fatal("socket mode never connected")
	}
	return h
}

// buttonValue finds the approve button's value in a posted message.
func buttonValue(t *testing.T, post url.Values) string {
	t.Helper()
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(post.Get("blocks")), &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		for _, e := range asSlice(b["elements"]) {
			e := e.(map[string]any)
			if e["action_id"] == slackApproveAction {
				return e["value"].(string)
			}
		}
	}
	t.Fatalf("no approve button in %s", post.Get("blocks"))
	return ""
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func TestSlackApproveByAllowedUser(t *testing.T) {
	f := newFakeSlack(t)
	h := slackHarness(t, f, slackConfig, Options{Session: ""})
	act := deleteIssue("S1")
	act.HTTP.Body = "<!channel> *click* <http://evil.example|here>"
	d := h.decide(context.Background(), act, approveOf("oncall"))
	post := waitValues(t, f.posted, "chat.postMessage")
	if post.Get("channel") != "#agent-approvals" {
		t.Errorf("posted to %q", post.Get("channel"))
	}
	blocks := post.Get("blocks")
	for _, want := range []string{"DELETE /repos/acme/app/issues/1", "Rule: github-delete", "Reason: deleting an issue", "api.github.com:443"} {
		if !strings.Contains(blocks, want) {
			t.Errorf("message lacks %q: %s", want, blocks)
		}
	}
	if !strings.Contains(blocks, `"type":"plain_text","text":"Body: \u003c!channel\u003e`) {
		t.Errorf("the body is not shown as plain text: %s", blocks)
	}
	value := buttonValue(t, post)
	if value != "S1 oncall" {
		t.Errorf("button value %q", value)
	}

	// Someone not in allowed_users: told so, nothing decided.
	f.click(t, "env-1", "U0MALLORY", slackApproveAction, value)
	eph := waitValues(t, f.refused, "ephemeral refusal")
	if eph.Get("user") != "U0MALLORY" || !strings.Contains(eph.Get("text"), "allowed_users") {
		t.Errorf("ephemeral = %v", eph)
	}
	if len(h.List()) != 1 {
		t.Fatal("a click from outside allowed_users decided")
	}

	f.click(t, "env-2", "U0ALICE", slackApproveAction, value)
	got := d.wait(t)
	if got.Verdict != action.Allow || got.Approval.Via != ViaSlack || got.Approval.By != "u0alice (U0ALICE)" {
		t.Fatalf("decision = %+v", got.Approval)
	}
	up := waitValues(t, f.updated, "chat.update")
	if up.Get("channel") != "C0AGENTS" || up.Get("ts") != "1700000000.000100" ||
		!strings.Contains(up.Get("blocks"), "approved by oncall [u0alice (U0ALICE) via slack]") || strings.Contains(up.Get("blocks"), slackApproveAction) {
		t.Errorf("update = %v", up)
	}
	f.mu.Lock()
	if f.auth["chat.postMessage"] != "Bearer xoxb-or-xapp-slack-bot" || f.auth["apps.connections.open"] != "Bearer xoxb-or-xapp-slack-app" {
		t.Errorf("tokens: %v", f.auth)
	}
	f.mu.Unlock()

	// A late click on the old buttons decides nothing and says so.
	f.click(t, "env-3", "U0ALICE", slackDenyAction, value)
	if eph := waitValues(t, f.refused, "ephemeral"); !strings.Contains(eph.Get("text"), "already decided") {
		t.Errorf("late click: %v", eph)
	}
}

func TestSlackWithoutAllowedUsersAnyoneDecides(t *testing.T) {
	f := newFakeSlack(t)
	h := slackHarness(t, f, slackConfig, Options{})
	d := h.decide(context.Background(), deleteIssue("S2"), approveOf("anyone"))
	value := buttonValue(t, waitValues(t, f.posted, "chat.postMessage"))
	f.click(t, "env-1", "U0MALLORY", slackDenyAction, value)
	if got := d.wait(t); got.Verdict != action.Deny || got.Approval.By != "u0mallory (U0MALLORY)" {
		t.Fatalf("decision = %+v", got.Approval)
	}
	if up := waitValues(t, f.updated, "chat.update"); !strings.Contains(up.Get("blocks"), "approval denied by anyone [u0mallory (U0MALLORY) via slack]") {
		t.Errorf("update = %v", up)
	}
}

func TestSlackMessageUpdatedWhenDecidedElsewhere(t *testing.T) {
	f := newFakeSlack(t)
	h := slackHarness(t, f, slackConfig, Options{})
	d := h.decide(context.Background(), deleteIssue("S3"), approveOf("oncall"))
	waitValues(t, f.posted, "chat.postMessage")
	if _, err := h.Resolve("S3", Resolution{Verdict: action.Allow, By: "alice", Via: ViaCLI}); err != ErrNotAsked {
		t.Errorf("cli allowing a slack step: %v", err)
	}
	if _, err := h.Resolve("S3", Resolution{Verdict: action.Deny, By: "alice", Via: ViaCLI, Reason: "wrong repo"}); err != nil {
		t.Fatal(err)
	}
	if got := d.wait(t); got.Verdict != action.Deny {
		t.Fatalf("decision = %+v", got)
	}
	up := waitValues(t, f.updated, "chat.update")
	if !strings.Contains(up.Get("blocks"), "approval denied by oncall [alice via cli]") || !strings.Contains(up.Get("blocks"), "wrong repo") {
		t.Errorf("update = %v", up.Get("blocks"))
	}
}

func TestSlackTimeoutUpdatesTheMessage(t *testing.T) {
	f := newFakeSlack(t)
	h := slackHarness(t, f, slackConfig+"  timeout: 30ms\n", Options{})
	got := h.Decide(context.Background(), deleteIssue("S4"), approveOf("oncall"))
	if got.Verdict != action.Deny || got.Approval.Via != ViaTimeout {
		t.Fatalf("decision = %+v", got.Approval)
	}
	if up := waitValues(t, f.updated, "chat.update"); !strings.Contains(up.Get("blocks"), "approval timed out") {
		t.Errorf("update = %v", up.Get("blocks"))
	}
}

func TestSlackPostFailureDeniesAtOnce(t *testing.T) {
	f := newFakeSlack(t)
	f.postError = "channel_not_found"
	h := slackHarness(t, f, slackConfig, Options{})
	got := h.Decide(context.Background(), deleteIssue("S5"), approveOf("oncall"))
	if got.Verdict != action.Deny || !strings.Contains(got.Error, "channel_not_found") || got.Approval.Via == ViaTimeout {
		t.Fatalf("decision = %+v", got)
	}
}

func TestSlackNonInteractive(t *testing.T) {
	f := newFakeSlack(t)
	h := slackHarness(t, f, slackConfig, Options{NonInteractive: true})
	if got := h.Decide(context.Background(), deleteIssue("S6"), approveOf("oncall")); got.Verdict != action.Deny || got.Approval.Via != ViaPolicy {
		t.Fatalf("decision = %+v", got.Approval)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.posts) != 0 {
		t.Error("a non-interactive session posted to slack")
	}
}

func TestSlackConfigErrors(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{"approvers: {s: {type: slack, credential: b, app_credential: a}}", "channel: a channel is needed"},
		{"approvers: {s: {type: slack, channel: c, credential: b}}", "app_credential: a credential is needed"},
	} {
		if _, err := New(mustConfig(t, tc.config), Options{Secret: func(string) (string, error) { return "x", nil }}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.config, err, tc.want)
		}
	}
}

// Two sessions of one user share a Slack app: a click on an approval of
// the first may arrive on the second's connection, which passes it on
// through the first's approval socket.
func TestSlackClickOnAnotherSessionsConnection(t *testing.T) {
	f := newFakeSlack(t)
	dir := t.TempDir()
	first := slackHarness(t, f, slackConfig, Options{Session: "A", SocketDir: dir})
	second := slackHarness(t, f, slackConfig, Options{Session: "B", SocketDir: dir})
	d := first.decide(context.Background(), deleteIssue("S7"), approveOf("oncall"))
	value := buttonValue(t, waitValues(t, f.posted, "chat.postMessage"))

	f.clickOn(t, 1, "env-1", "U0MALLORY", slackApproveAction, value) // not allowed: told so by the holder
	if eph := waitValues(t, f.refused, "ephemeral"); !strings.Contains(eph.Get("text"), "allowed_users") {
		t.Errorf("ephemeral = %v", eph)
	}
	f.clickOn(t, 1, "env-2", "U0ALICE", slackApproveAction, value)
	if got := d.wait(t); got.Verdict != action.Allow || got.Approval.By != "u0alice (U0ALICE)" {
		t.Fatalf("decision = %+v", got.Approval)
	}
	if len(second.List()) != 0 {
		t.Error("the second session took the approval")
	}
	// Nobody holds it any more.
	f.clickOn(t, 1, "env-3", "U0ALICE", slackDenyAction, value)
	if eph := waitValues(t, f.refused, "ephemeral"); !strings.Contains(eph.Get("text"), "already decided") {
		t.Errorf("late click: %v", eph)
	}
}
