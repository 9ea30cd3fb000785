package e2e

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/pgtest"
)

var (
	tpsRe     = regexp.MustCompile(`tps = ([0-9.]+)`)
	latencyRe = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

// BenchmarkPgbenchThroughRun runs pgbench (select-only) against a real
// PostgreSQL directly and from inside `clawpatrol run` (netstack, the
// Postgres inspector, login offload, a Rego policy), alternately, and
// reports the TPS ratio and the added latency. `make bench` runs it.
func BenchmarkPgbenchThroughRun(b *testing.B) {
	e, srv := postgresEnv(b, "", "")
	if out, err := exec.Command("pgbench", "-i", "-s", "1", "-q", "-h", srv.Dir, "-p", strconv.Itoa(srv.Port), "-U", pgtest.User, pgtest.Database).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	e.write("policy.rego", pgClientsPolicy)
	pgbench := func(through bool, mode string) (tps, lat float64) {
		args := []string{"pgbench", "-n", "-S", "-M", mode, "-T", "4", "-U", pgtest.User, pgtest.Database}
		var cmd *exec.Cmd
		if through {
			cmd = e.command(append([]string{"run", "-c", e.cfg, "--audit", "/dev/null", "--", "pgbench", "-h", "db.test", "-p", "5432"}, args[1:]...)...)
			cmd.Env = append(cmd.Env, pgEnv)
		} else {
			cmd = exec.Command("pgbench", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port)}, args[1:]...)...)
			cmd.Env = []string{"PATH=" + agentPath, "PGPASSWORD=" + pgtest.Password}
		}
		out, err := cmd.CombinedOutput()
		m, l := tpsRe.FindSubmatch(out), latencyRe.FindSubmatch(out)
		if err != nil || m == nil || l == nil {
			b.Fatalf("pgbench (through=%v): %v\n%s", through, err, out)
		}
		tps, _ = strconv.ParseFloat(string(m[1]), 64)
		lat, _ = strconv.ParseFloat(string(l[1]), 64)
		return tps, lat
	}
	for _, mode := range []string{"prepared", "simple"} {
		b.Run(mode, func(b *testing.B) {
			var dt, ct, dl, cl float64
			for range b.N {
				t1, l1 := pgbench(false, mode)
				t2, l2 := pgbench(true, mode)
				dt, ct, dl, cl = dt+t1, ct+t2, dl+l1, cl+l2
			}
			n := float64(b.N)
			b.ReportMetric(dt/n, "direct-tps")
			b.ReportMetric(ct/n, "clawpatrol-tps")
			b.ReportMetric(ct/dt, "ratio")
			b.ReportMetric((cl-dl)/n*1000, "added-µs")
		})
	}
}
