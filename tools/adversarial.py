#!/usr/bin/env python3
"""Runs the adversarial corpus of tests/adversarial/ against actor-system.

What an adversarial review broke, kept so it stays fixed:
  inputs  bad input files (tests/adversarial/inputs, expectations in
          expect.json): each run at several worker counts must give the
          expected summary and the same state; every output line must be
          strict JSON (no NaN, no infinity).
  config  bad config files (tests/adversarial/config/*.ini, the first line
          says `; expect: TEXT`): exit 2 and TEXT on stderr.
  faults  unreadable inputs and full disks: their own exit codes, a message
          naming the file and the cause, no file cut mid-line.

  tools/adversarial.py [--binary build/actor-system] [inputs|config|faults]...

Prints one line per check and closes with "N passed, M failed"; exits 1
when anything failed. No database needed (the db cases are in
tests/db/hardening.cpp).
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "adversarial")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f"\n      {detail}" if detail else ""))
        return ok


def run(binary, args, timeout=120):
    # Runs go in parallel with other tests: no HTTP endpoint (its port).
    p = subprocess.run([binary, "--metrics.listen="] + args,
                       capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def summary_rows(text):
    """The summary's rows as {label: value}, labels stripped."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith("  "):
            continue
        label, _, value = line.strip().rpartition("  ")
        rows[label.strip()] = value.strip()
    return rows


def strict_json_lines(path):
    """Every line parses as JSON with finite numbers only; returns the
    first bad line or None."""
    def refuse(token):
        raise ValueError(f"non-finite number {token}")

    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                obj = json.loads(line, parse_constant=refuse)
            except ValueError as e:
                return f"{path}:{n}: {e}: {line[:200]}"
            stack = [obj]
            while stack:
                x = stack.pop()
                if isinstance(x, float) and not math.isfinite(x):
                    return f"{path}:{n}: non-finite {x}"
                if isinstance(x, dict):
                    stack.extend(x.values())
                elif isinstance(x, list):
                    stack.extend(x)
    return None


def check_inputs(binary, c, work):
    with open(os.path.join(CORPUS, "expect.json")) as f:
        expect = json.load(f)["inputs"]
    for name, want in sorted(expect.items()):
        path = os.path.join(CORPUS, "inputs", name)
        states = {}
        for w in want["workers"]:
            out = {k: os.path.join(work, f"{name}.{w}.{k}.ndjson")
                   for k in ("state", "dead", "matches")}
            code, stdout, stderr = run(binary, [
                f"--ingest.ndjson={path}", f"--registry.workers={w}",
                "--log.level=error", f"--output.state={out['state']}",
                f"--output.dead-letters={out['dead']}",
                f"--output.matches={out['matches']}"])
            what = f"inputs/{name} at {w} workers"
            if not c.check(code == 0, f"{what}: exit 0",
                           f"exit {code}; stderr: {stderr[-500:]}"):
                continue
            rows = summary_rows(stdout)
            wrong = {k: rows.get(k) for k, v in want["summary"].items()
                     if rows.get(k) != str(v)}
            c.check(not wrong, f"{what}: {want['why'][:60]}...",
                    f"expected {want['summary']}, got {wrong}")
            for kind, p in out.items():
                bad = strict_json_lines(p)
                c.check(bad is None, f"{what}: {kind} output is strict JSON",
                        bad or "")
            with open(out["state"]) as f:
                states[w] = f.read()
        c.check(len(set(states.values())) <= 1,
                f"inputs/{name}: the same state at {want['workers']} workers",
                "states differ between worker counts")


def check_config(binary, c, work):
    one = os.path.join(work, "one.ndjson")
    with open(one, "w") as f:
        f.write('{"id":"e1","type":"site_created","data":'
                '{"site_id":"s","lat":1,"lon":1}}\n')
    folder = os.path.join(CORPUS, "config")
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path) as f:
            first = f.readline().strip()
        if not first.startswith("; expect:"):
            c.check(False, f"config/{name}", "first line lacks '; expect:'")
            continue
        mention = first[len("; expect:"):].strip()
        code, _, stderr = run(binary, [f"--config-file={path}",
                                       f"--ingest.ndjson={one}"])
        c.check(code == 2 and mention in stderr,
                f"config/{name}: exit 2 naming '{mention}'",
                f"exit {code}; stderr: {stderr[-400:]}")
    # The shipped config.ini itself is valid.
    code, _, stderr = run(binary, [
        f"--config-file={os.path.join(ROOT, 'config.ini')}",
        f"--ingest.ndjson={one}"])
    c.check(code == 0, "config.ini as shipped is valid", stderr[-400:])


