#!/usr/bin/env python3
"""The soak: the bundled example's generator in a loop through Redis into
one node and PostGIS, for an hour, with faults at random times; RSS,
latency p99, dead letters, lost and duplicate counts over time, plotted.

    tools/soak.py                       an hour (on demand; not in CI)
    tools/soak.py --minutes 10          shorter
    tools/soak.py --out docs/performance/soak   where the CSV and plot go

Each round publishes one generated log (tools/generate_events.py, a new
seed per round from a small set) with every id -- events, sites, flows --
prefixed by the round, so rounds are separate worlds sharing one node, one
stream and one schema. After its entries are taken and its holds are over,
a round is checked against a clean run of the same seed (made first, on
its own schema):

- lost: the round's event ids neither applied nor dead-lettered, and
  reference rows (sites, flows) the round lacks;
- duplicates: rows the round has and the reference has not, rows whose
  values differ, dead letters the reference has not;

then the round's sites are deleted (site_deleted events, also counted) so
the tables stay the size of a few rounds. Every 2 to 8 minutes (random, a
seed makes it repeatable) one fault: kill -9 of the node and a restart,
SIGTERM and a restart, PostgreSQL immediate restart, Redis kill -9 and
start. Every 5 s the node's RSS and its event latency p99 over the last
window (flowmatch_event_latency_seconds buckets) are sampled, with the
state the node holds (its gauges: sites, flows, matches, dedup window,
routing table). At the end: the matches equal a recomputation
(--match.check), and in every node life long enough to tell, RSS grew by
at most RSS_GROWTH_MIB once settled (settled_rss_growth below; with
--no-faults the one life always is).

Needs tools/pg.sh and tools/redis.sh running and gnuplot for the plot.
Exit 0 when nothing was lost or duplicated, the matches are consistent
and memory stayed within its bound.
"""

import argparse
import csv
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import faults  # noqa: E402  (its Case, Db and reference runs)


def prefixed(lines, prefix):
    """Every id of the log (event, site, flow) with `prefix`."""
    out = []
    for line in lines:
        line = re.sub(r'"(id|site_id|flow_id)":"', r'"\1":"' + prefix, line)
        out.append(line)
    return out


