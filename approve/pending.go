package approve

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// Surfaces a decision can come from (Resolution.Via, action.Approval.Via).
const (
	ViaCLI       = "cli"       // `clawpatrol approve`
	ViaDashboard = "dashboard" // the local web UI
	ViaSlack     = "slack"
	ViaWebhook   = "webhook"
	ViaLLM       = "llm"
	ViaTimeout   = "timeout"
	ViaPolicy    = "non-interactive"
)

// Status of a pending approval.
const (
	StatusPending = "pending"
	StatusAllow   = "allow"
	StatusDeny    = "deny"
)

// Errors of Resolve.
var (
	ErrUnknown = errors.New("no pending approval with that id")
	ErrDecided = errors.New("already decided")
	// ErrNotAsked means the approval is waiting for another approver: only
	// that approver's surfaces may allow it (anyone may deny).
	ErrNotAsked = errors.New("waiting for another approver")
)

// Pending is a snapshot of one approval: what the pending table shows the
// dashboard, `clawpatrol approve` and Slack.
type Pending struct {
	ID        string         `json:"id"`
	Session   string         `json:"session,omitempty"`
	Summary   string         `json:"summary"`
	Rule      string         `json:"rule"`
	Reason    string         `json:"reason"`
	Approvers []string       `json:"approvers"`
	Approver  string         `json:"approver"` // the one being asked now
	Type      string         `json:"type"`     // its type
	Created   time.Time      `json:"created"`
	Deadline  time.Time      `json:"deadline"` // of the current step
	Status    string         `json:"status"`   // pending, allow or deny
	Input     *action.Action `json:"input,omitempty"`
	// Steps are the approvers that answered so far.
	Steps []action.ApprovalStep `json:"steps,omitempty"`
}

// Resolution is one surface's answer to a pending approval.
type Resolution struct {
	Verdict action.Verdict // action.Allow or action.Deny
	By      string         // who: a user name or id, a model, a URL
	Via     string         // where: ViaCLI, ViaDashboard, ViaSlack, ...
	Reason  string
	// Approver, when set, must name the approver being asked: a stale
	// button or a repeated command cannot answer the next step by mistake.
	Approver string
}

// EventKind says what changed.
type EventKind string

// Event kinds, in the order one approval goes through them.
const (
	EventAsked    EventKind = "asked"    // an approver is being asked (once per step)
	EventAnswered EventKind = "answered" // that approver answered, or timed out
	EventDone     EventKind = "done"     // the chain ended: Pending.Status is allow or deny
)

// Event tells subscribers what happened to an approval.
type Event struct {
	Kind    EventKind
	Pending Pending
}

// entry is one row of the pending table.
type entry struct {
	snap        Pending
	fingerprint string
	step        *step
	done        chan struct{} // closed when the chain ends
	final       *action.Approval
}

// step is one approver being asked. The first of the approver's own answer,
// a surface's Resolve, the timeout and the caller going away settles it.
type step struct {
	approver *approver
	began    time.Time
	done     chan struct{}
	settled  bool
	res      Resolution
	err      error
}

// table is the pending table. Every field is guarded by mu.
type table struct {
	mu      sync.Mutex
	entries map[string]*entry
	subs    map[int]func(Event)
	nextSub int
}

func newTable() *table {
	return &table{entries: map[string]*entry{}, subs: map[int]func(Event){}}
}

// subscribe registers fn for every event; the returned func removes it.
func (t *table) subscribe(fn func(Event)) func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := t.nextSub
	t.nextSub++
	t.subs[id] = fn
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.subs, id)
	}
}

