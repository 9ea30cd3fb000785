package mysql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/sqlfacts"
)

// Commands.
const (
	comQuit             = 0x01
	comInitDB           = 0x02
	comQuery            = 0x03
	comFieldList        = 0x04
	comStatistics       = 0x09
	comPing             = 0x0e
	comChangeUser       = 0x11
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtReset        = 0x1a
	comSetOption        = 0x1b
	comStmtFetch        = 0x1c
	comResetConnection  = 0x1f
)

// command handles one command of the agent and the server's answer.
// Commands go one at a time: the protocol has the client wait for each
// answer.
func (s *session) command(ctx context.Context) error {
	n, err := s.ar.begin(true)
	if err != nil {
		return err
	}
	if n == 0 {
		return protocolError("empty command packet")
	}
	head, err := s.ar.peek(1)
	if err != nil {
		return err
	}
	s.uw.seq = 0
	switch cmd := head[0]; cmd {
	case comQuit:
		s.uw.write([]byte{comQuit})
		s.uw.flush()
		return io.EOF
	case comQuery, comStmtPrepare:
		return s.query(ctx, cmd)
	case comInitDB:
		return s.initDB(ctx)
	case comFieldList:
		return s.fieldList(ctx)
	case comPing, comStatistics, comSetOption:
		if _, err := s.send(nil); err != nil {
			return err
		}
		_, err := s.relayOne()
		return err
	case comStmtExecute, comStmtFetch, comStmtReset, comStmtClose, comStmtSendLongData:
		return s.statement(cmd)
	case comResetConnection:
		if _, err := s.send(nil); err != nil {
			return err
		}
		res, err := s.relayOne()
		if res.ok {
			clear(s.stmts) // the server forgot them too
		}
		return err
	case comChangeUser:
		// Another user would need another login: the connection ends.
		s.ar.discard()
		s.reply(errPacket(erUnknownCommand, "08S01", "clawpatrol: COM_CHANGE_USER is not relayed; open a new connection"))
		return io.EOF
	default:
		if err := s.ar.discard(); err != nil {
			return err
		}
		return s.reply(errPacket(erUnknownCommand, "08S01", fmt.Sprintf("clawpatrol: command 0x%02x is not relayed", cmd)))
	}
}

// reply answers the current command with one packet of clawpatrol's own.
func (s *session) reply(p []byte) error {
	s.aw.seq = s.ar.seq + 1
	s.aw.write(p)
	return s.aw.flush()
}

// query handles COM_QUERY and COM_STMT_PREPARE: the statements are the
// action. The policy sees the first TextLimit bytes; the rest streams
// through after an allow. A prepared statement is decided here, once: its
// executions are not actions.
func (s *session) query(ctx context.Context, cmd byte) error {
	start := time.Now()
	limit := s.opts.TextLimit
	head, err := io.ReadAll(io.LimitReader(s.ar, int64(limit)+2))
	if err != nil {
		return unexpectedEOF(err)
	}
	text := head[1:]
	truncated := len(text) > limit
	if truncated {
		text = text[:limit]
	}
	q := sqlfacts.MySQL(string(text), sqlfacts.MySQLMode{NoBackslashEscapes: s.status&statusNoBackslashEscapes != 0})
	q.Database, q.User, q.Truncated = s.database, s.user, truncated
	if !q.Unparseable && !truncated && len(q.Statements) == 0 {
		// Only whitespace or comments: it runs nothing and is no action.
		_, err := s.forward(cmd, head)
		return err
	}
	a := s.newAction(q)
	d := s.opts.Gate.Decide(ctx, a)
	s.log.Debug("mysql decision", zap.Strings("verbs", q.Verbs), zap.String("verdict", string(d.Verdict)), zap.String("rule", d.Rule))
	if !d.Allowed() {
		err := s.ar.discard()
		s.opts.Gate.Finish(a, d, action.Outcome{Duration: time.Since(start)})
		if err != nil {
			return err
		}
		return s.reply(denyPacket(d))
	}
	res, err := s.forward(cmd, head)
	out := action.Outcome{BytesUp: res.up, BytesDown: res.down, Duration: time.Since(start), Error: res.err}
	if err != nil && out.Error == "" {
		out.Error = err.Error()
	}
	if ip := s.dest.IP; ip != "" {
		a.Destination.IP = ip
	}
	s.opts.Gate.Finish(a, d, out)
	if err == nil && cmd == comQuery && slices.Contains(q.Verbs, "use") {
		err = s.refreshDatabase()
	}
	return err
}

// send passes the command being read, whose first bytes are head, to
// the server. The answer to the agent is numbered on from the command.
func (s *session) send(head []byte) (int64, error) {
	up, err := s.uw.forward(s.ar, head)
	if err == nil {
		err = s.uw.flush()
	}
	s.aw.seq = s.ar.seq + 1
	return up, err
}

// forward sends the command being read, whose first bytes are head, and
// relays the server's answer.
func (s *session) forward(cmd byte, head []byte) (result, error) {
	up, err := s.send(head)
	if err != nil {
		return result{up: up}, err
	}
	var res result
	if cmd == comStmtPrepare {
		res, err = s.relayPrepare()
	} else {
		res, err = s.relayResults()
	}
	res.up = up
	return res, err
}

