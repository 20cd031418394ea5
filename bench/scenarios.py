"""The seven scenarios of issue 6, one function each.

Each function runs one measurement of one scenario against one Target and
returns a dict of figures plus "error" (a string) when the row must not be
trusted: a non-200 response, a transfer error, or an origin request count that
does not match what the client saw (which proves the proxy forwarded absolute-
form requests, or for scenario 6 that hits were served from cache). CPU is the
server process tree's utime+stime delta from /proc; `None` for direct.
"""

import http.client
import json
import os
import select
import subprocess
import time

import servers

WRK_LUA = os.path.join(servers.BENCH_DIR, "wrk.lua")
TOOL_GRACE_S = 60  # on top of a run's own length, before we call it hung
# At least this share of the client's requests must reach the origin, else
# the proxy answered them itself (requests in flight at wrk's stop are lost).
FORWARD_MIN_SHARE = 0.95
# Scenario 6: at most this share may reach the origin for a row of cache hits.
CACHE_MAX_ORIGIN_SHARE = 0.05
IDLE_CONNECTIONS = 10000
IDLE_SAMPLE_DELAY_S = 1.5


def origin_requests(env):
    """nginx's total request count (stub_status), minus this query itself."""
    conn = http.client.HTTPConnection("127.0.0.1", env.origin_port, timeout=5)
    try:
        conn.request("GET", "/nginx_status")
        lines = conn.getresponse().read().decode().splitlines()
    finally:
        conn.close()
    return int(lines[2].split()[2]) - 1


def _cpu(target):
    return target.server.cpu_seconds() if target.server else None


def _check_alive(target):
    if target.server and not target.server.alive():
        raise RuntimeError("%s exited: %s" % (target.name, target.server.log_tail()))


