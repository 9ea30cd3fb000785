package mysql

import (
	"encoding/binary"

	"go.uber.org/zap"
)

// result is what the server answered to one command.
type result struct {
	up, down int64  // payload bytes to the server and to the agent
	err      string // the server's error, when it refused
	ok       bool   // the answer ended in OK
}

// serverPacket starts reading the server's next packet and returns its
// length and first byte.
func (s *session) serverPacket() (int, byte, error) {
	n, err := s.ur.begin(false)
	if err != nil {
		return 0, 0, unexpectedEOF(err)
	}
	if n == 0 {
		return 0, 0, protocolError("empty packet from the server")
	}
	b, err := s.ur.peek(1)
	if err != nil {
		return 0, 0, err
	}
	return n, b[0], nil
}

// pass relays the packet being read to the agent without holding it.
func (s *session) pass(res *result) error {
	n, err := s.aw.forward(s.ur, nil)
	res.down += n
	return err
}

// end relays an OK, EOF or ERR packet that ends a result, records the
// status it carries, and reports whether more results follow.
func (s *session) end(res *result) (bool, error) {
	p, err := s.ur.payload(maxSmall)
	if err != nil {
		return false, err
	}
	s.aw.write(p)
	res.down += int64(len(p))
	switch p[0] {
	case 0xff:
		res.err = errMessage(p)
		return false, nil
	case 0xfe:
		s.status = eofStatus(p)
	default:
		res.ok = true
		if st, ok := okStatus(p); ok {
			s.status = st
		}
	}
	return s.status&statusMoreResults != 0, nil
}

// eof reports whether a packet of length n starting with first ends rows
// or column definitions: an EOF packet (no row is shorter than 9 bytes and
// starts with 0xfe).
func eof(n int, first byte) bool { return first == 0xfe && n < 9 }

// relayResults relays the answer to COM_QUERY or COM_STMT_EXECUTE: one or
// more results, each OK, ERR or a result set. The server's request for a
// local file (LOAD DATA LOCAL INFILE) never reaches the agent: the server
// was never told the client would send one, and gets an empty file.
func (s *session) relayResults() (result, error) {
	var res result
	for {
		n, first, err := s.serverPacket()
		if err != nil {
			return res, err
		}
		more := false
		switch {
		case first == 0x00 || first == 0xff || eof(n, first):
			more, err = s.end(&res)
		case first == 0xfb:
			name, err := s.ur.payload(maxSmall)
			if err != nil {
				return res, err
			}
			s.log.Info("mysql server asked for a local file; sent it an empty one", zap.ByteString("file", name[1:]))
			s.uw.seq = s.ur.seq + 1
			s.uw.write(nil)
			if err := s.uw.flush(); err != nil {
				return res, err
			}
			more = true // its answer follows
		default:
			more, err = s.resultSet(&res)
		}
		if err != nil {
			return res, err
		}
		if !more {
			return res, s.aw.flush()
		}
		if err := s.aw.flush(); err != nil {
			return res, err
		}
	}
}

// resultSet relays a result set whose column count is being read: the
// column definitions, EOF, then the rows up to EOF or ERR. A statement
// executed with a cursor sends no rows now: they come with COM_STMT_FETCH.
func (s *session) resultSet(res *result) (bool, error) {
	p, err := s.ur.payload(maxSmall)
	if err != nil {
		return false, err
	}
	f := &fields{b: p}
	count := f.lenenc("column count")
	if f.err != nil || count == 0 {
		return false, protocolError("malformed column count")
	}
	s.aw.write(p)
	res.down += int64(len(p))
	if err := s.columns(res, count); err != nil {
		return false, err
	}
	if s.status&statusCursorExists != 0 {
		return false, nil
	}
	r, err := s.relayRows()
	res.down += r.down
	res.err, res.ok = r.err, false
	return s.status&statusMoreResults != 0 && r.err == "", err
}

// columns relays n column definitions and the EOF after them.
func (s *session) columns(res *result, n uint64) error {
	for range n {
		size, first, err := s.serverPacket()
		if err != nil {
			return err
		}
		if eof(size, first) || first == 0xff {
			return protocolError("result ended inside its column definitions")
		}
		if err := s.pass(res); err != nil {
			return err
		}
	}
	size, first, err := s.serverPacket()
	if err != nil {
		return err
	}
	if !eof(size, first) {
		return protocolError("no EOF after the column definitions")
	}
	_, err = s.end(res)
	return err
}

// relayRows relays packets up to an EOF or ERR: the rows of a result
// set, COM_STMT_FETCH's rows, COM_FIELD_LIST's definitions.
func (s *session) relayRows() (result, error) {
	var res result
	for {
		n, first, err := s.serverPacket()
		if err != nil {
			return res, err
		}
		if eof(n, first) || first == 0xff {
			_, err := s.end(&res)
			if err == nil {
				err = s.aw.flush()
			}
			return res, err
		}
		if err := s.pass(&res); err != nil {
			return res, err
		}
	}
}

// relayOne relays an answer of one packet (OK, ERR, EOF, or the text of
// COM_STATISTICS).
func (s *session) relayOne() (result, error) {
	var res result
	n, first, err := s.serverPacket()
	if err != nil {
		return res, err
	}
	if first == 0x00 || first == 0xff || eof(n, first) {
		_, err = s.end(&res)
	} else {
		err = s.pass(&res)
	}
	if err == nil {
		err = s.aw.flush()
	}
	return res, err
}

// relayPrepare relays the answer to COM_STMT_PREPARE: ERR, or PREPARE_OK
// with the parameter and column definitions, and records the statement's
// id as one the agent may use.
func (s *session) relayPrepare() (result, error) {
	var res result
	_, first, err := s.serverPacket()
	if err != nil {
		return res, err
	}
	if first == 0xff {
		_, err := s.end(&res)
		if err == nil {
			err = s.aw.flush()
		}
		return res, err
	}
	p, err := s.ur.payload(maxSmall)
	if err != nil {
		return res, err
	}
	if first != 0x00 || len(p) < 9 {
		return res, protocolError("malformed PREPARE_OK")
	}
	id := binary.LittleEndian.Uint32(p[1:])
	columns := uint64(binary.LittleEndian.Uint16(p[5:]))
	params := uint64(binary.LittleEndian.Uint16(p[7:]))
	s.aw.write(p)
	res.down += int64(len(p))
	for _, n := range []uint64{params, columns} {
		if n == 0 {
			continue
		}
		if err := s.columns(&res, n); err != nil {
			return res, err
		}
	}
	s.stmts[id] = true
	res.ok = true
	return res, s.aw.flush()
}
