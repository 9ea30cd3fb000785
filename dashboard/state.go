package dashboard

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/audit"
)

// What the dashboard keeps, per session. The audit log is the record of
// truth; these bounds only keep a long session's dashboard small.
const (
	maxRows       = 2000     // actions kept per session, newest
	maxInputBytes = 64 << 20 // of redacted policy inputs per session
	maxRecent     = 20       // decided approvals listed per session
	maxEnded      = 16       // ended sessions still listed
)

// Row statuses.
const (
	statusWaiting = "waiting" // for an approver
	statusOpen    = "open"    // allowed, being forwarded
	statusDone    = "done"
	statusDenied  = "denied"
	statusFailed  = "failed" // allowed, but the upstream failed
)

// update is one change to a session: the unit of the feed and of the wire
// between a joining session and the dashboard's owner.
type update struct {
	Record   *audit.ActionRecord `json:"record,omitempty"`
	Finished bool                `json:"finished,omitempty"` // Record is the audit log's
	Approval *approve.Event      `json:"approval,omitempty"`
	End      *int                `json:"end,omitempty"` // the agent's exit status
	Dropped  int                 `json:"dropped,omitempty"`
}

// row is one action as the table shows it.
type row struct {
	ID             string  `json:"id"`
	Session        string  `json:"session"`
	Time           string  `json:"time"`
	Protocol       string  `json:"protocol"`
	Endpoint       string  `json:"endpoint,omitempty"`
	Destination    string  `json:"destination"`
	Summary        string  `json:"summary"`
	Verdict        string  `json:"verdict"`
	Monitor        bool    `json:"monitor,omitempty"`
	Rule           string  `json:"rule"`
	Reason         string  `json:"reason,omitempty"`
	Approver       string  `json:"approver,omitempty"` // who settled an approval
	Status         string  `json:"status"`
	UpstreamStatus int     `json:"upstream_status,omitempty"`
	BytesUp        int64   `json:"bytes_up"`
	BytesDown      int64   `json:"bytes_down"`
	DurationMS     float64 `json:"duration_ms"`
	Error          string  `json:"error,omitempty"`

	rec  audit.ActionRecord // the latest record, with the redacted input
	size int                // of the input, for maxInputBytes
}

// endpointStats is one line of the per-endpoint summary.
type endpointStats struct {
	Endpoint  string `json:"endpoint"`
	Actions   int    `json:"actions"`
	Allow     int    `json:"allow"`
	Deny      int    `json:"deny"`
	Approvals int    `json:"approvals"`
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
	Last      string `json:"last"`
}

// sessionJSON is a session's header.
type sessionJSON struct {
	SessionInfo
	Running   bool             `json:"running"`
	Exit      *int             `json:"exit,omitempty"`
	Lost      bool             `json:"lost,omitempty"` // its connection ended without an exit status
	Counts    map[string]int   `json:"counts"`
	Endpoints []*endpointStats `json:"endpoints"`
	Dropped   int              `json:"dropped,omitempty"`
}

// view is what the dashboard knows of one session.
type view struct {
	info      SessionInfo
	ended     time.Time
	exit      *int
	lost      bool
	rows      map[string]*row
	order     []string // row ids, oldest first
	bytes     int
	counts    map[string]int
	endpoints map[string]*endpointStats
	pending   map[string]approve.Pending
	recent    []approve.Pending // decided approvals, newest last
	dropped   int
	// src answers for the session: its Approvals, here or over a socket.
	src source
}

// source is where a session's approvals are answered.
type source interface {
	resolve(id string, r approve.Resolution) (approve.Pending, error)
	callback(body []byte, signature string) (status int, answer []byte)
}

func newView(info SessionInfo, src source) *view {
	return &view{info: info, src: src, rows: map[string]*row{}, endpoints: map[string]*endpointStats{},
		counts: map[string]int{"allow": 0, "deny": 0}, pending: map[string]approve.Pending{}}
}

