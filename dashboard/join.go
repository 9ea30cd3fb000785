package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/approve"
)

// Many sessions, one page. The session that binds the address owns the
// dashboard and listens on a unix socket beside the approval sockets
// (dashboard-HOST_PORT.sock in approve.RuntimeDir(): 0700, masked inside
// every agent's namespace). A later session that finds the address taken
// connects there, gets the page's token, and streams its session to the
// owner: its records, its approvals, its exit. The owner relays Approve,
// Deny and webhook callbacks back over the same connection. When the owner
// ends, a joined session binds the address itself (the TCP port is the
// lock) with the same token, so open pages carry on; the others join it.
// Each side sends one JSON object per line.

const (
	// joinWait is how long a session that finds the address taken waits
	// for the owner's socket: the owner makes it right after binding.
	joinWait = 2 * time.Second
	// askTimeout bounds a relayed decision.
	askTimeout = 10 * time.Second
	// linkBuffer bounds the updates queued for the owner; a joiner that
	// lags further drops the link and joins again with a fresh replay.
	linkBuffer   = 4096
	writeTimeout = 10 * time.Second
)

// wire is one message on the socket.
type wire struct {
	Welcome *welcome     `json:"welcome,omitempty"` // owner → joiner, first
	Hello   *SessionInfo `json:"hello,omitempty"`   // joiner → owner, first
	Update  *update      `json:"update,omitempty"`  // joiner → owner
	Request *request     `json:"request,omitempty"` // owner → joiner
	Answer  *answer      `json:"answer,omitempty"`  // joiner → owner
}

type welcome struct {
	Token   string `json:"token"`
	CSRF    string `json:"csrf"`
	Session string `json:"session"`
}

// request asks a joined session to resolve an approval or take a webhook
// callback.
type request struct {
	N         uint64              `json:"n"`
	Resolve   *approve.Resolution `json:"resolve,omitempty"`
	ID        string              `json:"id,omitempty"`
	Callback  []byte              `json:"callback,omitempty"`
	Signature string              `json:"signature,omitempty"`
}

type answer struct {
	N       uint64           `json:"n"`
	Pending *approve.Pending `json:"pending,omitempty"`
	Code    string           `json:"code,omitempty"` // unknown, decided, not_asked, error
	Error   string           `json:"error,omitempty"`
	Status  int              `json:"status,omitempty"`
	Body    []byte           `json:"body,omitempty"`
}

// sockPath is the meeting point of the dashboards on addr.
func sockPath(dir, addr string) string {
	name := strings.NewReplacer(":", "_", "[", "", "]", "").Replace(addr)
	return filepath.Join(dir, "dashboard-"+name+".sock")
}

// owner is the serving side: the HTTP server and the joiners' socket.
type owner struct {
	srv   *http.Server
	sock  *net.UnixListener
	mu    sync.Mutex
	peers map[*peer]bool
}

// own serves the page on ln and opens the socket for joiners.
func (s *Server) own(ln net.Listener) error {
	if err := approve.PrivateDir(s.opts.SocketDir); err != nil {
		return err
	}
	addr := ln.Addr().String()
	path := sockPath(s.opts.SocketDir, addr)
	// Holding the port makes this process the owner of the path: a file
	// there is a leftover of an owner that crashed.
	_ = os.Remove(path)
	sock, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	sock.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		sock.Close()
		return err
	}
	o := &owner{sock: sock, peers: map[*peer]bool{}}
	o.srv = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		// Never stderr: it belongs to the agent while it runs.
		ErrorLog: zap.NewStdLog(s.log),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sock.Close()
		return errors.New("closed")
	}
	s.owner, s.addr = o, addr
	s.mu.Unlock()
	s.runWG.Go(func() { _ = o.srv.Serve(ln) })
	s.runWG.Go(func() {
		for {
			c, err := sock.AcceptUnix()
			if err != nil {
				return // closed
			}
			s.runWG.Go(func() { s.serveJoiner(o, c) })
		}
	})
	return nil
}

func (o *owner) close() {
	o.sock.Close()
	o.srv.Close()
	o.mu.Lock()
	for p := range o.peers {
		p.conn.Close()
	}
	o.mu.Unlock()
}

// peer is a joined session, seen from the owner. It answers for that
// session's approvals by asking over the socket.
type peer struct {
	conn    *net.UnixConn
	encMu   sync.Mutex
	enc     *json.Encoder
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan answer
	dead    chan struct{}
}

