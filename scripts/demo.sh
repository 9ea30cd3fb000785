#!/usr/bin/env bash
# make demo: a local service, an agent (a shell running curl) wrapped by
# clawpatrol, one allowed action and one denied one, and the audit lines.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/clawpatrol
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/www"
echo "hello from the demo service" >"$work/www/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
until curl -s "http://127.0.0.1:$port/" >/dev/null; do sleep 0.1; done

cat >"$work/clawpatrol.yaml" <<YAML
# The name demo.local is mapped to the local service; nothing else is allowed.
endpoints:
  demo:
    hosts: [demo.local]
    ports: [80]
    protocol: http
    upstream: 127.0.0.1:$port
YAML
cat >"$work/demo.rego" <<'REGO'
package clawpatrol

allow contains "demo-service" if input.endpoint == "demo"
REGO

if [ "$(stat -c %a /dev/net/tun)" != 666 ] && [ "$(id -u)" != 0 ]; then
	echo "demo: /dev/net/tun must be usable by you: sudo chmod 0666 /dev/net/tun" >&2
	exit 1
fi

echo "\$ clawpatrol run -c clawpatrol.yaml -p demo.rego -- sh -c 'curl http://demo.local/; curl https://example.com/'"
"$bin" run -c "$work/clawpatrol.yaml" -p "$work/demo.rego" --audit "$work/audit.jsonl" -- sh -c '
	echo "agent: curl http://demo.local/"
	curl -sS --connect-timeout 10 http://demo.local/
	echo "agent: curl https://example.com/"
	curl -sS --connect-timeout 10 -w "agent: (HTTP %{http_code} from clawpatrol)\n" https://example.com/
'
echo
echo "audit log ($work/audit.jsonl):"
python3 - "$work/audit.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["event"] == "action":
        d = r["decision"]
        where = r["destination"].get("host", "")
        print(f'  {r["time"][11:23]}  {d["verdict"]:<5}  {where:<12} {r["summary"]:<20} rule={d["rule"]}')
    else:
        print(f'  {r["time"][11:23]}  {r["event"]}')
PY
