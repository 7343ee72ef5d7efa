#!/usr/bin/env python3
"""The node's HTTP endpoint, against the real executable: /metrics in the
Prometheus text format (checked by promtool) with the families operators
need, /healthz and /readyz, readiness while the database is unreachable,
and a port that is taken refused at start naming the key.

    test_metrics_endpoint.py ACTOR_SYSTEM SAMPLE.ndjson

With a database and Redis ($FLOWMATCH_TEST_DSN, $FLOWMATCH_TEST_REDIS_URL,
as tools/test.sh sets them) it also checks that every metric the Grafana
dashboard (tools/grafana/flowmatch.json) and the alert rules
(tools/prometheus/flowmatch-rules.yml) use is one a node serves.
"""

import json
import os
import re
import subprocess
import sys
import time

from http_get import get  # tests/tools/http_get.py

EXE, SAMPLE = sys.argv[1], sys.argv[2]
TIMEOUT = 30


def fail(why, proc=None):
    print("FAIL: " + why)
    if proc is not None:
        proc.kill()
        print(proc.stderr.read().decode(errors="replace")[-3000:])
    sys.exit(1)


def start(args, stdin=subprocess.PIPE):
    return subprocess.Popen([EXE] + args, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for_port(proc):
    """The port from the node's log line (it listens on port 0)."""
    deadline = time.monotonic() + TIMEOUT
    seen = b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            fail("the node exited before serving: " + seen.decode(), proc)
        seen += line
        m = re.search(rb"on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    fail("no 'serving' log line", proc)


def until(what, probe, proc):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    fail("timed out waiting for " + what, proc)


common = ["--metrics.listen=127.0.0.1:0", "--telemetry.interval=100ms",
          "--log.level=info", "--log.progress-interval=0s",
          "--system.threads=2"]

# 1. A node reading a pipe: metrics while it runs.
node = start(["--ingest.ndjson=-"] + common)
port = wait_for_port(node)
base = f"http://127.0.0.1:{port}"
with open(SAMPLE, "rb") as f:
    node.stdin.write(f.read())
node.stdin.flush()


NEEDLES = [
        'flowmatch_build_info{version="0.1.0",commit="',
        'flowmatch_events_total{actor="dispatcher",outcome="stale"}',
        'flowmatch_events_total{actor="ingest-source stdin",outcome="duplicate"}',
        'flowmatch_dead_letters_total{actor="ingest-source stdin",reason="malformed_json"}',
        'flowmatch_events_in_flight{actor="dispatcher",group="registry"}',
        'flowmatch_in_flight_budget{actor="dispatcher",group="registry"}',
        'flowmatch_actor_queue_depth{actor="commit-coordinator"}',
        'flowmatch_actor_oldest_wait_seconds{actor="dispatcher"}',
        'flowmatch_actor_mailbox_depth{actor="dispatcher"}',
        'flowmatch_actor_mailbox_wait_seconds{actor="dispatcher"}',
        'flowmatch_restarts_total{actor="worker-pool registry"}',
        'flowmatch_matches_current{actor="match-partition heat",class="heat"}',
        'flowmatch_match_changes_total{actor="match-partition heat",class="heat"}',
        'flowmatch_input_bytes_total{actor="ingest-source stdin"}',
        "# TYPE flowmatch_events_total counter",
        "# TYPE flowmatch_event_latency_seconds histogram",
        'flowmatch_event_latency_seconds_bucket{actor="commit-coordinator",le="+Inf"}',
        'flowmatch_event_latency_seconds_count{actor="commit-coordinator"}']


def complete():
    """The metrics once the telemetry has seen every stage after the input
    (each stage's status is as of its last answer)."""
    code, text = get(base + "/metrics")
    m = re.search(r'flowmatch_events_total\{actor="dispatcher",'
                  r'outcome="applied"\} (\d+)', text)
    if code != 200 or not m or int(m.group(1)) < 2000:
        return None
    return text if all(n in text for n in NEEDLES) else None


deadline = time.monotonic() + TIMEOUT
text = None
while time.monotonic() < deadline and text is None:
    text = complete()
    if text is None:
        time.sleep(0.05)
if text is None:
    _, last = get(base + "/metrics")
    missing = [n for n in NEEDLES if n not in last]
    fail(f"/metrics lacks {missing} (or fewer than 2000 applied):\n"
         f"{last[:2000]}", node)
check = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
if check.returncode != 0:
    fail("promtool check metrics: " + check.stdout + check.stderr, node)
# Values against a known input: what a run of the same file summarizes.
ref = subprocess.run([EXE, f"--ingest.ndjson={SAMPLE}", "--metrics.listen=",
                      "--log.level=error"], capture_output=True, text=True,
                     timeout=TIMEOUT)
summary = {}
for line in ref.stdout.splitlines():
    m = re.match(r"\s+([a-z_ ,-]+?)\s{2,}(\d+)$", line)
    if m:
        summary[m.group(1).strip()] = int(m.group(2))
if "applied" not in summary:
    fail("no summary from the reference run: " + ref.stdout + ref.stderr, node)


def series_sum(text, family, label=None, value=None):
    total = 0.0
    for m in re.finditer(r"^" + family + r"\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if label is None or labels.get(label) == value:
            total += float(m.group(2))
    return total


def settled():
    _, text = get(base + "/metrics")
    got = series_sum(text, "flowmatch_events_total", "outcome", "applied")
    return text if got == summary["applied"] else None


text = until(f"applied = {summary['applied']} in /metrics", settled, node)
# Orphans are left out: a running node still holds those flows (they
# become orphans at the end of input, or after the hold timeout).
reasons = [k for k in summary if re.fullmatch(r"[a-z_]+", k)
           and k not in ("applied", "sites", "flows", "matches", "orphan_flow")]
if len(reasons) < 5:
    fail(f"the reference summary has too few reasons to compare: {summary}",
         node)
for reason in reasons:
    got = series_sum(text, "flowmatch_dead_letters_total", "reason", reason)
    if got != summary[reason]:
        fail(f"dead letters {reason}: /metrics says {got}, the summary "
             f"{summary[reason]}", node)
if series_sum(text, "flowmatch_events_total", "outcome", "duplicate") \
        != summary["duplicates skipped"]:
    fail("duplicates in /metrics differ from the summary", node)
if series_sum(text, "flowmatch_events_total", "outcome", "stale") \
        != summary["stale versions ignored"]:
    fail("stale events in /metrics differ from the summary", node)
code, body = get(base + "/healthz")
if (code, body) != (200, "ok\n"):
    fail(f"/healthz answered {code} {body!r}", node)
code, body = get(base + "/readyz")
if (code, body) != (200, "ready\n"):
    fail(f"/readyz answered {code} {body!r}", node)
node.stdin.close()
if node.wait(timeout=TIMEOUT) != 0:
    fail(f"the node exited {node.returncode}", node)

# 2. The database unreachable at start: alive, not ready, saying why.
node = start(["--ingest.ndjson=-",
              "--postgis.dsn=host=127.0.0.1 port=9 connect_timeout=1"] + common)
port = wait_for_port(node)
base = f"http://127.0.0.1:{port}"
code, body = get(base + "/healthz")
if code != 200:
    fail(f"/healthz while connecting answered {code} {body!r}", node)
code, body = get(base + "/readyz")
if code != 503 or "connecting to the database" not in body:
    fail(f"/readyz while connecting answered {code} {body!r}", node)
node.terminate()
node.wait(timeout=TIMEOUT)

# 3. A port that is taken: refused at start, naming the key.
holder = start(["--ingest.ndjson=-"] + common)
port = wait_for_port(holder)
second = start(["--ingest.ndjson=-", f"--metrics.listen=127.0.0.1:{port}",
                "--log.level=info"])
try:
    out, err = second.communicate(timeout=TIMEOUT)
except subprocess.TimeoutExpired:
    fail("a second node on a taken port kept running", second)
holder.stdin.close()
holder.wait(timeout=TIMEOUT)
if second.returncode != 2 or b"metrics.listen" not in err:
    fail(f"a taken port: exit {second.returncode}, log {err[-500:]!r}")
# 4. A node on a stream and a database: the dashboard's and the alert
# rules' metrics all exist.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
dsn = os.environ.get("FLOWMATCH_TEST_DSN")
url = os.environ.get("FLOWMATCH_TEST_REDIS_URL")
if not dsn or not url:
    fail("FLOWMATCH_TEST_DSN and FLOWMATCH_TEST_REDIS_URL must be set "
         "(tools/test.sh sets them)")
key = f"metrics-test:{os.getpid()}"
cli = ["redis-cli", "-u", url]
subprocess.run(cli + ["DEL", key], check=True, capture_output=True)
with open(SAMPLE) as f:
    lines = [l.rstrip("\n") for l in f][:300]
for line in lines:
    subprocess.run(cli + ["XADD", key, "*", "event", line], check=True,
                   capture_output=True)
node = start([f"--ingest.redis={url}", f"--ingest.stream={key}",
              f"--postgis.dsn={dsn}", "--postgis.schema=metrics_endpoint_test"]
             + common, stdin=subprocess.DEVNULL)
port = wait_for_port(node)
base = f"http://127.0.0.1:{port}"


def stream_seen():
    code, text = get(base + "/metrics")
    ok = code == 200 and "flowmatch_stream_group_lag" in text \
        and re.search(r'flowmatch_entries_read_total\{[^}]*\} 300', text)
    return text if ok else None


text = until("the stream's metrics", stream_seen, node)
served = set(re.findall(r"^(flowmatch_[a-z_]+)", text, re.M))
used = set()
with open(os.path.join(ROOT, "tools", "grafana", "flowmatch.json")) as f:
    for panel in json.load(f)["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"flowmatch_[a-z_]+", target["expr"]))
with open(os.path.join(ROOT, "tools", "prometheus", "flowmatch-rules.yml")) as f:
    used |= set(re.findall(r"flowmatch_[a-z_]+", f.read()))
missing = sorted(used - served)
if missing:
    fail(f"the dashboard or the alert rules use metrics no node serves: "
         f"{missing}", node)
code, body = get(base + "/readyz")
if (code, body) != (200, "ready\n"):
    fail(f"/readyz on a stream and a database answered {code} {body!r}", node)
for needle in ['flowmatch_transaction_seconds_bucket{actor="postgis-sync 0",le="0.001"}',
               'flowmatch_transaction_items_count{actor="postgis-sync 0"}']:
    if needle not in text:
        fail(f"/metrics with a database lacks {needle}", node)
check = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
if check.returncode != 0:
    fail("promtool check metrics (database, stream): " + check.stdout
         + check.stderr, node)
node.terminate()
if node.wait(timeout=TIMEOUT) != 0:
    fail(f"the stream node exited {node.returncode}", node)
subprocess.run(cli + ["DEL", key], capture_output=True)
subprocess.run(["psql", dsn, "-qc",
                "DROP SCHEMA IF EXISTS metrics_endpoint_test CASCADE"],
               capture_output=True)
print("metrics endpoint: ok")