// serveJoiner welcomes one joining session and applies what it sends.
func (s *Server) serveJoiner(o *owner, c *net.UnixConn) {
	defer c.Close()
	if err := samePeer(c); err != nil {
		s.log.Warn("dashboard socket", zap.Error(err))
		return
	}
	p := &peer{conn: c, enc: json.NewEncoder(c), waiting: map[uint64]chan answer{}, dead: make(chan struct{})}
	defer close(p.dead)
	o.mu.Lock()
	o.peers[p] = true
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.peers, p)
		o.mu.Unlock()
	}()
	token, csrf := s.secrets()
	if err := p.send(wire{Welcome: &welcome{Token: token, CSRF: csrf, Session: s.info.ID}}); err != nil {
		return
	}
	dec := json.NewDecoder(bufio.NewReaderSize(c, 64<<10))
	var hello wire
	if err := dec.Decode(&hello); err != nil || hello.Hello == nil || hello.Hello.ID == "" {
		return
	}
	id := hello.Hello.ID
	s.hub.add(newView(*hello.Hello, p))
	defer s.hub.lose(id, p)
	for {
		var m wire
		if err := dec.Decode(&m); err != nil {
			return
		}
		switch {
		case m.Update != nil:
			s.hub.apply(id, *m.Update)
		case m.Answer != nil:
			p.mu.Lock()
			ch := p.waiting[m.Answer.N]
			delete(p.waiting, m.Answer.N)
			p.mu.Unlock()
			if ch != nil {
				ch <- *m.Answer
			}
		}
	}
}

func (p *peer) send(m wire) error {
	p.encMu.Lock()
	defer p.encMu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return p.enc.Encode(m)
}

// ask sends a request and waits for its answer.
func (p *peer) ask(req request) (answer, error) {
	ch := make(chan answer, 1)
	p.mu.Lock()
	p.next++
	req.N = p.next
	p.waiting[req.N] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, req.N)
		p.mu.Unlock()
	}()
	if err := p.send(wire{Request: &req}); err != nil {
		return answer{}, fmt.Errorf("session unreachable: %w", err)
	}
	t := time.NewTimer(askTimeout)
	defer t.Stop()
	select {
	case a := <-ch:
		return a, nil
	case <-p.dead:
		return answer{}, errors.New("the session has ended")
	case <-t.C:
		return answer{}, errors.New("the session did not answer")
	}
}

func (p *peer) resolve(id string, r approve.Resolution) (approve.Pending, error) {
	a, err := p.ask(request{ID: id, Resolve: &r})
	if err != nil {
		return approve.Pending{}, err
	}
	var pend approve.Pending
	if a.Pending != nil {
		pend = *a.Pending
	}
	return pend, codeError(a.Code, a.Error)
}

func (p *peer) callback(body []byte, signature string) (int, []byte) {
	a, err := p.ask(request{Callback: body, Signature: signature})
	if err != nil {
		return http.StatusBadGateway, []byte(err.Error() + "\n")
	}
	return a.Status, a.Body
}

// errorCode names err for the wire; codeError turns it back.
func errorCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, approve.ErrUnknown):
		return "unknown"
	case errors.Is(err, approve.ErrDecided):
		return "decided"
	case errors.Is(err, approve.ErrNotAsked):
		return "not_asked"
	}
	return "error"
}

func codeError(code, text string) error {
	switch code {
	case "":
		return nil
	case "unknown":
		return approve.ErrUnknown
	case "decided":
		return approve.ErrDecided
	case "not_asked":
		return approve.ErrNotAsked
	}
	return errors.New(text)
}

// samePeer refuses a connection from another user (the socket is 0600 in
// a 0700 directory; this says so again, from the kernel).
func samePeer(c *net.UnixConn) error {
	uid, err := approve.PeerUID(c)
	if err != nil {
		return err
	}
	if uid != os.Getuid() {
		return fmt.Errorf("peer uid %d is not ours", uid)
	}
	return nil
}

// link is the joined side: the connection to the owner.
type link struct {
	conn     *net.UnixConn
	dec      *json.Decoder
	welcome  welcome
	encMu    sync.Mutex
	enc      *json.Encoder
	out      chan update
	dead     chan struct{} // closed when the link fails or is finished
	done     chan struct{} // closed when the writer has stopped
	killOnce sync.Once
}