// event is one server-sent event, encoded.
type event struct {
	name string
	data []byte
}

// hub holds every session's view and the live streams. A session's own
// updates and those relayed from joining sessions go through apply.
type hub struct {
	mu      sync.Mutex
	views   map[string]*view
	clients map[*client]bool
	// forward, when set (a joining session), gets every update of the local
	// session as it is applied, under mu: see join.go.
	forward func(update)
	local   string
}

func newHub() *hub {
	return &hub{views: map[string]*view{}, clients: map[*client]bool{}}
}

// client is one open event stream.
type client struct {
	ch   chan event
	gone chan struct{} // closed when the client lagged behind
}

// add puts v in the hub (replacing a view of the same session) and tells
// the streams.
func (h *hub) add(v *view) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.views[v.info.ID] = v
	h.pruneLocked()
	h.sendLocked(event{"session", encode(v.header())})
}

// pruneLocked forgets the oldest ended sessions beyond maxEnded.
func (h *hub) pruneLocked() {
	var ended []*view
	for _, v := range h.views {
		if !v.ended.IsZero() {
			ended = append(ended, v)
		}
	}
	if len(ended) <= maxEnded {
		return
	}
	slices.SortFunc(ended, func(a, b *view) int { return a.ended.Compare(b.ended) })
	for _, v := range ended[:len(ended)-maxEnded] {
		delete(h.views, v.info.ID)
		h.sendLocked(event{"forget", encode(map[string]string{"session": v.info.ID})})
	}
}

