package postgres

// backend relays the server's messages to the agent. It matches each
// reply to the agent message it answers (the queue), so that a poison
// statement's error is swapped for clawpatrol's at exactly its place, and
// each allowed action is finished when its answer is complete.
func (s *session) backend() error {
	for {
		if s.ur.r.Buffered() == 0 {
			if err := s.aw.Flush(); err != nil {
				return err
			}
		}
		typ, n, err := s.ur.header()
		if err != nil {
			s.aw.Flush()
			return err
		}
		if h := s.queue.head(); h != nil && h.act != nil {
			h.down += int64(n) + 5
		}
		switch typ {
		case 'E':
			err = s.serverError(n)
		case 'Z':
			var body []byte
			if body, err = s.ur.body(typ, n, maxSmall); err == nil {
				s.aw.Write(newMsg('Z').bytes(body).done())
				s.readyForQuery()
				// A ReadyForQuery is what a client waits for.
				err = s.aw.Flush()
			}
		case 'S':
			var body []byte
			if body, err = s.ur.body(typ, n, maxServerSmall); err == nil {
				s.parameterStatus(body)
				s.aw.Write(newMsg('S').bytes(body).done())
			}
		case 'K':
			// A cancel key after startup would hand the agent a real one.
			err = s.ur.skip(n)
		default:
			if err = s.relay(typ, n); err != nil {
				break
			}
			switch typ {
			case '1':
				s.popIf('P')
			case '2':
				s.popIf('B')
			case '3':
				s.popIf('C')
			case 'n', 'T':
				s.popIf('D') // a RowDescription answers a Query too: then it stays
			case 'C', 'I', 's':
				s.popIf('E')
			}
		}
		if err != nil {
			return err
		}
	}
}

// relay passes one message on without holding its body.
func (s *session) relay(typ byte, n int) error {
	writeHeader(s.aw, typ, n)
	return s.ur.copyBody(s.aw, n)
}

// popIf completes the oldest entry if it is of one of the kinds.
func (s *session) popIf(kinds ...byte) {
	h := s.queue.head()
	if h == nil {
		return
	}
	for _, k := range kinds {
		if h.kind == k {
			s.queue.pop().finish(s.opts.Gate, "")
			return
		}
	}
}

// serverError relays an ErrorResponse, or for a poison message, sends
// clawpatrol's error in its place. After an error in an extended-query
// message the server ignores everything up to the next Sync; so does the
// queue (see readyForQuery).
func (s *session) serverError(n int) error {
	h := s.queue.head()
	if s.ignoring || h != nil && h.kind == 'S' {
		h = nil // the Sync's own error (a failed commit): no message of ours
	}
	if n > maxServerSmall {
		// Too long to read whole (no real error is): pass it on.
		if err := s.relay('E', n); err != nil {
			return err
		}
	} else {
		body, err := s.ur.body('E', n, n)
		if err != nil {
			return err
		}
		if h != nil && h.deny != nil {
			s.aw.Write(h.deny)
		} else {
			s.aw.Write(newMsg('E').bytes(body).done())
			if h != nil && h.act != nil {
				h.err = errorMessage(body)
			}
		}
	}
	if h != nil && h.extended() {
		s.queue.pop().finish(s.opts.Gate, "")
		s.ignoring = true
	}
	return nil // a Query's error is followed by its ReadyForQuery
}

// readyForQuery completes the Sync or Query a ReadyForQuery answers. After
// an extended-query error the server ignored every message but Sync, and
// answered none of them: they are completed here as not run.
func (s *session) readyForQuery() {
	for h := s.queue.head(); h != nil && (h.extended() || s.ignoring && h.kind == 'Q'); h = s.queue.head() {
		s.queue.pop().finish(s.opts.Gate, "not run: an earlier message of the pipeline failed")
	}
	s.popIf('S', 'Q')
	s.ignoring = false
}
