#!/usr/bin/env python3
"""Generates a realistic flowmatch event log (NDJSON) from the bundled real data.

Sites are the Hotmaps industrial sites (with coordinates) and GeoNames towns.
Flows follow what these places really exchange:
  - excess heat supplies from the Hotmaps temperature bands (GWh/yr), and
    low-grade cooling-water heat at chemical sites, refineries and paper
    mills (usable through heat pumps);
  - district-heating demand at towns, sized by population;
  - slag and dust from steelworks (EWC 10 02, some hazardous) to cement works;
  - CO2 from emitting plants to greenhouses near towns;
  - process water from paper mills to chemical sites.
Then a stream of changes: updates, site moves, deletes; and the faults a real
feed has: duplicates, stale versions, flows before their site, orphans and bad
lines. Deterministic for a seed.

  tools/generate_events.py --seed 7 --out events.ndjson
  tools/generate_events.py --copies 10 --out big.ndjson   # 10x, same density

Data: Hotmaps Industrial Database (CC BY 4.0, Fraunhofer ISI / Hotmaps
project) and GeoNames (CC BY 4.0); see data/README.md.
"""

import argparse
import csv
import json
import math
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOTMAPS = os.path.join(ROOT, "data", "hotmaps", "hotmaps-industrial-sites.csv")
TOWNS = os.path.join(ROOT, "data", "geonames", "towns-europe-10k.csv")

COUNTRY_CODES = {
    "Austria": "AT", "Belgium": "BE", "Bulgaria": "BG", "Croatia": "HR",
    "Cyprus": "CY", "Czech Republic": "CZ", "Denmark": "DK", "Estonia": "EE",
    "Finland": "FI", "France": "FR", "Germany": "DE", "Greece": "GR",
    "Hungary": "HU", "Ireland": "IE", "Italy": "IT", "Latvia": "LV",
    "Liechtenstein": "LI", "Lithuania": "LT", "Luxembourg": "LU",
    "Malta": "MT", "Netherland": "NL", "Netherlands": "NL", "Norway": "NO",
    "Poland": "PL", "Portugal": "PT", "Romania": "RO", "Slovakia": "SK",
    "Slovenia": "SI", "Spain": "ES", "Sweden": "SE", "Switzerland": "CH",
    "United Kingdom": "GB", "Iceland": "IS",
}

# NACE Rev.2 class of each Hotmaps subsector.
NACE = {
    "Iron and steel": "24.10", "Cement": "23.51", "Glass": "23.11",
    "Paper and printing": "17.12", "Chemical industry": "20.14",
    "Refineries": "19.20", "Non-ferrous metals": "24.42",
    "Non-metallic mineral products": "23.32",
}

# Hotmaps excess-heat bands: column, temperature available, medium.
HEAT_BANDS = [
    ("Excess_Heat_100-200C", "100to200", 150, "hot_water"),
    ("Excess_Heat_200-500C", "200to500", 300, "steam"),
    ("Excess_Heat_500C", "over500", 500, "flue_gas"),
]

POINT = re.compile(r"POINT\(([-0-9.eE]+) ([-0-9.eE]+)\)")


def number(text):
    try:
        v = float(text)
        return v if math.isfinite(v) else 0.0
    except (TypeError, ValueError):
        return 0.0


def positive(value, digits):
    """Rounds; None when the rounded quantity would not be > 0."""
    v = round(value, digits)
    return v if v > 0 else None


def load_industry():
    with open(HOTMAPS, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter=";"):
            m = POINT.search(row["geom"] or "")
            if not m:
                continue
            lon, lat = float(m.group(1)), float(m.group(2))
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                continue
            yield row, lat, lon


