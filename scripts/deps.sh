#!/usr/bin/env bash
# Installs what the tests (or benchmarks) need when it is missing: from
# Debian's packages when root, otherwise prints the exact command and fails.
# Also makes sure ordinary users can open /dev/net/tun (most desktops ship it
# 0666; some servers and CI images ship 0600).
set -euo pipefail
what=${1:-test}

# what must exist (a command, or python:MODULE) -> Debian package
declare -A need=(
	[curl]=curl
	[/usr/bin/python3]=python3
	[ip]=iproute2
	[unshare]=util-linux
	[setpriv]=util-linux
	[git]=git
	[script]=bsdutils
	[/usr/lib/git-core/git-http-backend]=git
	[/usr/lib/postgresql/15/bin/initdb]=postgresql
	[psql]=postgresql-client
	[/usr/lib/postgresql/15/bin/pgbench]=postgresql
	[python:psycopg2]=python3-psycopg2
	[/usr/sbin/mariadbd]=mariadb-server
	[mariadb]=mariadb-client
	[clickhouse-server]=clickhouse-server
	[clickhouse-client]=clickhouse-client
	[kubectl]=kubectl
	[chromium]=chromium
	[node]=nodejs
	[npm]=npm
)
if [ "$what" = bench ]; then
	need[iperf3]=iperf3
	need[hyperfine]=hyperfine
fi

have() {
	case "$1" in
	python:*) /usr/bin/python3 -c "import ${1#python:}" >/dev/null 2>&1 ;;
	*) command -v "$1" >/dev/null 2>&1 ;;
	esac
}
missing=()
for want in "${!need[@]}"; do
	have "$want" || missing+=("${need[$want]}")
done
if [ ${#missing[@]} -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	if [ "$(id -u)" = 0 ]; then
		echo "deps: installing $pkgs"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		# shellcheck disable=SC2086
		apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
	else
		echo "deps: missing packages: $pkgs" >&2
		echo "deps: install them with: sudo apt-get install -y $pkgs" >&2
		exit 1
	fi
fi

if [ ! -c /dev/net/tun ]; then
	echo "deps: /dev/net/tun is missing; load it with: sudo modprobe tun" >&2
	exit 1
fi
if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "deps: chmod 0666 /dev/net/tun (ordinary users need it; most desktops ship it so)"
		chmod 0666 /dev/net/tun
	elif ! [ -r /dev/net/tun ] || ! [ -w /dev/net/tun ]; then
		echo "deps: /dev/net/tun is not usable by you; fix it with: sudo chmod 0666 /dev/net/tun" >&2
		exit 1
	fi
fi