def while_restarting(query, limit=120):
    """Runs a query of the harness's own, again while PostgreSQL is down
    or recovering: a fault the soak injected may be under way (a round's
    check raced a PostgreSQL restart once and ended the soak)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return query()
        except faults.Failed:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def strip(rows, prefix):
    return {r.replace(prefix, "") for r in rows if r.startswith(prefix)
            or ("|" + prefix) in r}


class Metrics:
    """The node's /metrics: event latency buckets, for the p99 of each
    window (a restarted node starts its counters again)."""

    def __init__(self, port):
        self.port = port
        self.last = None
        self.text = None

    def scrape(self):
        """One read of /metrics (None when the node does not answer), kept
        for p99() and state() of the same sample."""
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                self.text = r.read().decode()
        except OSError:
            self.text = None
        return self.text

    # The state a node holds, beside its RSS: if RSS grows while these do
    # not, something other than the data grows.
    STATE = ("sites_known", "flows_known", "matches_current",
             "dedup_window_ids", "routing_table_entries")

    def state(self):
        """The state gauges of the last scrape, each summed over its labels
        (workers, partitions, classes)."""
        if not self.text:
            return {}
        out = {}
        for name in self.STATE:
            vals = re.findall(r"^flowmatch_" + name + r"(?:\{[^}]*\})? (\S+)$",
                              self.text, re.M)
            out[name] = int(sum(float(v) for v in vals)) if vals else None
        return out

    def oldest_wait(self):
        """The stage whose oldest waiting item has waited longest (its
        `actor` label) and for how long, and the dispatcher's events in
        flight: where a stall sits (the queue that does not move)."""
        if not self.text:
            return None, None, None
        worst, who = None, None
        for m in re.finditer(r'^flowmatch_actor_oldest_wait_seconds\{[^}]*'
                             r'actor="([^"]*)"[^}]*\} (\S+)$', self.text, re.M):
            v = float(m.group(2))
            if worst is None or v > worst:
                worst, who = v, m.group(1)
        flight = re.findall(r"^flowmatch_events_in_flight(?:\{[^}]*\})? (\S+)$",
                            self.text, re.M)
        return (None if worst is None else round(worst, 1), who,
                int(sum(float(v) for v in flight)) if flight else None)

    def buckets(self):
        text = self.text
        if text is None:
            return None
        out = {}
        for m in re.finditer(r'flowmatch_event_latency_seconds_bucket\{[^}]*'
                             r'le="([^"]+)"[^}]*\} (\S+)', text):
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = out.get(le, 0) + float(m.group(2))
        return out

    def p99(self):
        now = self.buckets()
        if not now:
            self.last = None
            return None
        last = self.last
        self.last = now
        if not last or any(now.get(k, 0) < v for k, v in last.items()):
            return None
        delta = {k: now[k] - last.get(k, 0) for k in now}
        total = delta.get(float("inf"), 0)
        if total <= 0:
            return None
        for le in sorted(delta):
            if delta[le] >= 0.99 * total:
                return le
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    # (the memory bound is checked in node lives longer than SETTLE_MIN + 5
    # minutes: always with --no-faults and --minutes 20 or more)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--out", default=os.path.join(ROOT, "var", "soak"))
    ap.add_argument("--exe", default=os.path.join(ROOT, "build", "actor-system"))
    ap.add_argument("--no-faults", action="store_true",
                    help="no faults: one node life, for memory profiles")
    ap.add_argument("--wrap", default="",
                    help="a command the node runs under, e.g. 'heaptrack -o "
                         "var/soak/node' (split on spaces)")
    opts = ap.parse_args()
    opts.dsn = os.environ.get("FLOWMATCH_TEST_DSN") or faults.sh(
        os.path.join(ROOT, "tools", "pg.sh"), "dsn")
    opts.app_dsn = os.environ.get("FLOWMATCH_TEST_APP_DSN") or faults.sh(
        os.path.join(ROOT, "tools", "pg.sh"), "app-dsn")
    opts.redis_url = os.environ.get("FLOWMATCH_TEST_REDIS_URL") or faults.sh(
        os.path.join(ROOT, "tools", "redis.sh"), "url")
    opts.work = os.path.join(ROOT, "var", "soak")
    opts.keep = False
    opts.cluster_base_port = 47700
    os.makedirs(opts.work, exist_ok=True)
    os.makedirs(opts.out, exist_ok=True)
    rnd = random.Random(opts.seed)
    seeds = [7, 8, 9]

    # The reference of each seed: a clean run, prefix r0-.
    refs = {}
    for s in seeds:
        lines = prefixed(faults.generate(opts, 1, seed=s), "r0-")
        print(f"[reference seed {s}] {len(lines)} events ...", flush=True)
        res, snap = faults.run_case(opts, f"soakref{s}", lines,
                                    lambda c: None, rate=0)
        refs[s] = {k: strip(v, "r0-") for k, v in snap.items()}

    case = faults.Case("soak", opts, [], 1, 1)
    while_restarting(case.db.reset)
    case.r.delete(case.stream)
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    mport = port.getsockname()[1]
    port.close()
    # Applied ids are kept 10 minutes (not the default days), so the soak's
    # state is bounded and its RSS says whether anything else grows.
    case.extra_args = [f"--metrics.listen=127.0.0.1:{mport}",
                       f"--registry.dedup-retention={RETENTION_MIN}min"]
    metrics = Metrics(mport)
    wrapper = opts.wrap.split()
    case.start(1, wrapper=wrapper)
    t0 = time.monotonic()
    end = t0 + opts.minutes * 60
    rows = []          # the time series
    totals = {"lost": 0, "duplicates": 0, "rounds": 0, "events": 0}
    fault_log = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            p = case.procs.get(1)
            rss = None
            if p and p.poll() is None:
                try:
                    with open(f"/proc/{p.pid}/status") as f:
                        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read())
                                  .group(1)) // 1024
                except (OSError, AttributeError):
                    pass
            letters = case.db.try_count("SELECT count(*) FROM dead_letters")
            metrics.scrape()
            state = metrics.state()
            wait, waiting_stage, in_flight = metrics.oldest_wait()
            if wait is not None and wait >= STALL_SECONDS and metrics.text:
                # A stage has held an item this long: keep the node's whole
                # scrape for the post-mortem (one per minute at most).
                minute = int((time.monotonic() - t0) / 60)
                path = os.path.join(opts.out, f"stall-minute-{minute}.prom")
                if not os.path.exists(path):
                    try:
                        sessions = case.db.run(
                            "SELECT application_name, state, wait_event_type,"
                            " wait_event, now() - xact_start,"
                            " left(query, 120) FROM pg_stat_activity WHERE"
                            " application_name LIKE 'flowmatch%'",
                            schema=False)
                    except faults.Failed as e:
                        sessions = f"(pg_stat_activity: {e})\n"
                    with open(path, "w") as f:
                        f.write(metrics.text)
                        f.write("# the node's database sessions "
                                "(pg_stat_activity):\n")
                        f.writelines("# " + l + "\n"
                                     for l in sessions.splitlines())
            rows.append({"minute": round((time.monotonic() - t0) / 60, 3),
                         "rss_mib": rss, "p99_ms": (lambda v: None if v is None
                                                    else round(v * 1000, 1))(
                                                        metrics.p99()),
                         **{k: state.get(k) for k in Metrics.STATE},
                         "oldest_wait_s": wait, "oldest_wait_stage":
                         waiting_stage, "events_in_flight": in_flight,
                         "dead_letters": letters,
                         "applied": case.applied(),
                         "lost": totals["lost"],
                         "duplicates": totals["duplicates"],
                         "fault": ""})
            stop.wait(5)
    threading.Thread(target=sampler, daemon=True).start()

    def inject():
        kinds = ["kill -9", "SIGTERM", "PostgreSQL restart", "Redis restart"]
        next_at = time.monotonic() + rnd.uniform(120, 480)
        while not stop.is_set():
            if time.monotonic() < next_at:
                stop.wait(1)
                continue
            kind = rnd.choice(kinds)
            began = time.monotonic()
            try:
                if kind == "kill -9":
                    case.stop(1, signal.SIGKILL, want=None)
                    case.start(1, wrapper=wrapper)
                elif kind == "SIGTERM":
                    case.stop(1, signal.SIGTERM, want=0)
                    case.start(1, wrapper=wrapper)
                elif kind == "PostgreSQL restart":
                    faults.sh(os.path.join(ROOT, "tools", "pg.sh"), "restart")
                else:
                    faults.sh(os.path.join(ROOT, "tools", "redis.sh"),
                              "restart")
            except (faults.Failed, subprocess.SubprocessError) as e:
                fault_log.append({"fault": kind, "error": str(e)[-500:]})
            minute = round((began - t0) / 60, 2)
            fault_log.append({"minute": minute, "fault": kind})
            if rows:
                rows[-1]["fault"] = kind
            print(f"  fault at minute {minute}: {kind}", flush=True)
            next_at = time.monotonic() + rnd.uniform(120, 480)
    if not opts.no_faults:
        threading.Thread(target=inject, daemon=True).start()


    ok = True
    rnum = 0

    # Stopped early (SIGTERM, Ctrl-C): the rounds so far still count, and
    # the data, summary and plot are written as at the end.
    def interrupted(signum, frame):
        raise Interrupted(f"stopped by signal {signum} at minute "
                          f"{(time.monotonic() - t0) / 60:.1f}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    stopped_early = None
    try:
        while time.monotonic() < end:
            rnum += 1
            seed = seeds[rnum % len(seeds)]
            prefix = f"r{rnum}-"
            lines = prefixed(faults.generate(opts, 1, seed=seed), prefix)
            ids = faults.ids_of(lines)
            publisher = case.publish(lines, opts.rate)
            publisher.join()
            # A held flow's entry stays pending until its site comes or it
            # is dead-lettered: idle means the round's holds are over.
            case.wait(f"round {rnum} taken and its holds over",
                      lambda: case.idle() == (0, 0), 900)
            time.sleep(2)
            snap = while_restarting(case.db.snapshot)
            mine = {k: strip(v, prefix) for k, v in snap.items()
                    if k in ("sites", "flows", "letters", "applied")}
            ref = refs[seed]
            counts = faults.compare(
                {**ref, "matches": set()}, {**mine, "matches": set()},
                {i[len(prefix):]: s for i, s in ids.items()})
            # Unaccounted ids are measured with the round's own payloads.
            counts["unaccounted_ids"] = faults.unaccounted(
                ids, {"applied": snap["applied"], "letters": snap["letters"]})
            lost = counts["lost_events"] + counts["lost_sites"] \
                + counts["lost_flows"] + counts["unaccounted_ids"]
            dup = counts["duplicates"]
            totals["lost"] += lost
            totals["duplicates"] += dup
            totals["rounds"] += 1
            totals["events"] += len(lines)
            print(f"[round {rnum}, seed {seed}, minute "
                  f"{(time.monotonic() - t0) / 60:.1f}] {len(lines)} events: "
                  f"lost {lost}, duplicates {dup}", flush=True)
            if lost or dup:
                ok = False
                print("  " + json.dumps(counts))
            # Clear the round's world: every site deleted (its flows go
            # with it).
            sites = sorted({r.split("|")[0] for r in snap["sites"]
                            if r.startswith(prefix)})
            deletes = [json.dumps({"id": f"{prefix}del-{i}",
                                   "type": "site_deleted",
                                   "data": {"site_id": s}},
                                  separators=(",", ":"))
                       for i, s in enumerate(sites)]
            case.publish(deletes, opts.rate).join()
            totals["events"] += len(deletes)
    except faults.Failed as e:
        ok = False
        print(f"soak: {e}")
    except Interrupted as e:
        ok = False
        stopped_early = str(e)
        print(f"soak: {e}; writing what it measured")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        stop.set()
        case.stop_sampling.set()
        p = case.procs.get(1)
        if p and p.poll() is None:
            try:
                case.stop(1)
            except faults.Failed as e:
                ok = False
                print(f"soak: {e}")
    consistent, line = faults.match_check(opts, case.schema)
    ok = ok and consistent
    growth = settled_rss_growth(rows)
    rss_bounded = all(g["growth_mib"] <= RSS_GROWTH_MIB for g in growth)
    ok = ok and rss_bounded
    csv_path = os.path.join(opts.out, "soak.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else
                           ["minute"])
        w.writeheader()
        w.writerows(rows)
    summary = {"minutes": round((time.monotonic() - t0) / 60, 1), **totals,
               "faults": fault_log, "stopped_early": stopped_early,
               "matches_consistent": consistent,
               "check": line,
               "rss_mib_max": max((r["rss_mib"] or 0) for r in rows)
               if rows else None,
               # Per node life long enough to tell; must stay within the
               # bound (None: no life was long enough).
               "rss_growth_settled": growth or None,
               "rss_growth_bound_mib": RSS_GROWTH_MIB,
               "rss_bounded": rss_bounded,
               # A window whose p99 is past the histogram's top bucket
               # (during a fault) has no finite p99: counted apart.
               "p99_ms_max": max((r["p99_ms"] for r in rows
                                  if r["p99_ms"] is not None
                                  and math.isfinite(r["p99_ms"])), default=None),
               "p99_windows_past_top_bucket": sum(
                   1 for r in rows if r["p99_ms"] is not None
                   and not math.isfinite(r["p99_ms"]))}
    with open(os.path.join(opts.out, "soak.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot(csv_path, os.path.join(opts.out, "soak.png"), fault_log)
    while_restarting(case.db.reset)
    case.r.delete(case.stream)
    print(json.dumps({k: v for k, v in summary.items() if k != "faults"}))
    return 0 if ok else 1


class Interrupted(Exception):
    pass


# The memory bound: once a node life has settled (applied ids are kept
# RETENTION_MIN minutes, so its dedup window is full SETTLE_MIN minutes
# in), its RSS may grow by at most RSS_GROWTH_MIB for the rest of that
# life. Before the routing-table fix (docs/reliability.md) a fault-free
# soak grew 75 MiB between minutes 10 and 25; after it, 8 MiB.
RETENTION_MIN = 10
# A stage whose oldest item waited this long is stalled: the sampler keeps
# the node's metrics then (stall-minute-N.prom beside the CSV).
STALL_SECONDS = 20
SETTLE_MIN = RETENTION_MIN + 2
RSS_GROWTH_MIB = 32
WINDOW = 6  # samples (30 s) averaged at each end: one sample is noisy


def settled_rss_growth(rows):
    """Per node life (a kill -9 or SIGTERM starts a new one): the RSS at
    its end minus the RSS once settled, for lives that ran at least 5
    minutes past settling; the rest are too short to say."""
    lives, life = [], []
    for r in rows:
        if r.get("fault") in ("kill -9", "SIGTERM") and life:
            lives.append(life)
            life = []
        if r.get("rss_mib"):
            life.append(r)
    if life:
        lives.append(life)
    out = []
    for life in lives:
        start = life[0]["minute"]
        settled = [r for r in life if r["minute"] >= start + SETTLE_MIN]
        if len(settled) < 2 * WINDOW or \
                settled[-1]["minute"] - settled[0]["minute"] < 5:
            continue
        first = sum(r["rss_mib"] for r in settled[:WINDOW]) / WINDOW
        last = sum(r["rss_mib"] for r in settled[-WINDOW:]) / WINDOW
        out.append({"from_minute": settled[0]["minute"],
                    "to_minute": settled[-1]["minute"],
                    "growth_mib": round(last - first, 1)})
    return out


def plot(csv_path, png, fault_log):
    marks = "\n".join(
        f"set arrow from {f['minute']},graph 0 to {f['minute']},graph 1 "
        f"nohead lc rgb '#cc0000' dt 2" for f in fault_log if "minute" in f)
    # Columns by name: the CSV's columns are the sampler's keys.
    script = f"""
