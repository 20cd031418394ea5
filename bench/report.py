"""Formats bench results: medians over rounds, ratios to direct and to each
peer, the issue's targets, machine facts and the commit measured, as one dated
markdown section. Pure formatting apart from reading versions and git state.
"""

import datetime
import os
import platform
import statistics
import subprocess

TITLES = {
    1: "small GET, keep-alive, 64 connections",
    2: "small GET, new client connection per request, 64 connections",
    3: "1 MiB GET, keep-alive, 8 connections",
    4: "one CONNECT tunnel carrying 2 GiB",
    5: "10,000 idle client connections (then with a partial request head on each)",
    6: "small GET cache hits, 64 connections (proxy-server --cache, trafficserver and squid "
       "with their caches on)",
    7: "HTTPS inside CONNECT, TLS keep-alive, 64 connections",
    8: "500 clients that stop reading 100 MiB downloads: resident memory (bench/memory.py)",
    9: "small GET naming a new host each time (DNS answers after 3 ms), new client "
       "connection per request, 64 connections (proxy-server and squid only)",
    10: "S7 through an HTTPS proxy (TLS to the proxy too): proxy-server --tls-cert, squid "
        "https_port",
    11: "one SOCKS5 tunnel carrying 2 GiB (proxy-server --socks; Dante in the notes)",
}
COLUMNS = ["direct", "proxy-server", "trafficserver", "tinyproxy", "squid"]
PEERS = COLUMNS[2:]

# (scenario, metric key, label, unit, higher_is_better, target)
# A target is ("ratio", x): proxy-server/direct ≥ x; ("max", x): value ≤ x.
ROWS = [
    (1, "rps", "S1 small GET keep-alive", "req/s", True, ("ratio", 0.50)),
    (1, "p50_ms", "S1 latency p50", "ms", False, None),
    (1, "p99_ms", "S1 latency p99", "ms", False, None),
    (1, "cpu_us_per_req", "S1 server CPU", "µs/req", False, ("max", 10.0)),
    (1, "rps policy", "S1 with the sample policy + 100,000-entry list", "req/s", True, None),
    (1, "cpu_us_per_req policy", "S1 with policy, server CPU", "µs/req", False, None),
    (1, "rps blacklist", "S1 with the same list as --blacklist", "req/s", True, None),
    (1, "cpu_us_per_req blacklist", "S1 with --blacklist, server CPU", "µs/req", False, None),
    (2, "rps", "S2 new connection per request", "req/s", True, ("ratio", 0.60)),
    (2, "cpu_us_per_req", "S2 server CPU", "µs/req", False, None),
    (3, "mbps", "S3 1 MiB GET ×8", "MB/s", True, ("ratio", 0.80)),
    (3, "cpu_s_per_gb", "S3 server CPU", "s/GB", False, None),
    (3, "mbps huge", "S3 100 MiB over one connection", "MB/s", True, ("ratio", 0.80)),
    (3, "cpu_s_per_gb huge", "S3 100 MiB server CPU", "s/GB", False, None),
    (4, "mbps", "S4 CONNECT tunnel 2 GiB", "MB/s", True, ("ratio", 0.90)),
    (4, "cpu_s_per_gb", "S4 server CPU", "s/GB", False, ("max", 0.15)),
    (5, "kib_per_conn", "S5 idle connection", "KiB/conn", False, ("max", 1.0)),
    (5, "kib_per_conn partial", "S5 idle, partial head", "KiB/conn", False, ("max", 5.0)),
    (6, "rps", "S6 cache hits", "req/s", True, ("ratio", 0.80)),
    (6, "cpu_us_per_req", "S6 server CPU", "µs/req", False, None),
    (7, "rps", "S7 HTTPS in CONNECT", "req/s", True, ("ratio", 0.85)),
    (7, "cpu_us_per_req", "S7 server CPU", "µs/req", False, None),
    (7, "rps policy", "S7 with the sample policy + 100,000-entry list", "req/s", True, None),
    (7, "cpu_us_per_req policy", "S7 with policy, server CPU", "µs/req", False, None),
    (7, "rps blacklist", "S7 with the same list as --blacklist", "req/s", True, None),
    (7, "cpu_us_per_req blacklist", "S7 with --blacklist, server CPU", "µs/req", False, None),
    (8, "idle_mb", "S8 resident, idle", "MB", False, None),
    (8, "peak_mb", "S8 resident, 500 stalled downloads", "MB", False, ("max", 64.0)),
    (8, "after_mb", "S8 resident after they left", "MB", False, None),
    (8, "after_vs_idle", "S8 after / idle", "×", False, ("max", 2.0)),
    (9, "rps", "S9 new host name per request", "req/s", True, None),
    (9, "cpu_us_per_req", "S9 server CPU", "µs/req", False, None),
    (10, "rps", "S10 HTTPS proxy, HTTPS in CONNECT", "req/s", True, None),
    (10, "cpu_us_per_req", "S10 server CPU", "µs/req", False, None),
    (11, "mbps", "S11 SOCKS5 tunnel 2 GiB", "MB/s", True, None),
    (11, "cpu_s_per_gb", "S11 server CPU", "s/GB", False, None),
]


