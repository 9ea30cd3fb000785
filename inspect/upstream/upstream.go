// Package upstream dials the real destination of an allowed flow from the
// host: an endpoint's mapped upstream, or the name the agent asked for,
// resolved only now. It refuses addresses the agent must never reach on its
// own (host loopback, link-local and metadata, the host's own addresses).
package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/clawpatrol/clawpatrol/config"
)

// DialTimeout bounds connecting upstream; a blackholed destination must not
// hold a forwarder slot for long.
const DialTimeout = 10 * time.Second

// Target is the verified destination of a flow.
type Target struct {
	Host     string     // the name the agent resolved, or "" for an IP literal
	IP       netip.Addr // the address the agent dialled (virtual for names)
	Port     int
	Endpoint *config.Endpoint // nil when none matched
}

// LocalError is a refusal to dial an address that is local to the host.
type LocalError struct{ Addr netip.Addr }

func (e *LocalError) Error() string {
	return fmt.Sprintf("%v is local to this host and no endpoint maps it with upstream", e.Addr)
}

// Dialer connects to targets.
type Dialer struct {
	// Own are the host's own addresses; Refused adds ranges never dialled
	// without an endpoint's upstream.
	Own      map[netip.Addr]bool
	Refused  []netip.Prefix
	Resolver *net.Resolver
}

// NewDialer returns a dialer that knows this host's addresses.
func NewDialer() *Dialer {
	d := &Dialer{Own: map[netip.Addr]bool{}, Resolver: net.DefaultResolver}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				d.Own[p.Addr().Unmap()] = true
			}
		}
	}
	for _, s := range []string{"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "198.18.0.0/15",
		"::/128", "::1/128", "fe80::/10", "ff00::/8", "fd00:ec2::/32"} {
		d.Refused = append(d.Refused, netip.MustParsePrefix(s))
	}
	return d
}

// Local reports whether the agent may not reach ip by itself.
func (d *Dialer) Local(ip netip.Addr) bool {
	ip = ip.Unmap()
	if d.Own[ip] {
		return true
	}
	for _, p := range d.Refused {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Address returns where to connect for t: the endpoint's upstream when it
// has one, else t's name resolved now (or its IP literal). A local address
// is a *LocalError.
func (d *Dialer) Address(ctx context.Context, t Target) (string, error) {
	if t.Endpoint != nil && t.Endpoint.Upstream != "" {
		return t.Endpoint.Upstream, nil
	}
	ip := t.IP
	if t.Host != "" {
		ips, err := d.Resolver.LookupNetIP(ctx, "ip", t.Host)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %w", t.Host, err)
		}
		if len(ips) == 0 {
			return "", fmt.Errorf("resolve %s: no addresses", t.Host)
		}
		ip = ips[0]
		for _, cand := range ips { // prefer IPv4: it is what the agent was told
			if cand.Unmap().Is4() {
				ip = cand
				break
			}
		}
	}
	if d.Local(ip) {
		return "", &LocalError{Addr: ip}
	}
	return net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(t.Port)), nil
}

// Dial connects to t over network ("tcp" or "udp").
func (d *Dialer) Dial(ctx context.Context, network string, t Target) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	addr, err := d.Address(ctx, t)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ServerName is the name to verify the upstream's certificate against:
// override when set, else the name the agent resolved, else the host of the
// endpoint's upstream address, else the IP the agent dialled.
func (t Target) ServerName(override string) string {
	if override != "" {
		return override
	}
	if t.Host != "" {
		return t.Host
	}
	if t.Endpoint != nil && t.Endpoint.Upstream != "" {
		if h, _, err := net.SplitHostPort(t.Endpoint.Upstream); err == nil {
			return h
		}
	}
	return t.IP.String()
}
