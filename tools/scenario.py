#!/usr/bin/env python3
"""Scenario runner: drives the real actor-system, with the real PostGIS of
tools/pg.sh, through the steps of a scenario file and checks what comes out.

    tools/scenario.py [options] PATH...     a scenario file or a folder of them
    tools/scenario.py --self-test DIR       every scenario in DIR must fail,
                                            with the message it names

Options: --exe PATH (default build/actor-system), --dsn CONNINFO (default
$FLOWMATCH_TEST_DSN, else tools/pg.sh dsn: the schema owner), --app-dsn
CONNINFO (default $FLOWMATCH_TEST_APP_DSN, else tools/pg.sh app-dsn: the
least-privilege role every node runs as, the owner migrating for it; '-'
for none), --keep (keep each scenario's
schema and work folder for a look afterwards), --verbose (print every step),
--transport file|redis (how events reach the node, default file: a pipe;
redis: a Redis stream, published with Python's redis package, a client
flowmatch did not write), --redis-url URL (default $FLOWMATCH_TEST_REDIS_URL,
else tools/redis.sh url).

The format is described in tests/scenarios/README.md. Exit status: 0 when
every scenario passed, 1 when one failed, 2 for a scenario that cannot be
read (the message says where), 77 when every scenario named is for another
transport (skipped).
"""

import argparse
import json
import os
import re
import shutil
import signal as signals
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TIMEOUT = 60.0
# Exit status when every scenario named is for another transport (CTest's
# SKIP_RETURN_CODE).
SKIPPED = 77
DEFAULT_TOLERANCE = 1e-6


def fnv1a64(data):
    """FNV-1a, 64 bits (ingest.md's routing hash), written from the spec."""
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % (1 << 64)
    return h


class ScenarioError(Exception):
    """The scenario file itself is wrong (not a failed expectation)."""


class Failed(Exception):
    """An expectation did not hold; the message lists what differed."""


# --- the database -----------------------------------------------------------


def find_psql():
    found = shutil.which("psql")
    if found:
        return found
    for version in ("15", "16", "17"):
        path = f"/usr/lib/postgresql/{version}/bin/psql"
        if os.path.exists(path):
            return path
    raise ScenarioError("psql not found (install postgresql-client)")


