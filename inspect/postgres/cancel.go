package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// Cancels maps the cancel keys clawpatrol hands to agents (in
// BackendKeyData) to the servers' real keys. The agent never learns a real
// key, and a CancelRequest, which arrives on a connection of its own, is
// sent to the backend it names. The zero value is ready to use; it is safe
// for concurrent use.
type Cancels struct {
	mu sync.Mutex
	m  map[cancelKey]cancelTarget
}

// cancelKey is a process id and secret as the agent sees them.
type cancelKey struct{ pid, secret uint32 }

// cancelTarget is a real backend and how to reach its server.
type cancelTarget struct {
	pid, secret uint32
	t           upstream.Target
	opts        Options
}

// add registers a real backend and returns the key to give the agent. On
// a nil Cancels it still returns a fresh key, which cancels nothing.
func (c *Cancels) add(real cancelTarget) cancelKey {
	var b [8]byte
	for {
		rand.Read(b[:])
		k := cancelKey{pid: binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, secret: binary.BigEndian.Uint32(b[4:])}
		if k.pid == 0 {
			continue
		}
		if c == nil {
			return k
		}
		c.mu.Lock()
		if _, taken := c.m[k]; !taken {
			if c.m == nil {
				c.m = map[cancelKey]cancelTarget{}
			}
			c.m[k] = real
			c.mu.Unlock()
			return k
		}
		c.mu.Unlock()
	}
}

func (c *Cancels) remove(k cancelKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

func (c *Cancels) lookup(k cancelKey) (cancelTarget, bool) {
	if c == nil {
		return cancelTarget{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[k]
	return t, ok
}

// cancelTimeout bounds forwarding one cancel request.
const cancelTimeout = 10 * time.Second

// forwardCancel sends the agent's CancelRequest on to the real backend.
// The protocol answers a cancel request with nothing, whatever happens.
func (s *session) forwardCancel(ctx context.Context, body []byte) error {
	f := fields{b: body}
	k := cancelKey{pid: f.int32("CancelRequest"), secret: f.int32("CancelRequest")}
	if err := f.end("CancelRequest"); err != nil {
		return err
	}
	ct, ok := s.opts.Cancels.lookup(k)
	if !ok {
		return errors.New("cancel request for an unknown key")
	}
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	c, err := ct.opts.Dialer.Dial(ctx, "tcp", ct.t)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(cancelTimeout))
	tc, err := negotiateTLS(c, ct.opts, ct.t)
	if err != nil {
		return err
	}
	if _, err := tc.Write(newMsg(0).int32(codeCancel).int32(ct.pid).int32(ct.secret).done()); err != nil {
		return err
	}
	s.log.Debug("postgres cancel forwarded", zap.Uint32("pid", ct.pid))
	// The server closes once it has read the request; wait for that so the
	// cancel is delivered before the agent sees its connection end.
	var b [1]byte
	tc.Read(b[:])
	return nil
}
