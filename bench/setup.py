"""The bench environment: temp dir, origin content, TLS certificate, configs,
and the columns (direct, proxy-server, trafficserver, tinyproxy, squid) as
Targets.

Owns what is started before the scenarios and how each column is reached.
Scenarios that need a fresh server (idle memory, cache) ask for one here.
"""

import os
import subprocess
import tempfile

import servers

SMALL_BYTES = 200
LARGE_BYTES = 1024 * 1024
HUGE_BYTES = 100 * 1024 * 1024
# Client connections the servers must accept (scenario 5 holds 10,000).
MAX_CONNECTIONS = 20000
# Idle and head timeouts for proxy-server, long enough for every scenario's
# hold even when opening 10,000 connections is slow on a busy machine (the
# defaults would close a connection with no complete head after 10 s).
IDLE_TIMEOUT_S = 600
HEADER_TIMEOUT_S = 120
# The peers run without per-request logging (squid access_log none,
# tinyproxy LogLevel Warning); proxy-server's access records are at info.
PROXY_LOG_LEVEL = "warn"
# Apache Traffic Server's optional config files, written empty (see
# start_trafficserver); the ones the benchmark needs are templates in
# bench/trafficserver/.
ATS_EMPTY_FILES = ("cache.config", "parent.config", "plugin.config", "sni.yaml",
                   "ssl_multicert.config", "volume.config", "hosting.config")


class Target:
    """One column: how a client reaches the origin through it (or directly)."""

    def __init__(self, name, server=None, note="", routes=None):
        self.name = name
        self.server = server  # None for direct
        self.note = note
        # For the relay floor: origin port -> the relay's port in front of it.
        self.routes = routes

    @property
    def proxied(self):
        """Whether clients speak to it as a proxy (absolute form, CONNECT)."""
        return self.server is not None and self.routes is None

    def reach(self, port):
        """The port a direct-style client connects to for the origin on `port`."""
        return self.routes.get(port, port) if self.routes else port

    @property
    def proxy_port(self):
        return self.server.port if self.proxied else None

    @property
    def proxy_addr(self):
        return "127.0.0.1:%d" % self.server.port if self.proxied else None