// join connects to the owner of s.addr, retrying for up to wait.
func (s *Server) join(ctx context.Context, wait time.Duration) (*link, error) {
	path := sockPath(s.opts.SocketDir, s.currentAddr())
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			l := &link{conn: c, enc: json.NewEncoder(c), dec: json.NewDecoder(bufio.NewReaderSize(c, 64<<10)),
				out: make(chan update, linkBuffer), dead: make(chan struct{}), done: make(chan struct{})}
			_ = c.SetReadDeadline(time.Now().Add(writeTimeout))
			var m wire
			if err := l.dec.Decode(&m); err != nil || m.Welcome == nil {
				c.Close()
				return nil, fmt.Errorf("no welcome on %s", path)
			}
			_ = c.SetReadDeadline(time.Time{})
			l.welcome = *m.Welcome
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startJoined begins relaying over l and watching it.
func (s *Server) startJoined(l *link) {
	s.startLink(l)
	s.runWG.Go(func() { s.relay(l) })
}

// startLink sends this session to the owner: a hello, a replay of what the
// dashboard knows of it, then every update as it comes.
func (s *Server) startLink(l *link) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.kill()
		return
	}
	s.token, s.csrf = l.welcome.Token, l.welcome.CSRF
	s.joined = l
	s.mu.Unlock()
	replay := s.hub.attach(l.push)
	s.runWG.Go(func() {
		defer close(l.done)
		if l.send(wire{Hello: &s.info}) != nil {
			l.kill()
			return
		}
		for _, u := range replay {
			if l.send(wire{Update: &u}) != nil {
				l.kill()
				return
			}
		}
		for {
			select {
			case u, ok := <-l.out:
				if !ok {
					return
				}
				if l.send(wire{Update: &u}) != nil {
					l.kill()
					return
				}
			case <-l.dead:
				return
			}
		}
	})
	s.runWG.Go(func() {
		defer l.kill()
		for {
			var m wire
			if err := l.dec.Decode(&m); err != nil {
				return
			}
			if m.Request != nil {
				if l.send(wire{Answer: s.answer(*m.Request)}) != nil {
					return
				}
			}
		}
	})
}

// answer carries out the owner's request on this session.
func (s *Server) answer(req request) *answer {
	a := &answer{N: req.N}
	switch {
	case req.Resolve != nil:
		p, err := s.local.resolve(req.ID, *req.Resolve)
		a.Pending, a.Code = &p, errorCode(err)
		if err != nil {
			a.Error = err.Error()
		}
	case req.Callback != nil:
		a.Status, a.Body = s.local.callback(req.Callback, req.Signature)
	default:
		a.Code, a.Error = "error", "unknown request"
	}
	return a
}

// relay waits for the link to end, then takes the address over, or joins
// whichever session did, until this session closes.
func (s *Server) relay(l *link) {
	for {
		<-l.dead
		s.hub.attach(nil)
		backoff := 20 * time.Millisecond
		for {
			if s.isClosed() {
				return
			}
			if ln, err := net.Listen("tcp", s.currentAddr()); err == nil {
				if err := s.own(ln); err == nil {
					s.mu.Lock()
					s.joined = nil
					s.mu.Unlock()
					s.log.Info("dashboard: took over the address", zap.String("addr", s.currentAddr()))
					return
				}
				ln.Close()
			}
			if nl, err := s.join(s.ctx, 0); err == nil {
				l = nl
				s.startLink(l)
				break
			}
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// push queues u for the owner; it runs under the hub's lock and never
// waits. A full queue drops the link: the next one starts with a replay.
func (l *link) push(u update) {
	select {
	case l.out <- u:
	default:
		l.kill()
	}
}

func (l *link) send(m wire) error {
	l.encMu.Lock()
	defer l.encMu.Unlock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return l.enc.Encode(m)
}

func (l *link) kill() {
	l.killOnce.Do(func() {
		close(l.dead)
		l.conn.Close()
	})
}

// finish sends what is queued (this session's last updates, its exit),
// then closes the link.
func (l *link) finish() {
	close(l.out)
	select {
	case <-l.done:
	case <-time.After(writeTimeout):
	}
	l.kill()
}

// attach makes fwd receive every later update of the local session and
// returns the updates that replay what is known so far; nil detaches.
func (h *hub) attach(fwd func(update)) []update {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forward = fwd
	v := h.views[h.local]
	if fwd == nil || v == nil {
		return nil
	}
	var out []update
	if v.dropped > 0 {
		out = append(out, update{Dropped: v.dropped})
	}
	for _, id := range v.order {
		r := v.rows[id]
		rec := r.rec
		out = append(out, update{Record: &rec, Finished: r.Status != statusWaiting && r.Status != statusOpen})
	}
	for _, p := range v.recent {
		out = append(out, update{Approval: &approve.Event{Kind: approve.EventDone, Pending: p}})
	}
	for _, p := range v.pending {
		out = append(out, update{Approval: &approve.Event{Kind: approve.EventAsked, Pending: p}})
	}
	if v.exit != nil {
		out = append(out, update{End: v.exit})
	}
	return out
}

func (s *Server) currentAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) secrets() (token, csrf string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, s.csrf
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
