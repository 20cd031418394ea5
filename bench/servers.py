"""Starting, probing and stopping the processes under test.

Owns: config files rendered from the templates in bench/ into a temp dir,
free loopback ports, readiness waits (bounded), CPU time and resident memory
read from /proc, and stopping every process it started, by its PID (each
server runs in its own session, so its process group id is its PID).
Knows nothing of scenarios or reports.
"""

import os
import re
import signal
import socket
import subprocess
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

_started = []  # every Server started, so stop_all() can end them on exit


def free_port():
    """A port the kernel just handed out on 127.0.0.1 and we released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render(template, out_dir, out_name, **values):
    """Writes bench/<template> to out_dir/out_name with @KEY@ replaced."""
    with open(os.path.join(BENCH_DIR, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("@%s@" % key.upper(), str(value))
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError("%s: unfilled placeholders %s" % (template, leftover))
    path = os.path.join(out_dir, out_name)
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_port(port, timeout=READY_TIMEOUT_S, proc=None):
    """Waits until 127.0.0.1:port accepts a connection; False on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    """One server process (origin, proxy or peer) listening on `port`."""

    def __init__(self, name, argv, port, log_dir):
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = os.path.join(log_dir, "%s.out" % name)
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        _started.append(self)
        if not wait_port(self.port, proc=self.proc):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError("%s did not listen on %d within %.0fs: %s"
                               % (self.name, self.port, READY_TIMEOUT_S, tail))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, lines=5):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self):
        """This server's process and its descendants (squid helpers, etc.)."""
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _read_stat(int(entry))
            if stat:
                children.setdefault(int(stat[1]), []).append(int(entry))
        found, todo = [], [self.pid]
        while todo and len(found) < 1000:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self):
        """utime+stime of the process tree, in seconds (all threads included)."""
        ticks = 0
        for pid in self.pids():
            stat = _read_stat(pid)
            if stat:
                # Fields 14 and 15 of /proc/PID/stat; stat[] starts at field 3.
                ticks += int(stat[11]) + int(stat[12])
        return ticks / CLK_TCK

    def rss_kib(self):
        """VmRSS of the process tree, KiB."""
        total = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except ProcessLookupError:
            pass


def _read_stat(pid):
    """Fields after the command name of /proc/PID/stat, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def stop_all():
    for server in reversed(_started):
        try:
            server.stop()
        except Exception as error:  # keep stopping the others
            print("bench: stopping %s: %s" % (server.name, error))
