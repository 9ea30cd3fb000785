// Package gate is the one place an action is decided: it asks a policy
// engine, applies shadow (monitor) mode and the audit log's health, and
// writes each action's audit record when the inspector reports the outcome.
package gate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/audit"
	"github.com/clawpatrol/clawpatrol/creds"
)

// Engine decides one action by policy alone. The Rego engine and the
// built-in rule both implement it.
type Engine interface {
	Decide(ctx context.Context, a *action.Action) action.Decision
}

// Gate implements action.Gate for one session.
type Gate struct {
	Engine  Engine
	Log     *audit.Log
	Session string
	Agent   *action.Agent
	// Monitor lets every action through, recording what it would have got.
	Monitor bool
	// Recorder, when set, writes every decided action as a fixture.
	Recorder Recorder
	// Creds are the session's credentials: placeholders seen going to the
	// wrong destination are denied, and secrets are redacted from records.
	Creds *creds.Store
	// Bodies is audit.bodies: redacted, metadata or full.
	Bodies string
	// Approvals settle approve decisions; nil denies them.
	Approvals Approvals
	// Observer, when set, sees each action's redacted record as it is
	// decided and as it is written to the audit log (the dashboard).
	Observer Observer
	Logger   *zap.Logger
}

// Observer watches actions go by. Its methods run on the agent's traffic
// path, so they must return at once (queue, never wait): the audit log is
// the record of truth, an observer may drop what it cannot keep up with.
type Observer interface {
	// Decided gets the record of an action the policy has just decided,
	// before any approval (its verdict may be approve) and before the
	// action is forwarded; Outcome fields are zero.
	Decided(rec audit.ActionRecord)
	// Finished gets the same record the audit log gets.
	Finished(rec audit.ActionRecord)
}

// Approvals asks an approve decision's approvers and returns allow or deny.
type Approvals interface {
	Decide(ctx context.Context, a *action.Action, d action.Decision) action.Decision
}

// Recorder writes decided actions as fixtures (run --record).
type Recorder interface {
	Record(a *action.Action, d action.Decision) (string, error)
}

// Decide decides a and stamps it with id, time and session.
func (g *Gate) Decide(ctx context.Context, a *action.Action) action.Decision {
	g.stamp(a)
	if err := g.Log.Err(); err != nil {
		// Fail closed: no traffic flows that the log cannot record.
		d := action.Denied("audit-log-unwritable", "the audit log cannot be written")
		d.Error = err.Error()
		return d
	}
	if c, leak := g.Creds.Leak(a); leak {
		// Whatever the policy says: the placeholder stands for a secret that
		// must never reach this destination.
		return action.Denied("placeholder-leak", "the placeholder of credential "+c.Name+" may only be sent to its own endpoints")
	}
	d := g.Engine.Decide(ctx, a)
	if g.Monitor && d.Verdict != action.Allow {
		d.Monitor = true
	}
	if g.Recorder != nil {
		// Before approvals: the fixture expects what the policy said.
		if _, err := g.Recorder.Record(a, d); err != nil {
			g.Logger.Error("record fixture", zap.Error(err))
		}
	}
	if g.Observer != nil {
		in := g.Creds.RedactAction(a, g.Bodies)
		if in == a {
			// Nothing to redact, so no copy was made; the inspector goes on
			// filling in a (the dialled IP), the observer keeps this one.
			c := *a
			in = &c
		}
		g.Observer.Decided(g.record(in, d, action.Outcome{}))
	}
	if d.Verdict == action.Approve && !d.Monitor {
		// Shadow mode pages nobody: the would-be approval is only logged.
		if g.Approvals == nil {
			d.Verdict = action.Deny
		} else {
			d = g.Approvals.Decide(ctx, a, d)
		}
	}
	g.Logger.Debug("decision", zap.String("summary", Summary(a)), zap.String("verdict", string(d.Verdict)), zap.String("rule", d.Rule))
	return d
}

// stamp gives a its id, time, session and agent, once.
func (g *Gate) stamp(a *action.Action) {
	if a.ID != "" {
		return
	}
	a.ID = NewID()
	a.Time = time.Now().UTC()
	a.Session = g.Session
	if a.Agent == nil {
		a.Agent = g.Agent
	}
}

// Finish writes a's audit record. An action refused before any decision
// (Decide was never called) is stamped here.
func (g *Gate) Finish(a *action.Action, d action.Decision, o action.Outcome) {
	g.stamp(a)
	rec := g.record(g.Creds.RedactAction(a, g.Bodies), d, o)
	err := g.Log.Action(rec)
	if err != nil {
		g.Logger.Error("audit", zap.Error(err))
	}
	if g.Observer != nil {
		g.Observer.Finished(rec)
	}
}

// record is the audit record of a, already redacted. The decision's
// reasons and the errors are redacted here: a reason may quote what the
// agent sent (a Host header holding its placeholder).
func (g *Gate) record(a *action.Action, d action.Decision, o action.Outcome) audit.ActionRecord {
	d.Reasons = slices.Clone(d.Reasons)
	for i, r := range d.Reasons {
		d.Reasons[i] = action.Reason{Rule: g.Creds.Redact(r.Rule), Reason: g.Creds.Redact(r.Reason)}
	}
	d.Rule, d.Error = g.Creds.Redact(d.Rule), g.Creds.Redact(d.Error)
	if d.Approval != nil {
		ap := *d.Approval
		ap.Reason = g.Creds.Redact(ap.Reason)
		d.Approval = &ap
	}
	o.Error = g.Creds.Redact(o.Error)
	return audit.ActionRecord{
		ID:             a.ID,
		Time:           a.Time.Format(time.RFC3339Nano),
		Session:        a.Session,
		Protocol:       a.Protocol,
		Endpoint:       a.Endpoint,
		Destination:    a.Destination,
		Summary:        Summary(a),
		Decision:       d,
		Credential:     a.Credential,
		UpstreamStatus: o.UpstreamStatus,
		BytesUp:        o.BytesUp,
		BytesDown:      o.BytesDown,
		DurationMS:     float64(o.Duration.Microseconds()) / 1000,
		Error:          o.Error,
		Input:          a,
	}
}

// Summary is the one-line description of an action used in logs and the
// audit record: "DELETE /repos/x", "select users", "tcp db.internal:5432".
func Summary(a *action.Action) string {
	switch {
	case a.HTTP != nil:
		return a.HTTP.Method + " " + a.HTTP.Path
	case a.SQL != nil:
		return strings.TrimSpace(strings.Join(a.SQL.Verbs, ",") + " " + strings.Join(a.SQL.Tables, ","))
	case a.K8s != nil:
		return strings.TrimSpace(fmt.Sprintf("%s %s %s", a.K8s.Verb, a.K8s.Resource, a.K8s.Name))
	}
	host := a.Destination.Host
	if host == "" {
		host = a.Destination.IP
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s %s:%d", a.Protocol, host, a.Destination.Port)
}