// apply changes session id's view by u and streams what changed.
func (h *hub) apply(id string, u update) {
	size := 0 // of the input, measured outside the lock
	if u.Record != nil && u.Record.Input != nil {
		if b, err := json.Marshal(u.Record.Input); err == nil {
			size = len(b)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.views[id]
	if v == nil {
		return
	}
	if h.forward != nil && id == h.local {
		h.forward(u)
	}
	v.dropped += u.Dropped
	switch {
	case u.Record != nil:
		r := v.record(*u.Record, u.Finished, size)
		h.sendLocked(event{"row", encode(r)})
	case u.Approval != nil:
		p := u.Approval.Pending
		p.Input = nil
		if u.Approval.Kind != approve.EventDone {
			v.pending[p.ID] = p
			h.sendLocked(event{"pending", encode(p)})
			break
		}
		delete(v.pending, p.ID)
		v.recent = append(v.recent, p)
		if len(v.recent) > maxRecent {
			v.recent = slices.Delete(v.recent, 0, len(v.recent)-maxRecent)
		}
		h.sendLocked(event{"decided", encode(p)})
		if r := v.rows[p.ID]; r != nil {
			r.settle(p)
			h.sendLocked(event{"row", encode(r)})
		}
	case u.End != nil:
		v.exit = u.End
		v.ended = time.Now()
		h.pruneLocked()
	}
	h.sendLocked(event{"session", encode(v.header())})
}

// lose marks a joined session whose connection ended.
func (h *hub) lose(id string, src source) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.views[id]
	if v == nil || v.src != src {
		return // replaced by a newer connection of the same session
	}
	if v.ended.IsZero() {
		v.ended, v.lost = time.Now(), true
	}
	clear(v.pending) // nobody can answer them here any more
	h.pruneLocked()
	h.sendLocked(event{"session", encode(v.header())})
}

// record files rec as the newest state of its row.
func (v *view) record(rec audit.ActionRecord, finished bool, size int) *row {
	r := v.rows[rec.ID]
	if r == nil {
		r = &row{ID: rec.ID, Session: v.info.ID}
		v.rows[rec.ID] = r
		v.order = append(v.order, rec.ID)
	} else if !finished && r.Status != statusWaiting && r.Status != statusOpen {
		return r // the final record is in already
	}
	v.bytes += size - r.size
	r.size = size
	r.fill(rec, finished)
	if finished {
		v.count(r)
	}
	v.trim()
	return r
}

// trim forgets the oldest rows beyond the bounds.
func (v *view) trim() {
	n := 0
	for len(v.order)-n > maxRows || (v.bytes > maxInputBytes && len(v.order)-n > 1) {
		old := v.rows[v.order[n]]
		v.bytes -= old.size
		delete(v.rows, old.ID)
		n++
	}
	if n > 0 {
		v.order = slices.Delete(v.order, 0, n)
	}
}

// count adds a finished row to the session's counts and endpoint summary.
func (v *view) count(r *row) {
	verdict := r.Verdict
	if r.Monitor {
		verdict = string(action.Allow) // shadow mode: it went through, as the audit log counts it
	}
	v.counts[verdict]++
	key := r.Endpoint
	if key == "" {
		key = "(none)"
	}
	e := v.endpoints[key]
	if e == nil {
		e = &endpointStats{Endpoint: key}
		v.endpoints[key] = e
	}
	e.Actions++
	switch verdict {
	case string(action.Allow):
		e.Allow++
	case string(action.Deny):
		e.Deny++
	}
	if r.rec.Decision.Approval != nil {
		e.Approvals++
	}
	e.BytesUp += r.BytesUp
	e.BytesDown += r.BytesDown
	e.Last = r.Time
}

// fill copies what the table shows from rec.
func (r *row) fill(rec audit.ActionRecord, finished bool) {
	d := rec.Decision
	r.rec = rec
	r.Time, r.Protocol, r.Endpoint, r.Summary = rec.Time, rec.Protocol, rec.Endpoint, rec.Summary
	r.Destination = destination(rec.Destination)
	r.Verdict, r.Monitor, r.Rule, r.Reason = string(d.Verdict), d.Monitor, d.Rule, d.Reason()
	r.UpstreamStatus, r.BytesUp, r.BytesDown = rec.UpstreamStatus, rec.BytesUp, rec.BytesDown
	r.DurationMS, r.Error = rec.DurationMS, rec.Error
	if ap := d.Approval; ap != nil {
		r.Approver = approverText(ap.Approver, ap.By, ap.Via)
	}
	switch {
	case !finished && d.Verdict == action.Approve && !d.Monitor:
		r.Status = statusWaiting
	case !finished && d.Allowed():
		r.Status = statusOpen
	case !d.Allowed():
		r.Status = statusDenied
	case rec.Error != "":
		r.Status = statusFailed
	default:
		r.Status = statusDone
	}
}

// settle shows an approval's outcome on a row still in flight.
func (r *row) settle(p approve.Pending) {
	if r.Status != statusWaiting {
		return
	}
	r.Verdict = p.Status
	r.Status = statusOpen
	if p.Status != string(action.Allow) {
		r.Status = statusDenied
	}
	if n := len(p.Steps); n > 0 {
		st := p.Steps[n-1]
		r.Approver = approverText(st.Approver, st.By, st.Via)
	}
}

// approverText is "me (alice via dashboard)".
func approverText(approver, by, via string) string {
	who := by
	if via != "" {
		who = strings.TrimSpace(who + " via " + via)
	}
	if who == "" {
		return approver
	}
	return approver + " (" + who + ")"
}

// destination is "host:port", or the IP when no name is known.
func destination(d action.Destination) string {
	host := d.Host
	if host == "" {
		host = d.IP
	}
	if d.Port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(d.Port))
}

// header is the session's line of the page header.
func (v *view) header() sessionJSON {
	eps := slices.SortedFunc(maps.Values(v.endpoints), func(a, b *endpointStats) int {
		return cmp.Or(cmp.Compare(b.Actions, a.Actions), cmp.Compare(a.Endpoint, b.Endpoint))
	})
	counts := maps.Clone(v.counts)
	counts["pending"] = len(v.pending)
	return sessionJSON{SessionInfo: v.info, Running: v.ended.IsZero(), Exit: v.exit, Lost: v.lost,
		Counts: counts, Endpoints: eps, Dropped: v.dropped}
}