class Database:
    def __init__(self, dsn, schema):
        self.dsn = dsn
        self.schema = schema
        self.psql = find_psql()

    def run(self, sql, search_path=True):
        cmd = [self.psql, self.dsn, "-XAtq", "-v", "ON_ERROR_STOP=1"]
        if search_path:
            cmd += ["-c", f"SET search_path TO {self.schema}, public"]
        cmd += ["-c", sql]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise Failed(f"query failed: {sql}\n    {done.stderr.strip()}")
        return done.stdout.strip()

    def rows(self, sql):
        text = self.run(f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t")
        return json.loads(text)

    def value(self, sql):
        return self.run(sql)

    def reset(self):
        self.run(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE",
                 search_path=False)

    def has_tables(self):
        return self.run(
            "SELECT count(*) FROM information_schema.tables "
            f"WHERE table_schema = '{self.schema}' AND table_name = 'sites'",
            search_path=False) == "1"


def redis_tool(command):
    done = subprocess.run([os.path.join(ROOT, "tools", "redis.sh"), command],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Failed(f"tools/redis.sh {command} failed:\n"
                     f"{done.stderr.strip()}")


def pg_tool(command):
    done = subprocess.run([os.path.join(ROOT, "tools", "pg.sh"), command],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Failed(f"tools/pg.sh {command} failed:\n{done.stderr.strip()}")


# --- the node ---------------------------------------------------------------


class Node:
    """One run of actor-system, reading its input from a pipe."""

    def __init__(self, exe, args, work, run_number):
        self.out_path = os.path.join(work, f"run{run_number}.stdout")
        self.err_path = os.path.join(work, f"run{run_number}.stderr")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([exe] + args, stdin=subprocess.PIPE,
                                     stdout=self.out, stderr=self.err)
        self.code = None

    def feed(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise Failed("the node closed its input while it was being fed "
                         f"(exit {self.proc.poll()}); log:\n"
                         + tail(self.stderr()))

    def close_input(self):
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def wait(self, timeout):
        try:
            self.code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failed(f"the node did not exit within {timeout:g} s; log:\n"
                         + tail(self.stderr()))
        self.out.close()
        self.err.close()
        return self.code

    def running(self):
        return self.proc.poll() is None

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class TcpProxy:
    """A TCP proxy on loopback: listens on `port` (0: a free one, then in
    `self.port`), connects every client to `target` and hands the pair
    (client side, server side) to `serve`, which starts the threads that
    forward. The fault-injecting proxies (CutProxy here, faults.py's
    AmbiguousCommitProxy) differ only in `serve`; set what it uses before
    calling this constructor, which starts accepting at once."""

    def __init__(self, port, target, backlog=16):
        self.target = target
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(backlog)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                down.close()
                continue
            self.serve(down, up)

    def serve(self, down, up):
        raise NotImplementedError


class CutProxy(TcpProxy):
    """A TCP proxy in front of a node's cluster port, which can cut the link
    for real: while cut, it forwards nothing either way (bytes are read and
    dropped, as a network that loses every packet; heartbeats stop, CAF
    drops the link after cluster.peer-timeout). Healing closes what crossed
    the cut (those streams lost bytes), so the nodes connect again."""

    def __init__(self, port, target):
        self.cut = False
        self.pairs = []
        super().__init__(port, target)

    def serve(self, down, up):
        self.pairs.append((down, up))
        for a, b in ((down, up), (up, down)):
            threading.Thread(target=self.pump, args=(a, b),
                             daemon=True).start()

    def pump(self, a, b):
        while True:
            try:
                data = a.recv(65536)
                if not data:
                    break
                if not self.cut:
                    b.sendall(data)
            except OSError:
                break
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def set_cut(self, cut):
        self.cut = cut
        if not cut:
            for pair in self.pairs:
                for s in pair:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
                    except OSError:
                        pass
            self.pairs = []

    def close(self):
        # shutdown wakes the thread blocked in accept(); a bare close()
        # would leave the port listening until that call returned.
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        self.set_cut(False)


def tail(text, lines=15):
    return "\n".join("    | " + l for l in text.splitlines()[-lines:])


def parse_summary(text):
    """The run summary's rows as {label: value}; labels without indent."""
    summary = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("flowmatch run summary"):
            inside = True
            continue
        if not inside or not line.startswith("  "):
            continue
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) != 2:
            continue
        label, value = parts
        try:
            value = int(value)
        except ValueError:
            pass
        summary[label] = value
    return summary


# --- comparing --------------------------------------------------------------


def same(expected, actual, tolerance):
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return abs(expected - actual) <= tolerance
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            same(e, a, tolerance) for e, a in zip(expected, actual))
    if isinstance(expected, (int, float)) and isinstance(actual, str):
        return False
    return expected == actual


def show(value):
    return json.dumps(value, ensure_ascii=False)


def check_fields(where, expected, actual, tolerance, problems):
    for field, want in expected.items():
        if field.endswith("_contains"):
            base = field[: -len("_contains")]
            got = actual.get(base)
            if got is None or str(want) not in str(got):
                problems.append(f"{where}.{base}: expected to contain "
                                f"{show(want)}, got {show(got)}")
            continue
        if field not in actual:
            problems.append(f"{where}: no field {field!r} "
                            f"(fields: {', '.join(sorted(actual))})")
            continue
        got = actual[field]
        if not same(want, got, tolerance):
            problems.append(f"{where}.{field}: expected {show(want)}, "
                            f"got {show(got)}")


def check_table(name, spec, rows, key_of, key_fields, problems):
    """`spec` is a list (exactly these rows) or {count, rows, absent,
    tolerance}. Each expected row names its key fields and any others."""
    if isinstance(spec, list):
        spec = {"count": len(spec), "rows": spec}
    if not isinstance(spec, dict):
        raise ScenarioError(f"expect {name}: a list of rows or a mapping")
    tolerance = float(spec.get("tolerance", DEFAULT_TOLERANCE))
    by_key = {key_of(r): r for r in rows}
    if "count" in spec and spec["count"] != len(rows):
        listed = ", ".join(sorted(fmt_key(k) for k in by_key))
        expected_keys = {fmt_key(tuple(str(r.get(f, "")) for f in key_fields))
                         for r in spec.get("rows", [])}
        extra = sorted(set(fmt_key(k) for k in by_key) - expected_keys)
        note = f"; not named by the scenario: {', '.join(extra)}" if (
            expected_keys and extra) else ""
        problems.append(f"{name}: expected {spec['count']} rows, got "
                        f"{len(rows)} ({listed or 'none'}){note}")
    for want in spec.get("rows", []):
        missing = [f for f in key_fields if f not in want]
        if missing:
            raise ScenarioError(f"expect {name}: each row needs "
                                f"{', '.join(key_fields)}; missing "
                                f"{', '.join(missing)} in {show(want)}")
        key = tuple(str(want[f]) for f in key_fields)
        got = by_key.get(key)
        if got is None:
            problems.append(f"{name}: no row {fmt_key(key)} (have: "
                            f"{', '.join(sorted(fmt_key(k) for k in by_key)) or 'none'})")
            continue
        fields = {k: v for k, v in want.items() if k not in key_fields}
        check_fields(f"{name}[{fmt_key(key)}]", fields, got, tolerance,
                     problems)
    for absent in spec.get("absent", []):
        key = tuple(str(x) for x in absent) if isinstance(absent, list) \
            else (str(absent),)
        if key in by_key:
            problems.append(f"{name}: row {fmt_key(key)} should be absent "
                            f"but is there: {show(by_key[key])}")


def fmt_key(key):
    return key[0] if len(key) == 1 else "(" + ", ".join(key) + ")"


# --- one scenario -----------------------------------------------------------


STEP_KINDS = ("start", "feed", "drain", "restart", "signal", "wait", "db",
              "redis", "redrive", "reset",
              "snapshot", "expect", "cluster")

# What `snapshot` keeps and `expect: {same_as: NAME}` compares: every
# table the contract defines, without the timestamps.
SNAPSHOT_QUERIES = {
    "sites": ("SELECT site_id, name, lat, lon, country, nace, version, "
              "ST_AsText(geog) AS geog FROM sites ORDER BY site_id",
              ("site_id",)),
    "flows": ("SELECT * FROM resource_flows ORDER BY flow_id", ("flow_id",)),
    "matches": ("SELECT * FROM matches ORDER BY supply_flow_id, demand_flow_id",
                ("supply_flow_id", "demand_flow_id")),
    "dead_letters": ("SELECT event_id, line, reason, detail FROM dead_letters "
                     "ORDER BY line, reason", ("line", "reason")),
    "processed_events": ("SELECT event_id FROM processed_events "
                         "ORDER BY event_id", ("event_id",)),
}

# On a stream a letter's position is its entry id, new for every publish:
# two runs are compared by what was rejected and why, with a count.
# (A file's line re-fed is the same letter seen again; a stream entry
# published again is a new entry, and a new letter.)
STREAM_DEAD_LETTERS = (
    "SELECT DISTINCT coalesce(event_id, '') AS event_id, reason, payload "
    "FROM dead_letters ORDER BY 1, 2, 3",
    ("event_id", "reason", "payload"))

# Summary rows named after the transport's unit.
STREAM_LABELS = {"lines read": "entries read"}


class Scenario:
    def __init__(self, path, opts):
        self.path = path
        self.opts = opts
        with open(path, encoding="utf-8") as f:
            try:
                doc = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ScenarioError(f"{path}: not valid YAML: {e}")
        if not isinstance(doc, dict) or "steps" not in doc:
            raise ScenarioError(f"{path}: needs a mapping with `steps`")
        self.doc = doc
        self.name = doc.get("name", os.path.basename(path))
        stem = os.path.splitext(os.path.basename(path))[0]
        self.schema = "scenario_" + re.sub(r"[^a-z0-9_]", "_", stem.lower())
        self.db = Database(opts.dsn, self.schema)
        self.work = tempfile.mkdtemp(prefix=f"flowmatch-{stem}-")
        self.node = None
        self.last = None  # the last node that exited
        self.runs = 0
        self.snapshots = {}
        self.first_run_since_reset = 1
        self.transport = opts.transport
        self.stream_key = "scenario:" + stem
        self.published = []  # entry ids published since the node started
        # Cluster mode: nodes by number, and the stream's partitions
        # (`cluster_partitions` at the top of the scenario, default 4).
        self.cluster_nodes = {}
        self.cluster_size = 0
        self.cluster_extra = []
        self.cluster_partitions = int(doc.get("cluster_partitions", 4))
        self.cluster_proxies = {}
        if self.transport == "redis":
            import redis  # Debian's python3-redis
            self.redis = redis.Redis.from_url(opts.redis_url)

    # -- steps --

    def node_args(self, extra):
        self.runs += 1
        self.stream = os.path.join(self.work, f"run{self.runs}.matches.ndjson")
        if self.transport == "redis":
            # The consumer name stays across runs, as a node's would.
            args = [f"--ingest.redis={self.opts.redis_url}",
                    f"--ingest.stream={self.stream_key}",
                    "--ingest.consumer=scenario"]
        else:
            args = ["--ingest.ndjson=-"]
        args += ["--metrics.listen=",  # scenarios run beside other tests
                 *node_db_args(self.opts),
                f"--postgis.schema={self.schema}",
                f"--output.matches={self.stream}",
                f"--output.state={os.path.join(self.work, f'run{self.runs}.state.ndjson')}",
                "--system.threads=2"]
        args += [str(a) for a in self.doc.get("args", [])]
        args += [str(a) for a in extra]
        return args

    def start(self, spec):
        if self.node and self.node.running():
            raise ScenarioError("start: the node is already running "
                                "(drain or signal it first)")
        extra = spec.get("args", []) if isinstance(spec, dict) else []
        self.node = Node(self.opts.exe, self.node_args(extra), self.work,
                         self.runs + 1)
        self.published = []

    def partition_key(self, fields):
        """The stream key of an entry: with a cluster's partitioned stream,
        its partition by the FNV-1a 64 of data.site_id (ingest.md), computed
        here independently of flowmatch's own code."""
        if not self.cluster_nodes or self.cluster_partitions <= 1:
            return self.stream_key
        site = ""
        try:
            site = json.loads(fields.get("event", b"")).get("data", {}).get(
                "site_id", "")
        except (ValueError, AttributeError):
            pass
        return f"{self.stream_key}:{fnv1a64(str(site).encode()) % self.cluster_partitions if site else 0}"

    def feed(self, spec):
        if self.cluster_nodes:
            pass  # the cluster's nodes read the stream
        elif not self.node or not self.node.running():
            self.start({})
        if self.transport != "redis":
            self.node.feed(self.lines(spec))
            return
        # One entry per line (ingest.md): XADD key * event LINE; an item
        # {entry: {FIELD: VALUE}} is an entry with exactly those fields.
        entries = []
        items = spec if isinstance(spec, list) else [None]
        for item in items:
            if isinstance(item, dict) and set(item) == {"entry"}:
                entries.append({str(k): str(v)
                                for k, v in item["entry"].items()})
                continue
            data = self.lines([item] if item is not None else spec)
            lines = data.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            entries += [{"event": line} for line in lines]
        pipe = self.redis.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(self.partition_key(fields), fields)
        self.published += [i.decode() for i in pipe.execute()]

    def group_info(self):
        try:
            for g in self.redis.xinfo_groups(self.stream_key):
                if g["name"] in (b"flowmatch", "flowmatch"):
                    return g
        except Exception:  # no stream yet
            return None
        return None

    def all_delivered(self, g, key=None):
        """Group `g` of stream `key` (the main one by default) was given the
        stream's last entry: not XINFO's lag, which Redis 7.0 can overstate
        for good after an AOF rewrite and a restart (streams/redis.hpp,
        checked_lag)."""
        try:
            last = self.redis.xinfo_stream(key or self.stream_key)[
                "last-generated-id"]
        except Exception:
            return False
        return g["last-delivered-id"] == last

    def wait_consumed(self, timeout):
        """Until this node read its own pending entries (it logs that it
        reads new ones) and was given every entry."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            g = self.group_info()
            if (g is not None and self.all_delivered(g)
                    and "reading new entries" in self.node.stderr()):
                return
            if not self.node.running():
                raise Failed(f"drain: the node exited ({self.node.proc.poll()}) "
                             "before it read the stream; log:\n"
                             + tail(self.node.stderr()))
            if time.monotonic() > deadline:
                raise Failed(f"drain: the stream was not read within "
                             f"{timeout:g} s (group: {g}); log:\n"
                             + tail(self.node.stderr()))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def lines(self, spec):
        """Bytes to feed: a list of events (mappings) and raw lines
        (strings), or {file: PATH} relative to the scenario, or one of the
        special lines {bytes: TEXT} (latin-1, for invalid UTF-8),
        {line_of_length: N} and {no_line_end: TEXT} (TEXT without a line
        end: a line still being written)."""
        if isinstance(spec, dict) and "file" in spec:
            path = os.path.join(os.path.dirname(self.path), spec["file"])
            with open(path, "rb") as f:
                lines = f.read().splitlines(keepends=True)
            if "lines" in spec:  # [first, last], 1-based, inclusive
                first, last = spec["lines"]
                lines = lines[first - 1:last]
            data = b"".join(lines)
            return data if data.endswith(b"\n") else data + b"\n"
        if not isinstance(spec, list):
            raise ScenarioError("feed: a list of events and lines, or "
                                "{file: PATH}")
        out = bytearray()
        for item in spec:
            if isinstance(item, str):
                out += item.encode("utf-8")
            elif isinstance(item, dict) and set(item) == {"bytes"}:
                out += item["bytes"].encode("latin-1")
            elif isinstance(item, dict) and set(item) == {"no_line_end"}:
                out += item["no_line_end"].encode("utf-8")
                continue  # written as is: no line end after it
            elif isinstance(item, dict) and set(item) == {"line_of_length"}:
                n = int(item["line_of_length"])
                head = '{"id":"long","type":"site_created","data":{"site_id":"L","name":"'
                tail_ = '","lat":1,"lon":1}}'
                out += (head + "x" * max(0, n - len(head) - len(tail_))
                        + tail_).encode()
            elif isinstance(item, dict):
                out += json.dumps(item, ensure_ascii=False,
                                  separators=(",", ":")).encode("utf-8")
            else:
                raise ScenarioError(f"feed: cannot feed {show(item)}")
            out += b"\n"
        return bytes(out)

    def drain(self, spec):
        if not self.node:
            raise ScenarioError("drain: no node was started")
        timeout = float((spec or {}).get("timeout", DEFAULT_TIMEOUT)) \
            if isinstance(spec, dict) else DEFAULT_TIMEOUT
        if self.transport == "redis":
            # A stream has no end: once the node was given every entry, a
            # SIGTERM makes it finish and acknowledge them and exit.
            self.wait_consumed(timeout)
            self.node.proc.send_signal(signals.SIGTERM)
        self.node.close_input()
        self.node.wait(timeout)
        self.last = self.node

    def restart(self, spec):
        """Drains the running node (it must exit 0), then starts a new one
        on the same database: a restart between two feeds."""
        self.drain(spec if isinstance(spec, dict) else None)
        if self.last.code != 0:
            raise Failed(f"restart: the node exited {self.last.code}, not 0; "
                         "log:\n" + tail(self.last.stderr()))
        self.start({})

    def signal(self, spec):
        if isinstance(spec, str):
            spec = {"name": spec}
        name = spec.get("name", "SIGTERM")
        if not self.node or not self.node.running():
            raise Failed(f"signal {name}: the node is not running"
                         + (f" (exited {self.node.code})" if self.node else ""))
        sig = getattr(signals, name, None)
        if not isinstance(sig, signals.Signals):
            raise ScenarioError(f"signal: unknown signal {name}")
        self.node.proc.send_signal(sig)
        if spec.get("wait", True):
            self.node.wait(float(spec.get("timeout", DEFAULT_TIMEOUT)))
            self.last = self.node

    def wait(self, spec):
        """Waits on state, never a fixed time: {applied: N} (rows in
        processed_events), {sql: QUERY, at_least: N}, {log: TEXT} (in the
        node's log), each with an optional timeout in seconds."""
        if not isinstance(spec, dict):
            raise ScenarioError("wait: a mapping (applied, sql or log)")
        timeout = float(spec.get("timeout", DEFAULT_TIMEOUT))
        deadline = time.monotonic() + timeout
        if "log" in spec:
            what = f"log line containing {show(spec['log'])}"
            probe = lambda: spec["log"] in self.node.stderr()
            last = lambda: tail(self.node.stderr())
        else:
            sql = spec.get("sql", "SELECT count(*) FROM processed_events")
            at_least = int(spec.get("applied", spec.get("at_least", 1)))
            what = f"{sql} >= {at_least}"
            seen = {"value": None}

            def probe():
                if not self.db.has_tables():
                    return False
                try:
                    seen["value"] = int(self.db.value(sql))
                except Failed:
                    return False  # the database may be restarting
                return seen["value"] >= at_least
            last = lambda: f"    last value: {seen['value']}"
        delay = 0.01
        while not probe():
            if self.cluster_nodes:
                # A cluster's nodes do the work (the single node of an
                # earlier step may have exited long ago).
                if not any(n.running() for n in self.cluster_nodes.values()):
                    raise Failed(f"wait for {what}: every cluster node "
                                 "exited first")
            elif self.node and not self.node.running():
                raise Failed(f"wait for {what}: the node exited "
                             f"({self.node.proc.poll()}) first; log:\n"
                             + tail(self.node.stderr()))
            if time.monotonic() > deadline:
                raise Failed(f"wait for {what}: not within {timeout:g} s\n"
                             + last())
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def reset(self, spec):
        """Drops the scenario's schema: the next node starts from nothing."""
        if self.node and self.node.running():
            raise ScenarioError("reset: the node is running")
        self.db.reset()
        if self.transport == "redis":
            self.delete_streams()
        self.first_run_since_reset = self.runs + 1

    def take_snapshot(self):
        snap = {}
        for table, (sql, key) in SNAPSHOT_QUERIES.items():
            if table == "dead_letters" and self.transport == "redis":
                sql, key = STREAM_DEAD_LETTERS
            rows = self.db.rows(sql)
            for r in rows:
                r.pop("updated_at", None)
                r.pop("computed_at", None)
                r.pop("processed_at", None)
            snap[table] = {tuple(str(r[k]) for k in key): r for r in rows}
        return snap

    def snapshot(self, spec):
        if not isinstance(spec, str):
            raise ScenarioError("snapshot: a name")
        self.snapshots[spec] = self.take_snapshot()

    def compare_snapshot(self, spec, problems):
        """`spec`: a snapshot name, or {snapshot: NAME, except: [TABLES]}."""
        skip = []
        if isinstance(spec, dict):
            skip = spec.get("except", [])
            name = spec.get("snapshot")
        else:
            name = spec
        if name not in self.snapshots:
            raise ScenarioError(f"same_as: no snapshot named {name!r}")
        then, now = self.snapshots[name], self.take_snapshot()
        for table in SNAPSHOT_QUERIES:
            if table in skip:
                continue
            a, b = then[table], now[table]
            only_then = sorted(set(a) - set(b))
            only_now = sorted(set(b) - set(a))
            if only_then:
                problems.append(f"{table}: {len(only_then)} rows of {name!r} "
                                f"missing now, e.g. {', '.join(fmt_key(k) for k in only_then[:5])}")
            if only_now:
                problems.append(f"{table}: {len(only_now)} rows not in {name!r}, "
                                f"e.g. {', '.join(fmt_key(k) for k in only_now[:5])}")
            changed = 0
            for k in sorted(set(a) & set(b)):
                diffs = [f for f in a[k] if not same(a[k][f], b[k].get(f), 1e-9)]
                if diffs:
                    changed += 1
                    if changed <= 5:
                        problems.append(f"{table}[{fmt_key(k)}]: " + "; ".join(
                            f"{f} {show(a[k][f])} in {name!r}, now {show(b[k].get(f))}"
                            for f in diffs))
            if changed > 5:
                problems.append(f"{table}: {changed} rows differ in all")

    def redrive(self, spec):
        """Runs build/flowmatch-redrive on the scenario's schema with the
        given selection ({args: [...]}); the letters go where the node reads
        (its stream, or a file then fed to it)."""
        args = [str(a) for a in (spec or {}).get("args", [])] \
            if isinstance(spec, dict) else []
        exe = os.path.join(os.path.dirname(self.opts.exe), "flowmatch-redrive")
        cmd = [exe, f"--dsn={self.opts.dsn}", f"--schema={self.schema}"] + args
        out = None
        if not self.node or not self.node.running():
            self.start({})
        if self.transport == "redis":
            cmd += [f"--redis={self.opts.redis_url}",
                    f"--stream={self.stream_key}"]
        else:
            out = os.path.join(self.work, f"redrive{self.runs}.ndjson")
            if os.path.exists(out):
                os.remove(out)
            cmd += [f"--ndjson={out}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise Failed(f"flowmatch-redrive exited {done.returncode}:\n"
                         f"{done.stderr.strip()}")
        if out is not None and os.path.exists(out):
            with open(out, "rb") as f:
                self.node.feed(f.read())

    def redis_step(self, spec):
        if self.transport != "redis":
            raise ScenarioError("redis: a step for the redis transport "
                                "(give the scenario `transports: [redis]`)")
        if spec not in ("stop", "start", "restart"):
            raise ScenarioError("redis: stop, start or restart")
        redis_tool(spec)

    def db_step(self, spec):
        if spec not in ("stop", "start", "restart"):
            raise ScenarioError("db: stop, start or restart")
        pg_tool(spec)

    def expect(self, spec):
        if not isinstance(spec, dict):
            raise ScenarioError("expect: a mapping")
        # What differs on a stream, said in the scenario: its keys replace
        # the expectation's there.
        spec = dict(spec)
        on_stream = spec.pop("on_stream", {})
        if self.transport == "redis":
            spec.update(on_stream)
        problems = []
        for key, want in spec.items():
            if key == "exit":
                got = self.last.code if self.last else None
                if got != want:
                    problems.append(f"exit: expected {want}, got {got}"
                                    + ("\n" + tail(self.last.stderr())
                                       if self.last else ""))
            elif key == "summary":
                got = parse_summary(self.last.stdout()) if self.last else {}
                if self.transport == "redis":
                    want = {STREAM_LABELS.get(k, k): v for k, v in want.items()}
                for label, value in want.items():
                    if label not in got:
                        problems.append(f"summary: no row {label!r} (rows: "
                                        f"{', '.join(got) or 'none'})")
                    elif got[label] != value:
                        problems.append(f"summary.{label}: expected "
                                        f"{show(value)}, got {show(got[label])}")
            elif key == "log":
                text = self.last.stderr() if self.last else ""
                for needle in ([want] if isinstance(want, str) else want):
                    if needle not in text:
                        problems.append(f"log: no line containing "
                                        f"{show(needle)}; log:\n{tail(text)}")
            elif key == "sites":
                rows = self.db.rows("SELECT site_id, name, lat, lon, country, "
                                    "nace, version FROM sites")
                check_table("sites", want, rows, lambda r: (r["site_id"],),
                            ["site_id"], problems)
            elif key == "flows":
                rows = self.db.rows("SELECT * FROM resource_flows")
                for r in rows:
                    r.pop("updated_at", None)
                check_table("flows", want, rows, lambda r: (r["flow_id"],),
                            ["flow_id"], problems)
            elif key == "matches":
                rows = self.db.rows("SELECT * FROM matches")
                for r in rows:
                    r.pop("computed_at", None)
                check_table("matches", want, rows,
                            lambda r: (r["supply_flow_id"], r["demand_flow_id"]),
                            ["supply_flow_id", "demand_flow_id"], problems)
            elif key == "dead_letters":
                self.expect_dead_letters(want, problems)
            elif key == "stream":
                self.expect_stream(want, problems)
            elif key == "same_as":
                self.compare_snapshot(want, problems)
            else:
                raise ScenarioError(f"expect: unknown key {key!r}")
        if problems:
            raise Failed("\n".join("  " + p for p in problems))

    def expect_dead_letters(self, want, problems):
        rows = self.db.rows("SELECT event_id, source, line, entry_id, reason, "
                            "detail, payload, attempts, "
                            "resolved_at IS NOT NULL AS resolved "
                            "FROM dead_letters ORDER BY id")
        if self.transport == "redis" and isinstance(want, dict):
            # A line number N of the node's input is the N-th entry
            # published while the node ran.
            want = dict(want)
            fixed = []
            for row in want.get("rows", []):
                row = dict(row)
                if "line" in row:
                    n = int(row.pop("line"))
                    row["entry_id"] = (self.published[n - 1]
                                       if 0 < n <= len(self.published)
                                       else f"(no entry {n} was published)")
                fixed.append(row)
            if "rows" in want:
                want["rows"] = fixed
        if isinstance(want, dict) and "reasons" in want:
            counts = {}
            for r in rows:
                counts[r["reason"]] = counts.get(r["reason"], 0) + 1
            if counts != want["reasons"]:
                problems.append(f"dead_letters.reasons: expected "
                                f"{show(want['reasons'])}, got {show(counts)}")
        spec = dict(want) if isinstance(want, dict) else want
        if isinstance(spec, dict):
            spec.pop("reasons", None)
        # Dead letters are keyed by event id and reason (a line without a
        # readable id has a null id: name it as "").
        for r in rows:
            r["event_id"] = r["event_id"] or ""
        check_table("dead_letters", spec, rows,
                    lambda r: (r["event_id"], r["reason"]),
                    ["event_id", "reason"], problems)

    def expect_stream(self, want, problems):
        """The match stream of the last run: counts of upserted and removed
        lines, and `replays_to_table: true` (replaying it over the stream
        of the runs before gives the matches table)."""
        if not self.last:
            problems.append("stream: no run has finished")
            return
        lines = []
        for n in range(self.first_run_since_reset, self.runs + 1):
            path = os.path.join(self.work, f"run{n}.matches.ndjson")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    lines.append([json.loads(l) for l in f if l.strip()])
        last = lines[-1] if lines else []
        for kind in ("upserted", "removed"):
            if kind in want:
                got = sum(1 for l in last if l["type"] == "match_" + kind)
                if got != want[kind]:
                    problems.append(f"stream.{kind}: expected {want[kind]} "
                                    f"lines, got {got}")
        if want.get("replays_to_table"):
            state = {}
            for run in lines:
                for l in run:
                    key = (l["supply_flow_id"], l["demand_flow_id"])
                    if l["type"] == "match_removed":
                        state.pop(key, None)
                    else:
                        state[key] = l
            table = {(r["supply_flow_id"], r["demand_flow_id"]): r
                     for r in self.db.rows("SELECT * FROM matches")}
            for key in sorted(set(state) | set(table)):
                if key not in table:
                    problems.append(f"stream: {fmt_key(key)} in the replayed "
                                    "stream, not in the table")
                elif key not in state:
                    problems.append(f"stream: {fmt_key(key)} in the table, "
                                    "not in the replayed stream")
                elif not same(state[key]["score"], table[key]["score"], 1e-9):
                    problems.append(f"stream: {fmt_key(key)} score "
                                    f"{state[key]['score']} in the stream, "
                                    f"{table[key]['score']} in the table")


    # -- cluster mode (docs/cluster.md) --

    def cluster_port(self, i):
        # Every scenario its own ports (CTest runs several at once).
        # Below the ephemeral range (32768 and up), where a client socket of
        # another test could hold the port.
        base = 20000 + (zlib.crc32(self.name.encode()) % 1000) * 10
        return base + i

    def advertised(self, i):
        """Where the others reach node I: its proxy, if it has one."""
        port = self.cluster_port(i) + (100 if i in self.cluster_proxies else 0)
        return f"127.0.0.1:{port}"

    def cluster_args(self, i, extra):
        n = self.cluster_size
        seeds = ",".join(f'"{self.advertised(j)}"'
                         for j in range(1, n + 1) if j != i)
        args = [f"--ingest.redis={self.opts.redis_url}",
                f"--ingest.stream={self.stream_key}",
                f"--ingest.partitions={self.cluster_partitions}",
                "--metrics.listen=",
                *node_db_args(self.opts),
                f"--postgis.schema={self.schema}",
                "--system.threads=2", "--registry.workers=2",
                f"--cluster.node-id=n{i}",
                f"--cluster.listen=127.0.0.1:{self.cluster_port(i)}",
                f"--cluster.advertise={self.advertised(i)}",
                f"--cluster.seeds=[{seeds}]"]
        if self.doc.get("cluster_tls"):
            certs = self.cluster_certs()
            args += [f"--openssl.certificate={certs}/n{i}.pem",
                     f"--openssl.key={certs}/n{i}.key",
                     f"--openssl.cafile={certs}/ca.pem"]
        args += [str(a) for a in self.doc.get("args", [])]
        args += [str(a) for a in self.cluster_extra]
        args += [str(a) for a in extra]
        return args

    def cluster_certs(self):
        """The cluster's CA and node certificates (tools/certs.sh), and a
        rogue CA with a certificate of its own, in the work folder."""
        certs = os.path.join(self.work, "certs")
        if not os.path.exists(os.path.join(certs, "ca.pem")):
            names = [f"n{i}" for i in range(1, max(self.cluster_size, 3) + 1)]
            for folder, who in ((certs, names),
                                (os.path.join(self.work, "rogue"), ["r1"])):
                done = subprocess.run(
                    [os.path.join(ROOT, "tools", "certs.sh"), folder] + who,
                    capture_output=True, text=True, timeout=60)
                if done.returncode != 0:
                    raise Failed(f"tools/certs.sh failed:\n{done.stderr}")
        return certs

    def probe(self, spec):
        """A peer that must be refused at node I's cluster port: `rogue`
        (a certificate of another CA), `no_certificate`, or `garbage`
        (plain TCP bytes). The node must go on running."""
        i, peer = int(spec["node"]), spec["peer"]
        node = self.cluster_node(i)
        port = self.cluster_port(i)
        certs = self.cluster_certs()
        if peer in ("rogue", "no_certificate"):
            cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                   "-CAfile", os.path.join(certs, "ca.pem"), "-quiet"]
            if peer == "rogue":
                rogue = os.path.join(self.work, "rogue")
                cmd += ["-cert", os.path.join(rogue, "r1.pem"),
                        "-key", os.path.join(rogue, "r1.key")]
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=30)
            err = done.stderr.decode("utf-8", "replace")
            if done.returncode == 0 or "alert" not in err:
                raise Failed(f"a {peer} peer was not refused by n{i} "
                             f"(openssl s_client exit {done.returncode}):\n"
                             + tail(err))
            if b"flowmatch-cluster" in done.stdout:
                raise Failed(f"a {peer} peer got n{i}'s BASP handshake")
        elif peer == "garbage":
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                try:
                    s.sendall(b"\x00\xff" * 8192 + b"GET / HTTP/1.0\r\n\r\n")
                    s.settimeout(10)
                    while s.recv(4096):
                        pass
                except (ConnectionResetError, BrokenPipeError):
                    pass
        else:
            raise ScenarioError(f"probe: peer must be rogue, no_certificate "
                                f"or garbage, got {peer!r}")
        if not node.running():
            raise Failed(f"n{i} stopped after a {peer} peer; log:\n"
                         + tail(node.stderr()))

    def cluster_start(self, i, extra=()):
        self.runs += 1
        node = Node(self.opts.exe, self.cluster_args(i, extra), self.work,
                    f"{self.runs}.n{i}")
        self.cluster_nodes[i] = node
        self.last = node

    def cluster_node(self, i):
        node = self.cluster_nodes.get(int(i))
        if node is None:
            raise ScenarioError(f"cluster: no node {i}")
        return node

    def wait_for(self, what, check, timeout, describe, poll=0.1):
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return
            if time.monotonic() > deadline:
                raise Failed(f"{what} did not happen within {timeout:g} s"
                             + (f": {describe()}" if describe else ""))
            time.sleep(poll)

    def partition_keys(self):
        if not self.cluster_nodes or self.cluster_partitions <= 1:
            return [self.stream_key]
        return [f"{self.stream_key}:{q}" for q in range(self.cluster_partitions)]

    def groups_idle(self):
        """(pending, undelivered) summed over the partitions; None when a
        group is missing. Undelivered: partitions not `all_delivered`."""
        pending = undelivered = 0
        for key in self.partition_keys():
            try:
                groups = self.redis.xinfo_groups(key)
            except Exception:
                return None
            g = next((g for g in groups
                      if g["name"] in (b"flowmatch", "flowmatch")), None)
            if g is None:
                return None
            pending += g["pending"]
            if not self.all_delivered(g, key):
                undelivered += 1
        return pending, undelivered

    def cluster_step(self, spec):
        """One step on a cluster of nodes n1..nN (redis transport):
        {up: N, args: [...]}, {kill|stop|cont|term|restart: I},
        {joined: I}, {leased: I},
        {wait_idle: SECONDS}, {joined: I}, {leases_left: I},
        {exited: {node: I, code: C}}, {log: {node: I, contains: TEXT}},
        {probe: {node: I, peer: rogue|no_certificate|garbage}},
        {up: N, proxy: [I]} puts a cutting proxy in front of node I, then
        {cut: I} / {heal: I}; {wait_log: {node: I, contains: TEXT, poll: S}},
        `down` (SIGTERM every node, each must exit 0)."""
        if self.transport != "redis":
            raise ScenarioError("cluster: steps need the redis transport "
                                "(give the scenario `transports: [redis]`)")
        if spec == "down":
            for i, node in sorted(self.cluster_nodes.items()):
                if node.running():
                    node.proc.send_signal(signals.SIGTERM)
            for i, node in sorted(self.cluster_nodes.items()):
                if node.code is None:
                    code = node.wait(120)
                    if code != 0:
                        raise Failed(f"node n{i} exited {code} at down; log:\n"
                                     + tail(node.stderr()))
            self.cluster_nodes = {}
            return
        if not isinstance(spec, dict):
            raise ScenarioError("cluster: a mapping or `down`")
        spec = dict(spec)
        extra = [str(a) for a in spec.pop("args", [])]
        proxies = [int(i) for i in spec.pop("proxy", [])]
        if len(spec) != 1:
            raise ScenarioError(f"cluster: one action, got {show(spec)}")
        action, value = next(iter(spec.items()))
        if action == "up":
            self.cluster_size = int(value)
            self.cluster_extra = extra
            for i in proxies:
                self.cluster_proxies[i] = CutProxy(self.cluster_port(i) + 100,
                                                   self.cluster_port(i))
            for i in range(1, self.cluster_size + 1):
                self.cluster_start(i)
            for i in range(1, self.cluster_size + 1):
                self.cluster_step({"leased": i})
        elif action in ("joined", "leased"):
            # joined: the node runs in the cluster (a node that rejoins may
            # take nothing while the others hold everything); leased: it
            # took its first leases.
            node = self.cluster_node(value)
            needle = ("took over" if action == "leased"
                      else "running as cluster node")
            self.wait_for(f"node n{value} {action}",
                          lambda: needle in node.stderr()
                          or not node.running(), 60, None)
            if not node.running():
                raise Failed(f"node n{value} stopped at start; log:\n"
                             + tail(node.stderr()))
        elif action in ("kill", "stop", "cont", "term"):
            node = self.cluster_node(value)
            sig = {"kill": signals.SIGKILL, "stop": signals.SIGSTOP,
                   "cont": signals.SIGCONT, "term": signals.SIGTERM}[action]
            node.proc.send_signal(sig)
            if action == "kill":
                node.wait(30)
        elif action == "restart":
            i = int(value)
            old = self.cluster_node(i)
            if old.running():
                raise ScenarioError(f"cluster: node n{i} still runs")
            self.cluster_start(i, extra)
            self.cluster_step({"joined": i})
        elif action == "wait_idle":
            self.wait_for("every stream partition consumed (pending 0, all delivered)",
                          lambda: self.groups_idle() == (0, 0), float(value),
                          lambda: f"(pending, undelivered) = {self.groups_idle()}")
        elif action == "leases_left":
            # Every lease of node I is held by another node now.
            who = f"n{int(value)}"
            def moved():
                out = self.db.run(
                    "SELECT count(*) FILTER (WHERE owner = '" + who + "'), "
                    "count(*) FILTER (WHERE owner IS NULL OR "
                    "expires_at < now()) FROM cluster_leases")
                held, free = (int(x) for x in out.split("|"))
                return held == 0 and free == 0
            self.wait_for(f"the leases of {who} moving to other nodes",
                          moved, 60, None)
        elif action == "exited":
            node = self.cluster_node(value["node"])
            code = node.wait(float(value.get("timeout", 60)))
            if code != value["code"]:
                raise Failed(f"node n{value['node']} exited {code}, expected "
                             f"{value['code']}; log:\n" + tail(node.stderr()))
        elif action == "probe":
            self.probe(value)
        elif action in ("cut", "heal"):
            # The link to node I, through the proxy in front of it (only
            # lower ids connect to it: in a cluster of three, cutting n2's
            # proxy cuts n1-n2 and nothing else).
            proxy = self.cluster_proxies.get(int(value))
            if proxy is None:
                raise ScenarioError(f"cluster: node {value} has no proxy "
                                    "(up: {proxy: [I]})")
            proxy.set_cut(action == "cut")
        elif action == "wait_log":
            node = self.cluster_node(value["node"])
            needle = value["contains"]
            self.wait_for(f"n{value['node']} logging {needle!r}",
                          lambda: needle in node.stderr(),
                          float(value.get("timeout", 60)),
                          lambda: "\n" + tail(node.stderr()),
                          float(value.get("poll", 0.1)))
        elif action == "log":
            node = self.cluster_node(value["node"])
            needles = value["contains"]
            for needle in ([needles] if isinstance(needles, str) else needles):
                if needle not in node.stderr():
                    raise Failed(f"node n{value['node']}: no log line "
                                 f"containing {show(needle)}; log:\n"
                                 + tail(node.stderr()))
        else:
            raise ScenarioError(f"cluster: unknown action {action!r}")

    # -- running --

    def delete_streams(self):
        self.redis.delete(self.stream_key)
        for q in range(self.cluster_partitions):
            self.redis.delete(f"{self.stream_key}:{q}")

    def run(self, verbose=False):
        self.db.reset()
        if self.transport == "redis":
            self.delete_streams()
        steps = self.doc["steps"]
        if not isinstance(steps, list):
            raise ScenarioError(f"{self.path}: `steps` must be a list")
        try:
            for number, step in enumerate(steps, 1):
                if isinstance(step, str):
                    kind, spec = step, None
                elif isinstance(step, dict) and len(step) == 1:
                    kind, spec = next(iter(step.items()))
                else:
                    raise ScenarioError(f"step {number}: one of "
                                        f"{', '.join(STEP_KINDS)}, got {show(step)}")
                if isinstance(spec, dict) and "transport" in spec:
                    # A step for one transport only (the scenario says why).
                    spec = dict(spec)
                    only = spec.pop("transport")
                    if only != self.transport:
                        continue
                    if list(spec) == ["value"]:
                        spec = spec["value"]
                if verbose:
                    print(f"    step {number}: {kind}", flush=True)
                handler = {
                    "start": self.start, "feed": self.feed,
                    "drain": self.drain, "restart": self.restart,
                    "signal": self.signal,
                    "wait": self.wait, "db": self.db_step,
                    "redis": self.redis_step,
                    "redrive": self.redrive,
                    "reset": self.reset, "snapshot": self.snapshot,
                    "expect": self.expect, "cluster": self.cluster_step,
                }.get(kind)
                if handler is None:
                    raise ScenarioError(f"step {number}: unknown step {kind!r} "
                                        f"(steps: {', '.join(STEP_KINDS)})")
                try:
                    handler(spec)
                except Failed as e:
                    raise Failed(f"step {number} ({kind}):\n{e}")
                except ScenarioError as e:
                    raise ScenarioError(f"{self.path}: step {number} ({kind}): {e}")
        finally:
            if self.node and self.node.running():
                self.node.proc.kill()
                self.node.proc.wait()
            for node in self.cluster_nodes.values():
                if node.running():
                    node.proc.send_signal(signals.SIGCONT)
                    node.proc.kill()
                    node.proc.wait()
            for proxy in self.cluster_proxies.values():
                proxy.close()
            if self.transport == "redis":
                redis_tool("start")  # a failed step may have left it down

    def cleanup(self):
        if not self.opts.keep:
            shutil.rmtree(self.work, ignore_errors=True)
            try:
                self.db.reset()
                if self.transport == "redis":
                    self.delete_streams()
            except Exception:
                pass


def collect(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p)
                            if f.endswith((".yaml", ".yml")))
        else:
            files.append(p)
    return files


