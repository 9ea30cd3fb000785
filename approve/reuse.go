package approve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// approval.reuse: an action identical to one approved a moment ago takes
// that approval, and one identical to an action still waiting waits with it.

// reusable is a recent approval, kept for approval.reuse.
type reusable struct {
	approval *action.Approval
	at       time.Time
}

// join waits for an identical action already pending and takes its outcome.
func (a *Approvals) join(ctx context.Context, d action.Decision, e *entry, id string, start time.Time) action.Decision {
	select {
	case <-e.done:
	case <-ctx.Done():
		return settled(d, &action.Approval{ID: id, Outcome: action.Deny, WaitedMS: millis(time.Since(start)),
			Reason: "the action was abandoned before an answer"}, "")
	}
	ap := *e.final
	ap.ID, ap.Reused, ap.Steps = id, true, nil
	ap.WaitedMS = millis(time.Since(start))
	ap.Reason = "same action as approval " + e.snap.ID
	if e.final.Reason != "" {
		ap.Reason += "; " + e.final.Reason
	}
	return settled(d, &ap, "")
}

// reused returns a copy of a recent approval of the same action, if any.
func (a *Approvals) reused(fp, id string) *action.Approval {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.approved[fp]
	if !ok || a.now().Sub(r.at) > a.reuse {
		return nil
	}
	ap := *r.approval
	ap.ID, ap.Reused, ap.Steps, ap.WaitedMS = id, true, nil, 0
	ap.Reason = fmt.Sprintf("reuses approval %s of an identical action %s ago", r.approval.ID, a.now().Sub(r.at).Round(time.Second))
	return &ap
}

// remember keeps an approval for approval.reuse, dropping expired ones.
func (a *Approvals) remember(fp string, ap *action.Approval) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for k, r := range a.approved {
		if now.Sub(r.at) > a.reuse {
			delete(a.approved, k)
		}
	}
	a.approved[fp] = reusable{approval: ap, at: now}
}

// fingerprint identifies "the same action" for approval.reuse: protocol,
// endpoint, credential and destination, the request itself (HTTP method,
// path, query and body; the SQL statement; the Kubernetes verb, resource,
// name, command and object), the rule that asked and its approvers.
// Headers are left out (they carry dates and request ids). An action whose
// body or statement was truncated has none: the part nobody saw might differ.
func fingerprint(a *action.Action, d action.Decision, approvers []string) string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	field(a.Protocol)
	field(a.Endpoint)
	field(a.Credential)
	field(a.Destination.Host)
	field(a.Destination.IP)
	field(strconv.Itoa(a.Destination.Port))
	field(strconv.FormatBool(a.Destination.TLS))
	field(d.Rule)
	for _, n := range approvers {
		field(n)
	}
	switch {
	case a.HTTP != nil:
		r := a.HTTP
		if r.Truncated {
			return ""
		}
		field("http")
		field(r.Method)
		field(r.Scheme)
		field(r.Host)
		field(r.Path)
		field(r.Upgrade)
		if !jsonField(field, r.Query) {
			return ""
		}
		field(r.Body)
	case a.SQL != nil:
		q := a.SQL
		if q.Truncated {
			return ""
		}
		field("sql")
		field(q.Dialect)
		field(q.Database)
		field(q.User)
		field(q.Statement)
	case a.K8s != nil:
		k := a.K8s
		field("k8s")
		if !jsonField(field, k) {
			return ""
		}
	case a.TLS != nil:
		field("tls")
		field(a.TLS.SNI)
	case a.UDP != nil:
		field("udp")
	case a.TCP != nil:
		field("tcp")
	default:
		return "" // nothing known to compare
	}
	return hex.EncodeToString(h.Sum(nil))
}

// jsonField hashes v as JSON (maps in sorted key order).
func jsonField(field func(string), v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	field(string(b))
	return true
}
