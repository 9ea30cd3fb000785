package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/sqlfacts"
)

// maxParseExtra is what a Parse message carries besides its query: a
// statement name and up to 65535 parameter type OIDs.
const maxParseExtra = 64<<10 + 4*65535 + 2

// frontend reads the agent's messages, decides each query and forwards
// what is allowed. A denied statement is replaced by a poison one, and like
// the server after an error in an extended-query pipeline, everything up
// to the next Sync is dropped. It returns when the agent leaves or breaks
// the protocol.
func (s *session) frontend(ctx context.Context) error {
	skipping := false
	for {
		// Send what is buffered before waiting for more.
		if s.ar.r.Buffered() == 0 {
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
		typ, n, err := s.ar.header()
		if err != nil {
			return err
		}
		if skipping && typ != 'S' && typ != 'X' {
			if err := s.ar.skip(n); err != nil {
				return err
			}
			continue
		}
		switch typ {
		case 'Q':
			err = s.query(ctx, n)
		case 'P':
			skipping, err = s.parse(ctx, n)
		case 'B', 'd', 'f':
			if typ == 'B' {
				s.queue.push(&entry{kind: typ})
			}
			err = s.forward(typ, n)
		case 'D', 'E', 'C', 'S', 'H', 'c':
			if n > maxSmall {
				return protocolError("message %q of %d bytes", typ, n)
			}
			if typ != 'H' && typ != 'c' {
				s.queue.push(&entry{kind: typ})
			}
			skipping = false // only a Sync gets here while skipping
			err = s.forward(typ, n)
		case 'F':
			err = s.functionCall(n)
		case 'X':
			s.uw.Write([]byte{'X', 0, 0, 0, 4})
			s.uw.Flush()
			return nil
		default:
			return protocolError("unexpected message type %q", typ)
		}
		if err != nil {
			return err
		}
	}
}

// forward passes one message on without holding its body.
func (s *session) forward(typ byte, n int) error {
	writeHeader(s.uw, typ, n)
	return s.ar.copyBody(s.uw, n)
}

func writeHeader(w interface{ Write([]byte) (int, error) }, typ byte, n int) {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(n+4))
	w.Write(h[:])
}

// readHead reads the start of a Query or Parse body: all of it when it is
// short enough to hold, else as much as the policy may see, plus room for
// the rest of a Parse. rest is what is left to stream.
func (s *session) readHead(typ byte, n int) (head []byte, rest int, err error) {
	limit := s.opts.TextLimit + maxParseExtra
	if n <= limit {
		head, err = s.ar.body(typ, n, n)
		return head, 0, err
	}
	head, err = s.ar.body(typ, limit, limit)
	return head, n - limit, err
}

// query inspects a simple Query: every statement of it in one action.
func (s *session) query(ctx context.Context, n int) error {
	head, rest, err := s.readHead('Q', n)
	if err != nil {
		return err
	}
	text := head
	if rest == 0 {
		if len(head) == 0 || head[len(head)-1] != 0 {
			return protocolError("query not terminated")
		}
		text = head[:len(head)-1]
	}
	if bytes.IndexByte(text, 0) >= 0 {
		return protocolError("query with a NUL byte")
	}
	a := s.action(text, rest > 0)
	e, allowed := s.decide(ctx, 'Q', a, n)
	s.queue.push(e)
	if !allowed {
		s.uw.Write(newMsg('Q').str(poisonSQL).done())
		return s.ar.skip(rest)
	}
	writeHeader(s.uw, 'Q', n)
	s.uw.Write(head)
	return s.ar.copyBody(s.uw, rest)
}

// parse inspects a Parse message. denied says the agent's messages up to
// the next Sync must be dropped.
func (s *session) parse(ctx context.Context, n int) (denied bool, err error) {
	head, rest, err := s.readHead('P', n)
	if err != nil {
		return false, err
	}
	f := fields{b: head}
	name := f.cstring("Parse")
	if f.err != nil {
		return false, f.err
	}
	var text []byte
	if rest == 0 {
		text = []byte(f.cstring("Parse"))
		count := f.int16("Parse")
		f.take(4*int(count), "Parse")
		if err := f.end("Parse"); err != nil {
			return false, err
		}
	} else {
		// Only the start of the query is here; the server checks the rest.
		text = f.b
		if bytes.IndexByte(text, 0) >= 0 {
			return false, protocolError("malformed Parse")
		}
	}
	a := s.action(text, rest > 0)
	e, allowed := s.decide(ctx, 'P', a, n)
	s.queue.push(e)
	if !allowed {
		s.uw.Write(newMsg('P').str(name).str(poisonSQL).int16(0).done())
		return true, s.ar.skip(rest)
	}
	writeHeader(s.uw, 'P', n)
	s.uw.Write(head)
	return false, s.ar.copyBody(s.uw, rest)
}