def run_all(files, opts):
    failed = []
    skipped = 0
    total = len(files)
    for i, path in enumerate(files, 1):
        label = os.path.relpath(path) + (
            f" over {opts.transport}" if opts.transport != "file" else "")
        print(f"[{i}/{total}] {label} ... ", end="", flush=True)
        started = time.monotonic()
        try:
            sc = Scenario(path, opts)
        except ScenarioError as e:
            print("ERROR")
            print(f"  {e}")
            return 2
        transports = sc.doc.get("transports", ["file", "redis"])
        if opts.transport not in transports:
            print(f"skipped ({', '.join(transports)} only: "
                  f"{sc.doc.get('why_not_everywhere', 'see the file')})")
            skipped += 1
            continue
        try:
            sc.run(opts.verbose)
            print(f"ok ({time.monotonic() - started:.1f} s)", flush=True)
            sc.cleanup()
        except Failed as e:
            print(f"FAIL ({time.monotonic() - started:.1f} s)")
            print(f"  {sc.name}\n  {e}")
            print(f"  (work folder {sc.work}, schema {sc.schema} kept)")
            failed.append(label)
        except ScenarioError as e:
            print("ERROR")
            print(f"  {e}")
            return 2
    if failed:
        print(f"{len(failed)} of {total} scenarios failed: {', '.join(failed)}")
        return 1
    if skipped == total:
        return SKIPPED
    print(f"all {total - skipped} scenarios passed"
          + (f" ({skipped} skipped)" if skipped else ""))
    return 0


