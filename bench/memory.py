"""S8: resident memory under clients that stop reading (issue 16).

Each client asks for the 100 MiB object through the server and then reads nothing,
so whatever the server reads from the origin on its behalf stays with the server.
Resident memory (VmRSS of the process tree) is read at idle, at its peak while the
clients hold on, and some time after they have all gone: 60 s, or 15 s with --quick
(said in the row). One fresh server per kind; memory needs no rounds. Only
proxy-server and squid are measured (the issue's comparison).
"""

import socket
import time

import report
import scenarios

CLIENTS = 500
HOLD_S = 10
HOLD_S_QUICK = 5
AFTER_S = 60
AFTER_S_QUICK = 15
SAMPLE_S = 0.2
KINDS = ("proxy-server", "squid")


def run_memory(args, env):
    rows, errors = {}, {}
    hold = HOLD_S_QUICK if args.quick else HOLD_S
    after = AFTER_S_QUICK if args.quick else AFTER_S
    for kind in [k for k in args.kinds if k in KINDS]:
        try:
            server = env.start(kind, "%s-memory" % kind)
        except RuntimeError as error:
            errors[kind] = str(error)[:200]
            continue
        try:
            row = stalled_downloads(env, server, hold, after)
        except (RuntimeError, OSError, ValueError) as error:
            row = {"error": str(error)[:300]}
        finally:
            server.stop()
        rows[kind] = [row]
        print("  %-13s %s %s" % (kind, report.brief(row), row.get("error") or ""), flush=True)
    return {"rows": rows, "errors": errors}


def stalled_downloads(env, server, hold_s, after_s):
    scenarios.warm_one(env, server)
    time.sleep(0.5)
    idle = server.rss_kib()
    request = ("GET http://127.0.0.1:%d/huge HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "User-Agent: bench-memory\r\n\r\n" % (env.origin_port, env.origin_port)).encode()
    clients = []
    peak = idle
    try:
        for _ in range(CLIENTS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(request)
            clients.append(sock)
            peak = max(peak, server.rss_kib())
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            peak = max(peak, server.rss_kib())
            time.sleep(SAMPLE_S)
        held = server.rss_kib()
    finally:
        for sock in clients:
            sock.close()
    time.sleep(after_s)
    later = server.rss_kib()
    mb = 1024.0
    return {"idle_mb": idle / mb, "peak_mb": peak / mb, "held_mb": held / mb,
            "after_mb": later / mb, "after_vs_idle": later / max(idle, 1),
            "after_s": after_s, "kib_per_client": (peak - idle) / CLIENTS, "error": None}
