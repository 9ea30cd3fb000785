package approve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawpatrol/clawpatrol/action"
)

// A human approver is answered from the dashboard or `clawpatrol approve`,
// which reaches this session through a unix socket in the per-user runtime
// directory: approve-SESSION.sock, 0600 in a 0700 directory that the
// session masks inside the agent's mount namespace, so the agent cannot
// reach it and approve itself.

// socketTimeout bounds one request on the approval socket.
const socketTimeout = 5 * time.Second

// human is the asker of type human: the answer comes through Resolve.
type human struct{ a *Approvals }

func (h *human) ask(_ context.Context, p Pending) (*Resolution, error) {
	if w := h.a.opts.Notify; w != nil {
		h.a.notifyMu.Lock()
		fmt.Fprintf(w, "clawpatrol: approval needed: %s %s (%s: %s); run `clawpatrol approve %s` or `clawpatrol approve %s --deny`\n",
			p.ID, p.Summary, p.Rule, p.Reason, p.ID, p.ID)
		h.a.notifyMu.Unlock()
	}
	return nil, nil
}

// RuntimeDir is clawpatrol's per-user runtime directory:
// $XDG_RUNTIME_DIR/clawpatrol, else clawpatrol-UID in the temp dir. It is
// the same rule the session uses for its own directory.
func RuntimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return filepath.Join(d, "clawpatrol")
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("clawpatrol-%d", os.Getuid()))
}

// SocketPath is the approval socket of a session in dir.
func SocketPath(dir, session string) string {
	return filepath.Join(dir, "approve-"+session+".sock")
}