// functionCall refuses a fast-path FunctionCall: it names a function by
// OID only, so no policy could judge it. (libpq's large-object calls use it.)
func (s *session) functionCall(n int) error {
	oid := uint32(0)
	if n >= 4 {
		b, err := s.ar.body('F', 4, 4)
		if err != nil {
			return err
		}
		oid = binary.BigEndian.Uint32(b)
		n -= 4
	}
	if err := s.ar.skip(n); err != nil {
		return err
	}
	a := s.action(fmt.Appendf(nil, "-- fast-path function call, function oid %d", oid), false)
	d := action.Denied("function-call", "fast-path function calls name a function by number only and are not allowed")
	s.opts.Gate.Finish(a, d, action.Outcome{})
	// A FunctionCall is answered like a simple query: an error, then
	// ReadyForQuery. The poison Query gets the same answer.
	s.queue.push(&entry{kind: 'Q', deny: denyResponse(d)})
	s.uw.Write(newMsg('Q').str(poisonSQL).done())
	return nil
}

// action builds the policy input of one query; truncated says text is only
// the start of it.
func (s *session) action(text []byte, truncated bool) *action.Action {
	if len(text) > s.opts.TextLimit {
		text, truncated = text[:s.opts.TextLimit], true
	}
	str := string(text)
	q := sqlfacts.Postgres(str)
	if !q.Unparseable && s.ambiguous(str) {
		q = &action.SQL{Dialect: q.Dialect, Statement: str, Unparseable: true}
	}
	q.Database, q.User, q.Truncated = s.database, s.user, truncated
	a := &action.Action{Protocol: action.ProtoSQL, Destination: s.dest, SQL: q}
	if ep := s.t.Endpoint; ep != nil {
		a.Endpoint, a.Credential = ep.Name, ep.Credential
	}
	return a
}

// ambiguous reports text the server might read differently than the
// parser here, which assumes standard_conforming_strings on and a client
// encoding where every byte below 0x80 is ASCII: a backslash inside a plain
// string, or a non-ASCII byte, while the server says otherwise or while an
// earlier statement that might change those settings is still running.
func (s *session) ambiguous(text string) bool {
	escapes := sqlfacts.PostgresEscapes(text)
	high := false
	for i := range len(text) {
		if text[i] >= 0x80 {
			high = true
			break
		}
	}
	if !escapes && !high {
		return false
	}
	if s.queue.executing() > 0 {
		return true
	}
	return escapes && s.scsOff.Load() || high && s.unsafeEncoding.Load()
}

// decide asks the gate about a, the query of an agent message of type typ
// and n bytes, and returns the queue entry for it. The gate may wait for an
// approver: the statement is held meanwhile. A denied query is finished
// here and its entry carries the error the agent gets. A query without
// statements (only whitespace or comments) runs nothing and is no action.
func (s *session) decide(ctx context.Context, typ byte, a *action.Action, n int) (*entry, bool) {
	q := a.SQL
	if !q.Unparseable && !q.Truncated && len(q.Statements) == 0 {
		return &entry{kind: typ}, true
	}
	// What went before runs while we wait.
	d := action.Denied("upstream-closed", "the database connection closed")
	if err := s.uw.Flush(); err == nil {
		d = s.opts.Gate.Decide(ctx, a)
	}
	s.log.Debug("postgres decision", zap.Strings("verbs", q.Verbs), zap.String("verdict", string(d.Verdict)), zap.String("rule", d.Rule))
	if !d.Allowed() {
		s.opts.Gate.Finish(a, d, action.Outcome{})
		return &entry{kind: typ, deny: denyResponse(d)}, false
	}
	return &entry{kind: typ, act: a, dec: d, start: time.Now(), up: int64(n) + 5}, true
}