def full_disk_checks(binary, c, work, mount_point):
    """Outputs on a 16 KiB filesystem: the failure is an error that names
    the file; the state file is never left cut mid-line."""
    bad = os.path.join(work, "bad.ndjson")
    with open(bad, "w") as f:
        for i in range(400):
            f.write(json.dumps({"id": f"e{i}", "type": "site_created",
                                "data": {"site_id": f"s{i}", "lat": 95,
                                         "lon": 1}}) + "\n")
    good = os.path.join(work, "good.ndjson")
    with open(good, "w") as f:
        for i in range(400):
            f.write(json.dumps({"id": f"g{i}", "type": "site_created",
                                "data": {"site_id": f"site-{i:040d}",
                                         "lat": 5, "lon": 1}}) + "\n")
    cases = [
        ("dead letters", bad, "--output.dead-letters", "dead.ndjson"),
        ("match stream", good, "--output.matches", "matches.ndjson"),
        ("state file", good, "--output.state", "state.ndjson"),
    ]
    for what, inp, option, fname in cases:
        for left in os.listdir(mount_point):
            os.remove(os.path.join(mount_point, left))
        target = os.path.join(mount_point, fname)
        if what == "state file":
            with open(target, "w") as f:
                f.write('{"previous":"state"}\n')
        args = [f"--ingest.ndjson={inp}", f"{option}={target}",
                "--log.level=warn"]
        if what == "match stream":
            # Matches need supplies and demands: use the bundled sample.
            args[0] = ("--ingest.ndjson="
                       + os.path.join(ROOT, "tests", "data",
                                      "hotmaps-sample.ndjson"))
        code, _, stderr = run(binary, args)
        c.check(code == 4 and "No space left on device" in stderr
                and target in stderr,
                f"faults: {what} on a full disk: exit 4 naming the file and "
                "the cause", f"exit {code}; stderr: {stderr[-400:]}")
        if what == "state file":
            with open(target) as f:
                kept = f.read()
            c.check(kept == '{"previous":"state"}\n'
                    and len(os.listdir(mount_point)) == 1,
                    "faults: a state file that cannot be written leaves the "
                    "previous one whole and no temporary file",
                    f"found {os.listdir(mount_point)}: {kept[:100]!r}")


def check_faults(binary, c, work):
    one = os.path.join(work, "one.ndjson")
    with open(one, "w") as f:
        f.write('{"id":"e1","type":"site_created","data":'
                '{"site_id":"s","lat":1,"lon":1}}\n')
    code, _, stderr = run(binary, [f"--ingest.ndjson={work}"])
    c.check(code == 2 and "is a directory" in stderr,
            "faults: a directory as input: exit 2", stderr[-300:])
    code, stdout, stderr = run(binary, ["--ingest.ndjson=/proc/self/mem"])
    c.check(code == 6 and "Input/output error" in stderr
            and "input error" in stdout,
            "faults: an input that fails to read: exit 6 and the summary "
            "says why", f"exit {code}; stderr: {stderr[-300:]}")
    # The full disk needs a private tmpfs: this script again, inside a
    # mount namespace of its own (as root; a user namespace otherwise).
    unshare = shutil.which("unshare")
    ns = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    p = subprocess.run([unshare] + ns + [sys.executable, __file__,
                                         "--binary", binary,
                                         "--full-disk-in-namespace", work],
                       capture_output=True, text=True, timeout=300)
    sys.stdout.write(p.stdout)
    for line in p.stdout.splitlines():
        if line.startswith("ok    "):
            c.passed += 1
        elif line.startswith("FAIL  "):
            c.failed += 1
    c.check(p.returncode in (0, 1) and "ok    faults: state" in p.stdout,
            "faults: the full-disk checks ran in their own mount namespace",
            p.stderr[-400:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build",
                                                     "actor-system"))
    ap.add_argument("--full-disk-in-namespace", metavar="WORK",
                    help=argparse.SUPPRESS)
    ap.add_argument("parts", nargs="*", default=["inputs", "config",
                                                 "faults"])
    a = ap.parse_args()
    c = Checks()
    if a.full_disk_in_namespace:
        mount_point = os.path.join(a.full_disk_in_namespace, "full")
        os.makedirs(mount_point, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs",
                        mount_point], check=True)
        full_disk_checks(a.binary, c, a.full_disk_in_namespace, mount_point)
        return 0 if c.failed == 0 else 1
    with tempfile.TemporaryDirectory(prefix="flowmatch-adversarial-") as work:
        for part in a.parts:
            {"inputs": check_inputs, "config": check_config,
             "faults": check_faults}[part](a.binary, c, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
