// Package inspecttest is test support shared by the protocol inspectors'
// tests: a gate that decides with a function and records every call, and
// what starting a real server in a temp dir takes (a free port, a test CA
// and certificate, a user to run it as when the tests run as root).
package inspecttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// Gate decides with Policy and records every call.
type Gate struct {
	Policy func(*action.Action) action.Decision

	mu       sync.Mutex
	decided  []*action.Action
	finished []Finished
}

// Finished is one Finish call.
type Finished struct {
	A *action.Action
	D action.Decision
	O action.Outcome
}

// Decide implements action.Gate.
func (g *Gate) Decide(ctx context.Context, a *action.Action) action.Decision {
	g.mu.Lock()
	g.decided = append(g.decided, a)
	g.mu.Unlock()
	return g.Policy(a)
}

// Finish implements action.Gate.
func (g *Gate) Finish(a *action.Action, d action.Decision, o action.Outcome) {
	g.mu.Lock()
	g.finished = append(g.finished, Finished{a, d, o})
	g.mu.Unlock()
}

// Count is how many actions have finished.
func (g *Gate) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.finished)
}

// Finished returns the finished actions, in order.
func (g *Gate) Finished() []Finished {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Finished(nil), g.finished...)
}

// Wait returns the last finished action that match accepts, waiting a
// little for one: an agent may have its answer before the action is
// finished. ok is false when none came.
func (g *Gate) Wait(match func(Finished) bool) (f Finished, ok bool) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		g.mu.Lock()
		for i := len(g.finished) - 1; i >= 0; i-- {
			if match(g.finished[i]) {
				g.mu.Unlock()
				return g.finished[i], true
			}
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			return Finished{A: &action.Action{SQL: &action.SQL{}}}, false
		}
	}
}

// After returns the action finished after the first n, waiting a little
// for it.
func (g *Gate) After(n int) (Finished, bool) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		g.mu.Lock()
		if len(g.finished) > n {
			f := g.finished[n]
			g.mu.Unlock()
			return f, true
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			return Finished{A: &action.Action{SQL: &action.SQL{}}}, false
		}
	}
}

// Balanced checks that every decided action was finished exactly once.
func (g *Gate) Balanced(t testing.TB) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.decided {
		n := 0
		for _, f := range g.finished {
			if f.A == a {
				n++
			}
		}
		if n != 1 {
			t.Errorf("action %+v finished %d times", a, n)
		}
	}
}

// Proxy runs an inspector's Handle for every connection to a listener on
// 127.0.0.1: the agent's side of a test. It keeps every byte written to
// the agents.
type Proxy struct {
	Addr string

	l       net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	mu      sync.Mutex
	toAgent []byte
}

// Listen starts a proxy that passes each accepted connection to handle;
// the test's cleanup stops it.
func Listen(t testing.TB, handle func(ctx context.Context, agent net.Conn)) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{Addr: l.Addr().String(), l: l, cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				handle(ctx, &recorder{Conn: c, p: p})
			}()
		}
	}()
	t.Cleanup(p.Stop)
	return p
}

// Stop closes the listener, ends every connection's context and waits for
// every handle to return.
func (p *Proxy) Stop() {
	p.once.Do(func() {
		p.l.Close()
		p.cancel()
		p.wg.Wait()
	})
}

// ToAgent returns every byte written to the agents so far.
func (p *Proxy) ToAgent() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.toAgent...)
}

type recorder struct {
	net.Conn
	p *Proxy
}

func (r *recorder) Write(b []byte) (int, error) {
	r.p.mu.Lock()
	r.p.toAgent = append(r.p.toAgent, b...)
	r.p.mu.Unlock()
	return r.Conn.Write(b)
}

// Allow is an allow decision of rule.
func Allow(rule string) action.Decision {
	return action.Decision{Verdict: action.Allow, Rule: rule, Reasons: []action.Reason{{Rule: rule, Reason: rule}}}
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ServerUser is who a test server runs as: nil (the test's own user),
// or, when the test runs as root, the first of names that exists.
func ServerUser(names ...string) (*syscall.Credential, error) {
	if os.Getuid() != 0 {
		return nil, nil
	}
	var err error
	for _, name := range names {
		var u *user.User
		if u, err = user.Lookup(name); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, err
}

// Own makes dir readable by everyone and, with cred, owned by that user.
func Own(dir string, cred *syscall.Credential) error {
	os.Chmod(dir, 0o755)
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

// WriteCert makes a CA and a certificate for localhost and 127.0.0.1
// signed by it, writes the certificate and its key to dir as server.crt
// and server.key, and returns a pool with the CA.
func WriteCert(dir string) (*x509.CertPool, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clawpatrol test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return pool, os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}
