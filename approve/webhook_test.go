package approve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
)

// receiver is a webhook endpoint that checks the signature with its own
// copy of the secret, as a real receiver would, then answers with status
// and body.
type receiver struct {
	secret string
	status int
	answer string
	got    chan WebhookRequest
}

func (rc *receiver) start(t *testing.T) *httptest.Server {
	rc.got = make(chan WebhookRequest, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if !verify(rc.secret, body, r.Header.Get(SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req WebhookRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.got <- req
		w.WriteHeader(rc.status)
		io.WriteString(w, rc.answer)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func webhookConfig(url string) string {
	return fmt.Sprintf(`
approvers:
  hook: {type: webhook, url: %q, credential: hook-secret}
  me: {type: human}
approval:
  default: [hook]
`, url)
}

func hookSecret(name string) (string, error) {
	if name == "hook-secret" {
		return "s3cret", nil
	}
	return "", fmt.Errorf("no credential %s", name)
}

func TestWebhookSynchronousAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret string // the receiver's; the approver signs with s3cret
		status int
		answer string
		want   action.Verdict
	}{
		{"allow", "s3cret", 200, `{"verdict":"allow","reason":"ticket OPS-1","by":"ops-bot"}`, action.Allow},
		{"deny", "s3cret", 200, `{"verdict":"deny","reason":"change freeze"}`, action.Deny},
		{"bad verdict", "s3cret", 200, `{"verdict":"yes"}`, action.Deny},
		{"not json", "s3cret", 200, `allow`, action.Deny},
		{"500", "s3cret", 500, `oops`, action.Deny},
		{"wrong secret", "other", 200, `{"verdict":"allow"}`, action.Deny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{secret: tc.secret, status: tc.status, answer: tc.answer}
			srv := rc.start(t)
			h := newHarness(t, webhookConfig(srv.URL), Options{Session: "", Secret: hookSecret, CallbackURL: "http://127.0.0.1:7777/callback"})
			act := deleteIssue("H1")
			got := h.Decide(context.Background(), act, approveOf())
			if got.Verdict != tc.want {
				t.Fatalf("verdict %s, want %s: %+v", got.Verdict, tc.want, got)
			}
			if tc.name == "allow" && (got.Approval.By != "ops-bot" || got.Approval.Via != ViaWebhook || got.Approval.Reason != "ticket OPS-1") {
				t.Errorf("approval = %+v", got.Approval)
			}
			if tc.secret != "s3cret" {
				return
			}
			req := <-rc.got
			if req.ID != "H1" || req.Approver != "hook" || req.Rule != "github-delete" || req.Input == nil ||
				req.Input.HTTP.Path != "/repos/acme/app/issues/1" || req.CallbackURL != "http://127.0.0.1:7777/callback" || req.Deadline.IsZero() {
				t.Errorf("request = %+v", req)
			}
		})
	}
}

// post sends a callback to h's handler, signed with secret.
func post(t *testing.T, h http.Handler, secret, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/callback", bytes.NewReader([]byte(body)))
	r.Header.Set(SignatureHeader, Sign(secret, []byte(body)))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestWebhookLaterAnswerThroughCallback(t *testing.T) {
	rc := &receiver{secret: "s3cret", status: http.StatusAccepted}
	srv := rc.start(t)
	h := newHarness(t, webhookConfig(srv.URL), Options{Secret: hookSecret})
	cb := h.CallbackHandler()
	d := h.decide(context.Background(), deleteIssue("H2"), approveOf())
	<-rc.got
	h.waitAsked("hook")

	if w := post(t, cb, "wrong", `{"id":"H2","verdict":"allow"}`); w.Code != http.StatusUnauthorized {
		t.Errorf("bad signature: %d", w.Code)
	}
	if w := post(t, cb, "s3cret", `{"id":"NOPE","verdict":"allow"}`); w.Code != http.StatusNotFound {
		t.Errorf("unknown id: %d", w.Code)
	}
	if w := post(t, cb, "s3cret", `{"id":"H2","verdict":"perhaps"}`); w.Code != http.StatusBadRequest {
		t.Errorf("bad verdict: %d", w.Code)
	}
	get := httptest.NewRecorder()
	cb.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/callback", nil))
	if get.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", get.Code)
	}
	// A person cannot allow in the webhook's place; the webhook can.
	if _, err := h.Resolve("H2", Resolution{Verdict: action.Allow, Via: ViaCLI}); err != ErrNotAsked {
		t.Errorf("cli allowing a webhook step: %v", err)
	}
	if w := post(t, cb, "s3cret", `{"id":"H2","verdict":"allow","reason":"approved in the ticket","by":"carol"}`); w.Code != http.StatusOK {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	got := d.wait(t)
	if got.Verdict != action.Allow || got.Approval.By != "carol" || got.Approval.Via != ViaWebhook {
		t.Errorf("decision = %+v", got.Approval)
	}
	if w := post(t, cb, "s3cret", `{"id":"H2","verdict":"deny"}`); w.Code != http.StatusNotFound && w.Code != http.StatusConflict {
		t.Errorf("callback after the decision: %d", w.Code)
	}
}

func TestWebhookCallbackCannotAllowAnotherStep(t *testing.T) {
	rc := &receiver{secret: "s3cret", status: http.StatusAccepted}
	srv := rc.start(t)
	h := newHarness(t, webhookConfig(srv.URL), Options{Secret: hookSecret})
	cb := h.CallbackHandler()
	d := h.decide(context.Background(), deleteIssue("H3"), approveOf("me"))
	h.waitAsked("me")
	if w := post(t, cb, "s3cret", `{"id":"H3","verdict":"allow"}`); w.Code != http.StatusConflict {
		t.Errorf("webhook allowing a human step: %d", w.Code)
	}
	if w := post(t, cb, "s3cret", `{"id":"H3","verdict":"deny","reason":"stop"}`); w.Code != http.StatusOK {
		t.Errorf("webhook denying: %d", w.Code)
	}
	if got := d.wait(t); got.Verdict != action.Deny || !strings.HasSuffix(got.Reason(), ": stop") {
		t.Errorf("decision = %+v", got)
	}
}

func TestWebhookTimeoutAfterAccepted(t *testing.T) {
	rc := &receiver{secret: "s3cret", status: http.StatusAccepted}
	srv := rc.start(t)
	h := newHarness(t, webhookConfig(srv.URL)+"  timeout: 20ms\n", Options{Secret: hookSecret})
	if got := h.Decide(context.Background(), deleteIssue("H4"), approveOf()); got.Verdict != action.Deny || got.Approval.Via != ViaTimeout {
		t.Errorf("decision = %+v", got.Approval)
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{"approvers: {h: {type: webhook, url: 'ftp://x', credential: c}}", "is not an http(s) URL"},
		{"approvers: {h: {type: webhook, url: 'https://x'}}", "a credential is needed"},
	} {
		if _, err := New(mustConfig(t, tc.config), Options{Secret: hookSecret}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.config, err, tc.want)
		}
	}
}
