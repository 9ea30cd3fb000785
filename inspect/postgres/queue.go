package postgres

import (
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// entry is one agent message forwarded to the server whose answer has not
// been relayed yet. The server answers messages in order, so the queue
// says which message every server reply belongs to.
type entry struct {
	kind byte // the agent's message type: 'Q', 'P', 'B', 'D', 'E', 'C' or 'S'
	// deny, for a poison message, is the ErrorResponse the agent gets in
	// place of the server's.
	deny []byte

	// An allowed query: its action is finished when the answer is complete.
	act   *action.Action
	dec   action.Decision
	start time.Time
	up    int64 // bytes of the agent's message
	down  int64 // bytes relayed while it was answered
	err   string
}

// extended reports whether e is an extended-protocol message: after an
// error the server skips those up to the next Sync.
func (e *entry) extended() bool { return e.kind != 'Q' && e.kind != 'S' }

// executes reports whether e runs a statement (and so may change settings).
func (e *entry) executes() bool { return e.deny == nil && (e.kind == 'Q' || e.kind == 'E') }

// queue holds the entries in the order they were sent. The agent side
// pushes, the server side pops.
type queue struct {
	mu      sync.Mutex
	entries []*entry
	running int // entries that execute
}

func (q *queue) push(e *entry) {
	q.mu.Lock()
	q.entries = append(q.entries, e)
	if e.executes() {
		q.running++
	}
	q.mu.Unlock()
}

// head returns the oldest entry, or nil.
func (q *queue) head() *entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) == 0 {
		return nil
	}
	return q.entries[0]
}

// pop removes the oldest entry and returns it, or nil.
func (q *queue) pop() *entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) == 0 {
		return nil
	}
	e := q.entries[0]
	q.entries[0] = nil
	q.entries = q.entries[1:]
	if e.executes() {
		q.running--
	}
	return e
}

// executing reports how many forwarded statements have not finished.
func (q *queue) executing() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

// finish reports an allowed action's outcome to the gate, once.
func (e *entry) finish(g action.Gate, errText string) {
	if e == nil || e.act == nil {
		return
	}
	if errText == "" {
		errText = e.err
	}
	g.Finish(e.act, e.dec, action.Outcome{BytesUp: e.up, BytesDown: e.down, Duration: time.Since(e.start), Error: errText})
	e.act = nil
}

// drain finishes every entry left when the connection ends.
func (q *queue) drain(g action.Gate, why string) {
	for e := q.pop(); e != nil; e = q.pop() {
		e.finish(g, why)
	}
}
