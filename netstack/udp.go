package netstack

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpIdle ends a UDP flow nobody has used for this long.
const udpIdle = 60 * time.Second

// UDPFlow is a UDP flow the agent opened: datagrams between one of its
// sockets and one destination.
type UDPFlow struct {
	Src  netip.AddrPort
	Dst  Destination
	Conn *gonet.UDPConn
}

// forwardUDP runs on the stack's receive path, so it must not block: DNS is
// answered, UDP/443 is refused with ICMP port unreachable (QUIC then falls
// back to TCP at once instead of after a timeout), and other flows are
// handed to the handler on their own goroutine.
func (n *Stack) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	if id.LocalPort == 443 || n.ctx.Err() != nil {
		return false
	}
	// DNS flows are short and many (a resolver may use a new socket per
	// query), so they have their own bound and never crowd out other UDP.
	count, limit := &n.udp, maxUDPFlows
	if id.LocalPort == 53 {
		count, limit = &n.dns, maxDNSFlows
	}
	n.mu.Lock()
	full := *count >= limit
	if !full {
		*count++
	}
	n.mu.Unlock()
	if full {
		return false
	}
	release := func() {
		n.mu.Lock()
		*count--
		n.mu.Unlock()
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		release()
		return true // malformed or duplicate: nothing to answer
	}
	c := gonet.NewUDPConn(&wq, ep)
	n.wg.Add(1)
	if id.LocalPort == 53 {
		go func() {
			defer release()
			stop := context.AfterFunc(n.ctx, func() { c.Close() })
			defer stop()
			n.serveDNSUDP(c)
		}()
		return true
	}
	src, _ := netip.AddrFromSlice(id.RemoteAddress.AsSlice())
	f := &UDPFlow{Src: netip.AddrPortFrom(src, id.RemotePort), Dst: n.destination(id.LocalAddress, id.LocalPort), Conn: c}
	go func() {
		defer n.wg.Done()
		defer release()
		defer c.Close()
		stop := context.AfterFunc(n.ctx, func() { c.Close() })
		defer stop()
		n.handler.HandleUDP(n.ctx, f)
	}()
	return true
}

// Relay passes datagrams both ways between the agent's flow and up until
// either side errors or the flow is idle for a minute.
func (f *UDPFlow) Relay(up *net.UDPConn) (sent, recv int64) {
	var nUp, nDown atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	closeBoth := func() { once.Do(func() { f.Conn.Close(); up.Close() }) }
	copyDgrams := func(dst interface{ Write([]byte) (int, error) }, src interface {
		Read([]byte) (int, error)
		SetReadDeadline(time.Time) error
	}, count *atomic.Int64) {
		defer wg.Done()
		defer closeBoth()
		buf := make([]byte, 65535)
		for {
			src.SetReadDeadline(time.Now().Add(udpIdle))
			k, err := src.Read(buf)
			if err != nil {
				return
			}
			count.Add(int64(k))
			if _, err := dst.Write(buf[:k]); err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go copyDgrams(up, f.Conn, &nUp)
	go copyDgrams(f.Conn, up, &nDown)
	wg.Wait()
	return nUp.Load(), nDown.Load()
}