def load_towns():
    with open(TOWNS, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield row


class Log:
    """Collects events with ids e000001..., keeping creation order."""

    def __init__(self):
        self.events = []

    def add(self, etype, data, **extra):
        ev = {"id": "e%07d" % (len(self.events) + 1), "type": etype, "data": data}
        ev.update(extra)
        self.events.append(ev)
        return ev


class Tiling:
    """Where copy k of the map goes. Copy 0 is the real map. The others are
    tiles side by side in longitude, in latitude bands further south; in a
    band at another latitude each point's longitude offset from the tile's
    centre is scaled by cos(lat) / cos(new lat), which keeps the area of
    every small patch, so each copy has the real map's density. The earth
    holds about thirty copies of Europe; beyond that copies overlap
    (slightly shifted) and the density grows: the generator says so."""

    def __init__(self, points, copies):
        # The tile is the core of the map (99 % of the points); the few
        # far-off places (islands, overseas regions) go along unscaled.
        lats = sorted(p[0] for p in points)
        lons = sorted(p[1] for p in points)
        cut = len(points) // 200
        self.lat_lo, self.lat_hi = lats[cut], lats[-1 - cut]
        self.lon_lo, self.lon_hi = lons[cut], lons[-1 - cut]
        self.lon_c = (self.lon_lo + self.lon_hi) / 2
        span_lat = self.lat_hi - self.lat_lo + 1.0
        span_lon = self.lon_hi - self.lon_lo + 1.0
        self.tiles = []  # (lat shift, lon centre)
        shift = 0.0
        while self.lat_lo + shift > -88 and self.lat_hi + shift < 88:
            stretch = max(self.stretch(lat, shift)
                          for lat in frange(self.lat_lo, self.lat_hi, 0.5))
            width = span_lon * stretch
            for t in range(int(360 // width)):
                self.tiles.append((shift, self.lon_c + t * width))
            shift -= span_lat
        if copies > len(self.tiles):
            print("generate_events: %d copies need more room than the earth has "
                  "at this density (%d tiles): copies beyond overlap, so the "
                  "density is about %.1fx the real map's"
                  % (copies, len(self.tiles), copies / len(self.tiles)),
                  file=sys.stderr)

    @staticmethod
    def stretch(lat, shift):
        return math.cos(math.radians(lat)) / math.cos(math.radians(lat + shift))

    def place(self, copy, lat, lon):
        shift, centre = self.tiles[copy % len(self.tiles)]
        overlap_round = copy // len(self.tiles)
        lat2 = lat + shift
        lon2 = centre + (lon - self.lon_c) * self.stretch(lat, shift) + 0.37 * overlap_round
        while lon2 > 180:
            lon2 -= 360
        while lon2 < -180:
            lon2 += 360
        return lat2, lon2


def frange(lo, hi, step):
    x = lo
    while x < hi:
        yield x
        x += step
    yield hi


def build(args):
    rng = random.Random(args.seed)
    log = Log()
    sites = []   # (site event data)
    flows = []   # (flow event data)
    copies = max(1, args.copies)
    industry = list(load_industry())
    towns = list(load_towns())
    if args.max_sites:
        industry = industry[: args.max_sites]
        towns = towns[: args.max_sites]
    layout = Tiling([(lat, lon) for _, lat, lon in industry]
                    + [(float(r["lat"]), float(r["lon"])) for r in towns], copies)
    for copy in range(copies):
        suffix = "" if copy == 0 else "-c%d" % copy

        def place(lat, lon, copy=copy):
            return layout.place(copy, lat, lon)

        for row, lat, lon in industry:
            sid = "hm-%s%s" % (row["SiteID"], suffix)
            lat2, lon2 = place(lat, lon)
            site = {"site_id": sid, "name": (row["SiteName"] or row["CompanyName"] or sid)[:512],
                    "lat": round(lat2, 6), "lon": round(lon2, 6)}
            if row["Country"] in COUNTRY_CODES:
                site["country"] = COUNTRY_CODES[row["Country"]]
            if row["Subsector"] in NACE:
                site["nace"] = NACE[row["Subsector"]]
            sites.append(site)
            sub = row["Subsector"]
            for column, tag, temp, medium in HEAT_BANDS:
                gwh = positive(number(row[column]), 3)
                if gwh:
                    flows.append({"flow_id": "%s-heat-%s" % (sid, tag), "site_id": sid,
                                  "direction": "supply", "resource": "heat",
                                  "quantity": gwh, "unit": "GWh/yr",
                                  "operating_hours": 8000, "temperature_c": temp,
                                  "medium": medium})
            if sub in ("Chemical industry", "Refineries", "Paper and printing"):
                # Low-grade heat in cooling water: usable through a heat pump.
                low = positive(number(row["Excess_Heat_Total"]) * 0.5, 3)
                if low:
                    flows.append({"flow_id": sid + "-heat-cooling", "site_id": sid,
                                  "direction": "supply", "resource": "heat",
                                  "quantity": low, "unit": "GWh/yr",
                                  "operating_hours": 8000,
                                  "temperature_c": rng.choice([30, 35, 40, 45]),
                                  "medium": "cooling_water"})
            production = number(row["Production"])
            if sub == "Iron and steel" and production >= 100:
                flows.append({"flow_id": sid + "-slag", "site_id": sid, "direction": "supply",
                              "resource": "material", "quantity": round(production * 0.12, 1),
                              "unit": "t/yr", "ewc": "100202", "max_transport_km": 150})
                if rng.random() < 0.4:
                    flows.append({"flow_id": sid + "-dust", "site_id": sid, "direction": "supply",
                                  "resource": "material", "quantity": round(production * 0.01, 1),
                                  "unit": "t/yr", "ewc": "100207", "hazardous": True})
            if sub == "Cement":
                flows.append({"flow_id": sid + "-clinker-input", "site_id": sid,
                              "direction": "demand", "resource": "material",
                              "quantity": round(max(production, 200000) * 0.05, 1),
                              "unit": "t/yr", "accepts_ewc": ["1002", "100101"],
                              "accepts_hazardous": rng.random() < 0.3})
            co2 = positive(number(row["Emissions_ETS_2014"]) * 0.05 / 8000, 3)
            if sub in ("Chemical industry", "Refineries", "Cement") and co2:
                flows.append({"flow_id": sid + "-co2", "site_id": sid, "direction": "supply",
                              "resource": "co2", "quantity": co2,
                              "unit": "t/h", "operating_hours": 8000})
            if sub == "Paper and printing":
                flows.append({"flow_id": sid + "-water", "site_id": sid, "direction": "supply",
                              "resource": "water", "quantity": round(50 + rng.random() * 400, 1),
                              "unit": "m3/h", "operating_hours": 8400})
            if sub == "Chemical industry" and rng.random() < 0.5:
                flows.append({"flow_id": sid + "-water-in", "site_id": sid, "direction": "demand",
                              "resource": "water", "quantity": round(2000 + rng.random() * 8000),
                              "unit": "m3/d"})
        for row in towns:
            sid = "gn-%s%s" % (row["geonames_id"], suffix)
            lat2, lon2 = place(float(row["lat"]), float(row["lon"]))
            sites.append({"site_id": sid, "name": row["name"][:512],
                          "lat": round(lat2, 6), "lon": round(lon2, 6), "country": row["country"]})
            pop = int(row["population"])
            # About 3 MWh of district heat per inhabitant and year.
            flows.append({"flow_id": sid + "-dh", "site_id": sid, "direction": "demand",
                          "resource": "heat", "quantity": pop * 3, "unit": "MWh/yr",
                          "temperature_c": rng.choice([70, 80, 90, 110])})
            if rng.random() < 0.08:
                flows.append({"flow_id": sid + "-greenhouse-co2", "site_id": sid,
                              "direction": "demand", "resource": "co2",
                              "quantity": round(500 + rng.random() * 4500), "unit": "t/yr"})
    return rng, log, sites, flows


def emit(args):
    rng, log, sites, flows = build(args)
    site_ids = [s["site_id"] for s in sites]
    flows_by_site = {}
    for f in flows:
        flows_by_site.setdefault(f["site_id"], []).append(f)
    # 1. Creation: each site, then its flows; a few flows come first
    #    (out of order: the engine holds them until the site arrives).
    early = set(f["flow_id"] for f in flows if rng.random() < args.out_of_order)
    for f in flows:
        if f["flow_id"] in early:
            log.add("resource_flow_created", dict(f))
    for s in sites:
        log.add("site_created", dict(s))
        for f in flows_by_site.get(s["site_id"], []):
            if f["flow_id"] not in early:
                log.add("resource_flow_created", dict(f))
    # 2. Changes: updates with versions, moves, deletes.
    for f in flows:
        if rng.random() < args.updates:
            g = dict(f, quantity=round(f["quantity"] * rng.uniform(0.7, 1.3), 3), version=2)
            log.add("resource_flow_updated", g)
            if rng.random() < 0.2:  # a late, stale version 1 after it
                log.add("resource_flow_updated", dict(f, version=1))
    for s in sites:
        if rng.random() < args.moves:
            moved = dict(s, lat=round(s["lat"] + rng.uniform(-0.02, 0.02), 6),
                         lon=round(s["lon"] + rng.uniform(-0.02, 0.02), 6), version=2)
            log.add("site_updated", moved)
    for f in flows:
        if rng.random() < args.deletes:
            # With its site (events.md v1.1): the routing key a partitioned
            # stream and a cluster's shards need (ingest.md).
            log.add("resource_flow_deleted",
                    {"flow_id": f["flow_id"], "site_id": f["site_id"]})
    for sid in site_ids:
        if rng.random() < args.deletes / 4:
            log.add("site_deleted", {"site_id": sid})
    # 3. Orphans: flows for sites that never come.
    for i in range(args.orphans):
        log.add("resource_flow_created", {"flow_id": "orphan-%d" % i, "site_id": "no-such-site-%d" % i,
                                          "direction": "demand", "resource": "water",
                                          "quantity": 10, "unit": "m3/h"})
    # 4. Duplicates: some events are delivered twice, later.
    events = log.events
    dupes = [ev for ev in events if rng.random() < args.duplicates]
    out = [json.dumps(ev, separators=(",", ":"), ensure_ascii=False) for ev in events]
    for ev in dupes:
        out.insert(rng.randrange(len(out) + 1), json.dumps(ev, separators=(",", ":"), ensure_ascii=False))
    # 5. Bad lines of every class, at random places.
    bad = [
        '{"id":"bad-json","type":"site_created","data":{"site_id":"x",',
        '{"id":"bad-lat","type":"site_created","data":{"site_id":"x","lat":123.4,"lon":5}}',
        '{"id":"bad-nan","type":"site_created","data":{"site_id":"x","lat":NaN,"lon":5}}',
        '{"id":"bad-unit","type":"resource_flow_created","data":{"flow_id":"x","site_id":"x","direction":"supply","resource":"water","quantity":3,"unit":"MW"}}',
        '{"id":"bad-type","type":"site_teleported","data":{"site_id":"x"}}',
        '{"id":"bad-missing","type":"resource_flow_created","data":{"flow_id":"x","site_id":"x","direction":"supply","resource":"heat","quantity":3,"unit":"MW"}}',
        '{"id":"bad-wrong-type","type":"site_created","data":{"site_id":"x","lat":"48.2","lon":5}}',
        '{"id":"bad-quantity","type":"resource_flow_created","data":{"flow_id":"x","site_id":"x","direction":"supply","resource":"co2","quantity":-1,"unit":"t/yr"}}',
        '[1,2,3]',
    ]
    for i in range(args.bad):
        line = bad[i % len(bad)].replace('"id":"bad-', '"id":"bad%d-' % i, 1)
        out.insert(rng.randrange(len(out) + 1), line)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="-", help="output path, - for stdout")
    p.add_argument("--copies", type=int, default=1,
                   help="copies of the whole map, shifted in space (same density)")
    p.add_argument("--max-sites", type=int, default=0,
                   help="use at most this many industrial sites and towns (0: all)")
    p.add_argument("--updates", type=float, default=0.10, help="share of flows updated")
    p.add_argument("--moves", type=float, default=0.02, help="share of sites moved")
    p.add_argument("--deletes", type=float, default=0.02, help="share of flows deleted")
    p.add_argument("--duplicates", type=float, default=0.01, help="share of events re-sent")
    p.add_argument("--out-of-order", type=float, default=0.01,
                   help="share of flows sent before their site")
    p.add_argument("--orphans", type=int, default=5, help="flows whose site never comes")
    p.add_argument("--bad", type=int, default=18, help="bad lines mixed in")
    args = p.parse_args()
    lines = emit(args)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    with out:
        for line in lines:
            out.write(line + "\n")
    if args.out != "-":
        print("generate_events: %d lines -> %s" % (len(lines), args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
