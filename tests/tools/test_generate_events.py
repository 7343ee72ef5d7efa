#!/usr/bin/env python3
"""Checks tools/generate_events.py: the same seed gives the same log, and
synthetic copies of the map keep the real map's density (the mean distance
from a site to its nearest neighbour is the same in every copy, whichever
latitude band the copy lands in). Run by CTest (label unit)."""

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GEN = os.path.join(ROOT, "tools", "generate_events.py")


def generate(*args):
    done = subprocess.run([sys.executable, GEN, "--out", "-", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout


def km(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = (math.sin((la2 - la1) / 2) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def main():
    failures = []
    a = generate("--seed", "5", "--max-sites", "200")
    b = generate("--seed", "5", "--max-sites", "200")
    c = generate("--seed", "6", "--max-sites", "200")
    if a != b:
        failures.append("the same seed gave two different logs")
    if a == c:
        failures.append("two seeds gave the same log")

    # Enough copies for tiles in every latitude band (a smaller map has
    # smaller tiles, so more fit in a band).
    text = generate("--seed", "1", "--max-sites", "300", "--copies", "60",
                    "--updates", "0", "--moves", "0", "--deletes", "0",
                    "--duplicates", "0", "--out-of-order", "0",
                    "--orphans", "0", "--bad", "0")
    copies = {}
    for line in text.splitlines():
        ev = json.loads(line)
        if ev["type"] != "site_created":
            continue
        sid = ev["data"]["site_id"]
        copy = int(sid.rsplit("-c", 1)[1]) if "-c" in sid else 0
        copies.setdefault(copy, []).append((ev["data"]["lat"], ev["data"]["lon"]))
    if len(copies) != 60:
        failures.append(f"expected 60 copies, found {len(copies)}")

    def median_lat(pts):
        return sorted(p[0] for p in pts)[len(pts) // 2]

    # The first copy in each band of latitude.
    first_in_band = {}
    for copy in sorted(copies):
        first_in_band.setdefault(round(median_lat(copies[copy]) / 10), copy)
    if len(first_in_band) < 4:
        failures.append(f"copies cover {len(first_in_band)} latitude bands, "
                        "not 4")
    spacing = {}
    for copy in sorted(first_in_band.values()):
        pts = copies.get(copy, [])
        sample = pts[::5]
        nn = [min(km(p, q) for q in pts if q is not p) for p in sample]
        spacing[copy] = sum(nn) / len(nn)
    base = spacing[0]
    for copy, value in spacing.items():
        ratio = value / base
        lat_mid = median_lat(copies[copy])
        print(f"copy {copy} (median latitude {lat_mid:.0f}): mean nearest-"
              f"neighbour distance {value:.2f} km ({ratio:.3f}x the real map's)")
        if not 0.9 <= ratio <= 1.1:
            failures.append(f"copy {copy} spacing is {ratio:.3f}x the real "
                            "map's: the density is not kept")
    lats = [p[0] for pts in copies.values() for p in pts]
    if min(lats) < -90 or max(lats) > 90:
        failures.append("a copy left the globe")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("generator: deterministic, density kept in every band")
    return 0


if __name__ == "__main__":
    sys.exit(main())
