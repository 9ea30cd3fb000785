package mysql

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MySQL packets: a 3-byte little-endian length, a sequence id, then the
// payload. A payload of 16 MiB - 1 bytes or more goes in packets of exactly
// that size followed by one shorter packet (maybe empty), so a payload's
// framing follows from its length alone, and a relayed payload keeps its
// packet sizes.
const (
	maxPacket  = 1<<24 - 1
	bufferSize = 64 << 10
	// maxSmall bounds what clawpatrol reads whole: handshakes, auth
	// exchanges, OK, ERR and EOF packets, the head of a result.
	maxSmall = 1 << 20
)

// errProtocol is a packet that breaks the protocol: the connection ends.
var errProtocol = errors.New("protocol violation")

func protocolError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, a...))
}

// packetReader reads payloads from one side, a packet at a time, so that
// a payload can be inspected by its first bytes and relayed without being
// held whole.
type packetReader struct {
	br     *bufio.Reader
	strict bool // check sequence ids (the agent's side)
	seq    byte // the sequence id of the last packet read
	left   int  // bytes of the current packet not read yet
	full   bool // the current packet is full: another one continues the payload
	sizes  []int
	hdr    [4]byte
}

func newPacketReader(r io.Reader, strict bool) *packetReader {
	return &packetReader{br: bufio.NewReaderSize(r, bufferSize), strict: strict}
}

// begin reads the header of a new payload. first says it starts a
// command, whose sequence id is 0; otherwise it follows the last packet.
func (r *packetReader) begin(first bool) (int, error) {
	want := r.seq + 1
	if first {
		want = 0
	}
	r.sizes = r.sizes[:0]
	n, err := r.header(want)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (r *packetReader) header(want byte) (int, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if len(r.sizes) > 0 {
			return 0, unexpectedEOF(err)
		}
		return 0, err
	}
	n := int(r.hdr[0]) | int(r.hdr[1])<<8 | int(r.hdr[2])<<16
	if r.strict && r.hdr[3] != want {
		return 0, protocolError("packet with sequence id %d, want %d", r.hdr[3], want)
	}
	r.seq = r.hdr[3]
	r.left, r.full = n, n == maxPacket
	r.sizes = append(r.sizes, n)
	return n, nil
}

// Read reads payload bytes, across the packets that continue it; io.EOF
// is its end.
func (r *packetReader) Read(b []byte) (int, error) {
	for r.left == 0 {
		if !r.full {
			return 0, io.EOF
		}
		if _, err := r.header(r.seq + 1); err != nil {
			return 0, err
		}
	}
	n, err := r.br.Read(b[:min(len(b), r.left)])
	r.left -= n
	if err != nil {
		return n, unexpectedEOF(err)
	}
	return n, nil
}

// peek returns up to n unread bytes of the current packet without
// reading them.
func (r *packetReader) peek(n int) ([]byte, error) {
	b, err := r.br.Peek(min(n, r.left))
	return b, unexpectedEOF(err)
}

// payload reads the rest of the payload, refusing one longer than limit
// (the rest is then left unread: the connection cannot go on).
func (r *packetReader) payload(limit int) ([]byte, error) {
	var b []byte
	if !r.full {
		b = make([]byte, 0, r.left)
	}
	for {
		if len(b)+r.left > limit {
			return nil, protocolError("packet of more than %d bytes", limit)
		}
		start := len(b)
		b = append(b, make([]byte, r.left)...)
		if _, err := io.ReadFull(r.br, b[start:]); err != nil {
			return nil, unexpectedEOF(err)
		}
		r.left = 0
		if !r.full {
			return b, nil
		}
		if _, err := r.header(r.seq + 1); err != nil {
			return nil, err
		}
	}
}

// next reads one whole payload of at most limit bytes.
func (r *packetReader) next(first bool, limit int) ([]byte, error) {
	if _, err := r.begin(first); err != nil {
		return nil, err
	}
	return r.payload(limit)
}

// discard reads and drops the rest of the payload.
func (r *packetReader) discard() error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// packetWriter writes payloads to one side with its own sequence ids:
// relayed packets are numbered for the side they go to.
type packetWriter struct {
	bw  *bufio.Writer
	seq byte // the sequence id of the next packet
}

