package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame limits. Postgres itself refuses messages of 1 GiB or more and
// startup packets over 10000 bytes; messages that carry only a name or
// nothing (Sync, Flush, Close, Describe, ...) are small.
const (
	maxMessage      = 1<<30 - 1
	maxStartup      = 10000
	maxSmall        = 10000
	maxAuthMessage  = 64 << 10 // a SASL or password message
	maxServerSmall  = 1 << 20  // a backend message clawpatrol reads whole
	bufferSize      = 64 << 10
	protocolVersion = 3 << 16 // 3.0
)

// Special startup packet codes (in place of the protocol version).
const (
	codeCancel = 80877102
	codeSSL    = 80877103
	codeGSSENC = 80877104
)

// errProtocol is a frame that breaks the protocol: the connection ends.
var errProtocol = errors.New("protocol violation")

func protocolError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, a...))
}

// reader reads typed messages: one type byte, then a big-endian int32
// length that counts itself.
type reader struct {
	r   *bufio.Reader
	hdr [5]byte
}

func newReader(r io.Reader) *reader { return &reader{r: bufio.NewReaderSize(r, bufferSize)} }

// header reads the next message's type and body length.
func (r *reader) header() (byte, int, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, 0, err
	}
	n := int64(binary.BigEndian.Uint32(r.hdr[1:]))
	if n < 4 || n > maxMessage {
		return 0, 0, protocolError("message %q has length %d", r.hdr[0], n)
	}
	return r.hdr[0], int(n - 4), nil
}

// body reads a body of n bytes, refusing one over limit.
func (r *reader) body(typ byte, n, limit int) ([]byte, error) {
	if n > limit {
		return nil, protocolError("message %q of %d bytes is over the limit of %d", typ, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, unexpectedEOF(err)
	}
	return b, nil
}

// message reads one whole message of at most limit bytes.
func (r *reader) message(limit int) (byte, []byte, error) {
	typ, n, err := r.header()
	if err != nil {
		return 0, nil, err
	}
	b, err := r.body(typ, n, limit)
	return typ, b, err
}

// copyBody forwards a body of n bytes without holding it.
func (r *reader) copyBody(w io.Writer, n int) error {
	if _, err := io.CopyN(w, r.r, int64(n)); err != nil {
		return unexpectedEOF(err)
	}
	return nil
}

// skip discards a body of n bytes.
func (r *reader) skip(n int) error {
	if _, err := r.r.Discard(n); err != nil {
		return unexpectedEOF(err)
	}
	return nil
}

// startup reads an untyped startup packet: length, then code and payload.
func (r *reader) startup() (uint32, []byte, error) {
	var h [8]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n < 8 || n > maxStartup {
		return 0, nil, protocolError("startup packet has length %d", n)
	}
	b := make([]byte, n-8)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	return binary.BigEndian.Uint32(h[4:]), b, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// msg builds one message.
type msg struct {
	b     []byte
	start int // where the length goes
}

// newMsg starts a typed message; typ 0 starts an untyped (startup) one.
func newMsg(typ byte) *msg {
	m := &msg{b: make([]byte, 0, 64)}
	if typ != 0 {
		m.b = append(m.b, typ)
		m.start = 1
	}
	m.b = append(m.b, 0, 0, 0, 0)
	return m
}

func (m *msg) int32(v uint32) *msg { m.b = binary.BigEndian.AppendUint32(m.b, v); return m }
func (m *msg) int16(v uint16) *msg { m.b = binary.BigEndian.AppendUint16(m.b, v); return m }
func (m *msg) bytes(v []byte) *msg { m.b = append(m.b, v...); return m }
func (m *msg) byte1(v byte) *msg   { m.b = append(m.b, v); return m }
func (m *msg) str(v string) *msg   { m.b = append(append(m.b, v...), 0); return m }

// done fills in the length and returns the wire bytes.
func (m *msg) done() []byte {
	binary.BigEndian.PutUint32(m.b[m.start:], uint32(len(m.b)-m.start))
	return m.b
}

// fields is a parser for message bodies.
type fields struct {
	b   []byte
	err error
}

func (f *fields) fail(what string) {
	if f.err == nil {
		f.err = protocolError("malformed %s", what)
	}
}

// cstring reads a NUL-terminated string.
func (f *fields) cstring(what string) string {
	i := bytes.IndexByte(f.b, 0)
	if i < 0 {
		f.fail(what)
		f.b = nil
		return ""
	}
	s := string(f.b[:i])
	f.b = f.b[i+1:]
	return s
}

func (f *fields) int32(what string) uint32 {
	if len(f.b) < 4 {
		f.fail(what)
		f.b = nil
		return 0
	}
	v := binary.BigEndian.Uint32(f.b)
	f.b = f.b[4:]
	return v
}

func (f *fields) int16(what string) uint16 {
	if len(f.b) < 2 {
		f.fail(what)
		f.b = nil
		return 0
	}
	v := binary.BigEndian.Uint16(f.b)
	f.b = f.b[2:]
	return v
}

func (f *fields) take(n int, what string) []byte {
	if n < 0 || len(f.b) < n {
		f.fail(what)
		f.b = nil
		return nil
	}
	v := f.b[:n]
	f.b = f.b[n:]
	return v
}

// end checks that the whole body was read.
func (f *fields) end(what string) error {
	if f.err == nil && len(f.b) != 0 {
		f.fail(what)
	}
	return f.err
}
