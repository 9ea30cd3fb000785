package tlsca

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

const (
	// leafCacheSize bounds the minted leaves kept in memory.
	leafCacheSize = 1024
	// leafValidity is a leaf's lifetime; short, since leaves are cheap to
	// mint and never leave this process.
	leafValidity = 30 * 24 * time.Hour
	// leafRenew re-mints a cached leaf this long before it expires, so a
	// handshake never gets a certificate about to lapse.
	leafRenew = 24 * time.Hour
	// maxCN is the X.520 upper bound of a common name; longer names live
	// in the SAN only.
	maxCN = 64
)

// GetCertificate returns a leaf certificate for name (a DNS name or an IP
// literal), minted on first use and cached.
func (ca *CA) GetCertificate(name string) (*tls.Certificate, error) {
	name, err := normalize(name)
	if err != nil {
		return nil, err
	}
	return ca.leaves.get(name, ca.mint)
}

// normalize lower-cases a DNS name and drops its trailing dot, or returns
// an IP literal in canonical form. Anything else is refused: the name ends
// up in a certificate.
func normalize(name string) (string, error) {
	if ip, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("leaf name %q: zoned address", name)
		}
		return ip.Unmap().String(), nil
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if len(name) == 0 || len(name) > 253 {
		return "", fmt.Errorf("leaf name %q: bad length", name)
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("leaf name %q: bad label %q", name, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("leaf name %q: bad character %q", name, c)
			}
		}
	}
	return name, nil
}

// mint signs a new leaf for a normalized name.
func (ca *CA) mint(name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("leaf key: %w", err)
	}
	ski, err := keyID(key.Public())
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notBefore := now.Add(-time.Hour) // tolerate clients whose clock is a little behind
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("ca certificate %s has expired", ca.Path())
	}
	cn := name
	if len(cn) > maxCN {
		cn = "clawpatrol leaf"
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// A non-empty subject: Java rejects an empty one next to a
		// non-critical SAN.
		Subject:               pkix.Name{Organization: []string{"clawpatrol"}, CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		// AuthorityKeyId is taken from the CA's SubjectKeyId by Go.
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("leaf %s: %w", name, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// leafCache is an LRU of minted leaves. Concurrent requests for one name
// wait for a single mint.
type leafCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *leafEntry, most recent first
	entries map[string]*list.Element
}

type leafEntry struct {
	name  string
	ready chan struct{} // closed once cert or err is set
	cert  *tls.Certificate
	err   error
}

func newLeafCache(max int) *leafCache {
	return &leafCache{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

func (c *leafCache) get(name string, mint func(string) (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	if el, ok := c.entries[name]; ok {
		e := el.Value.(*leafEntry)
		if !e.stale() {
			c.order.MoveToFront(el)
			c.mu.Unlock()
			<-e.ready
			return e.cert, e.err
		}
		c.order.Remove(el)
		delete(c.entries, name)
	}
	e := &leafEntry{name: name, ready: make(chan struct{})}
	c.entries[name] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*leafEntry).name)
	}
	c.mu.Unlock()

	e.cert, e.err = mint(name)
	close(e.ready)
	if e.err != nil {
		c.mu.Lock()
		if el, ok := c.entries[name]; ok && el.Value.(*leafEntry) == e {
			c.order.Remove(el)
			delete(c.entries, name)
		}
		c.mu.Unlock()
	}
	return e.cert, e.err
}

// stale reports whether a finished entry should be minted again.
func (e *leafEntry) stale() bool {
	select {
	case <-e.ready:
		return e.err != nil || time.Until(e.cert.Leaf.NotAfter) < leafRenew
	default:
		return false // being minted
	}
}

// len is the number of cached names.
func (c *leafCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
