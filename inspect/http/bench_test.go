package http

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"slices"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// allowGate allows everything and records nothing: the benchmarks measure
// the inspector, not a policy.
type allowGate struct{}

func (allowGate) Decide(context.Context, *action.Action) action.Decision {
	return action.Decision{Verdict: action.Allow, Rule: "bench"}
}
func (allowGate) Finish(*action.Action, action.Decision, action.Outcome) {}

// directClient talks to the upstream itself, verifying it as Handle does.
func directClient(h *harness, h2 bool) *nethttp.Client {
	tr := &nethttp.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", h.up.srv.Listener.Addr().String())
		},
		TLSClientConfig:   &tls.Config{RootCAs: h.up.roots},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) nethttp.RoundTripper{}
	}
	return &nethttp.Client{Transport: tr}
}

func timedGet(b *testing.B, c *nethttp.Client, url string) time.Duration {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start)
}

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Microseconds())
}

// BenchmarkHTTPSKeepAlive measures one small keep-alive HTTPS request
// through Handle against the same request sent to the server directly,
// interleaved so both see the same machine load. The added latency is the
// difference of the percentiles.
func BenchmarkHTTPSKeepAlive(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "http1", true: "h2"}[h2]
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, upstreamH2, func(h *harness) { h.opts.Gate = allowGate{} })
			h.up.mux.HandleFunc("/small", func(w nethttp.ResponseWriter, r *nethttp.Request) { io.WriteString(w, "ok") })
			direct, through := directClient(h, h2), h.client(h2)
			defer direct.Transport.(*nethttp.Transport).CloseIdleConnections()
			for range 200 { // warm up connections, leaf cache, pools
				timedGet(b, direct, "https://api.test/small")
				timedGet(b, through, "https://api.test/small")
			}
			dd := make([]time.Duration, 0, b.N)
			td := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dd = append(dd, timedGet(b, direct, "https://api.test/small"))
				td = append(td, timedGet(b, through, "https://api.test/small"))
			}
			b.StopTimer()
			b.ReportMetric(percentile(dd, 0.5), "direct-p50-µs")
			b.ReportMetric(percentile(td, 0.5), "through-p50-µs")
			b.ReportMetric(percentile(td, 0.5)-percentile(dd, 0.5), "added-p50-µs")
			b.ReportMetric(percentile(td, 0.99)-percentile(dd, 0.99), "added-p99-µs")
		})
	}
}

// BenchmarkHTTPSDownload measures bulk download throughput through Handle
// as a ratio of the direct path, in the same run.
func BenchmarkHTTPSDownload(b *testing.B) {
	const size = 64 << 20
	blob := make([]byte, 1<<20)
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "http1", true: "h2"}[h2]
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, upstreamH2, func(h *harness) { h.opts.Gate = allowGate{} })
			h.up.mux.HandleFunc("/blob", func(w nethttp.ResponseWriter, r *nethttp.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(size))
				for range size / len(blob) {
					w.Write(blob)
				}
			})
			direct, through := directClient(h, h2), h.client(h2)
			defer direct.Transport.(*nethttp.Transport).CloseIdleConnections()
			timedGet(b, direct, "https://api.test/blob")
			timedGet(b, through, "https://api.test/blob")
			var dt, tt time.Duration
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dt += timedGet(b, direct, "https://api.test/blob")
				tt += timedGet(b, through, "https://api.test/blob")
			}
			b.StopTimer()
			mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
			b.ReportMetric(mbps(dt), "direct-MB/s")
			b.ReportMetric(mbps(tt), "through-MB/s")
			b.ReportMetric(mbps(tt)/mbps(dt), "ratio")
		})
	}
}
