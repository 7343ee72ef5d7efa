#!/usr/bin/env python3
"""Exposure audit: a running node listens on exactly the addresses it was
configured with, and on loopback when nothing was said.

It reads the node's own listening sockets from /proc (its socket inodes in
/proc/PID/fd, matched against /proc/PID/net/tcp, tcp6, udp and udp6), so
it sees every port any library in the process opened, not only ours:

- a single node with the defaults: only the metrics endpoint, on
  127.0.0.1:9464;
- a single node with --metrics.listen= : nothing at all;
- a cluster node (mutual TLS off) with cluster.listen and metrics on
  loopback ports: exactly those two;
- a wildcard address (0.0.0.0, ::, *) for either is refused at start,
  naming the key.

    test_exposure.py ACTOR_SYSTEM

Needs $FLOWMATCH_TEST_DSN and $FLOWMATCH_TEST_REDIS_URL (a cluster node
keeps its leases in PostgreSQL and reads a Redis stream).
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

EXE = sys.argv[1]
DSN = os.environ.get("FLOWMATCH_TEST_DSN", "")
REDIS = os.environ.get("FLOWMATCH_TEST_REDIS_URL", "")
PSQL = "/usr/lib/postgresql/15/bin/psql"
SCHEMA = "exposure_audit"


def fail(why, proc=None):
    print("FAIL: " + why)
    if proc is not None and proc.poll() is None:
        proc.kill()
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_address(hex_addr):
    """/proc/net/tcp's "0100007F:24F8" as "127.0.0.1:9464" (and v6)."""
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        # Four little-endian 32-bit words.
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        ip = "[" + socket.inet_ntop(socket.AF_INET6, words) + "]"
    return f"{ip}:{int(port, 16)}"


def listening(pid):
    """Every TCP socket of the process in LISTEN and every bound UDP one:
    {"tcp 127.0.0.1:9464", ...}."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    found = set()
    for proto in ["tcp", "tcp6", "udp", "udp6"]:
        with open(f"/proc/{pid}/net/{proto}") as f:
            next(f)
            for line in f:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if inode not in inodes:
                    continue
                # TCP: 0A is LISTEN. UDP: any bound socket receives.
                if proto.startswith("tcp") and state != "0A":
                    continue
                found.add(f"{proto.rstrip('6')} {decode_address(local)}")
    return found


def ready(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the node exited with {proc.returncode}: "
                 f"{proc.stderr.read().decode()[-1500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz",
                                        timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    fail("the node was not ready in time", proc)


def wait_log(proc, text, timeout=60):
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            fail(f"the node exited before logging {text!r}: "
                 + seen.decode()[-1500:])
        seen += line
        if text.encode() in line:
            return
    fail(f"no {text!r} in the node's log", proc)


def stop(proc):
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        fail("the node did not stop on SIGTERM", proc)


def check(name, proc, want):
    got = listening(proc.pid)
    if got != want:
        fail(f"{name}: listening on {sorted(got)}, configured "
             f"{sorted(want)}", proc)
    print(f"ok: {name}: listening on exactly {sorted(want) or 'nothing'}")


def start(args):
    return subprocess.Popen([EXE] + args, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# 1. Defaults: only the metrics endpoint, on loopback.
p = start(["--ingest.ndjson=-"])
wait_log(p, "serving /metrics")
ready(9464, p)
check("a single node with the defaults", p, {"tcp 127.0.0.1:9464"})
stop(p)

# 2. No endpoint: no socket at all.
p = start(["--ingest.ndjson=-", "--metrics.listen="])
wait_log(p, "reading")
check("a single node without metrics", p, set())
stop(p)

# 3. A cluster node: its cluster port and its metrics port, both as told.
if not DSN or not REDIS:
    fail("FLOWMATCH_TEST_DSN and FLOWMATCH_TEST_REDIS_URL must be set")
subprocess.run([PSQL, DSN, "-XAtq", "-c", "SET client_min_messages = warning", "-c",
                f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"], check=True)
cport, mport = free_port(), free_port()
p = start(["--ingest.redis=" + REDIS, "--ingest.stream=exposure-audit",
           "--ingest.partitions=2", "--postgis.dsn=" + DSN,
           "--postgis.schema=" + SCHEMA, "--cluster.node-id=audit1",
           f"--cluster.listen=127.0.0.1:{cport}",
           f"--metrics.listen=127.0.0.1:{mport}", "--system.threads=2"])
ready(mport, p)
check("a cluster node", p,
      {f"tcp 127.0.0.1:{cport}", f"tcp 127.0.0.1:{mport}"})
stop(p)
subprocess.run([PSQL, DSN, "-XAtq", "-c", "SET client_min_messages = warning", "-c",
                f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"], check=True)

# 4. Every interface is refused, naming the key.
for key, args in [
        ("metrics.listen", ["--ingest.ndjson=-", "--metrics.listen=0.0.0.0:9464"]),
        ("metrics.listen", ["--ingest.ndjson=-", "--metrics.listen=[::]:9464"]),
        ("cluster.listen", ["--ingest.redis=" + REDIS, "--postgis.dsn=" + DSN,
                            "--cluster.node-id=x",
                            "--cluster.listen=0.0.0.0:7000"]),
        ("cluster.listen", ["--ingest.redis=" + REDIS, "--postgis.dsn=" + DSN,
                            "--cluster.node-id=x", "--cluster.listen=*:7000"])]:
    r = subprocess.run([EXE] + args, capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 2 or key not in r.stderr:
        fail(f"{args[-1]}: want exit 2 naming {key}, got {r.returncode}: "
             f"{r.stderr.strip()}")
print("ok: every-interface addresses are refused at start, naming the key")
