package mysql

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// FuzzAgent sends whatever bytes after a valid login: the session answers
// or closes, and never panics or hangs.
func FuzzAgent(f *testing.F) {
	srv := startFake(f, nativePassword, false)
	p := startProxyTo(f, srv.addr(), allowAll(), Options{Login: offload(), UpstreamTLS: "disable", TextLimit: 64})
	packet := func(seq byte, payload ...byte) []byte {
		return append([]byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}, payload...)
	}
	f.Add(packet(0, append([]byte{comQuery}, "SELECT 1"...)...))
	f.Add(append(packet(0, comPing), packet(0, comInitDB, 'a', 'p', 'p')...))
	f.Add(packet(0, append([]byte{comStmtPrepare}, "SELECT ?"...)...))
	f.Add(packet(0, comStmtExecute, 1, 0, 0, 0, 0, 1, 0, 0, 0))
	f.Add(packet(0, comFieldList, 't', 0))
	f.Add(append(packet(0, append([]byte{comQuery}, bytes.Repeat([]byte{'x'}, 100)...)...), packet(0, comQuit)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0, comQuery, 'S'})
	f.Fuzz(func(t *testing.T, stream []byte) {
		c, r, _, last := rawClient(t, p.addr, nativePassword, func(n []byte) []byte { return scrambleNative(placeholder, n) })
		if last[0] != 0x00 {
			t.Fatalf("login: %q", last)
		}
		c.Write(stream)
		c.(*net.TCPConn).CloseWrite()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := r.next(false, 1<<24); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the session hung")
				}
				return
			}
		}
	})
}

// FuzzHandshake parses greetings and handshake responses.
func FuzzHandshake(f *testing.F) {
	g := greeting{version: "10.11.14-MariaDB", connID: 1, nonce: newNonce(), caps: passedCaps, plugin: nativePassword}
	f.Add(g.build())
	r := handshakeResponse{caps: passedCaps | capConnectWithDB | capPluginAuthLenenc, user: "u", auth: []byte("x"), db: "d", plugin: cachingSHA2}
	f.Add(r.build())
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := parseGreeting(b); err == nil && len(g.nonce) >= 8 {
			if _, err := parseGreeting(g.build()); err != nil {
				t.Errorf("a built greeting does not parse: %v", err)
			}
		}
		if r, err := parseHandshakeResponse(b); err == nil {
			if _, err := parseHandshakeResponse(r.build()); err != nil {
				t.Errorf("a built response does not parse: %v", err)
			}
		}
		okStatus(b)
		errMessage(b)
		f := &fields{b: b}
		f.lenencString("x")
	})
}
