package netstack

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The tests wire our Stack to a second gVisor stack playing the agent's
// kernel, over a SOCK_SEQPACKET socketpair that carries one IP packet per
// message, exactly like the TUN. The test can also write raw packets — the
// garbage and floods an agent could only send with privileges it lacks.

// Ports the test handler treats specially.
const (
	portEcho   = 7    // accept and echo
	portReject = 9    // reset
	portHold   = 1000 // accept, then hold until the stack closes
)

type testHandler struct {
	udp  atomic.Int64
	held atomic.Int64
}

func (h *testHandler) HandleTCP(ctx context.Context, f *TCPFlow) {
	switch f.Dst.Port {
	case portReject:
		f.Reject()
	case portHold:
		h.held.Add(1)
		c, err := f.Accept()
		if err != nil {
			return
		}
		<-ctx.Done()
		c.Close()
	default:
		c, err := f.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}
}

func (h *testHandler) HandleUDP(ctx context.Context, f *UDPFlow) {
	h.udp.Add(1)
	buf := make([]byte, 65535)
	for {
		f.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := f.Conn.Read(buf)
		if err != nil {
			return
		}
		f.Conn.Write(buf[:n])
	}
}

type harness struct {
	ours  *Stack
	agent *stack.Stack
	raw   int // the agent end, for raw packets
	h     *testHandler
}

var agentAddr = tcpip.AddrFrom4([4]byte{10, 0, 2, 100})

func newHarness(t testing.TB) *harness {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		// Room for floods: the agent side writes faster than we read.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	h := &testHandler{}
	ours, err := New(fds[0], h, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dup, err := unix.Dup(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	agent := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fds[1]}, MTU: MTU})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.CreateNIC(1, ep); err != nil {
		t.Fatal(err)
	}
	agent.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: agentAddr.WithPrefix()}, stack.AddressProperties{})
	agent.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	t.Cleanup(func() {
		ours.Close(time.Second)
		agent.Close()
		unix.Close(dup)
	})
	return &harness{ours: ours, agent: agent, raw: dup, h: h}
}

func addr4(ip string, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(netip.MustParseAddr(ip).As4()), Port: port}
}

// echo dials an echo port and checks a round trip.
func (h *harness) echo(t testing.TB, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, h.agent, addr4(ip, portEcho), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial echo: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := []byte("ping " + ip)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo: got %q, %v", got, err)
	}
}

func TestTCPFlowsAcceptAndReject(t *testing.T) {
	h := newHarness(t)
	h.echo(t, "192.0.2.1")
	_, err := gonet.DialTCP(h.agent, addr4("192.0.2.1", portReject), ipv4.ProtocolNumber)
	if err == nil {
		t.Fatal("a rejected flow connected")
	}
}

