#!/usr/bin/env bash
# The project's commands: start, test, bench, fuzz. See README.md.
set -euo pipefail
cd "$(dirname "$0")"

# Installs Debian packages that are missing (a fresh machine or CI may lack them).
need_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "run.sh: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
start)
    cargo build --release
    exec ./target/release/proxy-server --host 127.0.0.1 --port 8888 \
        --blacklist config/blocked_domains.txt --auth-file config/users.txt \
        --cache --log-dir logs "$@"
    ;;
test)
    need_packages curl ca-certificates
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo test --all-targets
    ;;
bench)
    exec bench/run.sh "$@"
    ;;
*)
    echo "usage: ./run.sh start [proxy flags…] | test | bench" >&2
    exit 2
    ;;
esac
