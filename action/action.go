// Package action holds the policy input (one Action per thing the agent does),
// the Decision a gate returns for it, and the Gate interface between the
// inspectors that produce actions and the engines that decide them.
package action

import (
	"context"
	"time"
)

// Protocol names as they appear in the policy input's "protocol" field.
const (
	ProtoHTTP = "http"
	ProtoSQL  = "sql"
	ProtoK8s  = "k8s"
	ProtoTCP  = "tcp"
	ProtoTLS  = "tls"
	ProtoUDP  = "udp"
)

// Action is one thing the agent tried to do: the policy input of SPEC §5.
// Exactly one of the protocol blocks is set.
type Action struct {
	ID          string      `json:"id,omitempty"`
	Time        time.Time   `json:"time,omitzero"`
	Session     string      `json:"session,omitempty"`
	Agent       *Agent      `json:"agent,omitempty"`
	Protocol    string      `json:"protocol"`
	Endpoint    string      `json:"endpoint,omitempty"`
	Credential  string      `json:"credential,omitempty"`
	Destination Destination `json:"destination,omitzero"`

	HTTP *HTTP `json:"http,omitempty"`
	SQL  *SQL  `json:"sql,omitempty"`
	K8s  *K8s  `json:"k8s,omitempty"`
	TCP  *TCP  `json:"tcp,omitempty"`
	TLS  *TLS  `json:"tls,omitempty"`
	UDP  *UDP  `json:"udp,omitempty"`
}

// Agent identifies the wrapped command.
type Agent struct {
	Command []string `json:"command"`
	PID     int      `json:"pid,omitempty"`
	Exe     string   `json:"exe,omitempty"`
}

// Destination is where the flow was going: the name the agent resolved
// through clawpatrol's DNS (or the IP literal it dialled) and the port.
type Destination struct {
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	IP   string `json:"ip,omitempty"`
	TLS  bool   `json:"tls"`
}

// HTTP is one HTTP request.
type HTTP struct {
	Method    string              `json:"method"`
	Scheme    string              `json:"scheme,omitempty"`
	Host      string              `json:"host,omitempty"`
	Path      string              `json:"path"`
	Query     map[string][]string `json:"query,omitempty"`
	Headers   map[string][]string `json:"headers,omitempty"`
	Body      string              `json:"body,omitempty"`
	JSON      any                 `json:"json,omitempty"`
	Size      int64               `json:"size"`
	Truncated bool                `json:"truncated"`
	Upgrade   string              `json:"upgrade,omitempty"`
}

// SQL is one query message: every statement it carries.
type SQL struct {
	Dialect         string      `json:"dialect"`
	Database        string      `json:"database,omitempty"`
	User            string      `json:"user,omitempty"`
	Statement       string      `json:"statement"`
	Statements      []Statement `json:"statements,omitempty"`
	Verbs           []string    `json:"verbs,omitempty"`
	Tables          []string    `json:"tables,omitempty"`
	QualifiedTables []string    `json:"qualified_tables,omitempty"`
	Functions       []string    `json:"functions,omitempty"`
	Unparseable     bool        `json:"unparseable"`
	Truncated       bool        `json:"truncated"`
}

// Statement is one statement of a query.
type Statement struct {
	Verb      string   `json:"verb"`
	Tables    []string `json:"tables,omitempty"`
	Functions []string `json:"functions,omitempty"`
	Text      string   `json:"text"`
	// Program is set on a statement that runs a program on the database
	// server (Postgres COPY ... TO/FROM PROGRAM).
	Program bool `json:"program,omitempty"`
	// LocalFile is set on a statement that makes the client send a file
	// from its own host (MySQL LOAD DATA|XML LOCAL INFILE).
	LocalFile bool `json:"local_file,omitempty"`
}

// K8s is a Kubernetes API request, derived the way the API server does.
type K8s struct {
	Verb        string              `json:"verb"`
	Group       string              `json:"group"`
	Version     string              `json:"version,omitempty"`
	Resource    string              `json:"resource"`
	Subresource string              `json:"subresource,omitempty"`
	Namespace   string              `json:"namespace,omitempty"`
	Name        string              `json:"name,omitempty"`
	Command     []string            `json:"command,omitempty"`
	Container   string              `json:"container,omitempty"`
	Params      map[string][]string `json:"params,omitempty"`
	Object      any                 `json:"object,omitempty"`
	Discovery   bool                `json:"discovery,omitempty"`
}

