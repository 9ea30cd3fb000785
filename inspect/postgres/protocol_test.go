package postgres

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawConn logs in through the proxy and returns the bare connection.
func rawConn(t *testing.T, p *proxy) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, p.url())
	if err != nil {
		t.Fatal(err)
	}
	h, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Conn.Close() })
	h.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	return h.Conn
}

// wantFatal reads the connection to its end and checks the last message
// was a FATAL ErrorResponse with code.
func wantFatal(t *testing.T, c net.Conn, code string) {
	t.Helper()
	fe := pgproto3.NewFrontend(bufio.NewReader(c), c)
	var last pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("reading: %v", err)
			}
			break
		}
		last = m
	}
	e, ok := last.(*pgproto3.ErrorResponse)
	if !ok || e.Severity != "FATAL" || e.Code != code {
		t.Fatalf("last message %#v, want FATAL %s", last, code)
	}
}

func TestBrokenFrames(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	for name, frame := range map[string][]byte{
		"oversized":                 {'Q', 0x7f, 0xff, 0xff, 0xff},
		"length below four":         {'Q', 0, 0, 0, 3},
		"query without its NUL":     append([]byte{'Q', 0, 0, 0, 12}, "SELECT 1"...),
		"query with a NUL inside":   append([]byte{'Q', 0, 0, 0, 15}, "SELECT 1\x00; x\x00"...),
		"unknown message type":      {'z', 0, 0, 0, 4},
		"password after startup":    append([]byte{'p', 0, 0, 0, 6}, 'x', 0),
		"big sync":                  append([]byte{'S', 0, 0, 0x40, 0}, make([]byte, 0x4000-4)...),
		"parse with a short header": append([]byte{'P', 0, 0, 0, 7}, 0, 'x', 0),
	} {
		t.Run(name, func(t *testing.T) {
			c := rawConn(t, p)
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			wantFatal(t, c, "08P01")
		})
	}
	// The server and the proxy are fine.
	out, err := p.psql(t, "", "-c", "SELECT 1")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
}
