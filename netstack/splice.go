package netstack

import (
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// spliceBufSize is the copy buffer: io.Copy's 32 KiB halves download
// throughput over the stack, and a 1 MiB buffer per connection would cost
// 2 MiB per idle flow. So buffers are pooled and only borrowed once data is
// ready to read.
const spliceBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, spliceBufSize); return &b }}

// Splice relays bytes between the agent's connection and the upstream until
// both directions end, then closes both. It returns the bytes sent up
// (agent → upstream) and down.
func (c *Conn) Splice(up *net.TCPConn) (sent, recv int64) {
	var wg sync.WaitGroup
	var once sync.Once
	closeBoth := func() { once.Do(func() { c.Close(); up.Close() }) }
	var nUp, nDown atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		if !c.copyUp(up, &nUp) {
			closeBoth()
		}
	}()
	go func() {
		defer wg.Done()
		if !c.copyDown(up, &nDown) {
			closeBoth()
		}
	}()
	wg.Wait()
	closeBoth()
	return nUp.Load(), nDown.Load()
}

// copyUp drains the stack endpoint into up. It waits for readability on the
// endpoint's queue without holding a buffer. It returns false on an error
// (the caller closes both sides) and true on a clean EOF (half-closed).
func (c *Conn) copyUp(up *net.TCPConn, n *atomic.Int64) bool {
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	for {
		bp := bufPool.Get().(*[]byte)
		w := tcpip.SliceWriter(*bp)
		res, err := c.ep.Read(&w, tcpip.ReadOptions{})
		if res.Count > 0 {
			_, werr := up.Write((*bp)[:res.Count])
			n.Add(int64(res.Count))
			if werr != nil {
				bufPool.Put(bp)
				return false
			}
		}
		bufPool.Put(bp)
		switch err.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			select {
			case <-ready:
			case <-c.n.ctx.Done():
				return false
			}
		case *tcpip.ErrClosedForReceive:
			up.CloseWrite()
			return true
		default:
			return false
		}
	}
}

// copyDown reads the upstream socket when the poller says it is readable,
// borrowing a pooled buffer only then, and writes into the stack.
func (c *Conn) copyDown(up *net.TCPConn, n *atomic.Int64) bool {
	rc, err := up.SyscallConn()
	if err != nil {
		return false
	}
	for {
		var bp *[]byte
		var k int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			bp = bufPool.Get().(*[]byte)
			k, rerr = unix.Read(int(fd), *bp)
			if rerr == unix.EAGAIN {
				bufPool.Put(bp)
				bp = nil
				return false // not ready: wait without a buffer
			}
			return true
		})
		if err != nil || rerr != nil || k <= 0 {
			if bp != nil {
				bufPool.Put(bp)
			}
			if err == nil && rerr == nil && k == 0 { // EOF
				c.CloseWrite()
				return true
			}
			return false
		}
		_, werr := c.Write((*bp)[:k])
		n.Add(int64(k))
		bufPool.Put(bp)
		if werr != nil {
			return false
		}
	}
}