def brief(row):
    parts = []
    for key, fmt in (("rps", "%.0f req/s"), ("mbps", "%.0f MB/s"), ("p99_ms", "p99 %.2f ms"),
                     ("cpu_us_per_req", "%.1f µs/req"), ("cpu_s_per_gb", "%.3f s/GB"),
                     ("kib_per_conn", "%.2f KiB/conn"), ("open", "%d open"),
                     ("open_secs", "opened in %.1f s"), ("idle_mb", "idle %.1f MB"),
                     ("peak_mb", "peak %.1f MB"), ("after_mb", "after %.1f MB"),
                     ("after_s", "(%d s later)")):
        if row.get(key) is not None:
            parts.append(fmt % row[key])
    return ", ".join(parts)


def cell(result, column, key):
    """(median or None, note or None) for one table cell."""
    if result is None:
        return None, None
    metric, _, variant = key.partition(" ")
    name = column + (" " + variant if variant else "")
    if name in result["errors"]:
        return None, result["errors"][name]
    rows = result["rows"].get(name, [])
    failed = [r["error"] for r in rows if r.get("error")]
    if failed:
        return None, "%d of %d rounds failed: %s" % (len(failed), len(rows), failed[0])
    values = [r[metric] for r in rows if r.get(metric) is not None]
    return (statistics.median(values) if values else None), None


def fmt(value):
    if value is None:
        return "—"
    if value >= 100:
        return "{:,.0f}".format(value)
    if value >= 10:
        return "%.1f" % value
    return "%.3g" % value


def ratio(a, b):
    return "%.2f×" % (a / b) if a is not None and b else "—"


def render(args, env, results, elapsed):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["## %s · commit %s" % (now, commit(env.root)), ""]
    out += ["**%s**" % n for n in sorted(set(env.notes))]
    out += ["Machine: %s. Rounds: %d, %d s per load run%s; medians. Run time %.0f s."
            % (machine(), args.rounds, args.secs, " (--quick)" if args.quick else "",
               elapsed), ""]
    # Each server against direct, then proxy-server against each peer.
    pairs = ([(name, "direct") for name in COLUMNS[1:]]
             + [("proxy-server", peer) for peer in PEERS])
    out += ["| Scenario | unit | %s | %s | target | met |" % (
                " | ".join(COLUMNS), " | ".join("%s/%s" % pair for pair in pairs)),
            "|---|---|%s|---|---|" % "|".join(["--:"] * (len(COLUMNS) + len(pairs)))]
    notes, seen = [], set()
    for number, key, label, unit, higher, target in ROWS:
        if number not in results:
            continue
        values = {}
        cells = []
        for column in COLUMNS:
            value, note = cell(results[number], column, key)
            values[column] = value
            if note:
                if "failed" in note or (column, note) not in seen:
                    notes.append("%s, %s: %s" % (label, column, note))
                seen.add((column, note))
                cells.append("FAIL" if "failed" in note else "n/a")
            else:
                cells.append(fmt(value))
        proxy, direct = values["proxy-server"], values["direct"]
        ratios = [ratio(values[a], values[b]) for a, b in pairs]
        out.append("| %s | %s%s | %s | %s | %s | %s |" % (
            label, unit, "" if higher else " (lower better)", " | ".join(cells),
            " | ".join(ratios), target_text(target, unit), met(target, proxy, direct)))
    out.append("")
    out.append("Ratios are the row's figure divided by the other column's; for req/s and "
               "MB/s higher is better, for latency, CPU and memory lower is better. CPU is "
               "the server process's utime+stime (/proc/PID/stat) over the run, divided by "
               "requests or by GB moved.")
    if 5 in results:
        opened = ["%s %.1f s" % (name, rows[0]["open_secs"])
                  for name, rows in results[5]["rows"].items()
                  if rows and rows[0].get("open_secs") is not None]
        if opened:
            notes.append("S5, time to open 10,000 connections: " + ", ".join(opened))
    for note in (floor_note(results), policy_note(results)):
        if note:
            notes.append(note)
    notes += env.notes_after
    if notes:
        out += ["", "Notes:"] + ["- " + n for n in notes]
    out += ["", "Peers: " + versions()]
    return "\n".join(out) + "\n"


