#!/usr/bin/env bash
# Installs the Debian packages imdbfs needs to build, test and benchmark.
# Idempotent and silent when everything is already present.
set -euo pipefail

packages=(
	gcc make pkg-config
	clang libclang-rt-14-dev # make check-clang; make fuzz (libFuzzer, ASan, UBSan)
	libfuse3-dev fuse3
	libcurl4-openssl-dev zlib1g-dev libssl-dev libcjson-dev
	libcmocka-dev
	libisal-dev isal # ISA-L's inflate (the default decoder) and igzip for make bench
	nginx-light curl gzip
	aria2 # aria2c -x4 -s4: the reference of make bench's segmented_ratio
	python3 python3-pytest
	strace # tests/e2e/test_hostile_cache.py: the order of fsyncs and renames of a commit
	rsync # tests/e2e/test_tools.py: rsync -a of a cold mount
	man-db groff-base # man -l and groff render the man pages in the tests
	postgresql mariadb-server mariadb-client sqlite3
	nodejs
	prometheus # promtool: the reference parser of .control/metrics
	dpkg-dev adduser systemd # make deb; tests/e2e/test_packaging.py (systemd-analyze verify)
)
# npm for Azurite; NodeSource's nodejs bundles it and conflicts with Debian's npm.
command -v npm >/dev/null || packages+=(npm)

# Into the git-ignored build/npm, once each: Azurite (the Azure Storage emulator of the
# tests; 3.35.0: later versions need Node >= 21) and DuckDB's Node client, whose binary ships
# inside the package (tests/e2e/test_tools.py: read_csv trusts st_size).
install_npm() {
	local prefix
	prefix="$(cd "$(dirname "$0")/.." && pwd)/build/npm"
	if [[ ! -x $prefix/node_modules/.bin/azurite-blob ]]; then
		echo "install-deps: installing azurite 3.35.0 into $prefix" >&2
		npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
	fi
	if [[ ! -d $prefix/node_modules/@duckdb/node-api ]]; then
		echo "install-deps: installing @duckdb/node-api 1.5.6-r.1 into $prefix" >&2
		npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
			@duckdb/node-api@1.5.6-r.1 >/dev/null
	fi
}

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	[[ $status == ii* ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then install_npm; exit 0; fi

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# A package's post-install may start a system nginx; the tests run their own.
if command -v service >/dev/null && service nginx status >/dev/null 2>&1; then
	service nginx stop >/dev/null 2>&1 || true
fi
# Likewise a system MariaDB or PostgreSQL (tests/e2e/dbservers.py starts private ones) and Prometheus.
for service in mariadb postgresql prometheus; do
	if command -v service >/dev/null && service "$service" status >/dev/null 2>&1; then
		service "$service" stop >/dev/null 2>&1 || true
	fi
done
install_npm