// snapshot is the whole state, the first event of every stream.
type snapshot struct {
	Sessions []sessionJSON     `json:"sessions"`
	Rows     []*row            `json:"rows"`
	Pending  []approve.Pending `json:"pending"`
	Recent   []approve.Pending `json:"recent"`
	Self     string            `json:"self"` // the session serving the page
	Now      time.Time         `json:"now"`
}

// snapshotLocked collects every view; the caller holds mu.
func (h *hub) snapshotLocked() snapshot {
	s := snapshot{Sessions: []sessionJSON{}, Rows: []*row{}, Pending: []approve.Pending{}, Recent: []approve.Pending{},
		Self: h.local, Now: time.Now().UTC()}
	for _, v := range h.views {
		s.Sessions = append(s.Sessions, v.header())
		for _, id := range v.order {
			c := *v.rows[id]
			s.Rows = append(s.Rows, &c)
		}
		s.Pending = append(s.Pending, slices.Collect(maps.Values(v.pending))...)
		s.Recent = append(s.Recent, v.recent...)
	}
	slices.SortFunc(s.Sessions, func(a, b sessionJSON) int { return a.Started.Compare(b.Started) })
	slices.SortStableFunc(s.Rows, func(a, b *row) int { return cmp.Compare(a.Time, b.Time) })
	byCreated := func(a, b approve.Pending) int { return a.Created.Compare(b.Created) }
	slices.SortFunc(s.Pending, byCreated)
	slices.SortFunc(s.Recent, byCreated)
	return s
}

// state returns a copy of the whole state.
func (h *hub) state() snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshotLocked()
}

// find returns a copy of the row with id, from any session.
func (h *hub) find(id string) (row, SessionInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.views {
		if r := v.rows[id]; r != nil {
			return *r, v.info, true
		}
	}
	return row{}, SessionInfo{}, false
}

// pending returns the approval id, pending or recently decided, from any
// session.
func (h *hub) pending(id string) (approve.Pending, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.views {
		if p, ok := v.pending[id]; ok {
			return p, true
		}
		for _, p := range v.recent {
			if p.ID == id {
				return p, true
			}
		}
	}
	return approve.Pending{}, false
}

// pendingIn returns the session holding the pending approval id.
func (h *hub) pendingIn(id string) (source, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.views {
		if _, ok := v.pending[id]; ok && v.src != nil {
			return v.src, true
		}
	}
	return nil, false
}

// sourceOf returns the source of session id.
func (h *hub) sourceOf(id string) source {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v := h.views[id]; v != nil && v.ended.IsZero() {
		return v.src
	}
	return nil
}

// resolve answers a pending approval in whichever session holds it.
func (h *hub) resolve(id string, r approve.Resolution) (approve.Pending, error) {
	src, ok := h.pendingIn(id)
	if !ok {
		if p, ok := h.pending(id); ok {
			return p, approve.ErrDecided // the page showed it a moment ago
		}
		return approve.Pending{}, approve.ErrUnknown
	}
	p, err := src.resolve(id, r)
	if errors.Is(err, approve.ErrUnknown) {
		err = approve.ErrDecided // listed as pending: it has just been settled
	}
	return p, err
}

// subscribe opens a stream whose first event is the snapshot.
func (h *hub) subscribe() *client {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := &client{ch: make(chan event, 1024), gone: make(chan struct{})}
	c.ch <- event{"snapshot", encode(h.snapshotLocked())}
	h.clients[c] = true
	return c
}

// unsubscribe closes a stream.
func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[c] {
		delete(h.clients, c)
		close(c.gone)
	}
}

// sendLocked queues e on every stream. A stream that lags a whole buffer
// behind is closed; the browser reconnects and starts from a snapshot.
func (h *hub) sendLocked(e event) {
	for c := range h.clients {
		select {
		case c.ch <- e:
		default:
			delete(h.clients, c)
			close(c.gone)
		}
	}
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	return b
}
