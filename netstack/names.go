package netstack

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
)

// Names is the table of names the agent resolved and the virtual IPs they
// got. A name keeps its address for the whole session, so a flow to a
// virtual IP always tells which name the agent meant — also for protocols
// that carry no name of their own (Postgres, MySQL, opaque TCP).
type Names struct {
	mu     sync.Mutex
	net    netip.Prefix
	next   uint32
	last   uint32
	byName map[string]netip.Addr
	byIP   map[netip.Addr]string
}

// NewNames returns an empty table handing out addresses from p (IPv4).
func NewNames(p netip.Prefix) *Names {
	base := binary.BigEndian.Uint32(p.Masked().Addr().AsSlice())
	size := uint32(1) << (32 - p.Bits())
	return &Names{net: p, next: base + 1, last: base + size - 2, byName: map[string]netip.Addr{}, byIP: map[netip.Addr]string{}}
}

// Canonical lower-cases a name and drops its trailing dot.
func Canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// Assign returns the virtual IP for name, allocating one on first use.
// It returns false when the table is full.
func (t *Names) Assign(name string) (netip.Addr, bool) {
	name = Canonical(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	if ip, ok := t.byName[name]; ok {
		return ip, true
	}
	if t.next > t.last {
		return netip.Addr{}, false
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], t.next)
	t.next++
	ip := netip.AddrFrom4(b)
	t.byName[name] = ip
	t.byIP[ip] = name
	return ip, true
}

// Name returns the name a virtual IP was handed out for.
func (t *Names) Name(ip netip.Addr) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	name, ok := t.byIP[ip.Unmap()]
	return name, ok
}

// Len returns the number of names assigned.
func (t *Names) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byName)
}
