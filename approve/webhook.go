package approve

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
)

// A webhook approver POSTs the pending approval as JSON, signed with
// HMAC-SHA256 of the body under the credential's secret. The receiver
// answers at once (200 with a verdict) or later (202, then a signed POST to
// CallbackHandler naming the approval id).

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body.
const SignatureHeader = "X-Clawpatrol-Signature"

const maxWebhookBody = 64 << 10

// WebhookRequest is the body POSTed to a webhook approver.
type WebhookRequest struct {
	ID        string         `json:"id"`
	Session   string         `json:"session,omitempty"`
	Approver  string         `json:"approver"`
	Summary   string         `json:"summary"`
	Rule      string         `json:"rule"`
	Reason    string         `json:"reason"`
	Approvers []string       `json:"approvers"`
	Deadline  time.Time      `json:"deadline"`
	Input     *action.Action `json:"input,omitempty"`
	// CallbackURL is where to POST a later answer (a 202 now).
	CallbackURL string `json:"callback_url,omitempty"`
}

// WebhookAnswer is a webhook's answer: the body of its 200 response, or of
// the callback (which also names the approval id).
type WebhookAnswer struct {
	ID      string `json:"id,omitempty"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	By      string `json:"by,omitempty"`
}

// Sign returns the signature header value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// verify checks a signature header value in constant time.
func verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(strings.TrimSpace(sig)))
}

// webhook is the asker of type webhook.
type webhook struct {
	name, url, secret, callback string
	client                      *http.Client
}

func (a *Approvals) newWebhook(name string, c config.Approver) (*webhook, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("url: %q is not an http(s) URL", c.URL)
	}
	secret, err := a.secret("credential", c.Credential)
	if err != nil {
		return nil, err
	}
	return &webhook{name: name, url: c.URL, secret: secret, callback: a.opts.CallbackURL, client: a.opts.HTTPClient}, nil
}

func (w *webhook) ask(ctx context.Context, p Pending) (*Resolution, error) {
	body, err := json.Marshal(WebhookRequest{ID: p.ID, Session: p.Session, Approver: w.name, Summary: p.Summary, Rule: p.Rule,
		Reason: p.Reason, Approvers: p.Approvers, Deadline: p.Deadline, Input: p.Input, CallbackURL: w.callback})
	if err != nil {
		return nil, err
	}
	status, data, err := postJSON(ctx, w.client, w.url, body, http.Header{SignatureHeader: {Sign(w.secret, body)}}, maxWebhookBody)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusAccepted:
		return nil, nil // the answer comes to CallbackHandler
	case http.StatusOK:
	default:
		return nil, &errStatus{code: status, body: excerpt(string(data), 200)}
	}
	var ans WebhookAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, fmt.Errorf("webhook answer: %w", err)
	}
	r, err := ans.resolution()
	if err != nil {
		return nil, err
	}
	if r.By == "" {
		r.By = w.name
	}
	return &r, nil
}

// resolution checks an answer's verdict: exactly allow or deny.
func (ans WebhookAnswer) resolution() (Resolution, error) {
	r := Resolution{By: ans.By, Via: ViaWebhook, Reason: excerpt(ans.Reason, maxReasonLength)}
	switch ans.Verdict {
	case "allow":
		r.Verdict = action.Allow
	case "deny":
		r.Verdict = action.Deny
	default:
		return r, fmt.Errorf("webhook answer: verdict %q is not allow or deny", ans.Verdict)
	}
	return r, nil
}

// CallbackHandler takes webhook answers that come later (after a 202): a
// POST of a WebhookAnswer with the approval id, signed like the request
// with the secret of a configured webhook approver. The dashboard mounts it.
// Status: 200 taken, 400 malformed, 401 bad signature, 404 no such pending
// approval, 409 already decided or not waiting for that webhook.
func (a *Approvals) CallbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := readBounded(http.MaxBytesReader(w, r.Body, maxWebhookBody+1), maxWebhookBody)
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		name := a.signedBy(body, r.Header.Get(SignatureHeader))
		if name == "" {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ans WebhookAnswer
		if err := json.Unmarshal(body, &ans); err != nil || ans.ID == "" {
			http.Error(w, "want a JSON object with id and verdict", http.StatusBadRequest)
			return
		}
		res, err := ans.resolution()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if res.By == "" {
			res.By = name
		}
		if res.Verdict == action.Allow {
			res.Approver = name // a webhook allows its own step only
		}
		_, err = a.Resolve(ans.ID, res)
		switch {
		case errors.Is(err, ErrUnknown):
			http.Error(w, err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{\"ok\":true}\n"))
		}
	})
}

// signedBy returns the webhook approver whose secret signed body, or "".
func (a *Approvals) signedBy(body []byte, sig string) string {
	for name, ap := range a.approvers {
		if w, ok := ap.ask.(*webhook); ok && verify(w.secret, body, sig) {
			return name
		}
	}
	return ""
}
