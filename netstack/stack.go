// Package netstack runs the gVisor TCP/IP stack on the agent's TUN device.
// It terminates every flow the agent opens, answers DNS locally with stable
// virtual IPs, and hands each TCP and UDP flow, with where it was going, to a
// Handler. It knows nothing of what is inside the flows.
package netstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Addresses inside the agent's network namespace. Everything the agent sends
// leaves through tun0 and ends here, so none of them exist anywhere else.
var (
	GuestIP4 = netip.MustParsePrefix("10.0.2.100/24")
	GuestIP6 = netip.MustParsePrefix("fd00:2::100/64")
	DNSIP4   = netip.MustParseAddr("10.0.2.3")
	DNSIP6   = netip.MustParseAddr("fd00:2::3")
	// VirtualNet is where names resolved through our DNS point.
	VirtualNet = netip.MustParsePrefix("198.18.0.0/15")
)

// MTU of tun0 on both ends: fdbased does no GSO on a TUN, so a large MTU is
// what makes bulk transfer fast (×5 up, ×12 down against 1500).
const MTU = 65520

const (
	// maxInFlight bounds TCP handshakes being decided at once. A small value
	// lets a few blackholed destinations stall every new connection.
	maxInFlight = 4096
	// maxUDPFlows bounds concurrent UDP flows; past it datagrams are refused.
	maxUDPFlows = 1024
	// maxDNSFlows bounds concurrent DNS flows.
	maxDNSFlows = 4096
)

// Handler receives the agent's flows. Each call runs on its own goroutine
// and owns the flow until it returns.
type Handler interface {
	// HandleTCP must call exactly one of f.Accept or f.Reject.
	HandleTCP(ctx context.Context, f *TCPFlow)
	// HandleUDP decides a UDP flow; f.Conn is already open.
	HandleUDP(ctx context.Context, f *UDPFlow)
}

// Stack is the netstack serving one agent.
type Stack struct {
	s       *stack.Stack
	handler Handler
	names   *Names
	log     *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // handler goroutines

	mu    sync.Mutex
	conns map[*Conn]struct{} // open agent-side connections
	udp   int                // open UDP flows
	dns   int                // open DNS flows
}

// New starts the stack on a TUN fd (which it then owns).
func New(fd int, h Handler, log *zap.Logger) (*Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	// When the upstream closes first, the stack is the active closer and
	// would hold the 4-tuple in TIME_WAIT for 60 s. The forwarder is not a
	// listener, so a guest that reuses the port has its SYN dropped until
	// then. A lossless virtual link needs no TIME_WAIT.
	tw := tcpip.TCPTimeWaitTimeoutOption(time.Second)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); err != nil {
		return nil, fmt.Errorf("TCPTimeWaitTimeoutOption: %v", err)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("TCPSACKEnabled: %v", err)
	}
	ep, err := fdbased.New(&fdbased.Options{
		FDs: []int{fd},
		MTU: MTU,
		// A TUN without IFF_VNET_HDR: the kernel has verified what it hands
		// us, so skipping RX verification is safe; but it checks what we
		// write (CHECKSUM_NONE), so TX offload on would get every reply
		// dropped and connect() would hang.
		RXChecksumOffload: true,
		TXChecksumOffload: false,
	})
	if err != nil {
		return nil, fmt.Errorf("fdbased.New: %w", err)
	}
	if err := s.CreateNICWithOptions(1, ep, stack.NICOptions{Name: "tun0"}); err != nil {
		return nil, fmt.Errorf("CreateNIC: %v", err)
	}
	// Accept packets for every destination and answer from it.
	if err := s.SetPromiscuousMode(1, true); err != nil {
		return nil, fmt.Errorf("SetPromiscuousMode: %v", err)
	}
	if err := s.SetSpoofing(1, true); err != nil {
		return nil, fmt.Errorf("SetSpoofing: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: 1},
		{Destination: header.IPv6EmptySubnet, NIC: 1},
	})
	ctx, cancel := context.WithCancel(context.Background())
	n := &Stack{s: s, handler: h, names: NewNames(VirtualNet), log: log, ctx: ctx, cancel: cancel, conns: map[*Conn]struct{}{}}
	tf := tcp.NewForwarder(s, 0, maxInFlight, n.forwardTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, n.forwardUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	return n, nil
}