set terminal pngcairo size 1100,1150 font ',10'
set output '{png}'
set datafile separator ','
set key autotitle columnhead left top
set multiplot layout 4,1 title 'flowmatch soak: one node, Redis -> PostGIS, faults at dashed lines'
set xlabel 'minutes'
{marks}
set ylabel 'MiB'
plot '{csv_path}' using "minute":"rss_mib" with lines lw 2 title 'RSS'
set ylabel 'ms'
set logscale y
plot '{csv_path}' using "minute":"p99_ms" with points pt 7 ps 0.5 title 'event latency p99 (5 s windows)'
unset logscale y
set ylabel 'entries'
set y2label 'ids'
set y2tics
plot '{csv_path}' using "minute":"flows_known" with lines lw 2 title 'flows known', \\
     '' using "minute":"routing_table_entries" with lines lw 2 title 'routing table entries', \\
     '' using "minute":"dedup_window_ids" axes x1y2 with lines lw 2 title 'dedup window ids (right axis)'
unset y2label
unset y2tics
set ylabel 'count'
plot '{csv_path}' using "minute":"dead_letters" with lines lw 2 title 'dead letters', \\
     '' using "minute":"lost" with lines lw 2 title 'lost', \\
     '' using "minute":"duplicates" with lines lw 2 title 'duplicates'
unset multiplot
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"soak: no plot ({e})")


if __name__ == "__main__":
    sys.exit(main())