def wrk(env, target, path, conns, secs, close=False, check=True):
    """One wrk run; the origin's request count is compared with wrk's."""
    origin = "127.0.0.1:%d" % env.origin_port
    if target.proxied:
        url = "http://%s/" % target.proxy_addr
        request_target = "http://%s%s" % (origin, path)  # absolute form, RFC 9112 §3.2.2
    else:
        url = "http://127.0.0.1:%d/" % target.reach(env.origin_port)
        request_target = path
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "--latency", "-s", WRK_LUA, url,
            "--", request_target, origin, "close" if close else "keep",
            "check" if check else "nocheck"]
    cpu0, origin0 = _cpu(target), origin_requests(env)
    run = subprocess.run(argv, capture_output=True, text=True, timeout=secs + TOOL_GRACE_S)
    cpu1, origin1 = _cpu(target), origin_requests(env)
    _check_alive(target)
    lines = [l for l in run.stdout.splitlines() if l.startswith("BENCH_JSON ")]
    if run.returncode != 0 or not lines:
        raise RuntimeError("wrk failed: %s" % (run.stderr.strip() or run.stdout[-300:]))
    out = json.loads(lines[-1][len("BENCH_JSON "):])
    requests, seconds = out["requests"], out["duration_us"] / 1e6
    row = {"rps": requests / seconds, "mbps": out["bytes"] / seconds / 1e6,
           "p50_ms": out["p50_us"] / 1000, "p99_ms": out["p99_us"] / 1000,
           "requests": requests, "origin_requests": origin1 - origin0,
           "socket_errors": out["connect_errors"] + out["read_errors"]
           + out["write_errors"] + out["timeouts"]}
    if cpu0 is not None:
        row["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(requests, 1)
        row["cpu_s_per_gb"] = (cpu1 - cpu0) / max(out["bytes"] / 1e9, 1e-9)
    errors = []
    if requests == 0:
        errors.append("no responses")
    if out["non200"] or out["status_errors"]:
        errors.append("%d non-200 responses" % max(out["non200"], out["status_errors"]))
    if not check and requests and out["bytes"] / requests < int(path_size(path)):
        errors.append("short bodies (%.0f bytes/response)" % (out["bytes"] / requests))
    row["error"] = "; ".join(errors) or None
    return row


def path_size(path):
    return {"/small": 200, "/large": 1024 * 1024, "/huge": 100 * 1024 * 1024}.get(path, 0)


def check_forwarded(row, target):
    """Every proxied request must reach the origin (not for cache hits)."""
    if target.server and not row.get("error"):
        if row["origin_requests"] < FORWARD_MIN_SHARE * row["requests"]:
            row["error"] = ("origin saw %d of %d requests"
                            % (row["origin_requests"], row["requests"]))
    return row


def check_cached(row, target):
    """Scenario 6: a row of cache hits sends (almost) nothing to the origin."""
    if not row.get("error"):
        share = row["origin_requests"] / max(row["requests"], 1)
        row["origin_share"] = share
        if target.server and share > CACHE_MAX_ORIGIN_SHARE:
            row["error"] = "not served from cache (%.0f%% reached origin)" % (share * 100)
    return row


def s1_keepalive(env, target, secs):
    return check_forwarded(wrk(env, target, "/small", 64, secs), target)


def s2_new_connection(env, target, secs):
    return check_forwarded(wrk(env, target, "/small", 64, secs, close=True), target)


def s3_large(env, target, secs):
    return check_forwarded(wrk(env, target, "/large", 8, secs, check=False), target)


def s3_huge(env, target, secs):
    """100 MiB responses, one after another over one connection."""
    return check_forwarded(wrk(env, target, "/huge", 1, secs, check=False), target)


def s6_cache(env, target, secs):
    return check_cached(wrk(env, target, "/small", 64, secs), target)


def client(env, args, timeout):
    run = subprocess.run([env.client_bin] + args, capture_output=True, text=True,
                         timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError("bench-client %s: %s" % (args[0], run.stderr.strip()[-300:]))
    return json.loads(run.stdout.strip().splitlines()[-1])


def s4_tunnel(env, target, source_port, total_bytes, via="--proxy"):
    """`via`: how bench-client reaches a proxy (`--proxy` CONNECT, `--socks` SOCKS5)."""
    args = ["tunnel", "--target", "127.0.0.1:%d" % target.reach(source_port),
            "--bytes", str(total_bytes)]
    if target.proxied:
        args += [via, target.proxy_addr]
    cpu0 = _cpu(target)
    out = client(env, args, TOOL_GRACE_S * 5)
    cpu1 = _cpu(target)
    _check_alive(target)
    row = {"mbps": out["bytes"] / out["secs"] / 1e6, "error": None}
    if cpu0 is not None:
        row["cpu_s_per_gb"] = (cpu1 - cpu0) / (out["bytes"] / 1e9)
    return row


def s7_tls(env, target, secs, extra=()):
    """`extra`: more bench-client flags for a proxy (S10's `--proxy-ca`)."""
    args = ["tls-load", "--target", "127.0.0.1:%d" % target.reach(env.tls_port), "--conns", "64",
            "--secs", str(secs), "--ca", os.path.join(env.dir, "cert.pem"),
            "--server-name", "localhost", "--path", "/small"]
    if target.proxied:
        args += ["--proxy", target.proxy_addr] + list(extra)
    cpu0, origin0 = _cpu(target), origin_requests(env)
    out = client(env, args, secs + TOOL_GRACE_S)
    cpu1, origin1 = _cpu(target), origin_requests(env)
    _check_alive(target)
    row = {"rps": out["requests"] / out["secs"], "requests": out["requests"],
           "origin_requests": origin1 - origin0, "error": None}
    if cpu0 is not None:
        row["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(out["requests"], 1)
    if out["non_200"] or out["errors"] or not out["requests"]:
        row["error"] = "%d non-200, %d connection errors" % (out["non_200"], out["errors"])
    return check_forwarded(row, target)


def warm_one(env, server):
    """One proxied request, so lazily built state exists before a baseline."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "http://127.0.0.1:%d/small" % env.origin_port,
                     headers={"Host": "127.0.0.1:%d" % env.origin_port})
        conn.getresponse().read()
    finally:
        conn.close()


def s5_idle(env, server, partial, hold_s):
    """Resident memory per held client connection, KiB (fresh server)."""
    warm_one(env, server)
    time.sleep(0.3)
    base = server.rss_kib()
    args = ["idle", "--server", "127.0.0.1:%d" % server.port,
            "--conns", str(IDLE_CONNECTIONS), "--hold", str(hold_s)]
    if partial:
        args += ["--partial", "GET http://127.0.0.1:%d/small HTTP/1.1\\r\\n"
                 "Host: 127.0.0.1:%d\\r\\nUser-Agent: bench-idle\\r\\nX-Partial: "
                 % (env.origin_port, env.origin_port)]
    proc = subprocess.Popen([env.client_bin] + args, stdout=subprocess.PIPE, text=True)
    try:
        ready = _read_line(proc, "READY", 120)
        time.sleep(IDLE_SAMPLE_DELAY_S)
        rss = server.rss_kib()
        done = _read_line(proc, "DONE", hold_s + TOOL_GRACE_S)
        proc.wait(timeout=TOOL_GRACE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    still_open = done["open"] - done["closed"]
    row = {"kib_per_conn": (rss - base) / max(ready["open"], 1), "open": still_open,
           "base_kib": base, "rss_kib": rss, "open_secs": ready["open_secs"], "error": None}
    if still_open < IDLE_CONNECTIONS:
        row["error"] = "%d of %d stayed open (%d failed to open)" % (
            still_open, IDLE_CONNECTIONS, done["failed"])
    return row


def _read_line(proc, tag, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise RuntimeError("bench-client idle: no %s line within %ds" % (tag, timeout))
