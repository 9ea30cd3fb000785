package clickhouse

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

// FuzzRequest sends whatever bytes as requests, with a gate that denies
// everything: every request is answered or the connection closed, every
// decided action finished once, and nothing panics or hangs.
func FuzzRequest(f *testing.F) {
	f.Add([]byte("GET /?query=SELECT%201 HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nAuthorization: Basic YTpi\r\n\r\nINSERT INTO t FORMAT TSV\n1\t2\n"))
	f.Add([]byte("POST /?query=INSERT%20INTO%20t%20FORMAT&user=a&password=b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n TSV\r\n0\r\n\r\n"))
	f.Add([]byte("GET /ping HTTP/1.1\r\nHost: x\r\nX-ClickHouse-User: a\r\nX-ClickHouse-Key: b\r\n\r\nGET /?query=1&query=2 HTTP/1.1\r\nHost: x\r\n\r\n"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		gate := &inspecttest.Gate{Policy: func(*action.Action) action.Decision { return action.Denied("no", "nothing is allowed") }}
		conn, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		agent := conn.(*net.TCPConn)
		side, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		target := upstream.Target{Host: "ch.example.com", IP: netip.MustParseAddr("198.18.0.5"), Port: 8123,
			Endpoint: &config.Endpoint{Name: "analytics", Upstream: "127.0.0.1:9", Credential: "analytics"}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			Handle(ctx, side, target, Options{Gate: gate, Login: login(), TextLimit: 64})
		}()
		go func() {
			agent.Write(b)
			agent.CloseWrite()
		}()
		agent.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, agent); err != nil {
			t.Fatalf("the connection hung: %v", err)
		}
		agent.Close()
		<-done
		gate.Balanced(t)
	})
}