func TestDNSOverUDP(t *testing.T) {
	h := newHarness(t)
	c, err := gonet.DialUDP(h.agent, nil, ptr(addr4("10.0.2.3", 53)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := query(t, "api.example.com.", dnsmessage.TypeA)
	c.Write(q)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var p dnsmessage.Parser
	if _, err := p.Start(buf[:n]); err != nil {
		t.Fatal(err)
	}
	p.SkipAllQuestions()
	a, err := p.AnswerHeader()
	if err != nil {
		t.Fatal(err)
	}
	ar, _ := p.AResource()
	ip := netip.AddrFrom4(ar.A)
	if a.Type != dnsmessage.TypeA || !VirtualNet.Contains(ip) {
		t.Fatalf("want a virtual A record, got %v %v", a.Type, ip)
	}
	if name, ok := h.ours.Names().Name(ip); !ok || name != "api.example.com" {
		t.Fatalf("table maps %v to %q", ip, name)
	}
}

// TestBadInput: garbage on the link, a flood of 5,000 half-open
// connections, a UDP flood and 1,000 concurrent flows. Other flows keep
// working, memory stays bounded and nothing panics.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	h.echo(t, "192.0.2.1")

	// Garbage: random bytes, truncated and lying headers.
	for i := range 2000 {
		b := make([]byte, 1+i%200)
		rand.Read(b)
		if i%3 == 0 && len(b) > 20 {
			b[0] = 0x45 // looks like IPv4
		}
		if i%5 == 0 && len(b) > 40 {
			b[0] = 0x60 // looks like IPv6
		}
		h.write(t, b)
	}
	h.echo(t, "192.0.2.2")

	// 5,000 half-open connections: SYNs whose handshakes never complete.
	for i := range 5000 {
		h.write(t, syn(uint16(10000+i), portHold, netip.MustParseAddr("192.0.2.3")))
	}
	h.echo(t, "192.0.2.4")

	// A UDP flood to many ports.
	for i := range 5000 {
		h.write(t, udpPacket(uint16(20000+i%500), uint16(3000+i%2000), netip.MustParseAddr("192.0.2.5"), []byte("flood")))
	}
	h.echo(t, "192.0.2.6")

	// 1,000 concurrent flows.
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := gonet.DialContextTCP(ctx, h.agent, addr4(fmt.Sprintf("192.0.2.%d", 10+i%200), portEcho), ipv4.ProtocolNumber)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			msg := fmt.Appendf(nil, "flow %d", i)
			c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
				errs <- fmt.Errorf("flow %d: %q %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.echo(t, "192.0.2.250")

	// The floods really reached the stack.
	if st := h.ours.Stats(); st["ip_malformed"] == 0 {
		t.Errorf("no garbage counted as malformed: %v", st)
	}
	if n := h.h.held.Load(); n < 1000 {
		t.Errorf("only %d of the half-open SYNs reached the handler", n)
	}
	if h.h.udp.Load() < 100 {
		t.Errorf("only %d UDP flows reached the handler", h.h.udp.Load())
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// Both stacks live in this process; the bound is loose on purpose.
	if ms.HeapInuse > 512<<20 {
		t.Fatalf("heap in use %d MiB after the floods", ms.HeapInuse>>20)
	}
}

func (h *harness) write(t testing.TB, pkt []byte) {
	t.Helper()
	if _, err := unix.Write(h.raw, pkt); err != nil {
		t.Fatalf("write raw packet: %v", err)
	}
}

func syn(srcPort, dstPort uint16, dst netip.Addr) []byte {
	return ipv4Packet(dst, header.TCPProtocolNumber, func(src, dstA tcpip.Address) []byte {
		b := make([]byte, header.TCPMinimumSize)
		t := header.TCP(b)
		t.Encode(&header.TCPFields{SrcPort: srcPort, DstPort: dstPort, SeqNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dstA, uint16(len(b)))
		t.SetChecksum(^t.CalculateChecksum(xsum))
		return b
	})
}

func udpPacket(srcPort, dstPort uint16, dst netip.Addr, payload []byte) []byte {
	return ipv4Packet(dst, header.UDPProtocolNumber, func(src, dstA tcpip.Address) []byte {
		b := make([]byte, header.UDPMinimumSize+len(payload))
		u := header.UDP(b)
		u.Encode(&header.UDPFields{SrcPort: srcPort, DstPort: dstPort, Length: uint16(len(b))})
		copy(b[header.UDPMinimumSize:], payload)
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dstA, uint16(len(b)))
		xsum = checksum(payload, xsum)
		u.SetChecksum(^u.CalculateChecksum(xsum))
		return b
	})
}

func ipv4Packet(dst netip.Addr, proto tcpip.TransportProtocolNumber, transport func(src, dst tcpip.Address) []byte) []byte {
	dstA := tcpip.AddrFrom4(dst.As4())
	payload := transport(agentAddr, dstA)
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto), SrcAddr: agentAddr, DstAddr: dstA})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

func checksum(b []byte, initial uint16) uint16 {
	sum := uint32(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func query(t testing.TB, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 42, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func ptr[T any](v T) *T { return &v }
