// Package approve settles the approve verdict: it parks an action in the
// pending table, asks the named approvers (llm, slack, webhook, human) in
// order, and turns their answers, a refusal, an error or a timeout into an
// allow or a deny. Every path that is not an explicit allow denies.
package approve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
)

// defaultTimeout is approval.timeout's default.
const defaultTimeout = 5 * time.Minute

// Options are what one session's approvals need besides the config.
type Options struct {
	// Session is the session id; it names the approval socket. Empty: no
	// socket (and so no `clawpatrol approve` for this process).
	Session string
	// NonInteractive denies at once every step that needs a person
	// (type human or slack): `run --non-interactive`.
	NonInteractive bool
	// Secret returns a credential's secret by its name in the config.
	Secret func(credential string) (string, error)
	// Redact returns the copy of an action that approvers may see. Nil:
	// the action as it is.
	Redact func(*action.Action) *action.Action
	// Summary is the one-line description of an action (gate.Summary).
	// Nil: protocol and destination.
	Summary func(*action.Action) string
	Logger  *zap.Logger
	// SlackAPIURL overrides Slack's Web API base URL (tests); it ends in "/".
	SlackAPIURL string
	// HTTPClient makes the llm and webhook requests; nil: a default client.
	HTTPClient *http.Client
	// SocketDir holds the approval socket; "": RuntimeDir().
	SocketDir string
	// CallbackURL, when set, is sent to webhooks as where to answer later
	// (the dashboard mounts CallbackHandler there).
	CallbackURL string
	// Notify, when set, gets one line per approval waiting for a human
	// (off by default: it would draw over the agent's terminal).
	Notify io.Writer
}

// Approvals settles approve decisions for one session. It is safe for
// concurrent use.
type Approvals struct {
	cfg       *config.Config
	opts      Options
	log       *zap.Logger
	approvers map[string]*approver
	table     *table
	socketDir string        // where the approval socket listens; "" for none
	timeout   time.Duration // approval.timeout
	reuse     time.Duration
	now       func() time.Time // tests move the clock

	mu        sync.Mutex
	approved  map[string]reusable // fingerprint → recent approval
	closed    bool
	notifyMu  sync.Mutex
	ctx       context.Context // ends at Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine started by New
	closers   []func()
	closeOnce sync.Once
}

// approver is one entry of the config's approvers with what asking it takes.
type approver struct {
	name string
	cfg  config.Approver
	ask  asker
}

// asker asks one approver about a pending approval. It returns the answer
// when the approver gives one in the call (llm, a webhook's 200), or a nil
// Resolution when the answer will arrive through Resolve (human, slack, a
// webhook's 202). It returns by the time ctx is done.
type asker interface {
	ask(ctx context.Context, p Pending) (*Resolution, error)
}

// New builds the approvers of cfg and, when o.Session is set, listens on
// the session's approval socket. Close releases both.
func New(cfg *config.Config, o Options) (*Approvals, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Approvals{
		cfg:       cfg,
		opts:      o,
		log:       o.Logger,
		approvers: map[string]*approver{},
		table:     newTable(),
		reuse:     time.Duration(cfg.Approval.Reuse),
		now:       time.Now,
		approved:  map[string]reusable{},
		ctx:       ctx,
		cancel:    cancel,
	}
	if a.timeout = time.Duration(cfg.Approval.Timeout); a.timeout <= 0 {
		a.timeout = defaultTimeout // a config built without config.Parse
	}
	slackApps := map[string]*slackApp{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Approvers)) {
		c := cfg.Approvers[name]
		ap := &approver{name: name, cfg: c}
		var err error
		switch c.Type {
		case "llm":
			ap.ask, err = a.newLLM(name, c)
		case "webhook":
			ap.ask, err = a.newWebhook(name, c)
		case "slack":
			ap.ask, err = a.newSlack(name, c, slackApps)
		case "human":
			ap.ask = &human{a: a}
		default:
			err = fmt.Errorf("type %q is not llm, slack, webhook or human", c.Type)
		}
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("approvers.%s: %w", name, err)
		}
		a.approvers[name] = ap
	}
	for _, app := range slackApps {
		app.start()
	}
	if o.Session != "" {
		if err := a.listen(); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// Close stops the socket and the Slack connections and waits for them.
// Approvals still pending are denied.
func (a *Approvals) Close() {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		a.cancel()
		for _, c := range a.closers {
			c()
		}
		a.wg.Wait()
	})
}

// spawn runs fn on a goroutine that Close waits for. fn gets its own
// bounded context rather than one Close cancels, so that the last message
// updates still go out; after Close nothing new starts.
func (a *Approvals) spawn(fn func(ctx context.Context)) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), slackUpdateTimeout)
		defer cancel()
		fn(ctx)
	}()
}

// secret reads a credential named by an approver's key.
func (a *Approvals) secret(key, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%s: a credential is needed", key)
	}
	if a.opts.Secret == nil {
		return "", fmt.Errorf("%s: no way to read credential %q", key, name)
	}
	s, err := a.opts.Secret(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}

