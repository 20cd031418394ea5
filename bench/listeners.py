"""Scenarios 10 and 11: proxy-server's other listeners against the peers that have
the same kind.

S10 is S7's shape (HTTPS keep-alive inside CONNECT tunnels, 64 connections) with TLS
to the proxy as well — proxy-server's TLS listener (--tls-cert/--tls-key) against
Squid's https_port (bench/squid-https.conf). S11 is S4's shape (one tunnel carrying
2 GiB; throughput and CPU s/GB) through SOCKS5 — proxy-server's --socks listener
against Dante (dante-server, bench/danted.conf). Both beside direct, fresh servers,
rotated rounds (bench.rounds). Dante has no column in the table: its figures and
proxy-server's ratio to it are a note under the table.
"""

import os
import subprocess

import report
import scenarios
import servers
import setup

TUNNEL_BYTES = 2 * 1024 ** 3


def start_proxy_server(env, label, extra, port=None):
    """proxy-server with the bench's usual flags plus `extra`; readiness on `port`
    (the main listener's when None)."""
    main = servers.free_port()
    argv = env.proxy_argv(main, label) + extra
    return servers.Server(label, argv, port or main, env.dir).start()


def start_squid_https(env, label):
    port = servers.free_port()
    conf = servers.render("squid-https.conf", env.dir, label + ".conf", dir=env.dir,
                          port=port, name=label, cert=os.path.join(env.dir, "cert.pem"),
                          key=os.path.join(env.dir, "key.pem"))
    return servers.Server(label, ["squid", "-N", "-f", conf], port, env.dir).start()


def start_dante(env, label):
    port = servers.free_port()
    conf = servers.render("danted.conf", env.dir, label + ".conf", dir=env.dir,
                          port=port, name=label)
    return servers.Server(label, ["danted", "-f", conf], port, env.dir).start()


def columns(starters):
    """direct plus one Target per (name, start) pair; a start that fails is a note."""
    targets = [setup.Target("direct")]
    for name, start in starters:
        try:
            targets.append(setup.Target(name, start()))
        except (RuntimeError, OSError) as error:
            targets.append(setup.Target(name, note=str(error)[:200]))
    return targets


def s10_https_proxy(env, target, secs):
    """S7 through an HTTPS proxy: the client trusts the bench certificate for both."""
    extra = ["--proxy-ca", os.path.join(env.dir, "cert.pem")] if target.proxied else []
    return scenarios.s7_tls(env, target, secs, extra=extra)


def s11_socks(env, target, source_port):
    return scenarios.s4_tunnel(env, target, source_port, TUNNEL_BYTES, via="--socks")


def run(args, env, rounds):
    """Runs S10 and S11 as `args.only` asks; `rounds` is bench.rounds. Results by number."""
    results = {}
    cert, key = os.path.join(env.dir, "cert.pem"), os.path.join(env.dir, "key.pem")
    if 10 in args.only:
        print("S10: %s" % report.TITLES[10], flush=True)
        starters = [("proxy-server", lambda: start_proxy_server(
            env, "proxy-server-tls", ["--tls-cert", cert, "--tls-key", key]))]
        if "squid" in args.kinds:
            starters.append(("squid", lambda: start_squid_https(env, "squid-https")))
        targets = columns(starters)
        try:
            results[10] = rounds(args, targets, lambda t: s10_https_proxy(env, t, args.secs),
                                 warm=lambda t: s10_https_proxy(env, t, 1))
        finally:
            stop(targets)
    if 11 in args.only:
        print("S11: %s" % report.TITLES[11], flush=True)
        results[11] = run_socks(args, env, rounds)
        note = dante_note(results[11])
        if note:
            env.notes_after.append(note)
    return results


def run_socks(args, env, rounds):
    port = servers.free_port()
    source = servers.Server("socks-source", [env.client_bin, "source", "--listen",
                                             "127.0.0.1:%d" % port, "--bytes",
                                             str(TUNNEL_BYTES)], port, env.dir).start()
    socks_port = servers.free_port()
    starters = [("proxy-server", lambda: start_proxy_server(
        env, "proxy-server-socks", ["--socks", "127.0.0.1:%d" % socks_port], socks_port))]
    if args.peers.strip():
        starters.append(("dante", lambda: start_dante(env, "dante")))
    targets = columns(starters)
    try:
        return rounds(args, targets, lambda t: s11_socks(env, t, port))
    finally:
        stop(targets)
        source.stop()


def stop(targets):
    for target in targets:
        if target.server:
            target.server.stop()


def dante_note(result):
    """Dante's S11 figures, and proxy-server's against them (Dante has no column)."""
    rate, note = report.cell(result, "dante", "mbps")
    if note:
        return "S11 Dante (SOCKS5 peer): %s" % note
    if rate is None:
        return None
    cpu, _ = report.cell(result, "dante", "cpu_s_per_gb")
    direct, _ = report.cell(result, "direct", "mbps")
    ours, _ = report.cell(result, "proxy-server", "mbps")
    ours_cpu, _ = report.cell(result, "proxy-server", "cpu_s_per_gb")
    return ("S11 Dante (SOCKS5 peer, %s): %s MB/s (%s direct) at %s s/GB; "
            "proxy-server/dante: %s throughput, %s CPU per GB"
            % (dante_version(), report.fmt(rate), report.ratio(rate, direct),
               report.fmt(cpu), report.ratio(ours, rate), report.ratio(ours_cpu, cpu)))


def dante_version():
    try:
        run = subprocess.run(["danted", "-v"], capture_output=True, text=True, timeout=10)
        # "Dante v1.4.2.  Copyright (c) …": the name and version only.
        return (run.stdout + run.stderr).strip().splitlines()[0].split("  ")[0].rstrip(".")
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "version unknown"
