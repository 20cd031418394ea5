#!/usr/bin/env bash
# Starts HAProxy (deploy/haproxy.cfg) in front of N proxy-server instances on loopback,
# waits until HAProxy's health checks see every instance ready, prints where everything
# is, and runs until interrupted; on exit it stops everything it started (SIGTERM to
# each instance's process group, so a successor started by SIGUSR2 stops too).
#
#   deploy/fleet.sh N [-- extra proxy-server flags]
#
# Environment (all optional):
#   PROXY_SERVER   the binary [target/debug/proxy-server, else proxy-server on PATH]
#   FLEET_PORT     HAProxy's listening port [3128]
#   FLEET_BASE     instance i listens on FLEET_BASE+i; 0: any free port [18000]
#   FLEET_METRICS  instance i serves metrics on FLEET_METRICS+i; 0: any free port [19000]
#   FLEET_DIR      where configs and logs go [a new temporary directory]
#   FLEET_INTER    HAProxy's health-check interval [1s]
#   FLEET_DRAIN    each instance's --drain-delay in seconds [3]
set -euo pipefail
set -m # each background job in its own process group

count=${1:?usage: deploy/fleet.sh N [-- proxy-server flags]}
shift
[[ ${1:-} == -- ]] && shift
here=$(cd "$(dirname "$0")" && pwd)
binary=${PROXY_SERVER:-$here/../target/debug/proxy-server}
[[ -x $binary ]] || binary=$(command -v proxy-server) || {
    echo "fleet.sh: no proxy-server binary (cargo build, or set PROXY_SERVER)" >&2
    exit 2
}
command -v haproxy >/dev/null || { echo "fleet.sh: haproxy is not installed" >&2; exit 2; }
port=${FLEET_PORT:-3128}
base=${FLEET_BASE:-18000}
metrics=${FLEET_METRICS:-19000}
dir=${FLEET_DIR:-$(mktemp -d /tmp/proxy-fleet.XXXXXX)}
inter=${FLEET_INTER:-1s}
drain=${FLEET_DRAIN:-3}
mkdir -p "$dir"

pids=()
stop() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "fleet: stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

port_of() { # base $1 plus instance $2, or 0 (any free port) when the base is 0
    if (($1 == 0)); then echo 0; else echo $(($1 + $2)); fi
}
for ((i = 1; i <= count; i++)); do
    mkdir -p "$dir/p$i"
    "$binary" --port "$(port_of "$base" $i)" --metrics-addr "127.0.0.1:$(port_of "$metrics" $i)" \
        --log-dir "$dir/p$i" --proxy-protocol-from 127.0.0.1/32 --drain-delay "$drain" \
        "$@" 2>"$dir/p$i/stderr.log" &
    pids+=($!)
done

# Each instance's bound addresses, from the lines it writes at start (bounded wait).
proxy_addr=() metrics_addr=()
for ((i = 1; i <= count; i++)); do
    log=$dir/p$i/stderr.log
    for ((try = 0; try < 200; try++)); do
        grep -qs "listening on" "$log" && break
        kill -0 "${pids[i - 1]}" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    proxy_addr+=("$(grep -m1 -o 'listening on [0-9.:]*' "$log" | cut -d' ' -f3)")
    metrics_addr+=("$(grep -m1 -o 'metrics on http://[0-9.:]*' "$log" | cut -d/ -f3)")
done

config=$dir/haproxy.cfg
{
    grep -v '^ *server ' "$here/haproxy.cfg" |
        sed -e "s/^\( *bind \).*/\1127.0.0.1:$port/" -e "s/ inter [^ ]*/ inter $inter/"
    for ((i = 1; i <= count; i++)); do
        echo "    server p$i ${proxy_addr[i - 1]} check port ${metrics_addr[i - 1]##*:}"
    done
} >"$config"
haproxy -db -f "$config" >"$dir/haproxy.log" 2>&1 &
pids+=($!)

# Ready when every instance answers /readyz (HAProxy starts with its servers up).
for ((try = 0; try < 100; try++)); do
    up=0
    for ((i = 1; i <= count; i++)); do
        curl -sf -o /dev/null "http://${metrics_addr[i - 1]}/readyz" && up=$((up + 1))
    done
    ((up == count)) && break
    kill -0 "${pids[count]}" 2>/dev/null || { cat "$dir/haproxy.log" >&2; exit 1; }
    sleep 0.1
done
for ((i = 1; i <= count; i++)); do
    echo "instance $i: pid ${pids[i - 1]} proxy ${proxy_addr[i - 1]} metrics http://${metrics_addr[i - 1]}/ logs $dir/p$i"
done
echo "haproxy: pid ${pids[count]} config $config log $dir/haproxy.log"
echo "fleet ready: curl -x http://127.0.0.1:$port http://example.com/  (Ctrl-C stops everything)"
wait "${pids[count]}"
