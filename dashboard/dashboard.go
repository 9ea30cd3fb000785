// Package dashboard serves the local web UI of `clawpatrol run --dashboard`:
// a live table of actions, their details and fixtures, the pending
// approvals with Approve and Deny, and one header per session. It listens
// on host loopback, which the agent cannot reach, behind a per-session
// token; a second session on the same address joins the first's page.
package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/approve"
)

// Options configure one session's dashboard.
type Options struct {
	// Addr is where to listen: HOST:PORT, or a bare PORT for 127.0.0.1.
	Addr string
	// AllowRemote permits an address that is not loopback
	// (--dashboard-allow-remote).
	AllowRemote bool
	// Session describes the session this process runs.
	Session SessionInfo
	// SocketDir is where dashboards meet joining sessions; "": approve.RuntimeDir().
	SocketDir string
	Logger    *zap.Logger
}

// SessionInfo is a session's header on the page.
type SessionInfo struct {
	ID           string    `json:"id"`
	Command      []string  `json:"command"`
	Started      time.Time `json:"started"`
	PID          int       `json:"pid,omitempty"` // clawpatrol's own
	Config       string    `json:"config,omitempty"`
	PolicyDigest string    `json:"policy_digest,omitempty"`
	Monitor      bool      `json:"monitor,omitempty"`
}

// Approvals is what the dashboard needs of a session's approvals
// (*approve.Approvals).
type Approvals interface {
	List() []approve.Pending
	Resolve(id string, r approve.Resolution) (approve.Pending, error)
	Subscribe(fn func(approve.Event)) (unsubscribe func())
	CallbackHandler() http.Handler
}

// Server is one session's dashboard: it either owns the listener and
// serves every session that joins it, or has joined another session's
// dashboard and relays to it (taking the listener over if that session
// ends first).
type Server struct {
	opts  Options
	info  SessionInfo
	log   *zap.Logger
	addr  string // the address as given, normalised
	hub   *hub
	feed  *feed
	token string // required on every request
	csrf  string // required on every decision
	user  string // who decides from the page

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the feed's drain
	runWG  sync.WaitGroup // serving, relaying

	mu       sync.Mutex
	owner    *owner // set while this process serves the page
	joined   *link  // set while it relays to another process
	wasOwner bool   // what Listen found: false when it joined
	local    *localSource
	unsub    func()
	closed   bool
}

// ErrRemote is a non-loopback address without AllowRemote.
var ErrRemote = errors.New("not a loopback address")

// Listen serves the dashboard on o.Addr, or joins the dashboard another
// session of this user serves there. Nothing is asked of approvals until
// Attach.
func Listen(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.SocketDir == "" {
		o.SocketDir = approve.RuntimeDir()
	}
	addr, err := Address(o.Addr, o.AllowRemote)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: o, info: o.Session, log: o.Logger, addr: addr, hub: newHub(), feed: newFeed(feedSize),
		ctx: ctx, cancel: cancel}
	s.user = "dashboard"
	if u, err := user.Current(); err == nil {
		s.user = u.Username
	}
	if s.info.Started.IsZero() {
		s.info.Started = time.Now().UTC()
	}
	s.local = &localSource{}
	s.hub.local = s.info.ID
	s.hub.add(newView(s.info, s.local))

	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		if s.token, err = random(); err == nil {
			s.csrf, err = random()
		}
		if err == nil {
			err = s.own(ln)
		}
		if err != nil {
			ln.Close()
			cancel()
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		s.wasOwner = true
	case errors.Is(err, syscall.EADDRINUSE) && !strings.HasSuffix(addr, ":0"):
		l, jerr := s.join(ctx, joinWait)
		if jerr != nil {
			cancel()
			s.log.Debug("dashboard: join", zap.Error(jerr))
			return nil, fmt.Errorf("dashboard: %s: %w, and not by a clawpatrol dashboard of yours", addr, syscall.EADDRINUSE)
		}
		s.startJoined(l)
	default:
		cancel()
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	s.wg.Go(s.drain)
	return s, nil
}

