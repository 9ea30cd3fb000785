package postgres

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/rego"
)

// regoGate decides with the example Postgres policy, as a session would;
// the audit log is left out.
type regoGate struct{ eng *rego.Engine }

func (g regoGate) Decide(ctx context.Context, a *action.Action) action.Decision {
	return g.eng.Decide(ctx, a)
}
func (g regoGate) Finish(*action.Action, action.Decision, action.Outcome) {}

var (
	tpsRe     = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latencyRe = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

// pgbench runs a select-only pgbench and returns its TPS and mean latency.
func pgbench(b *testing.B, port int, password, mode string, clients int) (tps, latencyMS float64) {
	b.Helper()
	c := exec.Command("pgbench", "-n", "-S", "-M", mode, "-T", "3", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", pgUser, pgDatabase)
	c.Env = append(os.Environ(), "PGPASSWORD="+password, "PGSSLMODE=disable")
	out, err := c.CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m, l := tpsRe.FindSubmatch(out), latencyRe.FindSubmatch(out)
	if m == nil || l == nil {
		b.Fatalf("pgbench output:\n%s", out)
	}
	tps, _ = strconv.ParseFloat(string(m[1]), 64)
	latencyMS, _ = strconv.ParseFloat(string(l[1]), 64)
	return tps, latencyMS
}

// startRelay forwards bytes to the server and nothing else: the floor any
// proxy in the path pays (two more hops through the kernel and a process).
func startRelay(b *testing.B, port int) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				u, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					return
				}
				defer u.Close()
				wg.Go(func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() })
				io.Copy(c, u)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkPgbench compares pgbench select-only through Handle (login
// offload, the example policy deciding every query) with pgbench straight
// at the server and through a plain TCP relay, in one run. Run it with
// -benchtime 1x: each run is a fixed-length pgbench, and the three are
// alternated and repeated to even out a shared machine.
func BenchmarkPgbench(b *testing.B) {
	srv := testServer(b)
	if out, err := exec.Command("pgbench", "-i", "-s", "1", "-q", "-h", srv.dir, "-p", strconv.Itoa(srv.port), "-U", pgUser, pgDatabase).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	eng, err := rego.Load([]string{"../../examples/postgres"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	opts := proxyOptions(srv)
	opts.UpstreamTLS = "disable" // pgbench's direct runs are cleartext too
	opts.Gate = regoGate{eng}
	p := startProxy(b, srv, opts)
	relay := startRelay(b, srv.port)
	for _, mode := range []string{"prepared", "simple"} {
		for _, clients := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/c%d", mode, clients), func(b *testing.B) {
				var dTPS, dLat, rTPS, rLat, pTPS, pLat float64
				const rounds = 3
				for range rounds {
					t, l := pgbench(b, srv.port, pgPassword, mode, clients)
					dTPS, dLat = dTPS+t/rounds, dLat+l/rounds
					t, l = pgbench(b, relay, pgPassword, mode, clients)
					rTPS, rLat = rTPS+t/rounds, rLat+l/rounds
					t, l = pgbench(b, p.port, placeholder, mode, clients)
					pTPS, pLat = pTPS+t/rounds, pLat+l/rounds
				}
				b.ReportMetric(dTPS, "direct-tps")
				b.ReportMetric(pTPS, "clawpatrol-tps")
				b.ReportMetric(pTPS/dTPS, "ratio")
				b.ReportMetric((pLat-dLat)*1000, "added-µs")
				b.Logf("| %s | %d | %.0f | %.3f | %.0f (%.2f) | %.3f | %.0f (%.2f) | %.3f | +%.0f µs |",
					mode, clients, dTPS, dLat, rTPS, rTPS/dTPS, rLat, pTPS, pTPS/dTPS, pLat, (pLat-dLat)*1000)
			})
		}
	}
}
