package dashboard

import (
	"sync"

	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/audit"
)

// feedSize bounds the updates waiting for the dashboard. The gate and the
// approvals push without ever waiting: when the dashboard falls this far
// behind, the oldest update is dropped (and counted on the page). The audit
// log, written before the dashboard hears of a record, has every one.
const feedSize = 4096

// feed is a bounded queue that drops its oldest entry when full.
type feed struct {
	mu      sync.Mutex
	buf     []update
	head, n int
	dropped int
	closed  bool
	wake    chan struct{}
}

func newFeed(size int) *feed {
	return &feed{buf: make([]update, size), wake: make(chan struct{}, 1)}
}

// push queues u and returns at once.
func (f *feed) push(u update) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	if f.n == len(f.buf) {
		f.buf[f.head] = update{}
		f.head = (f.head + 1) % len(f.buf)
		f.n--
		f.dropped++
	}
	f.buf[(f.head+f.n)%len(f.buf)] = u
	f.n++
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// take waits for updates and returns them all, with how many were dropped
// since the last call; ok is false once the feed is closed and empty.
func (f *feed) take() (us []update, dropped int, ok bool) {
	for {
		f.mu.Lock()
		if f.n > 0 || f.dropped > 0 {
			us = make([]update, 0, f.n)
			for ; f.n > 0; f.n-- {
				us = append(us, f.buf[f.head])
				f.buf[f.head] = update{}
				f.head = (f.head + 1) % len(f.buf)
			}
			dropped, f.dropped = f.dropped, 0
			f.mu.Unlock()
			return us, dropped, true
		}
		if f.closed {
			f.mu.Unlock()
			return nil, 0, false
		}
		f.mu.Unlock()
		<-f.wake
	}
}

// close lets take return what is left, then false.
func (f *feed) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Decided implements gate.Observer: the row appears (or waits for an
// approver) as soon as the policy has spoken.
func (s *Server) Decided(rec audit.ActionRecord) { s.feed.push(update{Record: &rec}) }

// Finished implements gate.Observer with the audit log's record.
func (s *Server) Finished(rec audit.ActionRecord) {
	s.feed.push(update{Record: &rec, Finished: true})
}

// approval is the Approvals subscriber: it runs on the deciding goroutine.
func (s *Server) approval(ev approve.Event) {
	ev.Pending.Input = nil // the row has the input
	s.feed.push(update{Approval: &ev})
}

// End records how the session's agent ended.
func (s *Server) End(exitStatus int) { s.feed.push(update{End: &exitStatus}) }

// drain applies the feed to the local session until the feed closes.
func (s *Server) drain() {
	for {
		us, dropped, ok := s.feed.take()
		if !ok {
			return
		}
		if dropped > 0 {
			s.hub.apply(s.info.ID, update{Dropped: dropped})
		}
		for _, u := range us {
			s.hub.apply(s.info.ID, u)
		}
	}
}
