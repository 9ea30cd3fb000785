#!/usr/bin/env bash
# make bench: every figure is a ratio or a difference against the direct path
# measured in the same run, interleaved (direct, clawpatrol, direct, ...), so
# a noisy machine moves both sides. Writes a markdown table to
# bin/bench-capture.md for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
SECS=${SECS:-4}
go build -o bin/benchtool ./internal/benchtool

# The in-process benchmarks: each runs its direct and its clawpatrol path in
# one loop and reports both, and the ratio or the difference.
if [ -z "${CAPTURE_ONLY:-}" ]; then
echo "== policy decision, HTTPS interception, Postgres (go test -bench)"
go test -run XXX -bench 'BenchmarkDecide$' -benchtime 3s ./rego/ | grep -E '^Benchmark'
go test -run XXX -bench 'HTTPSKeepAlive' -benchtime 2000x ./inspect/http/ | grep -E '^Benchmark'
go test -run XXX -bench 'HTTPSDownload' -benchtime 3x ./inspect/http/ | grep -E '^Benchmark'
go test -run XXX -bench Pgbench -benchtime 1x ./inspect/postgres/ | grep -E '^Benchmark'
echo "== pgbench -S through clawpatrol run (netstack + inspector) vs direct"
go test -run XXX -bench PgbenchThroughRun -benchtime 1x ./e2e/ | grep -E '^Benchmark'
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
chmod 755 "$work"
cp bin/clawpatrol bin/benchtool "$work/"
cp -r examples "$work/examples"
mkdir -p "$work/home"
cat >"$work/clawpatrol.yaml" <<EOF
endpoints:
  iperf: {hosts: [bench.test], ports: [5201], protocol: tcp, upstream: "127.0.0.1:5201"}
  echo:  {hosts: [echo.test], ports: [7777], protocol: tcp, upstream: "127.0.0.1:7777"}
EOF
as_user=()
if [ "$(id -u)" = 0 ]; then
	chown -R nobody "$work"
	as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
agent() { # run a command as the ordinary user, inside clawpatrol
	"${as_user[@]}" env HOME="$work/home" PATH=/usr/sbin:/usr/bin:/bin \
		"$work/clawpatrol" run -c "$work/clawpatrol.yaml" --audit "$work/home/audit.jsonl" -- "$@"
}
direct() { "${as_user[@]}" env HOME="$work/home" "$@"; }

iperf3 -s -B 127.0.0.1 -p 5201 >/dev/null 2>&1 &
"$work/benchtool" echo -addr 127.0.0.1:7777 &
sleep 0.5

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
gbps() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))'; }

echo "== bulk TCP (iperf3, ${SECS}s x $REPS, single stream)"
: >"$work/up.d"; : >"$work/up.c"; : >"$work/down.d"; : >"$work/down.c"
for _ in $(seq "$REPS"); do
	direct iperf3 -J -c 127.0.0.1 -p 5201 -t "$SECS" | gbps >>"$work/up.d"
	agent iperf3 -J -c bench.test -p 5201 -t "$SECS" | gbps >>"$work/up.c"
	direct iperf3 -J -R -c 127.0.0.1 -p 5201 -t "$SECS" | gbps >>"$work/down.d"
	agent iperf3 -J -R -c bench.test -p 5201 -t "$SECS" | gbps >>"$work/down.c"
done
up_d=$(median <"$work/up.d"); up_c=$(median <"$work/up.c")
down_d=$(median <"$work/down.d"); down_c=$(median <"$work/down.c")
ratio() { python3 -c "print(round($1/$2, 2))"; }
echo "up:   direct $up_d Gbit/s, clawpatrol $up_c Gbit/s, ratio $(ratio "$up_c" "$up_d")"
echo "down: direct $down_d Gbit/s, clawpatrol $down_c Gbit/s, ratio $(ratio "$down_c" "$down_d")"

echo "== new connection (connect + 16 B request + echo + close, 1000 x $REPS)"
: >"$work/cl.d50"; : >"$work/cl.c50"; : >"$work/cl.d99"; : >"$work/cl.c99"
for _ in $(seq "$REPS"); do
	read -r p50 p99 < <(direct "$work/benchtool" connlat -addr 127.0.0.1:7777 -n 1000)
	echo "$p50" >>"$work/cl.d50"; echo "$p99" >>"$work/cl.d99"
	read -r p50 p99 < <(agent "$work/benchtool" connlat -addr echo.test:7777 -n 1000)
	echo "$p50" >>"$work/cl.c50"; echo "$p99" >>"$work/cl.c99"
done
cd50=$(median <"$work/cl.d50"); cc50=$(median <"$work/cl.c50")
cd99=$(median <"$work/cl.d99"); cc99=$(median <"$work/cl.c99")
echo "p50: direct $cd50 us, clawpatrol $cc50 us, added $((cc50 - cd50)) us"
echo "p99: direct $cd99 us, clawpatrol $cc99 us, added $((cc99 - cd99)) us"

echo "== start-up, example policies loaded (hyperfine, 200 runs)"
"${as_user[@]}" env HOME="$work/home" hyperfine -N -w 10 -r 200 --export-json "$work/start.json" \
	"$work/clawpatrol run -c $work/clawpatrol.yaml -p $work/examples --audit $work/home/audit.jsonl -- true" "true" >/dev/null 2>&1
read -r start_c start_d < <(python3 -c "
import json; r=json.load(open('$work/start.json'))['results']
print(round(r[0]['mean']*1000, 2), round(r[1]['mean']*1000, 2))")
echo "clawpatrol run -- true: $start_c ms, true: $start_d ms, added $(python3 -c "print(round($start_c-$start_d, 2))") ms"

echo "== RSS of the clawpatrol process"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; } # KiB
# exec, setpriv and env all exec, so $! is clawpatrol itself.
agent_bg() { (exec "${as_user[@]}" env HOME="$work/home" PATH=/usr/sbin:/usr/bin:/bin \
	"$work/clawpatrol" run -c "$work/clawpatrol.yaml" --audit "$work/home/audit.jsonl" -- "$@") & }
agent_bg sleep 4
pid=$!
sleep 2
rss_idle=$(rss "$pid")
wait "$pid"
agent_bg "$work/benchtool" flows -addr echo.test:7777 -n 100 -hold 5s >/dev/null
pid=$!
sleep 3
rss_busy=$(rss "$pid")
wait "$pid"
echo "idle: $((rss_idle / 1024)) MiB; with 100 flows: $((rss_busy / 1024)) MiB, $(((rss_busy - rss_idle) / 100)) KiB per flow"

cat >bin/bench-capture.md <<EOF
| what | direct | clawpatrol | ratio / added |
|---|---|---|---|
| bulk TCP up (iperf3, Gbit/s) | $up_d | $up_c | $(ratio "$up_c" "$up_d") |
| bulk TCP down (iperf3 -R, Gbit/s) | $down_d | $down_c | $(ratio "$down_c" "$down_d") |
| new connection p50 (µs) | $cd50 | $cc50 | +$((cc50 - cd50)) µs |
| new connection p99 (µs) | $cd99 | $cc99 | +$((cc99 - cd99)) µs |
| start-up, \`run -- true\` vs \`true\` (ms) | $start_d | $start_c | +$(python3 -c "print(round($start_c-$start_d, 2))") ms |
| RSS idle / with 100 flows (MiB) | | $((rss_idle / 1024)) / $((rss_busy / 1024)) | $(((rss_busy - rss_idle) / 100)) KiB per flow |
EOF
echo "(table written to bin/bench-capture.md)"
