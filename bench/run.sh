#!/usr/bin/env bash
# ./run.sh bench [--quick] [--rounds N] [--secs S] [--only 1,2,...] [--no-write]
# Builds proxy-server (release) and the load tool in bench/client, installs
# the Debian packages the benchmark needs if missing, then runs bench/bench.py,
# which starts every server on 127.0.0.1 high ports, measures, stops them by
# PID, and appends a dated table to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Debian packages, checked with dpkg -s first; apt-get update only when needed.
packages=(wrk trafficserver tinyproxy squid nginx-light openssl dante-server)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    # The packages' own services are not wanted (policy-rc.d may already stop
    # them); the benchmark starts its own instances with its own configs.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    for service in nginx trafficserver squid tinyproxy danted; do
        $sudo service "$service" stop >/dev/null 2>&1 || true
    done
fi

cargo build --release --quiet
CARGO_TARGET_DIR="$root/target/bench-client" \
    cargo build --release --quiet --manifest-path bench/client/Cargo.toml

# 10,000 held connections need that many descriptors in the client and in
# each server (all inherit this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
    echo "bench: warning: ulimit -n is $(ulimit -n); scenario 5 needs 12000+" >&2
fi

exec python3 -B bench/bench.py --root "$root" \
    --proxy-bin "$root/target/release/proxy-server" \
    --client-bin "$root/target/bench-client/release/bench-client" "$@"