// Names returns the name ↔ virtual IP table.
func (n *Stack) Names() *Names { return n.names }

// Close ends every flow: open connections are closed, handlers get up to
// drain to finish (and write their audit records), then the stack stops.
func (n *Stack) Close(drain time.Duration) {
	n.cancel()
	n.mu.Lock()
	open := make([]*Conn, 0, len(n.conns))
	for c := range n.conns {
		open = append(open, c)
	}
	n.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		n.log.Warn("flows still open after drain", zap.Duration("drain", drain))
	}
	n.s.Close()
}

// Stats returns counters for diagnostics.
func (n *Stack) Stats() map[string]uint64 {
	st := n.s.Stats()
	return map[string]uint64{
		"ip_received":       st.IP.PacketsReceived.Value(),
		"ip_malformed":      st.IP.MalformedPacketsReceived.Value(),
		"tcp_forward_drops": st.TCP.ForwardMaxInFlightDrop.Value(),
		"tcp_established":   st.TCP.PassiveConnectionOpenings.Value(),
	}
}

func (n *Stack) track(c *Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *Stack) untrack(c *Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// destination describes where a flow was going.
func (n *Stack) destination(addr tcpip.Address, port uint16) Destination {
	ip, _ := netip.AddrFromSlice(addr.AsSlice())
	d := Destination{IP: ip, Port: int(port)}
	if name, ok := n.names.Name(ip); ok {
		d.Host = name
	}
	return d
}

// Destination is where the agent sent a flow.
type Destination struct {
	IP   netip.Addr // the address it dialled (virtual for names)
	Port int
	Host string // the name it resolved through our DNS; "" for IP literals
}

// Virtual reports whether IP is one of our virtual addresses.
func (d Destination) Virtual() bool { return VirtualNet.Contains(d.IP) }

func (n *Stack) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := n.destination(id.LocalAddress, id.LocalPort)
	if id.LocalPort == 53 {
		// DNS over TCP is answered locally, like over UDP.
		c, ok := n.acceptTCP(r)
		if !ok {
			return
		}
		n.serveDNSTCP(c)
		return
	}
	src, _ := netip.AddrFromSlice(id.RemoteAddress.AsSlice())
	f := &TCPFlow{Dst: dst, Src: netip.AddrPortFrom(src, id.RemotePort), r: r, n: n}
	n.wg.Add(1)
	defer n.wg.Done()
	if n.ctx.Err() != nil {
		r.Complete(true)
		return
	}
	n.handler.HandleTCP(n.ctx, f)
	if !f.done {
		// A handler that forgot to answer must not leak a forwarder slot.
		f.Reject()
	}
}

func (n *Stack) acceptTCP(r *tcp.ForwarderRequest) (*Conn, bool) {
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		return nil, false
	}
	r.Complete(false)
	c := &Conn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep, wq: &wq, n: n}
	if !n.track(c) {
		c.TCPConn.Close()
		return nil, false
	}
	return c, true
}

// TCPFlow is a TCP connection the agent is opening: its handshake is not
// complete until Accept.
type TCPFlow struct {
	Src  netip.AddrPort
	Dst  Destination
	r    *tcp.ForwarderRequest
	n    *Stack
	done bool
}

// Accept completes the agent's handshake and returns the connection.
func (f *TCPFlow) Accept() (*Conn, error) {
	f.done = true
	c, ok := f.n.acceptTCP(f.r)
	if !ok {
		return nil, fmt.Errorf("accept %v: endpoint not created", f.Dst)
	}
	return c, nil
}

// Reject answers the agent's SYN with a reset: connect() fails at once with
// "connection refused".
func (f *TCPFlow) Reject() {
	f.done = true
	f.r.Complete(true)
}

// Conn is the agent's side of an accepted TCP flow.
type Conn struct {
	*gonet.TCPConn
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	n    *Stack
	once sync.Once
}

// Close closes the connection.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.TCPConn.Close()
		c.n.untrack(c)
	})
	return err
}

// Abort resets the connection instead of closing it gracefully.
func (c *Conn) Abort() {
	c.ep.Abort()
	c.Close()
}

var _ net.Conn = (*Conn)(nil)