class Env:
    def __init__(self, root, proxy_bin, client_bin):
        self.root = root
        self.proxy_bin = proxy_bin
        self.client_bin = client_bin
        self.dir = tempfile.mkdtemp(prefix="proxy-bench-")
        # Squid and tinyproxy drop to unprivileged users and write logs here.
        os.chmod(self.dir, 0o777)
        self.origin_port = servers.free_port()
        self.tls_port = servers.free_port()
        self.proxy_help = self._proxy_help()
        self.notes = []  # shown above the table
        self.notes_after = []  # shown with the notes under it

    # -- content and origin -------------------------------------------------

    def make_content(self):
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        os.makedirs(os.path.join(self.dir, "nginx-tmp"))
        with open(os.path.join(www, "small"), "wb") as f:
            f.write(b"s" * SMALL_BYTES)
        with open(os.path.join(www, "large"), "wb") as f:
            f.write(os.urandom(LARGE_BYTES))
        with open(os.path.join(www, "huge"), "wb") as f:
            f.write(os.urandom(1024 * 1024) * (HUGE_BYTES // (1024 * 1024)))
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
             # An end-entity certificate (rustls/webpki refuse a CA one as a
             # server's), trusted by the load tool as its own root.
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", os.path.join(self.dir, "key.pem"),
             "-out", os.path.join(self.dir, "cert.pem")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def start_origin(self):
        conf = servers.render("nginx.conf", self.dir, "nginx.conf", dir=self.dir,
                              origin_port=self.origin_port, tls_port=self.tls_port)
        origin = servers.Server("origin-nginx", ["nginx", "-c", conf, "-p", self.dir],
                                self.origin_port, self.dir).start()
        if not servers.wait_port(self.tls_port):
            raise RuntimeError("nginx TLS port did not open")
        return origin

    # -- proxy-server -------------------------------------------------------

    def _proxy_help(self):
        try:
            run = subprocess.run([self.proxy_bin, "--help"], capture_output=True,
                                 text=True, timeout=10)
            return run.stdout + run.stderr
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def proxy_supports(self, flag):
        return flag in self.proxy_help

    def proxy_log_dir(self, label):
        return os.path.join(self.dir, "logs-" + label)

    def proxy_argv(self, port, label, cache=False, extra=()):
        argv = [self.proxy_bin, "--host", "127.0.0.1", "--port", str(port)]
        # Loopback origins are refused by the ACL's default (egress to
        # loopback is an SSRF risk); the benchmark's origins are all local,
        # and its CONNECT targets listen on high ports (the default is 443).
        for flag, value in (("--allow-local-targets", None),
                            ("--connect-ports", "1-65535"),
                            ("--log-dir", self.proxy_log_dir(label)),
                            ("--max-connections", MAX_CONNECTIONS),
                            ("--idle-timeout", IDLE_TIMEOUT_S),
                            ("--header-timeout", HEADER_TIMEOUT_S),
                            ("--log-level", PROXY_LOG_LEVEL)):
            if self.proxy_supports(flag):
                argv += [flag] if value is None else [flag, str(value)]
        if cache:
            argv.append("--cache")
        return argv + list(extra)

    def start_proxy_server(self, label, cache=False, extra=()):
        if not self.proxy_supports("--port"):
            raise RuntimeError("%s --help shows no --port" % self.proxy_bin)
        if cache and not self.proxy_supports("--cache"):
            raise RuntimeError("proxy-server has no --cache flag yet")
        port = servers.free_port()
        argv = self.proxy_argv(port, label, cache, extra)
        return servers.Server(label, argv, port, self.dir).start()

    # -- peers --------------------------------------------------------------

    def start_tinyproxy(self, label):
        port = servers.free_port()
        conf = servers.render("tinyproxy.conf", self.dir, label + ".conf",
                              dir=self.dir, port=port, name=label)
        return servers.Server(label, ["tinyproxy", "-d", "-c", conf], port, self.dir).start()

    def start_squid(self, label, cache=False):
        port = servers.free_port()
        template = "squid-cache.conf" if cache else "squid.conf"
        conf = servers.render(template, self.dir, label + ".conf",
                              dir=self.dir, port=port, name=label)
        return servers.Server(label, ["squid", "-N", "-f", conf], port, self.dir).start()

    def start_trafficserver(self, label, cache=False):
        """traffic_server alone in the foreground (no traffic_manager): one process,
        whose threads carry all traffic, so /proc figures need no summing."""
        port = servers.free_port()
        home = os.path.join(self.dir, "ats-" + label)
        for sub in ("etc", "log", "run", "cache"):
            os.makedirs(os.path.join(home, sub))
            # It writes logs, its lock and the cache file after dropping to
            # its own user (as squid and tinyproxy do; see __init__).
            os.chmod(os.path.join(home, sub), 0o777)
        etc = os.path.join(home, "etc")
        user = "trafficserver" if os.geteuid() == 0 else "#-1"  # "#-1": keep ours
        servers.render("trafficserver/records.config", etc, "records.config", home=home,
                       port=port, cache=int(cache), wait_for_cache=2 if cache else 0,
                       user=user)
        for name in ("remap.config", "ip_allow.yaml"):
            servers.render("trafficserver/" + name, etc, name)
        # Rule files it warns about when absent; empty, they add no rules.
        for name in ATS_EMPTY_FILES:
            open(os.path.join(etc, name), "w").close()
        if cache:
            servers.render("trafficserver/storage.config", etc, "storage.config", home=home)
        else:
            with open(os.path.join(etc, "storage.config"), "w") as f:
                f.write("# No cache storage: scenario 6 alone runs with a cache.\n")
        runroot = servers.render("trafficserver/runroot.yaml", home, "runroot.yaml", home=home)
        argv = ["traffic_server", "--run-root=" + runroot]
        return servers.Server(label, argv, port, self.dir).start()

    def start_relay(self, label, origin_ports, splice=False):
        """The floor: bench-client relay in front of each of `origin_ports`."""
        routes = {port: servers.free_port() for port in origin_ports}
        spec = ",".join("127.0.0.1:%d=127.0.0.1:%d" % (mine, port)
                        for port, mine in routes.items())
        argv = [self.client_bin, "relay", "--routes", spec, "--splice",
                "true" if splice else "false"]
        server = servers.Server(label, argv, next(iter(routes.values())), self.dir).start()
        return Target("relay", server, routes=routes)

    def start(self, kind, label, cache=False):
        """A fresh server of `kind` ("proxy-server", "trafficserver", "tinyproxy", "squid")."""
        if kind == "proxy-server":
            return self.start_proxy_server(label, cache)
        if kind == "tinyproxy":
            return self.start_tinyproxy(label)
        if kind == "squid":
            return self.start_squid(label, cache)
        if kind == "trafficserver":
            return self.start_trafficserver(label, cache)
        raise ValueError(kind)