// decided is an action the gate decided, not finished yet.
type decided struct {
	a     *action.Action
	d     action.Decision
	start time.Time
}

// decideUse decides a change of the current database to db.
func (s *session) decideUse(ctx context.Context, db string) *decided {
	text := "USE " + quoteName(db)
	q := &action.SQL{Dialect: sqlfacts.DialectMySQL, Database: db, User: s.user, Statement: text,
		Statements: []action.Statement{{Verb: "use", Text: text}}, Verbs: []string{"use"}}
	u := &decided{a: s.newAction(q), start: time.Now()}
	u.d = s.opts.Gate.Decide(ctx, u.a)
	return u
}

func quoteName(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// initDB handles COM_INIT_DB: the database changes, an action like USE.
func (s *session) initDB(ctx context.Context) error {
	p, err := s.ar.payload(maxSmall)
	if err != nil {
		return err
	}
	db := string(p[1:])
	u := s.decideUse(ctx, db)
	if !u.d.Allowed() {
		s.opts.Gate.Finish(u.a, u.d, action.Outcome{})
		return s.reply(denyPacket(u.d))
	}
	_, err = s.send(p)
	var res result
	if err == nil {
		res, err = s.relayOne()
	}
	if res.ok {
		s.database = db
	}
	out := action.Outcome{BytesUp: int64(len(p)), BytesDown: res.down, Duration: time.Since(u.start), Error: res.err}
	if err != nil && out.Error == "" {
		out.Error = err.Error()
	}
	s.opts.Gate.Finish(u.a, u.d, out)
	return err
}

// fieldList handles COM_FIELD_LIST, which lists a table's columns: an
// action like SHOW COLUMNS.
func (s *session) fieldList(ctx context.Context) error {
	start := time.Now()
	p, err := s.ar.payload(maxSmall)
	if err != nil {
		return err
	}
	f := &fields{b: p[1:]}
	table := string(f.cstring("table"))
	if f.err != nil {
		return f.err
	}
	q := sqlfacts.MySQL("SHOW COLUMNS FROM "+quoteName(table), sqlfacts.MySQLMode{})
	q.Database, q.User = s.database, s.user
	a := s.newAction(q)
	d := s.opts.Gate.Decide(ctx, a)
	if !d.Allowed() {
		s.opts.Gate.Finish(a, d, action.Outcome{Duration: time.Since(start)})
		return s.reply(denyPacket(d))
	}
	_, err = s.send(p)
	var res result
	if err == nil {
		res, err = s.relayRows()
	}
	out := action.Outcome{BytesUp: int64(len(p)), BytesDown: res.down, Duration: time.Since(start), Error: res.err}
	if err != nil && out.Error == "" {
		out.Error = err.Error()
	}
	s.opts.Gate.Finish(a, d, out)
	return err
}

// statement handles the commands on a prepared statement. Only statements
// prepared (and so allowed) on this connection may be used.
func (s *session) statement(cmd byte) error {
	head := make([]byte, 5)
	if _, err := io.ReadFull(s.ar, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return protocolError("statement command without a statement id")
		}
		return err
	}
	id := uint32(head[1]) | uint32(head[2])<<8 | uint32(head[3])<<16 | uint32(head[4])<<24
	if !s.stmts[id] {
		if err := s.ar.discard(); err != nil {
			return err
		}
		if cmd == comStmtClose || cmd == comStmtSendLongData {
			return nil // these have no answer
		}
		return s.reply(errPacket(erUnknownStmtHandler, "HY000",
			fmt.Sprintf("Unknown prepared statement handler (%d) given to clawpatrol", id)))
	}
	if _, err := s.send(head); err != nil {
		return err
	}
	switch cmd {
	case comStmtClose:
		delete(s.stmts, id)
		return nil
	case comStmtSendLongData:
		return nil
	case comStmtReset:
		_, err := s.relayOne()
		return err
	case comStmtFetch:
		_, err := s.relayRows()
		return err
	}
	_, err := s.relayResults()
	return err
}

// refreshDatabase asks the server which database is current after a query
// that ran USE (how many of its statements ran is the server's to say).
// The agent does not see this query.
func (s *session) refreshDatabase() error {
	s.uw.seq = 0
	s.uw.write(append([]byte{comQuery}, "SELECT DATABASE()"...))
	if err := s.uw.flush(); err != nil {
		return err
	}
	p, err := s.ur.next(false, maxSmall)
	if err != nil {
		return err
	}
	if len(p) > 0 && p[0] == 0xff {
		return nil
	}
	// One column, its definition, EOF, one row, EOF.
	for range 2 {
		if _, err := s.ur.next(false, maxSmall); err != nil {
			return err
		}
	}
	row, err := s.ur.next(false, maxSmall)
	if err != nil {
		return err
	}
	if len(row) > 0 && row[0] != 0xfb {
		f := &fields{b: row}
		db := f.lenencString("database")
		if f.err != nil {
			return f.err
		}
		s.database = string(db)
	} else {
		s.database = ""
	}
	eof, err := s.ur.next(false, maxSmall)
	if err == nil && len(eof) > 0 && eof[0] == 0xfe {
		s.status = eofStatus(eof)
	}
	return err
}