def self_test(folder, opts):
    """Each scenario in `folder` is wrong on purpose and names, under
    `must_fail_with`, text the failure message must contain. The runner
    passes this test only if every one of them fails that way."""
    files = collect([folder])
    if not files:
        print(f"self-test: no scenarios in {folder}")
        return 1
    bad = 0
    for path in files:
        sc = Scenario(path, opts)
        needle = sc.doc.get("must_fail_with")
        if not needle:
            print(f"self-test: {path} has no must_fail_with")
            return 2
        try:
            sc.run()
            print(f"self-test: {path} PASSED, but its assertion is wrong: "
                  "the runner does not fail on a wrong assertion")
            bad += 1
        except Failed as e:
            if needle in str(e):
                print(f"self-test: {path} failed as it must:\n{e}")
            else:
                print(f"self-test: {path} failed, but not with "
                      f"{show(needle)}:\n{e}")
                bad += 1
        finally:
            sc.opts.keep = False
            sc.cleanup()
    print("self-test: " + ("ok" if bad == 0 else f"{bad} wrong"))
    return 0 if bad == 0 else 1


def node_db_args(opts):
    """A node's database options: least privilege when there is an app role
    (tools/pg.sh app-dsn): the node works as it, the owner only migrates and
    grants it the schema's tables."""
    if not opts.app_dsn:
        return [f"--postgis.dsn={opts.dsn}"]
    role = re.search(r"\buser=(\S+)", opts.app_dsn)
    return [f"--postgis.dsn={opts.app_dsn}",
            f"--postgis.owner-dsn={opts.dsn}",
            f"--postgis.app-role={role.group(1) if role else ''}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--exe", default=os.path.join(ROOT, "build", "actor-system"))
    ap.add_argument("--dsn", default=os.environ.get("FLOWMATCH_TEST_DSN"))
    ap.add_argument("--app-dsn", default=os.environ.get("FLOWMATCH_TEST_APP_DSN"),
                    help="the least-privilege role nodes run as (default: "
                         "tools/pg.sh app-dsn; '-' runs them as --dsn)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--self-test", metavar="DIR")
    ap.add_argument("--transport", choices=["file", "redis"], default="file")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run every scenario N times (the long fault "
                         "matrix: timing-dependent faults land elsewhere "
                         "each time)")
    ap.add_argument("--redis-url",
                    default=os.environ.get("FLOWMATCH_TEST_REDIS_URL"))
    opts = ap.parse_args()
    if opts.transport == "redis" and not opts.redis_url:
        opts.redis_url = subprocess.run(
            [os.path.join(ROOT, "tools", "redis.sh"), "url"],
            capture_output=True, text=True).stdout.strip()
    if not opts.dsn:
        opts.dsn = subprocess.run([os.path.join(ROOT, "tools", "pg.sh"), "dsn"],
                                  capture_output=True, text=True).stdout.strip()
    if not opts.app_dsn:
        opts.app_dsn = subprocess.run(
            [os.path.join(ROOT, "tools", "pg.sh"), "app-dsn"],
            capture_output=True, text=True).stdout.strip()
    if opts.app_dsn == "-":
        opts.app_dsn = ""
    if not os.path.exists(opts.exe):
        print(f"scenario: no executable at {opts.exe} (build first: "
              "tools/build.sh)")
        return 2
    try:
        if opts.self_test:
            return self_test(opts.self_test, opts)
        if not opts.paths:
            ap.error("name a scenario file or folder")
        return run_all(collect(opts.paths) * max(1, opts.repeat), opts)
    except ScenarioError as e:
        print(f"scenario: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
