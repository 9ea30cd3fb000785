package clickhouse

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// upstreamIdle closes an idle upstream connection; the next request dials
// again.
const upstreamIdle = 90 * time.Second

// transport dials the verified destination for every upstream request,
// over TLS per upstream_tls.
func (f *flow) transport() *nethttp.Transport {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := f.opts.Dialer.Dial(ctx, "tcp", f.t)
		if err != nil {
			return nil, err
		}
		if !f.tls() {
			return c, nil
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.opts.UpstreamTLS == "verify-full" {
			cfg.RootCAs, cfg.ServerName = f.opts.UpstreamRoots, f.serverName()
		} else {
			cfg.InsecureSkipVerify = true // require: encrypted, not checked
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with the server: %w", err)
		}
		return tc, nil
	}
	return &nethttp.Transport{
		Proxy:               nil, // the agent's request goes where it was going
		DialContext:         dial,
		DialTLSContext:      dial,
		DisableCompression:  true, // bodies pass as the server sent them
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     upstreamIdle,
	}
}

func (f *flow) tls() bool {
	return f.opts.UpstreamTLS == "require" || f.opts.UpstreamTLS == "verify-full"
}

// serverName is the name verify-full checks.
func (f *flow) serverName() string { return f.t.ServerName(f.opts.ServerName) }

// hopHeaders are not forwarded (RFC 9110 §7.6.1), nor are the agent's
// credentials and Expect (the transport sends the body at once).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"}

// forward sends an allowed request upstream, with the real login, and
// streams the answer back.
func (f *flow) forward(w nethttp.ResponseWriter, req *request, a *action.Action, d *action.Decision, out *action.Outcome) {
	r := req.r
	params := req.params
	h := r.Header.Clone()
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if l := f.opts.Login; l != nil {
		params = cloneValues(params)
		params.Del("user")
		params.Del("password")
		h.Del("Authorization")
		h.Del("X-ClickHouse-User")
		h.Del("X-ClickHouse-Key")
		user := l.Username
		if user == "" {
			user = req.user
		}
		if f.opts.BasicAuth {
			h.Set("Authorization", "Basic "+basic(user, l.Password))
		} else {
			h.Set("X-ClickHouse-User", user)
			h.Set("X-ClickHouse-Key", l.Password)
		}
	}
	scheme := "http"
	if f.tls() {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: f.hostPort(), Path: r.URL.Path, RawQuery: params.Encode()}
	if req.params.Encode() == params.Encode() {
		u.RawQuery = r.URL.RawQuery // unchanged: as the agent wrote it
	}
	var counted *countingReader
	var body io.ReadCloser
	if r.ContentLength != 0 && r.Body != nil && r.Body != nethttp.NoBody {
		counted = &countingReader{r: req.body()}
		body = io.NopCloser(counted)
	}
	up, err := nethttp.NewRequestWithContext(r.Context(), r.Method, u.String(), body)
	if err != nil {
		out.Error = err.Error()
		writeError(w, nethttp.StatusBadRequest, action.Denied("clickhouse-malformed", err.Error()))
		return
	}
	up.Header = h
	up.Host = r.Host
	up.ContentLength = r.ContentLength
	if body == nil {
		up.ContentLength = 0
	}
	resp, err := f.rt.RoundTrip(up)
	if counted != nil {
		out.BytesUp = counted.n.Load()
	}
	if err != nil {
		out.Error = err.Error()
		if r.Context().Err() != nil {
			return // the agent went away
		}
		var local *upstream.LocalError
		if errors.As(err, &local) {
			*d = action.Denied("local-address", local.Error())
			writeError(w, nethttp.StatusForbidden, *d)
			return
		}
		writeUpstreamError(w, err)
		return
	}
	defer resp.Body.Close()
	out.UpstreamStatus = resp.StatusCode
	if code := resp.Header.Get("X-ClickHouse-Exception-Code"); code != "" {
		out.Error = "ClickHouse exception " + code
	}
	dst := w.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	for _, k := range hopHeaders {
		dst.Del(k)
	}
	src := io.Reader(resp.Body)
	if f.opts.Redact != nil {
		src = f.opts.Redact(src)
		dst.Del("Content-Length") // redaction changes it
	}
	w.WriteHeader(resp.StatusCode)
	n, err := stream(w, src)
	out.BytesDown = n
	if counted != nil {
		out.BytesUp = counted.n.Load()
	}
	if err != nil && out.Error == "" {
		out.Error = err.Error()
	}
}

// hostPort is the verified destination with the port the agent dialled.
func (f *flow) hostPort() string {
	host := f.t.Host
	if host == "" {
		host = f.t.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(f.t.Port))
}

func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vals := range v {
		out[k] = append([]string(nil), vals...)
	}
	return out
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// stream copies a response body to the agent, flushing after every read:
// a long query's progress and rows arrive as the server sends them.
func stream(w nethttp.ResponseWriter, body io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	rc := nethttp.NewResponseController(w)
	var n int64
	for {
		k, err := body.Read(*bp)
		if k > 0 {
			if _, werr := w.Write((*bp)[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			rc.Flush()
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
