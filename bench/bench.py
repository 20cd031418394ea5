#!/usr/bin/env python3
"""Runs issue 6's benchmark: seven scenarios, each for direct, proxy-server,
Apache Traffic Server, tinyproxy and squid in alternation over several rounds,
then writes the median figures and ratios to bench/RESULTS.md. Started by
bench/run.sh, which builds the binaries and installs the packages first.

Owns the round structure and the order of runs; servers.py starts and stops
processes, scenarios.py measures, report.py formats.
"""

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import time

import dns
import listeners
import memory
import policy
import report
import scenarios
import servers
import setup

KINDS = ["proxy-server", "trafficserver", "tinyproxy", "squid"]
TUNNEL_BYTES = 2 * 1024 ** 3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 round and short runs (a smoke test, under 3 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 3)")
    parser.add_argument("--secs", type=int, help="seconds per load run (default 5, quick 2)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10,11",
                        help="comma-separated scenario numbers to run")
    parser.add_argument("--peers", default="trafficserver,tinyproxy,squid",
                        help="comma-separated peers to run beside direct and proxy-server "
                             "(empty: none, for quick before/after comparisons)")
    parser.add_argument("--root", required=True, help="repository root")
    parser.add_argument("--proxy-bin", required=True)
    parser.add_argument("--client-bin", required=True)
    parser.add_argument("--keep-dir", action="store_true",
                        help="keep the temp dir (configs, server logs) for debugging")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    args = parser.parse_args()
    args.rounds = max(1, min(args.rounds or (1 if args.quick else 3), 20))
    args.secs = max(1, min(args.secs or (2 if args.quick else 5), 120))
    args.only = {int(x) for x in args.only.split(",") if x.strip()}
    args.kinds = ["proxy-server"] + [k for k in KINDS[1:] if k in args.peers.split(",")]
    return args


def start_columns(env, kinds, cache=False):
    """direct plus one fresh server per kind; a kind that fails is reported, not fatal."""
    targets = [setup.Target("direct")]
    for kind in kinds:
        if cache and kind == "tinyproxy":
            targets.append(setup.Target(kind, note="no cache"))
            continue
        try:
            label = kind + ("-cache" if cache else "")
            targets.append(setup.Target(kind, env.start(kind, label, cache=cache)))
        except RuntimeError as error:
            targets.append(setup.Target(kind, note=str(error)[:200]))
    return targets


def rounds(args, targets, measure, warm=None):
    """Runs `measure(target)` for every usable target, rotating the order each round."""
    usable = [t for t in targets if t.server or t.name == "direct"]
    rows = {t.name: [] for t in usable}
    errors = {t.name: t.note for t in targets if t not in usable}
    if warm:
        for target in usable:
            try:
                warm(target)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                errors[target.name] = "warm-up: %s" % error
    for r in range(args.rounds):
        shift = r % len(usable)
        for target in usable[shift:] + usable[:shift]:
            if target.name in errors:
                continue
            try:
                row = measure(target)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
                row = {"error": str(error)[:300]}
            rows[target.name].append(row)
            flag = row.get("error") or ""
            print("  round %d %-13s %s %s" % (r + 1, target.name, report.brief(row), flag),
                  flush=True)
    return {"rows": rows, "errors": errors}


def run_scenarios(args, env):
    results = {}
    secs = args.secs
    main_targets = start_columns(env, args.kinds)
    # The floor for the per-message scenarios (S1 here, S7 below): a minimal relay (no
    # proxy work) in front of the same origins, reported under the table.
    floors = ([env.start_relay("relay", [env.origin_port, env.tls_port])]
              if args.only & {1, 7} else [])
    # S1 and S7 also run through the sample policy plus a 100,000-entry list, and
    # through the same list as a --blacklist.
    policies = ([start_policy(env, policy.COLUMN, policy.start),
                 start_policy(env, policy.BLACKLIST_COLUMN, policy.start_blacklist)]
                if args.only & {1, 7} else [])
    wrk_scenarios = [(1, scenarios.s1_keepalive), (2, scenarios.s2_new_connection),
                     (3, scenarios.s3_large)]
    for number, func in wrk_scenarios:
        if number in args.only:
            print("S%d: %s" % (number, report.TITLES[number]), flush=True)
            targets = main_targets + (policies + floors if number == 1 else [])
            results[number] = rounds(args, targets, lambda t, f=func: f(env, t, secs),
                                     warm=lambda t, f=func: f(env, t, 1))
            if number == 3:
                print("S3: 100 MiB GET over one connection", flush=True)
                huge = rounds(args, main_targets,
                              lambda t: scenarios.s3_huge(env, t, secs))
                merge_variant(results[3], huge, "huge")
    if 4 in args.only:
        print("S4: %s" % report.TITLES[4], flush=True)
        results[4] = run_tunnel(args, env, main_targets)
    if 7 in args.only:
        print("S7: %s" % report.TITLES[7], flush=True)
        results[7] = rounds(args, main_targets + policies + floors,
                            lambda t: scenarios.s7_tls(env, t, secs),
                            warm=lambda t: scenarios.s7_tls(env, t, 1))
    for target in main_targets + policies + floors:
        if target.server:
            target.server.stop()
    env.notes_after.append(access_log_evidence(env))
    if 6 in args.only:
        print("S6: %s" % report.TITLES[6], flush=True)
        cache_targets = start_columns(env, args.kinds, cache=True)
        results[6] = rounds(args, cache_targets, lambda t: scenarios.s6_cache(env, t, secs),
                            warm=lambda t: scenarios.wrk(env, t, "/small", 8, 1))
        for target in cache_targets:
            if target.server:
                target.server.stop()
    if 5 in args.only:
        print("S5: %s" % report.TITLES[5], flush=True)
        results[5] = run_idle(args, env)
    if 8 in args.only:
        print("S8: %s" % report.TITLES[8], flush=True)
        results[8] = memory.run_memory(args, env)
    if 9 in args.only:
        print("S9: %s" % report.TITLES[9], flush=True)
        results[9] = dns.run(args, env, rounds)
    results.update(listeners.run(args, env, rounds))  # S10, S11
    return results