// Address checks and normalises a listen address: a bare port means
// 127.0.0.1:PORT, "localhost" means 127.0.0.1. Without allowRemote the
// host must be a loopback IP.
func Address(addr string, allowRemote bool) (string, error) {
	if _, err := strconv.Atoi(addr); err == nil {
		addr = "127.0.0.1:" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("dashboard address %q: want HOST:PORT or PORT", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("dashboard address %q: bad port", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if (err != nil || !ip.IsLoopback()) && !allowRemote {
		shown := host
		if shown == "" {
			shown = "every interface"
		}
		return "", fmt.Errorf("dashboard address %s (%s): %w", addr, shown, ErrRemote)
	}
	return net.JoinHostPort(host, port), nil
}

// Attach connects the session's approvals: the pending panel lists them,
// its buttons and webhook callbacks answer them.
func (s *Server) Attach(a Approvals) {
	s.mu.Lock()
	s.local.set(a)
	s.mu.Unlock()
	unsub := a.Subscribe(s.approval)
	for _, p := range a.List() {
		s.approval(approve.Event{Kind: approve.EventAsked, Pending: p})
	}
	s.mu.Lock()
	s.unsub = unsub
	s.mu.Unlock()
}

// Joined reports whether Listen found another session's dashboard on the
// address and joined it.
func (s *Server) Joined() bool { return !s.wasOwner }

// URL is the address to open, with the token; print it once.
func (s *Server) URL() string { return s.base() + "/?token=" + s.token }

// CallbackURL is where a webhook approver may answer this session later.
func (s *Server) CallbackURL() string { return s.base() + "/api/webhook/" + s.info.ID }

func (s *Server) base() string {
	s.mu.Lock()
	addr := s.addr
	s.mu.Unlock()
	host, port, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1" // the URL is for a browser on this host
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Close ends this session on the dashboard: a joined session tells the
// owner first; an owner stops serving (its joiners take over).
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	unsub := s.unsub
	s.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	s.feed.close()
	s.wg.Wait() // drained: a joined session's link has every update queued
	s.hub.attach(nil)
	s.mu.Lock()
	o, l := s.owner, s.joined
	s.mu.Unlock()
	if l != nil {
		l.finish()
	}
	s.cancel()
	if o != nil {
		o.close()
	}
	// A takeover or a new link may have raced with the above.
	s.mu.Lock()
	o2, l2 := s.owner, s.joined
	s.mu.Unlock()
	if l2 != nil && l2 != l {
		l2.kill()
	}
	if o2 != nil && o2 != o {
		o2.close()
	}
	s.runWG.Wait()
}

// random returns 32 random bytes in hex.
func random() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// localSource answers for this process's own session.
type localSource struct {
	mu sync.Mutex
	a  Approvals
}

func (l *localSource) set(a Approvals) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.a = a
}

func (l *localSource) get() Approvals {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.a
}

func (l *localSource) resolve(id string, r approve.Resolution) (approve.Pending, error) {
	a := l.get()
	if a == nil {
		return approve.Pending{}, approve.ErrUnknown
	}
	p, err := a.Resolve(id, r)
	p.Input = nil
	return p, err
}

func (l *localSource) callback(body []byte, signature string) (int, []byte) {
	a := l.get()
	if a == nil {
		return http.StatusNotFound, []byte("no approvals in this session\n")
	}
	return serveCallback(a.CallbackHandler(), body, signature)
}

// Banner is the line that tells the user where the dashboard is: the URL
// with the token, and whether this session joined another's page.
func (s *Server) Banner() string {
	if s.Joined() {
		return s.URL() + " (joined the dashboard another session serves there)"
	}
	return s.URL()
}

// Hints say what to do about an error of Listen.
func Hints(err error) []string {
	if errors.Is(err, ErrRemote) {
		return []string{
			"the dashboard approves actions: anyone who can reach it and holds the token could",
			"use 127.0.0.1:PORT, or pass --dashboard-allow-remote to serve it there anyway",
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return []string{"pass --dashboard with another port, or 127.0.0.1:0 for any free one"}
	}
	return nil
}