func newPacketWriter(w io.Writer) *packetWriter {
	return &packetWriter{bw: bufio.NewWriterSize(w, bufferSize)}
}

func (w *packetWriter) header(n int) {
	w.bw.Write([]byte{byte(n), byte(n >> 8), byte(n >> 16), w.seq})
	w.seq++
}

// write frames one payload.
func (w *packetWriter) write(p []byte) {
	for {
		n := min(len(p), maxPacket)
		w.header(n)
		w.bw.Write(p[:n])
		p = p[n:]
		if n < maxPacket {
			return
		}
	}
}

func (w *packetWriter) flush() error { return w.bw.Flush() }

// forward relays the payload r is reading: prefix is what was read of it
// already, the rest streams from the wire. It returns the payload's
// length.
func (w *packetWriter) forward(r *packetReader, prefix []byte) (int64, error) {
	var total int64
	off := 0
	for i, size := range r.sizes {
		w.header(size)
		total += int64(size)
		if i < len(r.sizes)-1 {
			w.bw.Write(prefix[off : off+size])
			off += size
			continue
		}
		w.bw.Write(prefix[off:])
		if _, err := io.CopyN(w.bw, r.br, int64(r.left)); err != nil {
			return total, unexpectedEOF(err)
		}
		r.left = 0
	}
	for r.full {
		n, err := r.header(r.seq + 1)
		if err != nil {
			return total, err
		}
		w.header(n)
		total += int64(n)
		if _, err := io.CopyN(w.bw, r.br, int64(n)); err != nil {
			return total, unexpectedEOF(err)
		}
		r.left = 0
	}
	return total, nil
}

// Length-encoded integers and strings, and the other field types.

func appendLenenc(b []byte, v uint64) []byte {
	switch {
	case v < 251:
		return append(b, byte(v))
	case v < 1<<16:
		return append(b, 0xfc, byte(v), byte(v>>8))
	case v < 1<<24:
		return append(b, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	default:
		return binary.LittleEndian.AppendUint64(append(b, 0xfe), v)
	}
}

func appendLenencString(b []byte, s []byte) []byte {
	return append(appendLenenc(b, uint64(len(s))), s...)
}

// fields parses a payload.
type fields struct {
	b   []byte
	err error
}

func (f *fields) fail(what string) {
	if f.err == nil {
		f.err = protocolError("malformed %s", what)
	}
	f.b = nil
}

func (f *fields) take(n int, what string) []byte {
	if n < 0 || len(f.b) < n {
		f.fail(what)
		return nil
	}
	v := f.b[:n]
	f.b = f.b[n:]
	return v
}

func (f *fields) byte1(what string) byte {
	if b := f.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (f *fields) uint16(what string) uint16 {
	if b := f.take(2, what); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (f *fields) uint32(what string) uint32 {
	if b := f.take(4, what); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// cstring reads a NUL-terminated string.
func (f *fields) cstring(what string) []byte {
	for i, c := range f.b {
		if c == 0 {
			s := f.b[:i]
			f.b = f.b[i+1:]
			return s
		}
	}
	f.fail(what)
	return nil
}

func (f *fields) lenenc(what string) uint64 {
	switch c := f.byte1(what); {
	case f.err != nil:
		return 0
	case c < 0xfb:
		return uint64(c)
	case c == 0xfc:
		return uint64(f.uint16(what))
	case c == 0xfd:
		b := f.take(3, what)
		if b == nil {
			return 0
		}
		return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16
	case c == 0xfe:
		if b := f.take(8, what); b != nil {
			return binary.LittleEndian.Uint64(b)
		}
		return 0
	default:
		f.fail(what)
		return 0
	}
}

func (f *fields) lenencString(what string) []byte {
	n := f.lenenc(what)
	if n > uint64(len(f.b)) {
		f.fail(what)
		return nil
	}
	return f.take(int(n), what)
}

// rest returns what is left.
func (f *fields) rest() []byte {
	b := f.b
	f.b = nil
	return b
}