// Subscribe calls fn for every event of every approval until the returned
// func is called. fn runs on the deciding goroutine: it must not block.
func (a *Approvals) Subscribe(fn func(Event)) (unsubscribe func()) {
	return a.table.subscribe(fn)
}

// List returns the approvals waiting for an answer, oldest first.
func (a *Approvals) List() []Pending { return a.table.list() }

// Resolve answers a pending approval from a surface (the dashboard, the
// CLI, Slack, a webhook callback). The first answer wins: a later one gets
// ErrDecided. An allow is accepted only from the surfaces of the approver
// being asked (ErrNotAsked otherwise); a deny from any.
func (a *Approvals) Resolve(id string, r Resolution) (Pending, error) {
	p, err := a.table.resolve(id, r)
	if err == nil {
		a.log.Info("approval answered", zap.String("id", id), zap.String("verdict", string(r.Verdict)),
			zap.String("by", r.By), zap.String("via", r.Via))
	}
	return p, err
}

// Decide settles d, an approve decision for act, by asking its approvers in
// order (d.Approvers, else approval.default). It returns an allow only when
// every one of them allowed; the first refusal, error or timeout denies, as
// does ctx ending first. A decision that is not approve is returned as is.
func (a *Approvals) Decide(ctx context.Context, act *action.Action, d action.Decision) action.Decision {
	if d.Verdict != action.Approve {
		return d
	}
	names := d.Approvers
	if len(names) == 0 {
		names = a.cfg.Approval.Default
	}
	start := time.Now()
	id := act.ID
	if id == "" {
		id = newID()
	}
	if len(names) == 0 {
		return settled(d, &action.Approval{ID: id, Outcome: action.Deny,
			Reason: "no approver is named by the rule or by approval.default"}, "")
	}
	var fp string
	if a.reuse > 0 {
		if fp = fingerprint(act, d, names); fp != "" {
			if ap := a.reused(fp, id); ap != nil {
				return settled(d, ap, "")
			}
		}
	}

	input := act
	if a.opts.Redact != nil {
		input = a.opts.Redact(act)
	}
	e := &entry{fingerprint: fp, done: make(chan struct{}), snap: Pending{
		ID:        id,
		Session:   a.opts.Session,
		Summary:   printable(a.summary(act)),
		Rule:      d.Rule,
		Reason:    d.Reason(),
		Approvers: names,
		Created:   start.UTC(),
		Status:    StatusPending,
		Input:     input,
	}}
	if first := a.table.add(e); first != nil {
		return a.join(ctx, d, first, id, start) // an identical action is already waiting
	}
	defer a.table.remove(e)

	// One deadline for the whole chain; a step with its own timeout gets
	// exactly that long instead.
	deadline := start.Add(a.timeout)
	var steps []action.ApprovalStep
	var errText string
	for _, name := range names {
		ap := a.approvers[name]
		var st action.ApprovalStep
		if ap == nil {
			st = action.ApprovalStep{Approver: name, Outcome: action.Deny, Reason: fmt.Sprintf("no approver named %q in the config", name)}
			errText = st.Reason
		} else {
			var err error
			st, err = a.step(ctx, e, ap, deadline)
			if err != nil {
				errText = fmt.Sprintf("approver %s: %v", name, err)
			}
		}
		steps = append(steps, st)
		if st.Outcome != action.Allow {
			break
		}
	}
	last := steps[len(steps)-1]
	ap := &action.Approval{
		ID:       e.snap.ID,
		Outcome:  last.Outcome,
		Approver: last.Approver,
		By:       last.By,
		Via:      last.Via,
		Reason:   last.Reason,
		WaitedMS: millis(time.Since(start)),
		Steps:    steps,
	}
	a.table.finish(e, ap)
	if ap.Outcome == action.Allow && fp != "" {
		a.remember(fp, ap)
	}
	a.table.publish(EventDone, e)
	a.log.Info("approval", zap.String("id", ap.ID), zap.String("outcome", string(ap.Outcome)),
		zap.String("approver", ap.Approver), zap.String("by", ap.By), zap.Float64("waited_ms", ap.WaitedMS))
	return settled(d, ap, errText)
}

