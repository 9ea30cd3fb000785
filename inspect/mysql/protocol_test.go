package mysql

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

// fakeServer is a scripted MySQL server for what a real one will not do:
// caching_sha2_password logins (MariaDB has none) and asking for a local
// file the client never offered.
type fakeServer struct {
	t      testing.TB
	l      net.Listener
	plugin string // what the greeting asks for
	full   bool   // caching_sha2_password: make the client do full authentication
	key    *rsa.PrivateKey

	mu        sync.Mutex
	emptyFile bool // the client answered a local file request with an empty file
	logins    []string
	wg        sync.WaitGroup
}

func startFake(t testing.TB, plugin string, full bool) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	f := &fakeServer{t: t, l: l, plugin: plugin, full: full, key: key}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); f.wg.Wait() })
	return f
}

func (f *fakeServer) addr() string { return f.l.Addr().String() }

func (f *fakeServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r, w := newPacketReader(c, false), newPacketWriter(c)
	nonce := newNonce()
	g := greeting{version: "8.0.99-fake", connID: 7, nonce: nonce, plugin: f.plugin, charset: 45,
		caps: passedCaps | capSSL | capLocalFiles | capPluginAuthLenenc}
	w.write(g.build())
	w.flush()
	p, err := r.next(false, maxSmall)
	if err != nil {
		return
	}
	resp, err := parseHandshakeResponse(p)
	if err != nil || resp.caps&capLocalFiles != 0 {
		w.seq = r.seq + 1
		w.write(errPacket(1043, "08S01", "bad handshake"))
		w.flush()
		return
	}
	ok := false
	switch f.plugin {
	case nativePassword:
		ok = bytes.Equal(resp.auth, scrambleNative(dbPassword, nonce))
	case cachingSHA2:
		ok = f.cachingSHA2(r, w, resp, nonce)
	}
	w.seq = r.seq + 1
	if !ok {
		w.write(errPacket(1045, "28000", "Access denied for user '"+resp.user+"'"))
		w.flush()
		return
	}
	f.mu.Lock()
	f.logins = append(f.logins, resp.user)
	f.mu.Unlock()
	w.write(okPacket(0x0002))
	w.flush()
	for {
		p, err := r.next(true, 1<<26)
		if err != nil {
			return
		}
		w.seq = 1
		switch {
		case p[0] == comQuit:
			return
		case p[0] == comQuery && strings.HasPrefix(string(p[1:]), "LOAD DATA LOCAL"):
			w.write(append([]byte{0xfb}, "/etc/passwd"...))
			w.flush()
			file, err := r.next(false, 1<<20)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.emptyFile = len(file) == 0
			f.mu.Unlock()
			w.seq = r.seq + 1
			w.write(okPacket(0x0002))
		case p[0] == comFieldList:
			w.write([]byte{0xfe, 0, 0, 2, 0}) // no columns: EOF
		case p[0] == comStmtPrepare:
			w.write([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // statement 1, no columns, no parameters
		case p[0] == comStmtClose || p[0] == comStmtSendLongData:
			continue // no answer
		default:
			w.write(okPacket(0x0002))
		}
		w.flush()
	}
}

// cachingSHA2 checks a caching_sha2_password login: the fast answer, or
// the full one, the password encrypted with the server's RSA key.
func (f *fakeServer) cachingSHA2(r *packetReader, w *packetWriter, resp *handshakeResponse, nonce []byte) bool {
	if !f.full {
		if !bytes.Equal(resp.auth, scrambleSHA2(dbPassword, nonce)) {
			return false
		}
		w.seq = r.seq + 1
		w.write([]byte{0x01, 0x03})
		w.flush()
		return true
	}
	w.seq = r.seq + 1
	w.write([]byte{0x01, 0x04})
	w.flush()
	req, err := r.next(false, maxSmall)
	if err != nil || !bytes.Equal(req, []byte{0x02}) {
		return false
	}
	der, _ := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
	w.seq = r.seq + 1
	w.write(append([]byte{0x01}, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...))
	w.flush()
	enc, err := r.next(false, maxSmall)
	if err != nil {
		return false
	}
	plain, err := rsa.DecryptOAEP(sha1.New(), nil, f.key, enc, nil)
	if err != nil {
		return false
	}
	for i := range plain {
		plain[i] ^= nonce[i%len(nonce)]
	}
	return string(plain) == dbPassword+"\x00"
}

// allowAll is a gate that allows everything.
func allowAll() *inspecttest.Gate {
	return &inspecttest.Gate{Policy: func(*action.Action) action.Decision { return inspecttest.Allow("all") }}
}

func TestUpstreamCachingSHA2(t *testing.T) {
	for _, full := range []bool{false, true} {
		f := startFake(t, cachingSHA2, full)
		p := startProxyTo(t, f.addr(), allowAll(), Options{Login: offload(), UpstreamTLS: "disable"})
		db := open(t, p, "agent", placeholder, "")
		if err := db.Ping(); err != nil {
			t.Fatalf("full=%v: %v", full, err)
		}
		if f.logins[0] != dbUser {
			t.Errorf("logged in as %q", f.logins)
		}
	}
}

func TestServerAsksForLocalFile(t *testing.T) {
	f := startFake(t, nativePassword, false)
	p := startProxyTo(t, f.addr(), allowAll(), Options{Login: offload(), UpstreamTLS: "disable"})
	db := open(t, p, "agent", placeholder, "allowAllFiles=true")
	if _, err := db.Exec("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE t"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.emptyFile {
		t.Error("the server did not get an empty file")
	}
}

// rawClient logs in to the proxy by hand with plugin and answer; it
// returns the connection after the server's last login packet.
func rawClient(t *testing.T, addr, plugin string, answer func(nonce []byte) []byte) (net.Conn, *packetReader, *packetWriter, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r, w := newPacketReader(c, false), newPacketWriter(c)
	gp, err := r.next(false, maxSmall)
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGreeting(gp)
	if err != nil {
		t.Fatal(err)
	}
	if g.caps&capLocalFiles != 0 || g.caps&capSSL != 0 {
		t.Errorf("greeting offers %x", g.caps)
	}
	resp := handshakeResponse{caps: neededCaps | capMultiStatements | capMultiResults, maxPacket: 1 << 24, charset: 45,
		user: "agent", auth: answer(g.nonce), plugin: plugin}
	w.seq = 1
	w.write(resp.build())
	w.flush()
	var last []byte
	for {
		p, err := r.next(false, maxSmall)
		if err != nil {
			t.Fatal(err)
		}
		w.seq = r.seq + 1
		last = p
		if p[0] == 0xfe && len(p) > 1 { // auth switch
			f := &fields{b: p[1:]}
			if name := string(f.cstring("plugin")); name != nativePassword {
				t.Fatalf("switch to %q", name)
			}
			w.write(scrambleNative(placeholder, bytes.TrimRight(f.rest(), "\x00")))
			w.flush()
			continue
		}
		if p[0] == 0x01 {
			continue
		}
		break
	}
	return c, r, w, last
}

func TestAgentPlugins(t *testing.T) {
	f := startFake(t, nativePassword, false)
	p := startProxyTo(t, f.addr(), allowAll(), Options{Login: offload(), UpstreamTLS: "disable"})
	cases := map[string]func([]byte) []byte{
		cachingSHA2:      func(n []byte) []byte { return scrambleSHA2(placeholder, n) },
		nativePassword:   func(n []byte) []byte { return scrambleNative(placeholder, n) },
		"client_ed25519": func(n []byte) []byte { return make([]byte, 64) }, // switched to native
	}
	for plugin, answer := range cases {
		_, _, _, last := rawClient(t, p.addr, plugin, answer)
		if last[0] != 0x00 {
			t.Errorf("%s: %s", plugin, errMessage(last))
		}
	}
	_, _, _, last := rawClient(t, p.addr, cachingSHA2, func(n []byte) []byte { return scrambleSHA2("wrong", n) })
	if last[0] != 0xff || !strings.Contains(errMessage(last), "1045") {
		t.Errorf("wrong password: %x", last)
	}
}

// command sends one command payload and returns the first packet of the
// answer.
func command(t *testing.T, r *packetReader, w *packetWriter, p []byte) ([]byte, error) {
	t.Helper()
	w.seq = 0
	w.write(p)
	w.flush()
	return r.next(false, 1<<26)
}

func TestBadPackets(t *testing.T) {
	f := startFake(t, nativePassword, false)
	p := startProxyTo(t, f.addr(), allowAll(), Options{Login: offload(), UpstreamTLS: "disable"})
	native := func(n []byte) []byte { return scrambleNative(placeholder, n) }

	t.Run("unknown statement id", func(t *testing.T) {
		_, r, w, _ := rawClient(t, p.addr, nativePassword, native)
		exec := append([]byte{comStmtExecute}, binary.LittleEndian.AppendUint32(nil, 99)...)
		exec = append(exec, 0, 1, 0, 0, 0)
		a, err := command(t, r, w, exec)
		if err != nil || a[0] != 0xff || !strings.Contains(errMessage(a), "1243") {
			t.Fatalf("%v %q", err, a)
		}
		if a, err := command(t, r, w, []byte{comPing}); err != nil || a[0] != 0x00 {
			t.Fatalf("ping after: %v %q", err, a)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		_, r, w, _ := rawClient(t, p.addr, nativePassword, native)
		if a, err := command(t, r, w, []byte{0x12, 1, 2, 3}); err != nil || a[0] != 0xff || !strings.Contains(errMessage(a), "1047") {
			t.Fatalf("%v %q", err, a)
		}
		if a, err := command(t, r, w, []byte{comPing}); err != nil || a[0] != 0x00 {
			t.Fatalf("ping after: %v %q", err, a)
		}
	})
	for name, raw := range map[string][]byte{
		"wrong sequence id":        {1, 0, 0, 5, comPing},
		"empty command":            {0, 0, 0, 0},
		"statement without an id":  {2, 0, 0, 0, comStmtExecute, 1},
		"init db over the limit":   append([]byte{0xff, 0xff, 0xff, 0, comInitDB}, make([]byte, 100)...),
		"a packet cut off":         {100, 0, 0, 0, comQuery, 'S'},
		"handshake-sized garbage":  bytes.Repeat([]byte{0xff}, 64),
		"field list without a NUL": {3, 0, 0, 0, comFieldList, 't', 'x'},
	} {
		t.Run(name, func(t *testing.T) {
			c, r, _, _ := rawClient(t, p.addr, nativePassword, native)
			c.Write(raw)
			if tc, ok := c.(*net.TCPConn); ok && name == "a packet cut off" {
				tc.CloseWrite()
			}
			var got []byte
			for {
				p, err := r.next(false, 1<<20)
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("%v (want the connection closed)", err)
					}
					break
				}
				got = p
			}
			if name != "a packet cut off" && (len(got) == 0 || got[0] != 0xff) {
				t.Errorf("no ERR before the close: %q", got)
			}
		})
	}
}

// TestLargePayloads sends a query and gets a row of more than 16 MiB, so
// both go in several packets.
func TestLargePayloads(t *testing.T) {
	p := startProxy(t, allowAll(), Options{Login: offload(), TextLimit: 1 << 10})
	db := open(t, p, "agent", placeholder, "maxAllowedPacket=0")
	big := strings.Repeat("x", 17<<20)
	var n int
	if err := db.QueryRow("SELECT LENGTH('" + big + "')").Scan(&n); err != nil || n != len(big) {
		t.Fatalf("%v %d", err, n)
	}
	var s string
	if err := db.QueryRow("SELECT REPEAT('y', 17 << 20)").Scan(&s); err != nil || len(s) != 17<<20 {
		t.Fatalf("%v %d", err, len(s))
	}
	f, ok := last(p.gate, "SELECT LENGTH('"+big[:(1<<10)-len("SELECT LENGTH('")])
	if !ok || !f.A.SQL.Truncated || f.O.BytesUp != int64(len(big)+len("SELECT LENGTH('')")+1) {
		t.Errorf("facts of the long query: %+v, %+v", ok, f.O)
	}
}