// publish calls every subscriber, outside the lock.
func (t *table) publish(kind EventKind, e *entry) {
	t.mu.Lock()
	ev := Event{Kind: kind, Pending: e.snapshot()}
	fns := make([]func(Event), 0, len(t.subs))
	for _, fn := range t.subs {
		fns = append(fns, fn)
	}
	t.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// snapshot copies e's view; the caller holds the table lock.
func (e *entry) snapshot() Pending {
	p := e.snap
	p.Approvers = slices.Clone(p.Approvers)
	p.Steps = slices.Clone(p.Steps)
	return p
}

// add puts e in the table under a free id, unless an entry with the same
// fingerprint is pending: then it returns that one and adds nothing.
func (t *table) add(e *entry) *entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.fingerprint != "" {
		for _, o := range t.entries {
			if o.fingerprint == e.fingerprint && o.snap.Status == StatusPending {
				return o
			}
		}
	}
	for t.entries[e.snap.ID] != nil {
		e.snap.ID = newID()
	}
	t.entries[e.snap.ID] = e
	return nil
}

// remove drops e once its chain has ended.
func (t *table) remove(e *entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, e.snap.ID)
}

// holds reports whether id is waiting for an answer here.
func (t *table) holds(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[id]
	return e != nil && e.snap.Status == StatusPending
}

// list returns the pending approvals, oldest first.
func (t *table) list() []Pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Pending, 0, len(t.entries))
	for _, e := range t.entries {
		if e.snap.Status == StatusPending {
			out = append(out, e.snapshot())
		}
	}
	sortPending(out)
	return out
}

// sortPending orders approvals oldest first.
func sortPending(ps []Pending) {
	slices.SortFunc(ps, func(a, b Pending) int { return a.Created.Compare(b.Created) })
}

// begin starts asking ap about e until deadline.
func (t *table) begin(e *entry, ap *approver, deadline time.Time) *step {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &step{approver: ap, began: time.Now(), done: make(chan struct{})}
	e.step = s
	e.snap.Approver, e.snap.Type, e.snap.Deadline = ap.name, ap.cfg.Type, deadline
	return s
}

// settle records the first answer to s; later ones are refused.
func (t *table) settle(s *step, r Resolution, err error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return s.settleLocked(r, err)
}

func (s *step) settleLocked(r Resolution, err error) bool {
	if s.settled {
		return false
	}
	if r.Verdict != action.Allow {
		r.Verdict = action.Deny // anything but an explicit allow denies
	}
	s.settled, s.res, s.err = true, r, err
	close(s.done)
	return true
}

// record appends s's answer to e's history and returns it.
func (t *table) record(e *entry, s *step) action.ApprovalStep {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := action.ApprovalStep{
		Approver: s.approver.name,
		Type:     s.approver.cfg.Type,
		Outcome:  s.res.Verdict,
		By:       s.res.By,
		Via:      s.res.Via,
		Reason:   s.res.Reason,
		WaitedMS: millis(time.Since(s.began)),
	}
	e.snap.Steps = append(e.snap.Steps, st)
	return st
}

// finish marks e's chain as ended with outcome ap.
func (t *table) finish(e *entry, ap *action.Approval) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.snap.Status = string(ap.Outcome)
	e.final = ap
	close(e.done)
}

// resolve answers the approval id for a surface. Anyone may deny; only the
// surfaces of the approver being asked may allow (see mayAllow).
func (t *table) resolve(id string, r Resolution) (Pending, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[id]
	if e == nil {
		return Pending{}, ErrUnknown
	}
	s := e.step
	if e.snap.Status != StatusPending || s == nil || s.settled {
		return e.snapshot(), ErrDecided
	}
	if r.Approver != "" && r.Approver != s.approver.name {
		return e.snapshot(), ErrNotAsked
	}
	if r.Verdict == action.Allow && !mayAllow(s.approver.cfg.Type, r.Via) {
		return e.snapshot(), ErrNotAsked
	}
	if r.Verdict != action.Allow && r.Verdict != action.Deny {
		return e.snapshot(), errors.New("verdict must be allow or deny")
	}
	s.settleLocked(r, nil)
	return e.snapshot(), nil
}

// mayAllow says which surfaces speak for an approver type. A deny is
// accepted from every surface: stopping an action is always safe.
func mayAllow(typ, via string) bool {
	switch typ {
	case "human":
		return via == ViaCLI || via == ViaDashboard
	case "slack":
		return via == ViaSlack
	case "webhook":
		return via == ViaWebhook
	}
	return false // an llm answers for itself only
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
