package config

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
)

// Match returns the endpoint for a destination: host is the name the agent
// resolved (or "" when it dialled an IP literal), ip the address it dialled.
// Exact names win over wildcards, wildcards over IPs and CIDRs; among equals
// the endpoint whose name sorts first wins, so matching is deterministic.
func (c *Config) Match(host string, ip netip.Addr, port int) *Endpoint {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var best *Endpoint
	bestRank := 0
	for _, name := range sortedKeys(c.Endpoints) {
		e := c.Endpoints[name]
		if !containsPort(e.Ports, port) {
			continue
		}
		if r := e.rank(host, ip); r > bestRank {
			best, bestRank = e, r
		}
	}
	return best
}

// rank says how well the endpoint's hosts match: 0 no match, 1 CIDR,
// 2 IP, 3 wildcard, 4 exact name.
func (e *Endpoint) rank(host string, ip netip.Addr) int {
	best := 0
	for _, h := range e.Hosts {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		r := 0
		switch {
		case strings.Contains(h, "/"):
			if p, err := netip.ParsePrefix(h); err == nil && ip.IsValid() && p.Contains(ip.Unmap()) {
				r = 1
			}
		case strings.HasPrefix(h, "*."):
			if host != "" && strings.HasSuffix(host, h[1:]) {
				r = 3
			}
		default:
			if a, err := netip.ParseAddr(h); err == nil {
				if ip.IsValid() && a == ip.Unmap() {
					r = 2
				}
			} else if host == h {
				r = 4
			}
		}
		best = max(best, r)
	}
	return best
}

// IsPassthrough reports whether TLS to host is spliced without interception.
func (c *Config) IsPassthrough(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, p := range c.Passthrough {
		p = strings.ToLower(p)
		if p == host || (strings.HasPrefix(p, "*.") && strings.HasSuffix(host, p[1:])) {
			return true
		}
	}
	return false
}

// EndpointNames returns the endpoint names, sorted.
func (c *Config) EndpointNames() []string { return sortedKeys(c.Endpoints) }

func containsPort(ports []int, p int) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// Digest is the sha256 of b as "sha256:HEX".
func Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}