def floor_note(results):
    """The relay floor's figures: what any user-space relay pays for this traffic."""
    parts = []
    for number, rate, unit, cpu, cpu_unit in ((1, "rps", "req/s", "cpu_us_per_req", "µs/req"),
                                              (4, "mbps", "MB/s", "cpu_s_per_gb", "s/GB"),
                                              (7, "rps", "req/s", "cpu_us_per_req", "µs/req")):
        if number not in results or not results[number]["rows"].get("relay"):
            continue
        value, note = cell(results[number], "relay", rate)
        if note:
            parts.append("S%d %s" % (number, note))
            continue
        direct, _ = cell(results[number], "direct", rate)
        used, _ = cell(results[number], "relay", cpu)
        ours, _ = cell(results[number], "proxy-server", cpu)
        parts.append("S%d %s %s (%s direct) at %s %s (proxy-server: %s)" % (
            number, fmt(value), unit, ratio(value, direct), fmt(used), cpu_unit, fmt(ours)))
    if not parts:
        return None
    return ("Floor, a minimal relay in front of the same origin (`bench-client relay`: no "
            "parsing, checks or logging; one event loop copying both ways with tokio's "
            "copy_bidirectional, and in S4 splice(2) through a 1 MiB pipe on a blocking "
            "thread per direction): " + "; ".join(parts))


def policy_note(results):
    """proxy-server with the sample policy and a 100,000-entry list, and with the same
    list as --blacklist, against itself without either, in the same rounds
    (bench/policy.py)."""
    parts = []
    for number in (1, 7):
        if number not in results:
            continue
        plain_rps, _ = cell(results[number], "proxy-server", "rps")
        plain_cpu, _ = cell(results[number], "proxy-server", "cpu_us_per_req")
        for variant in ("policy", "blacklist"):
            rps, note = cell(results[number], "proxy-server", "rps " + variant)
            if note:
                parts.append("S%d %s: %s" % (number, variant, note))
                continue
            cpu, _ = cell(results[number], "proxy-server", "cpu_us_per_req " + variant)
            if rps is None:
                continue
            parts.append("S%d %s %s req/s (%s of plain) at %s µs/req (plain %s)" % (
                number, variant, fmt(rps), ratio(rps, plain_rps), fmt(cpu), fmt(plain_cpu)))
    if not parts:
        return None
    return ("With the sample policy plus a 100,000-entry list, and with the same list as "
            "--blacklist (bench/policy.py), against proxy-server without either: "
            + "; ".join(parts))


def target_text(target, unit):
    if target is None:
        return ""
    kind, x = target
    return "≥ %.2f× direct" % x if kind == "ratio" else "≤ %g %s" % (x, unit)


def met(target, proxy, direct):
    if target is None or proxy is None:
        return ""
    kind, x = target
    if kind == "ratio":
        return "" if not direct else ("yes" if proxy / direct >= x else "**no**")
    return "yes" if proxy <= x else "**no**"


def commit(root):
    def git(*args):
        return subprocess.run(["git", "-C", root] + list(args), capture_output=True,
                              text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" (with uncommitted changes)" if dirty else "")


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    load = os.getloadavg()[0]
    # Other work on the machine moves throughput figures; CPU per request and
    # per GB move less, so read those first when the load was high.
    return "%d cores (%s), Linux %s, load average %.1f at the end" % (
        os.cpu_count() or 0, model, platform.release(), load)


def versions():
    def first_line(argv):
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (run.stdout + run.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return "; ".join([first_line(["nginx", "-v"]), first_line(["traffic_server", "--version"]),
                      first_line(["tinyproxy", "-v"]), first_line(["squid", "-v"]),
                      first_line(["wrk", "-v"])])


def append(path, text):
    header = ("# Benchmark results\n\nWritten by `./run.sh bench` (bench/run.sh); newest "
              "last. See docs/performance.md for what each scenario measures.\n\n")
    exists = os.path.exists(path)
    with open(path, "a") as f:
        if not exists:
            f.write(header)
        f.write(text + "\n")
