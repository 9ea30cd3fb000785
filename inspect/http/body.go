package http

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	nethttp "net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// bodyIdle is how long a body of unknown length (chunked, or HTTP/2
	// without content-length) may pause before the policy decides on what
	// arrived: a streaming client may wait for the response before it
	// sends more. What was seen is then marked truncated.
	bodyIdle = time.Second
	// grpcGrace is the wait for the end of a gRPC request once its first
	// message is complete: a unary call ends at once, a stream does not.
	grpcGrace = 20 * time.Millisecond
	// readChunk is the size of one read of a body of unknown length.
	readChunk = 32 << 10
)

// bodyFacts is what the policy learns about a request body.
type bodyFacts struct {
	text      []byte // at most the limit
	truncated bool   // the body is longer than text, or its end was not seen
	size      int64  // the length, or a lower bound when the end was not seen
}

// prefixed is a request body whose first bytes were read for the policy;
// it replays them, then any read still in flight, then the rest.
//
// The upstream transport may still read it after the response arrived,
// and closes it when done; the HTTP/1.1 loop then discards what is left
// to keep the connection. The mutex keeps those apart, and Close does not
// reach the agent's body: net/http's would read it to the end.
type prefixed struct {
	mu      sync.Mutex
	closed  bool
	rc      io.ReadCloser
	buf     []byte
	pending chan readResult // a read in flight into scratch, or nil
	scratch []byte
	err     error        // returned once buf is drained
	n       atomic.Int64 // bytes handed on
}

type readResult struct {
	n   int
	err error
}

var errBodyClosed = errors.New("request body closed")

func (p *prefixed) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errBodyClosed
	}
	n, err := p.read(b)
	p.n.Add(int64(n))
	return n, err
}

func (p *prefixed) read(b []byte) (int, error) {
	for {
		if len(p.buf) > 0 {
			n := copy(b, p.buf)
			p.buf = p.buf[n:]
			return n, nil
		}
		if p.pending != nil {
			r := <-p.pending
			p.pending = nil
			p.buf, p.err = p.scratch[:r.n], r.err
			continue
		}
		if p.err != nil {
			return 0, p.err
		}
		return p.rc.Read(b)
	}
}

// Close ends reads through p; the agent's body stays as it is.
func (p *prefixed) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

// discard reads and drops what is left of the body, at most max bytes; it
// reports whether the body ended within them.
func (p *prefixed) discard(max int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, err := io.CopyN(io.Discard, readerFunc(p.read), max+1)
	return err == io.EOF && n <= max
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// readPrefix reads the start of r's body, up to limit bytes, for the
// policy. The body to forward replays it. A nil body means none.
func readPrefix(ctx context.Context, r *nethttp.Request, limit int64) (*prefixed, bodyFacts, error) {
	if r.Body == nil || r.Body == nethttp.NoBody || r.ContentLength == 0 {
		return nil, bodyFacts{}, nil
	}
	if r.ContentLength > 0 {
		// The agent declared the length, so it sends the bytes without
		// waiting for anything but a 100 Continue.
		buf := make([]byte, min(r.ContentLength, limit))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, bodyFacts{}, err
		}
		f := bodyFacts{text: buf, truncated: r.ContentLength > limit, size: r.ContentLength}
		return &prefixed{rc: r.Body, buf: buf}, f, nil
	}

	p := &prefixed{rc: r.Body, scratch: make([]byte, readChunk)}
	buf := make([]byte, 0, min(limit+1, 64<<10))
	grpc := strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
	timer := time.NewTimer(bodyIdle)
	defer timer.Stop()
	ended := false
	for int64(len(buf)) <= limit && !ended {
		if p.pending == nil {
			ch := make(chan readResult, 1)
			want := p.scratch[:min(int64(readChunk), limit+1-int64(len(buf)))]
			go func() {
				n, err := p.rc.Read(want)
				ch <- readResult{n, err}
			}()
			p.pending = ch
		}
		select {
		case res := <-p.pending:
			p.pending = nil
			buf = append(buf, p.scratch[:res.n]...)
			if res.err == io.EOF {
				ended = true
				break
			}
			if res.err != nil {
				return nil, bodyFacts{}, res.err
			}
			wait := bodyIdle
			if grpc && grpcMessageDone(buf) {
				wait = grpcGrace
			}
			timer.Reset(wait)
		case <-timer.C:
			// The agent paused: decide on what arrived.
			p.buf = buf
			return p, bodyFacts{text: buf[:min(int64(len(buf)), limit)], truncated: true, size: int64(len(buf))}, nil
		case <-ctx.Done():
			return nil, bodyFacts{}, ctx.Err()
		}
	}
	p.buf = buf
	if ended {
		p.err = io.EOF
	}
	f := bodyFacts{text: buf[:min(int64(len(buf)), limit)], truncated: int64(len(buf)) > limit, size: int64(len(buf))}
	return p, f, nil
}

// grpcMessageDone reports whether b holds at least one whole
// length-prefixed gRPC message.
func grpcMessageDone(b []byte) bool {
	return len(b) >= 5 && uint64(len(b)) >= 5+uint64(binary.BigEndian.Uint32(b[1:5]))
}

// parseJSON returns the body as JSON, or nil when it is not (or was cut).
func parseJSON(f bodyFacts) any {
	if f.truncated || len(f.text) == 0 || !json.Valid(f.text) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(f.text))
	dec.UseNumber() // large integers stay exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return v
}
