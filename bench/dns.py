"""Scenario 9: a new host name on every request. Each request names a host never asked
before (hNNNN.bB.TAG.bench.test, 1,000 names per batch), over a new client connection,
64 at once; every name resolves to 127.0.0.1, where the bench origin listens. The names
come from a DNS server started here that answers each query after DELAY_MS, as a
recursive resolver a network hop away would. proxy-server (--dns-server) and Squid
(dns_nameservers; its own resolver and cache) ask the same server.

Why a small Python server rather than dnsmasq: dnsmasq answers a local zone at once and
has no setting to delay answers, so it would measure neither proxy against a resolver
that takes time; here each answer is sent DELAY_MS after its query (asyncio's
call_later), A for any name under bench.test, an empty answer with an SOA for AAAA
(no IPv6 address, RFC 2308 NODATA), NXDOMAIN for anything else. It listens on port 53
because Squid's dns_nameservers takes no port, so the benchmark needs root (it has it:
Squid and ATS already drop to their own users).

Run as `python3 bench/dns.py serve ADDR` for the server alone; bench.py calls run().
"""

import asyncio
import itertools
import json
import os
import struct
import subprocess
import sys
import time

import scenarios
import servers

DNS_ADDR = "127.0.0.153"  # an address of its own on loopback, port 53
DELAY_MS = 3
TTL_S = 60
CONNS = 64
ZONE = b"bench.test"
_runs = itertools.count()


# -- the DNS server (a child process) ------------------------------------------------

class _Answerer(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def datagram_received(self, data, addr):
        reply = _answer(data)
        if reply:
            self.loop.call_later(DELAY_MS / 1000, self.transport.sendto, reply, addr)


def _answer(query):
    if len(query) < 12 or query[2] & 0x80:
        return None
    at, labels = 12, []
    while at < len(query) and query[at]:
        labels.append(query[at + 1:at + 1 + query[at]].lower())
        at += 1 + query[at]
    end = at + 5  # the root label, type, class
    if end > len(query):
        return None
    qtype = struct.unpack("!H", query[at + 1:at + 3])[0]
    name = b".".join(labels)
    ours = name.endswith(b"." + ZONE)
    answers = [struct.pack("!HHHIH4B", 0xC00C, 1, 1, TTL_S, 4, 127, 0, 0, 1)] \
        if ours and qtype == 1 else []
    rcode = 0 if ours else 3
    soa = b"" if answers else (b"\x00" + struct.pack("!HHIH", 6, 1, TTL_S, 22) + b"\x00\x00"
                               + struct.pack("!5I", 1, 3600, 600, 86400, TTL_S))
    header = query[:2] + struct.pack("!HHHHH", 0x8580 | rcode, 1, len(answers),
                                     0 if answers else 1, 0)
    return header + query[12:end] + b"".join(answers) + soa


def serve(addr):
    loop = asyncio.new_event_loop()
    transport, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(_Answerer, local_addr=(addr, 53)))
    print("READY", flush=True)
    try:
        loop.run_forever()
    finally:
        transport.close()


def start_dns_server(env):
    """The server as a child process; RuntimeError if it cannot listen on port 53."""
    log = open(os.path.join(env.dir, "dns-server.out"), "ab")
    proc = subprocess.Popen([sys.executable, "-B", os.path.abspath(__file__), "serve",
                             DNS_ADDR], stdout=subprocess.PIPE, stderr=log,
                            start_new_session=True)
    log.close()
    line = proc.stdout.readline().decode().strip()
    if line != "READY":
        proc.kill()
        proc.wait()
        raise RuntimeError("DNS server did not start on %s:53 (root needed); see %s"
                           % (DNS_ADDR, os.path.join(env.dir, "dns-server.out")))
    return proc


# -- the columns ---------------------------------------------------------------------

def start_columns(env, kinds):
    targets = []
    for kind in kinds:
        if kind not in ("proxy-server", "squid"):
            continue
        label = kind + "-dns"
        try:
            port = servers.free_port()
            if kind == "proxy-server":
                argv = env.proxy_argv(port, label) + ["--dns-server", DNS_ADDR]
            else:
                conf = servers.render("squid.conf", env.dir, label + ".conf",
                                      dir=env.dir, port=port, name=label)
                with open(conf, "a") as f:
                    f.write("dns_nameservers %s\n" % DNS_ADDR)
                argv = ["squid", "-N", "-f", conf]
            server = servers.Server(label, argv, port, env.dir).start()
            targets.append(_Target(kind, server))
        except RuntimeError as error:
            targets.append(_Target(kind, None, str(error)[:200]))
    return targets


class _Target:
    def __init__(self, name, server, note=""):
        self.name, self.server, self.note = name, server, note

    proxied = True

    @property
    def proxy_addr(self):
        return "127.0.0.1:%d" % self.server.port


# -- one measurement -----------------------------------------------------------------

def measure(env, target, secs):
    tag = "r%d%d" % (os.getpid() % 1000, next(_runs))
    argv = ["wrk", "-t1", "-c%d" % CONNS, "-d%ds" % secs, "--latency",
            "-s", os.path.join(servers.BENCH_DIR, "dns.lua"),
            "http://%s/" % target.proxy_addr, "--", str(env.origin_port), tag]
    cpu0, origin0 = target.server.cpu_seconds(), scenarios.origin_requests(env)
    run = subprocess.run(argv, capture_output=True, text=True,
                         timeout=secs + scenarios.TOOL_GRACE_S)
    cpu1, origin1 = target.server.cpu_seconds(), scenarios.origin_requests(env)
    if not target.server.alive():
        raise RuntimeError("%s exited: %s" % (target.name, target.server.log_tail()))
    lines = [l for l in run.stdout.splitlines() if l.startswith("BENCH_JSON ")]
    if run.returncode != 0 or not lines:
        raise RuntimeError("wrk failed: %s" % (run.stderr.strip() or run.stdout[-300:]))
    out = json.loads(lines[-1][len("BENCH_JSON "):])
    requests, seconds = out["requests"], out["duration_us"] / 1e6
    row = {"rps": requests / seconds, "p99_ms": out["p99_us"] / 1000,
           "requests": requests, "origin_requests": origin1 - origin0,
           "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / max(requests, 1), "error": None}
    if not requests:
        row["error"] = "no responses"
    elif out["non200"] or out["status_errors"]:
        row["error"] = "%d non-200 responses" % max(out["non200"], out["status_errors"])
    return scenarios.check_forwarded(row, target)


def run(args, env, rounds):
    """Scenario 9 for proxy-server and, if among the peers, Squid."""
    dns = start_dns_server(env)
    targets = start_columns(env, args.kinds)
    try:
        return rounds(args, targets, lambda t: measure(env, t, args.secs),
                      warm=lambda t: measure(env, t, 1))
    finally:
        for target in targets:
            if target.server:
                target.server.stop()
        os.killpg(dns.pid, 15)
        dns.wait(timeout=5)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2])
