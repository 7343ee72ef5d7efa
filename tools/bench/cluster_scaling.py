#!/usr/bin/env python3
"""End-to-end events/s of 1, 2 and 3 cluster nodes against a single node,
on the same backlog: the bundled generator's events (several copies of the
example, spread over the globe), published first, then consumed into
PostGIS with matches. On this 2-core machine every node, PostgreSQL and
Redis share the same two cores: the figures show what the cluster costs
over a single node and how it behaves as nodes are added, not how it
scales on separate machines (docs/performance.md, the cost model).

    /usr/bin/python3 tools/bench/cluster_scaling.py [--copies 4]
        [--nodes 1,2,3] [--json PATH]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = "bench_scaling"
STREAM = "bench:scaling"
PARTITIONS = 4


def sh(*args, check=True, env=None, timeout=900):
    done = subprocess.run(args, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def tool(name, *args, **kw):
    return sh(os.path.join(ROOT, "tools", name), *args, **kw)


def progress(r, keys):
    """(entries read, pending, lag) summed over the keys."""
    read = pending = lag = 0
    for key in keys:
        groups = [g for g in r.xinfo_groups(key)
                  if g["name"] in (b"flowmatch", "flowmatch")]
        if not groups:  # no reader has come yet
            return 0, 0, 10**9
        for g in groups:
            read += g.get("entries-read") or 0
            pending += g["pending"]
            lag += g["lag"] if g["lag"] is not None else 10**9
    return read, pending, lag


def consume(r, keys, orphans, started):
    """Waits until every entry was read and only held orphans are pending;
    returns the seconds since `started`."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            read, pending, lag = progress(r, keys)
        except redis.ResponseError:  # the group is not made yet
            read, pending, lag = 0, 1, 1
        if lag == 0 and pending <= orphans:
            return time.monotonic() - started
        time.sleep(0.05)
    sys.exit("the backlog was not consumed within 900 s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--nodes", default="1,2,3")
    ap.add_argument("--json")
    opts = ap.parse_args()
    tool("pg.sh", "start")
    tool("redis.sh", "start")
    url = tool("redis.sh", "url")
    dsn = tool("pg.sh", "dsn")
    r = redis.Redis.from_url(url)
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    events = os.path.join(ROOT, "var", "bench", f"scaling-{opts.copies}.ndjson")
    if not os.path.exists(events):
        sh("python3", "tools/generate_events.py", "--seed", "1", "--copies",
           str(opts.copies), "--out", events)
    with open(events, encoding="utf-8") as f:
        total = sum(1 for line in f if line.strip())
    # The generator's orphan flows stay pending until their hold timeout.
    orphans = 5 * opts.copies
    env = dict(os.environ, FLOWMATCH_CLUSTER_PORT="27700")
    results = []

    def fresh(keys):
        tool("pg.sh", "psql", "-qc", f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        for key in keys:
            r.delete(key)

    # A single node on an unpartitioned stream: the baseline.
    fresh([STREAM])
    sh("build/flowmatch-publish", "--redis", url, "--stream", STREAM,
       "--quiet", events)
    started = time.monotonic()
    node = subprocess.Popen(
        ["build/actor-system", "--config-file=config.ini", "--ingest.ndjson=",
         f"--ingest.redis={url}", f"--ingest.stream={STREAM}",
         f"--postgis.dsn={dsn}", f"--postgis.schema={SCHEMA}",
         "--metrics.listen=", "--log.progress-interval=0s"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secs = consume(r, [STREAM], orphans, started)
    node.terminate()
    node.wait()
    results.append({"setup": "single node", "nodes": 1, "seconds": secs,
                    "events_per_second": total / secs})
    print(f"single node: {total / secs:.0f} events/s ({secs:.1f} s)",
          flush=True)
    keys = [f"{STREAM}:{q}" for q in range(PARTITIONS)]
    for n in [int(x) for x in opts.nodes.split(",")]:
        fresh(keys)
        sh("build/flowmatch-publish", "--redis", url, "--stream", STREAM,
           "--partitions", str(PARTITIONS), "--quiet", events)
        started = time.monotonic()
        tool("cluster.sh", "up", str(n), f"--postgis.schema={SCHEMA}",
             f"--ingest.stream={STREAM}", f"--ingest.partitions={PARTITIONS}",
             "--log.progress-interval=0s", env=env)
        secs = consume(r, keys, orphans, started)
        tool("cluster.sh", "down", env=env, check=False)
        results.append({"setup": f"cluster of {n}", "nodes": n,
                        "seconds": secs, "events_per_second": total / secs})
        print(f"cluster of {n}: {total / secs:.0f} events/s ({secs:.1f} s, "
              f"start included)", flush=True)
    base = results[0]["events_per_second"]
    for row in results:
        row["ratio"] = row["events_per_second"] / base
        print(f"{row['setup']:>14}: {row['ratio']:.2f}x the single node")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"events": total, "partitions": PARTITIONS,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
