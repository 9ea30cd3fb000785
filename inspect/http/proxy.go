package http

import (
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// serve is one request, HTTP/1.1 or one HTTP/2 stream: build the action,
// decide, forward what is allowed, and report the outcome. Every request
// gets exactly one Finish; those the gate decided got a Decide first.
func (f *flow) serve(w nethttp.ResponseWriter, r *nethttp.Request) {
	start := time.Now()
	a := f.baseAction(action.ProtoHTTP)
	a.HTTP = requestFacts(f, r)
	var d action.Decision
	var out action.Outcome
	defer func() {
		out.Duration = time.Since(start)
		f.opts.Gate.Finish(a, d, out)
	}()

	// Refusals no policy can lift come first: they are about what the
	// request is, not what it does.
	switch {
	case f.refuse != nil:
		d = *f.refuse
	case r.Method == nethttp.MethodConnect:
		d = action.Denied("http-connect", "CONNECT tunnels are not inspected; clawpatrol is not a proxy")
	case !f.hostMatches(r.Host):
		d = action.Denied("host-mismatch", fmt.Sprintf("Host %q differs from %s, the verified destination", r.Host, f.hostPort()))
	case hasDotSegment(r.URL.Path):
		d = malformed("dot-segment (. or ..) in the request path")
		f.writeRefusal(w, a, nethttp.StatusBadRequest, d)
		return
	}
	if d.Rule != "" {
		f.writeRefusal(w, a, nethttp.StatusForbidden, d)
		return
	}

	body, facts, err := readPrefix(r.Context(), r, f.opts.BodyLimit)
	if body != nil {
		r.Body = body // what is left to read (or drain) goes through the replay
	}
	if err != nil {
		d = malformed("request body: " + err.Error())
		out.Error = err.Error()
		closeAfter(w)
		f.writeRefusal(w, a, nethttp.StatusBadRequest, d)
		return
	}
	a.HTTP.Body = string(facts.text)
	a.HTTP.JSON = parseJSON(facts)
	a.HTTP.Size = facts.size
	a.HTTP.Truncated = facts.truncated
	if f.opts.Describe != nil {
		if refused := f.opts.Describe(a, r); refused != nil {
			d = *refused
			f.writeRefusal(w, a, nethttp.StatusForbidden, d)
			return
		}
	}

	d = f.opts.Gate.Decide(r.Context(), a)
	if !d.Allowed() {
		f.writeRefusal(w, a, nethttp.StatusForbidden, d)
		return
	}
	if f.upErr != nil {
		out.Error = f.upErr.Error()
		var local *upstream.LocalError
		if errors.As(f.upErr, &local) {
			d = action.Denied("local-address", local.Error())
			f.writeRefusal(w, a, nethttp.StatusForbidden, d)
			return
		}
		writeBadGateway(w, f.upErr)
		return
	}
	f.forward(w, r, a, body, &d, &out)
}

// forward sends an allowed request upstream and streams the response back.
func (f *flow) forward(w nethttp.ResponseWriter, r *nethttp.Request, a *action.Action, body *prefixed, d *action.Decision, out *action.Outcome) {
	req := f.outgoing(r, body)
	if f.opts.Inject != nil {
		if err := f.opts.Inject(a, req); err != nil {
			*d = action.Denied("credential", err.Error())
			f.writeRefusal(w, a, nethttp.StatusForbidden, *d)
			return
		}
	}
	resp, err := f.up.rt.RoundTrip(req)
	if body != nil {
		defer func() { out.BytesUp = body.n.Load() }()
	}
	if err != nil {
		out.Error = err.Error()
		if r.Context().Err() != nil {
			return // the agent went away
		}
		var local *upstream.LocalError
		if errors.As(err, &local) {
			*d = action.Denied("local-address", local.Error())
			f.writeRefusal(w, a, nethttp.StatusForbidden, *d)
			return
		}
		writeBadGateway(w, err)
		return
	}
	defer resp.Body.Close()
	out.UpstreamStatus = resp.StatusCode
	if f.opts.Response != nil && resp.StatusCode != nethttp.StatusSwitchingProtocols {
		f.opts.Response(a, resp)
	}
	if ip := f.getDestIP(); ip != "" {
		a.Destination.IP = ip
	}
	if resp.StatusCode == nethttp.StatusSwitchingProtocols {
		f.switchProtocols(w, resp, out)
		return
	}
	copyResponseHeader(w.Header(), resp.Header)
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.Header().Set("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	n, readErr, writeErr := stream(w, resp.Body)
	out.BytesDown = n
	switch {
	case writeErr != nil:
		out.Error = "writing to the agent: " + writeErr.Error()
		abort(w)
	case readErr != nil:
		out.Error = "reading from upstream: " + readErr.Error()
		abort(w)
	}
	for k, vv := range resp.Trailer {
		w.Header()[nethttp.TrailerPrefix+k] = vv
	}
}

// outgoing is the request as it goes upstream: the agent's, with framing
// and hop-by-hop fields dropped and the request target kept as sent.
func (f *flow) outgoing(r *nethttp.Request, body *prefixed) *nethttp.Request {
	h := r.Header.Clone()
	removeHopHeaders(h, upgradeToken(r.Header) != "")
	h.Del("Content-Length")
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // send none, as the agent did
	}
	u := &url.URL{Scheme: f.scheme(), Host: f.authority(), Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if p, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") {
		u.Opaque = p // the path exactly as the agent encoded it
	}
	host := r.Host
	if host == "" {
		host = f.authority()
	}
	req := &nethttp.Request{
		Method: r.Method, URL: u, Host: host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		ContentLength: r.ContentLength, Trailer: r.Trailer,
	}
	if body != nil {
		req.Body = body
	} else {
		req.ContentLength = 0
	}
	return req.WithContext(r.Context())
}

// switchProtocols relays a 101 (WebSocket and other HTTP/1.1 upgrades):
// the response goes to the agent, then bytes flow both ways untouched.
func (f *flow) switchProtocols(w nethttp.ResponseWriter, resp *nethttp.Response, out *action.Outcome) {
	hw, ok := w.(*h1Writer)
	up, ok2 := resp.Body.(io.ReadWriteCloser)
	if !ok || !ok2 {
		out.Error = "upstream switched protocols on a request that did not ask to"
		writeBadGateway(w, errors.New(out.Error))
		return
	}
	r, c, err := hw.upgrade(resp.Header)
	if err != nil {
		out.Error = "writing to the agent: " + err.Error()
		return
	}
	sent, recv := relay(&bufferedConn{Conn: c, r: r}, up)
	out.BytesUp += sent
	out.BytesDown += recv
}

// requestFacts is the http block of the policy input, without the body.
func requestFacts(f *flow, r *nethttp.Request) *action.HTTP {
	h := newHTTPBlock(f, r.Method, r.URL.Path)
	if r.URL.RawQuery != "" {
		h.Query = r.URL.Query()
	}
	h.Headers = make(map[string][]string, len(r.Header))
	for k, v := range r.Header {
		h.Headers[strings.ToLower(k)] = v
	}
	h.Upgrade = upgradeToken(r.Header)
	return h
}

func newHTTPBlock(f *flow, method, path string) *action.HTTP {
	return &action.HTTP{Method: method, Scheme: f.scheme(), Host: f.name, Path: path}
}

func (f *flow) scheme() string {
	if f.tls {
		return "https"
	}
	return "http"
}

// hostMatches reports whether a Host header or :authority names the
// verified destination (and the port dialled, when it names one). An empty
// one (HTTP/1.0) means the verified destination.
func (f *flow) hostMatches(hostport string) bool {
	if hostport == "" {
		return true
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if port != "" && port != strconv.Itoa(f.t.Port) {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		want, err := netip.ParseAddr(f.name)
		return err == nil && ip.Unmap() == want.Unmap()
	}
	return sameHost(host, f.name)
}

// upgradeToken is the protocol an HTTP/1.1 request asks to switch to
// ("websocket"), lower-cased, or "".
func upgradeToken(h nethttp.Header) string {
	if h.Get("Upgrade") == "" || !headerHasToken(h, "Connection", "upgrade") {
		return ""
	}
	tok, _, _ := strings.Cut(h.Get("Upgrade"), ",")
	return strings.ToLower(strings.TrimSpace(tok))
}

func headerHasToken(h nethttp.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// hopHeaders describe one connection, not the message (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Http2-Settings"}

// removeHopHeaders drops hop-by-hop fields and those Connection names.
// An upgrade keeps "Connection: Upgrade" and its Upgrade field; "TE:
// trailers" survives, since gRPC servers require it.
func removeHopHeaders(h nethttp.Header, upgrade bool) {
	upgradeTo := h.Get("Upgrade")
	trailers := headerHasToken(h, "Te", "trailers")
	for _, v := range h["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				h.Del(t)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
	if upgrade {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upgradeTo)
	}
}

func copyResponseHeader(dst, src nethttp.Header) {
	for k, vv := range src {
		dst[k] = vv
	}
	removeHopHeaders(dst, false)
	if _, ok := src["Content-Type"]; !ok {
		dst["Content-Type"] = nil // no sniffed type the server never sent
	}
}

func hasDotSegment(path string) bool {
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func malformed(reason string) action.Decision {
	return action.Denied("http-malformed", reason)
}

// RuleHeader names the rule that refused a request.
const RuleHeader = "X-Clawpatrol-Rule"

// writeRefusal answers a refused request of this flow: with Options.Refuse
// when set, else as writeRefusal does.
func (f *flow) writeRefusal(w nethttp.ResponseWriter, a *action.Action, status int, d action.Decision) {
	if f.opts.Refuse != nil {
		f.opts.Refuse(w, a, status, d)
		return
	}
	writeRefusal(w, status, d)
}

// writeRefusal answers a refused request: plain text naming the rule and
// the reason, and the rule in RuleHeader.
func writeRefusal(w nethttp.ResponseWriter, status int, d action.Decision) {
	verb := "denied"
	if status == nethttp.StatusBadRequest || status == nethttp.StatusRequestHeaderFieldsTooLarge {
		verb = "rejected"
	}
	body := fmt.Sprintf("clawpatrol: %s by rule %q: %s\n", verb, d.Rule, d.Reason())
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set(RuleHeader, fieldValue(d.Rule))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// writeBadGateway tells the agent why its allowed request got no answer.
func writeBadGateway(w nethttp.ResponseWriter, err error) {
	kind := "upstream-failed"
	var uerr *upstreamError
	if errors.As(err, &uerr) {
		kind = "upstream-unreachable"
		if uerr.cert {
			kind = "upstream-certificate"
		}
	}
	body := "clawpatrol: " + err.Error() + "\n"
	if uerr == nil {
		body = "clawpatrol: upstream request failed: " + err.Error() + "\n"
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Clawpatrol-Error", kind)
	w.WriteHeader(nethttp.StatusBadGateway)
	io.WriteString(w, body)
}

// fieldValue makes a rule id safe as a header value.
func fieldValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// stream copies a response body to the agent, flushing after every read so
// server-sent events and long polls arrive as they are produced.
func stream(w nethttp.ResponseWriter, body io.Reader) (n int64, readErr, writeErr error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	flusher, _ := w.(nethttp.Flusher)
	for {
		k, err := body.Read(*bp)
		if k > 0 {
			if _, werr := w.Write((*bp)[:k]); werr != nil {
				return n, nil, werr
			}
			n += int64(k)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// abort makes the agent see an incomplete response: HTTP/1.1 closes the
// connection without the final chunk, HTTP/2 resets the stream.
func abort(w nethttp.ResponseWriter) {
	if hw, ok := w.(*h1Writer); ok {
		hw.abort()
		return
	}
	panic(nethttp.ErrAbortHandler)
}

// closeAfter closes an HTTP/1.1 connection after this response: its
// framing can no longer be trusted.
func closeAfter(w nethttp.ResponseWriter) {
	if hw, ok := w.(*h1Writer); ok {
		hw.closeAfter = true
	}
}
