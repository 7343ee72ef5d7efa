#!/usr/bin/env python3
"""Failover time of a flowmatch cluster: kill -9 of a registry shard's
owner to the first commit of its successor, over several trials.

    /usr/bin/python3 tools/bench/cluster_failover.py [--trials 20]
        [--lease 6s] [--rate 300] [--json PATH]

Each trial starts three nodes (tools/cluster.sh, schema bench_failover),
publishes site updates at a steady rate over the partitioned stream (with
Python's redis package), kills the owner of shard/0 with SIGKILL, and reads
from processed_events the first event of one of the dead node's shards
published after the kill: only its successor can have committed it. The time is
compared with the lease: the successor can only take over once the lease
expired. The database clock is the one clock (processed_at), read against
the kill's time on this machine (the same machine).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = "bench_failover"
STREAM = "bench:failover"
PARTITIONS = 4
SHARDS = 64


def fnv1a64(data):
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % (1 << 64)
    return h


def sh(*args, check=True, env=None):
    done = subprocess.run(args, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def psql(sql):
    return sh(os.path.join(ROOT, "tools", "pg.sh"), "psql", "-qAt", "-c",
              f"SET search_path TO {SCHEMA}, public", "-c", sql)


class Publisher(threading.Thread):
    """Site updates at a steady rate, each site on its partition."""

    def __init__(self, url, rate, trial):
        super().__init__(daemon=True)
        self.r = redis.Redis.from_url(url)
        self.rate = rate
        self.trial = trial
        self.stop = False
        self.n = 0

    def run(self):
        n = 0
        start = time.monotonic()
        while not self.stop:
            site = f"t{self.trial}-s{n % 5000}"
            line = json.dumps({"id": f"t{self.trial}-e{n}",
                               "type": "site_updated",
                               "data": {"site_id": site, "name": "bench",
                                        "lat": 48.0 + (n % 100) / 1000,
                                        "lon": 14.0, "version": n + 1}},
                              separators=(",", ":"))
            key = f"{STREAM}:{fnv1a64(site.encode()) % PARTITIONS}"
            self.r.xadd(key, {"event": line})
            n += 1
            self.n = n
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def trial(number, opts, url, env):
    psql_drop = ["DROP SCHEMA IF EXISTS " + SCHEMA + " CASCADE"]
    sh(os.path.join(ROOT, "tools", "pg.sh"), "psql", "-qc", psql_drop[0])
    r = redis.Redis.from_url(url)
    for q in range(PARTITIONS):
        r.delete(f"{STREAM}:{q}")
    sh(os.path.join(ROOT, "tools", "cluster.sh"), "up", "3",
       f"--postgis.schema={SCHEMA}", f"--ingest.stream={STREAM}",
       f"--cluster.lease={opts.lease}",
       "--log.progress-interval=0s", env=env)
    pub = Publisher(url, opts.rate, number)
    pub.start()
    try:
        time.sleep(3)
        owner = psql("SELECT owner FROM cluster_leases "
                     "WHERE resource = 'shard/0'")
        shards = {int(x.split("/")[1]) for x in psql(
            f"SELECT resource FROM cluster_leases WHERE owner = '{owner}' "
            "AND resource LIKE 'shard/%'").split()}
        # Only events published after the kill count: the dead node's last
        # pipelined transaction may still commit on the server after it.
        with open(os.path.join(ROOT, "var", "cluster",
                               f"{owner}.pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        published_before = pub.n
        first = None
        deadline = time.monotonic() + 120
        while first is None and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = psql("SELECT routing_key, extract(epoch FROM processed_at) "
                        "FROM processed_events WHERE event_id LIKE "
                        f"'t{number}-e%' AND substr(event_id, "
                        f"{len(str(number)) + 4})::bigint >= {published_before} "
                        "ORDER BY processed_at")
            for line in rows.splitlines():
                key, at = line.split("|")
                if fnv1a64(key.encode()) % SHARDS in shards:
                    first = float(at)
                    break
        if first is None:
            sys.exit(f"trial {number}: no commit of the dead node's shards "
                     "within 120 s")
        return first - killed_at, owner
    finally:
        pub.stop = True
        pub.join()
        sh(os.path.join(ROOT, "tools", "cluster.sh"), "down", env=env,
           check=False)


def seconds(text):
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--lease", default="6s")
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--json")
    opts = ap.parse_args()
    sh(os.path.join(ROOT, "tools", "pg.sh"), "start")
    sh(os.path.join(ROOT, "tools", "redis.sh"), "start")
    url = sh(os.path.join(ROOT, "tools", "redis.sh"), "url")
    env = dict(os.environ, FLOWMATCH_CLUSTER_PORT="27600")
    times = []
    for n in range(1, opts.trials + 1):
        t, who = trial(n, opts, url, env)
        times.append(t)
        print(f"trial {n}: killed {who}, successor's first commit after "
              f"{t:.2f} s", flush=True)
    lease = seconds(opts.lease)
    result = {"trials": len(times), "lease_s": lease,
              "median_s": statistics.median(times), "max_s": max(times),
              "min_s": min(times), "times_s": times}
    print(f"failover over {len(times)} trials: median {result['median_s']:.2f} s, "
          f"max {result['max_s']:.2f} s, lease {lease:g} s "
          f"(median {result['median_s'] / lease:.2f}x the lease)")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