// TCP is an opaque TCP flow; the destination says everything known.
type TCP struct{}

// TLS is a TLS flow that is not intercepted (passthrough).
type TLS struct {
	SNI  string   `json:"sni"`
	ALPN []string `json:"alpn,omitempty"`
}

// UDP is one UDP flow (the first datagram decides it).
type UDP struct {
	Size int `json:"size"`
}

// Verdict is the outcome of a decision.
type Verdict string

// The verdicts.
const (
	Allow   Verdict = "allow"
	Deny    Verdict = "deny"
	Approve Verdict = "approve"
)

// Reason is one rule that fired, with its human-readable reason.
type Reason struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// Decision is what a gate says about one action (SPEC §4).
type Decision struct {
	Verdict   Verdict  `json:"verdict"`
	Rule      string   `json:"rule"`
	Reasons   []Reason `json:"reasons"`
	Approvers []string `json:"approvers,omitempty"`
	// Monitor is set when the action would have had Verdict but was let
	// through because the session runs in shadow mode.
	Monitor bool `json:"monitor,omitempty"`
	// Error is an evaluation error; it goes to the audit log, never to the agent.
	Error string `json:"error,omitempty"`
	// Approval says how an approve verdict was settled; nil when none was asked.
	Approval *Approval `json:"approval,omitempty"`
}

// Approval is the outcome of asking approvers about one action: the step
// that settled it (the first refusal, or the last approver to allow) and
// every step asked, for the audit log.
type Approval struct {
	ID       string         `json:"id"`
	Outcome  Verdict        `json:"outcome"` // allow or deny
	Approver string         `json:"approver,omitempty"`
	By       string         `json:"by,omitempty"`  // who decided: a user, a model, a URL
	Via      string         `json:"via,omitempty"` // where: slack, cli, dashboard, webhook, llm, timeout
	Reason   string         `json:"reason,omitempty"`
	WaitedMS float64        `json:"waited_ms"`
	Reused   bool           `json:"reused,omitempty"` // an identical action's approval was reused
	Steps    []ApprovalStep `json:"steps,omitempty"`
}

// ApprovalStep is one approver's answer.
type ApprovalStep struct {
	Approver string  `json:"approver"`
	Type     string  `json:"type,omitempty"`
	Outcome  Verdict `json:"outcome"`
	By       string  `json:"by,omitempty"`
	Via      string  `json:"via,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	WaitedMS float64 `json:"waited_ms"`
}

// Allowed reports whether the action may proceed.
func (d Decision) Allowed() bool { return d.Verdict == Allow || d.Monitor }

// Reason returns the text to show the agent: the winning rule's reason.
func (d Decision) Reason() string {
	for _, r := range d.Reasons {
		if r.Rule == d.Rule {
			return r.Reason
		}
	}
	return d.Rule
}

// Denied returns a deny decision for one rule. Hard rules that no policy can
// lift (a placeholder sent to the wrong host, a local address) use it.
func Denied(rule, reason string) Decision {
	return Decision{Verdict: Deny, Rule: rule, Reasons: []Reason{{Rule: rule, Reason: reason}}}
}

// Gate decides actions. Inspectors call it; rego, approve and audit sit behind it.
type Gate interface {
	// Decide returns the decision for a, after any approval it needed.
	// It never returns allow on error. It fills in a's ID, time and session.
	Decide(ctx context.Context, a *Action) Decision
	// Finish reports what happened to a decided action; it writes the
	// action's audit record. Every Decide is followed by exactly one Finish.
	Finish(a *Action, d Decision, o Outcome)
}

// Outcome is what happened after the decision, reported back for the audit log.
type Outcome struct {
	UpstreamStatus int           // HTTP status or 0
	BytesUp        int64         // agent → upstream
	BytesDown      int64         // upstream → agent
	Duration       time.Duration // from decision to end
	Error          string        // upstream failure, if any
}