// step asks one approver and waits for the first of its answer, a surface's
// Resolve, the step's deadline and ctx ending.
func (a *Approvals) step(ctx context.Context, e *entry, ap *approver, deadline time.Time) (action.ApprovalStep, error) {
	began := time.Now()
	if t := time.Duration(ap.cfg.Timeout); t > 0 {
		deadline = began.Add(t)
	} else if ap.cfg.Type == "llm" && began.Add(llmTimeout).Before(deadline) {
		deadline = began.Add(llmTimeout)
	}
	s := a.table.begin(e, ap, deadline)
	skip := a.opts.NonInteractive && (ap.cfg.Type == "human" || ap.cfg.Type == "slack")
	if skip {
		a.table.settle(s, Resolution{Verdict: action.Deny, Via: ViaPolicy,
			Reason: "approver " + ap.name + " needs a person and the session is non-interactive"}, nil)
	}
	a.table.publish(EventAsked, e)

	stepCtx, cancel := context.WithDeadline(ctx, deadline)
	var wg sync.WaitGroup
	if !skip {
		snap := e.snapshotLocked(a.table)
		wg.Go(func() {
			r, err := ap.ask.ask(stepCtx, snap)
			switch {
			case err != nil && stepCtx.Err() != nil:
				// The deadline or the caller ended the call; the wait below
				// settles the step with that, not with this error.
			case err != nil:
				a.table.settle(s, Resolution{Verdict: action.Deny, Via: ap.cfg.Type,
					Reason: "approver " + ap.name + " could not be asked"}, err)
			case r != nil:
				a.table.settle(s, *r, nil)
			}
		})
	}
	select {
	case <-s.done:
	case <-a.ctx.Done():
		a.table.settle(s, Resolution{Verdict: action.Deny, Reason: "the session ended before an answer"}, nil)
	case <-stepCtx.Done():
		r := Resolution{Verdict: action.Deny, Via: ViaTimeout,
			Reason: fmt.Sprintf("no answer from %s within %s", ap.name, deadline.Sub(began).Round(time.Millisecond))}
		if ctx.Err() != nil {
			r = Resolution{Verdict: action.Deny, Reason: "the action was abandoned before an answer"}
		}
		a.table.settle(s, r, nil)
	}
	cancel()
	wg.Wait()
	st := a.table.record(e, s)
	a.table.publish(EventAnswered, e)
	return st, s.err
}

// snapshotLocked takes the table lock and copies e's view.
func (e *entry) snapshotLocked(t *table) Pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	return e.snapshot()
}

// settled turns the approve decision d into the allow or deny that ap says,
// keeping the policy's rule and putting the approval's story first.
func settled(d action.Decision, ap *action.Approval, errText string) action.Decision {
	out := d
	out.Verdict = ap.Outcome
	out.Approval = ap
	if errText != "" {
		out.Error = errText
	}
	out.Reasons = append([]action.Reason{{Rule: d.Rule, Reason: story(ap)}}, d.Reasons...)
	return out
}

// story is the one-line account of an approval that the agent and the
// audit log see: "approved by me [alice via cli] after 3.2s: fine".
func story(ap *action.Approval) string {
	return account(action.ApprovalStep{Approver: ap.Approver, Outcome: ap.Outcome, By: ap.By, Via: ap.Via,
		Reason: ap.Reason, WaitedMS: ap.WaitedMS}, ap.Reused)
}

// account tells how one step (or the approval it settled) ended.
func account(st action.ApprovalStep, reused bool) string {
	var b strings.Builder
	switch {
	case st.Outcome == action.Allow:
		b.WriteString("approved")
	case st.Via == ViaTimeout:
		b.WriteString("approval timed out")
	default:
		b.WriteString("approval denied")
	}
	if st.Approver != "" {
		b.WriteString(" by " + st.Approver)
	}
	var who []string
	if st.By != "" {
		who = append(who, st.By)
	}
	if st.Via != "" && st.Via != ViaTimeout {
		who = append(who, "via "+st.Via)
	}
	if len(who) > 0 {
		b.WriteString(" [" + strings.Join(who, " ") + "]")
	}
	if !reused {
		fmt.Fprintf(&b, " after %s", time.Duration(st.WaitedMS*float64(time.Millisecond)).Round(time.Millisecond))
	}
	if st.Reason != "" {
		b.WriteString(": " + st.Reason)
	}
	return b.String()
}

// summary describes act in one line.
func (a *Approvals) summary(act *action.Action) string {
	if a.opts.Summary != nil {
		return a.opts.Summary(act)
	}
	return fmt.Sprintf("%s %s:%d", act.Protocol, act.Destination.Host, act.Destination.Port)
}

// printable replaces control characters: a summary quotes the agent, and
// it is printed on the operator's terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// newID returns a random id for an action that has none.
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// errStatus is a non-2xx answer from an approver's server.
type errStatus struct {
	code int
	body string
}

func (e *errStatus) Error() string {
	if e.body == "" {
		return fmt.Sprintf("status %d", e.code)
	}
	return fmt.Sprintf("status %d: %s", e.code, e.body)
}

// postJSON POSTs a JSON body with extra headers and reads at most limit
// bytes of the answer.
func postJSON(ctx context.Context, client *http.Client, url string, body []byte, header http.Header, limit int64) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := readBounded(resp.Body, limit)
	return resp.StatusCode, data, err
}

// readBounded reads at most n bytes of r; more is an error.
func readBounded(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, errors.New("answer too large")
	}
	return b, nil
}
