package netstack

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// dnsTTL is the TTL of our answers. A name's virtual IP never changes in a
// session, so a long TTL is safe; it is short enough that a resolver cache
// that outlives the session does not matter.
const dnsTTL = 300

// Answer builds the reply to one DNS query. Every A query gets the name's
// virtual IP; AAAA and every other type get an empty answer (NODATA), so no
// client tries IPv6 or HTTPS/SVCB hints we cannot carry, and nothing is ever
// resolved upstream from here. It returns nil for input that is not a query.
func (t *Names) Answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		rh.RCode = dnsmessage.RCodeFormatError
		return build(rh, nil, nil)
	}
	question := qs[0]
	if h.OpCode != 0 || question.Class != dnsmessage.ClassINET {
		rh.RCode = dnsmessage.RCodeNotImplemented
		return build(rh, &question, nil)
	}
	name := question.Name.String()
	switch question.Type {
	case dnsmessage.TypeA:
		ip, ok := t.Assign(name)
		if !ok {
			rh.RCode = dnsmessage.RCodeServerFailure
			return build(rh, &question, nil)
		}
		return build(rh, &question, func(b *dnsmessage.Builder) error {
			return b.AResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}, dnsmessage.AResource{A: ip.As4()})
		})
	case dnsmessage.TypePTR:
		if target, ok := t.reverse(name); ok {
			ptr, err := dnsmessage.NewName(target + ".")
			if err == nil {
				return build(rh, &question, func(b *dnsmessage.Builder) error {
					return b.PTRResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}, dnsmessage.PTRResource{PTR: ptr})
				})
			}
		}
		rh.RCode = dnsmessage.RCodeNameError
		return build(rh, &question, nil)
	}
	return build(rh, &question, nil)
}

// reverse maps "4.3.18.198.in-addr.arpa." to the name behind 198.18.3.4.
func (t *Names) reverse(name string) (string, bool) {
	rest, ok := strings.CutSuffix(strings.ToLower(name), ".in-addr.arpa.")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return "", false
	}
	ip, err := netip.ParseAddr(fmt.Sprintf("%s.%s.%s.%s", parts[3], parts[2], parts[1], parts[0]))
	if err != nil {
		return "", false
	}
	return t.Name(ip)
}

func build(h dnsmessage.Header, q *dnsmessage.Question, answer func(*dnsmessage.Builder) error) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if q != nil {
		if b.StartQuestions() != nil || b.Question(*q) != nil {
			return nil
		}
	}
	if answer != nil {
		if b.StartAnswers() != nil || answer(&b) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// dnsLinger is how long a DNS flow waits for a further query (a resolver
// often sends A and AAAA on one socket) before it is closed. A later query
// opens a new flow, so a short linger loses nothing and keeps the number of
// open flows low when every lookup uses a new socket.
const dnsLinger = 500 * time.Millisecond

// serveDNSUDP answers queries on one UDP flow to port 53 until it idles.
func (n *Stack) serveDNSUDP(c *gonet.UDPConn) {
	defer n.wg.Done()
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(dnsLinger))
		k, addr, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := n.names.Answer(buf[:k]); resp != nil {
			c.WriteTo(resp, addr)
		}
	}
}

// serveDNSTCP answers length-prefixed queries on one TCP flow to port 53.
func (n *Stack) serveDNSTCP(c *Conn) {
	n.wg.Add(1)
	defer n.wg.Done()
	defer c.Close()
	var lenBuf [2]byte
	buf := make([]byte, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		k := int(binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, buf[:k]); err != nil {
			return
		}
		resp := n.names.Answer(buf[:k])
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}