// request is one message to the approval socket.
type request struct {
	Op      string         `json:"op"` // list or decide
	ID      string         `json:"id,omitempty"`
	Verdict action.Verdict `json:"verdict,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Click   *click         `json:"click,omitempty"` // op click: a Slack click another session received
}

// response is the socket's answer. Code names the error for the client.
type response struct {
	Pending []Pending `json:"pending,omitempty"`
	Decided *Pending  `json:"decided,omitempty"`
	Error   string    `json:"error,omitempty"`
	Code    string    `json:"code,omitempty"` // unknown, decided, not_asked, bad_request
}

// listen serves the session's approval socket until Close.
func (a *Approvals) listen() error {
	dir := a.opts.SocketDir
	if dir == "" {
		dir = RuntimeDir()
	}
	if err := PrivateDir(dir); err != nil {
		return fmt.Errorf("approval socket: %w", err)
	}
	a.socketDir = dir
	path := SocketPath(dir, a.opts.Session)
	_ = os.Remove(path) // a leftover of a crashed session with this id
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("approval socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("approval socket: %w", err)
	}
	a.closers = append(a.closers, func() { l.Close() })
	a.wg.Go(func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return // closed
			}
			a.wg.Go(func() { a.serve(c) })
		}
	})
	return nil
}

// PrivateDir makes dir, or makes sure it is, a 0700 directory of ours: the
// temp-dir fallback could have been made by someone else first.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case ok && int(sys.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to another user", dir)
	case st.Mode().Perm()&0o077 != 0:
		// Ours, but open to others: close it before a socket goes in.
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return nil
}

// serve answers one request on the approval socket.
func (a *Approvals) serve(c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(socketTimeout))
	who, err := peer(c)
	if err != nil {
		writeResponse(c, response{Error: err.Error(), Code: "bad_request"})
		return
	}
	var req request
	line, err := bufio.NewReaderSize(c, 64<<10).ReadSlice('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		writeResponse(c, response{Error: "bad request", Code: "bad_request"})
		return
	}
	switch req.Op {
	case "list":
		ps := a.List()
		for i := range ps {
			ps[i].Input = nil // the listing stays small; the dashboard shows inputs
		}
		writeResponse(c, response{Pending: ps})
	case "click":
		if req.Click == nil {
			writeResponse(c, response{Error: "no click", Code: "bad_request"})
			return
		}
		if err := a.click(*req.Click, false); err != nil {
			writeResponse(c, response{Error: err.Error(), Code: errCode(err)})
			return
		}
		writeResponse(c, response{})
	case "decide":
		p, err := a.Resolve(req.ID, Resolution{Verdict: req.Verdict, By: who, Via: ViaCLI, Reason: req.Reason})
		p.Input = nil
		if err != nil {
			writeResponse(c, response{Decided: &p, Error: err.Error(), Code: errCode(err)})
			return
		}
		writeResponse(c, response{Decided: &p})
	default:
		writeResponse(c, response{Error: fmt.Sprintf("unknown op %q", req.Op), Code: "bad_request"})
	}
}

// forwardClick hands a Slack click to whichever other session of this user
// holds the approval; it reports whether one did.
func (a *Approvals) forwardClick(c click) bool {
	if a.socketDir == "" {
		return false
	}
	socks, _ := filepath.Glob(filepath.Join(a.socketDir, "approve-*.sock"))
	own := SocketPath(a.socketDir, a.opts.Session)
	for _, s := range socks {
		if s == own {
			continue
		}
		r, err := call(a.ctx, s, request{Op: "click", Click: &c})
		if err == nil && r.Code != "unknown" {
			return true // that session holds it and answered the user
		}
	}
	return false
}

// peer names the user at the other end of c from the kernel's credentials
// (SO_PEERCRED), never from anything the client says.
func peer(c *net.UnixConn) (string, error) {
	uid, err := PeerUID(c)
	if err != nil {
		return "", err
	}
	if uid != os.Getuid() && uid != 0 {
		return "", errors.New("peer is another user")
	}
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	return name, nil
}

// PeerUID is the uid of the process at the other end of a unix socket, from
// the kernel (SO_PEERCRED).
func PeerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("peer credentials: %w", credErr)
	}
	return int(cred.Uid), nil
}

func writeResponse(c net.Conn, r response) {
	b, _ := json.Marshal(r)
	_, _ = c.Write(append(b, '\n'))
}

func errCode(err error) string {
	switch {
	case errors.Is(err, ErrUnknown):
		return "unknown"
	case errors.Is(err, ErrDecided):
		return "decided"
	case errors.Is(err, ErrNotAsked):
		return "not_asked"
	}
	return "bad_request"
}

// ErrAmbiguous means an id prefix matches more than one pending approval.
var ErrAmbiguous = errors.New("id matches more than one pending approval")

// ListRemote lists the pending approvals of every session with a socket in
// dir, oldest first. A socket nobody answers on (a session that crashed) is
// skipped.
func ListRemote(ctx context.Context, dir string) ([]Pending, error) {
	socks, err := filepath.Glob(filepath.Join(dir, "approve-*.sock"))
	if err != nil {
		return nil, err
	}
	var out []Pending
	for _, s := range socks {
		r, err := call(ctx, s, request{Op: "list"})
		if err != nil {
			continue // a dead socket
		}
		out = append(out, r.Pending...)
	}
	sortPending(out)
	return out, nil
}

// ResolveRemote answers the pending approval whose id is id, or starts with
// it, in whichever session of dir holds it.
func ResolveRemote(ctx context.Context, dir, id string, verdict action.Verdict, reason string) (Pending, error) {
	all, err := ListRemote(ctx, dir)
	if err != nil {
		return Pending{}, err
	}
	var match []Pending
	for _, p := range all {
		if p.ID == id {
			match = []Pending{p}
			break
		}
		if strings.HasPrefix(strings.ToUpper(p.ID), strings.ToUpper(id)) {
			match = append(match, p)
		}
	}
	switch {
	case len(match) == 0 || id == "":
		return Pending{}, ErrUnknown
	case len(match) > 1:
		return Pending{}, ErrAmbiguous
	}
	p := match[0]
	r, err := call(ctx, SocketPath(dir, p.Session), request{Op: "decide", ID: p.ID, Verdict: verdict, Reason: reason})
	if err != nil {
		return p, err
	}
	if r.Decided != nil {
		p = *r.Decided
	}
	switch r.Code {
	case "":
		return p, nil
	case "unknown":
		return p, ErrDecided // it was listed a moment ago: it has just been settled
	case "decided":
		return p, ErrDecided
	case "not_asked":
		return p, fmt.Errorf("%w (%s, type %s); only a deny can be given here", ErrNotAsked, p.Approver, p.Type)
	}
	return p, errors.New(r.Error)
}

// call sends one request to a socket and reads the answer.
func call(ctx context.Context, path string, req request) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, socketTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return response{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return response{}, err
	}
	var r response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&r); err != nil {
		return response{}, fmt.Errorf("approval socket %s: %w", filepath.Base(path), err)
	}
	return r, nil
}