def start_policy(env, column, start):
    try:
        return setup.Target(column, start(env))
    except RuntimeError as error:
        return setup.Target(column, note=str(error)[:200])


def merge_variant(result, variant, suffix):
    """Files a variant's rows beside a scenario's own, as "NAME SUFFIX" (see report.cell)."""
    for name, rows in variant["rows"].items():
        result["rows"]["%s %s" % (name, suffix)] = rows
    for name, note in variant["errors"].items():
        result["errors"]["%s %s" % (name, suffix)] = note


def access_log_evidence(env):
    """proxy-server's own record that it received absolute-form requests."""
    path = os.path.join(env.proxy_log_dir("proxy-server"), "access.log")
    needle = "http://127.0.0.1:%d/" % env.origin_port
    try:
        with open(path, errors="replace") as f:
            lines = sum(1 for line in f if needle in line)
    except OSError as error:
        return "proxy-server access log not read: %s" % error
    return "proxy-server access log: %d records of absolute-form requests for %s" % (
        lines, needle)


def run_tunnel(args, env, targets):
    port = servers.free_port()
    source = servers.Server("tunnel-source", [env.client_bin, "source", "--listen",
                                              "127.0.0.1:%d" % port, "--bytes",
                                              str(TUNNEL_BYTES)], port, env.dir).start()
    # The floor for a tunnel: a minimal relay splicing through a pipe, as ours does.
    floor = env.start_relay("relay-splice", [port], splice=True)
    try:
        return rounds(args, targets + [floor],
                      lambda t: scenarios.s4_tunnel(env, t, port, TUNNEL_BYTES))
    finally:
        floor.server.stop()
        source.stop()


def run_idle(args, env):
    """One fresh server per kind and variant; memory needs no rounds."""
    rows = {}
    errors = {}  # direct has no server memory to measure: its cells stay empty
    hold = 3 if args.quick else 4
    for partial in (False, True):
        for kind in args.kinds:
            key = kind + (" partial" if partial else "")
            try:
                server = env.start(kind, "%s-idle%s" % (kind, "-partial" if partial else ""))
            except RuntimeError as error:
                errors[key] = str(error)[:200]
                continue
            try:
                row = scenarios.s5_idle(env, server, partial, hold)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
                row = {"error": str(error)[:300]}
            finally:
                server.stop()
            rows[key] = [row]
            print("  %-22s %s %s" % (key, report.brief(row), row.get("error") or ""),
                  flush=True)
    return {"rows": rows, "errors": errors}


def main():
    args = parse_args()
    atexit.register(servers.stop_all)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    env = setup.Env(args.root, args.proxy_bin, args.client_bin)
    if not args.keep_dir:
        # atexit runs last-registered first: stop the servers, then remove
        # the dir they write to.
        atexit.register(shutil.rmtree, env.dir, True)
        atexit.register(servers.stop_all)
    print("bench: work dir %s" % env.dir, flush=True)
    env.make_content()
    env.start_origin()
    started = time.time()
    results = run_scenarios(args, env)
    text = report.render(args, env, results, time.time() - started)
    print(text)
    if not args.no_write:
        report.append(os.path.join(servers.BENCH_DIR, "RESULTS.md"), text)
        print("bench: appended to bench/RESULTS.md")


if __name__ == "__main__":
    main()
