#!/usr/bin/env bash
# The main job on the bundled real data: installs what is missing, builds,
# starts the local PostgreSQL + PostGIS cluster, generates an event log from
# the Hotmaps industrial sites and GeoNames towns (with updates, moves,
# deletes, duplicates, stale versions, orphans and bad lines), and runs it
# through the actor system into the database.
#
#   tools/run-example.sh [extra actor-system options]
#
# Output: the tables of schema `example` in the local cluster
# (tools/pg.sh psql), and in var/example/: events.ndjson (the input),
# state.ndjson (sites and flows at the end) and map.png (sites and matched
# pairs).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
tools/pg.sh start
out=var/example
mkdir -p "$out"
python3 tools/generate_events.py --seed 1 --out "$out/events.ndjson"
dsn="$(tools/pg.sh dsn)"
# A fresh schema each time, so the run shows the whole job (feeding the same
# log into a kept schema would show every event as a duplicate).
tools/pg.sh psql -q -c "DROP SCHEMA IF EXISTS example CASCADE" 2>/dev/null
build/actor-system --config-file=config.ini \
  --ingest.ndjson="$out/events.ndjson" \
  --postgis.dsn="$dsn" --postgis.schema=example \
  --output.state="$out/state.ndjson" --log.progress-interval=250ms "$@"
echo
echo "In PostGIS (schema example; tools/pg.sh psql to look around):"
tools/pg.sh psql -qAt -F ' ' -c "SET search_path TO example, public" -c "
  SELECT '  sites          ', count(*) FROM sites
  UNION ALL SELECT '  resource_flows ', count(*) FROM resource_flows
  UNION ALL SELECT '  dead_letters   ', count(*) FROM dead_letters
  UNION ALL SELECT '  processed      ', count(*) FROM processed_events"
echo
echo "Flows per class:"
tools/pg.sh psql -qAt -F ' ' -c "SET search_path TO example, public" -c "
  SELECT '  ' || rpad(resource, 9), count(*) FILTER (WHERE direction = 'supply'),
         'supplies', count(*) FILTER (WHERE direction = 'demand'), 'demands'
  FROM resource_flows GROUP BY resource ORDER BY resource"
echo
echo "Matches per class:"
tools/pg.sh psql -qAt -F ' ' -c "SET search_path TO example, public" -c "
  SELECT '  ' || rpad(resource, 9), count(*), 'best score',
         round(max(score)::numeric, 4)
  FROM matches GROUP BY resource ORDER BY resource"
echo
echo "Best matches (score = f_quality x f_taxonomy x (0.35 s_size + 0.25 s_dist + 0.40 s_econ)):"
tools/pg.sh psql -q -c "SET search_path TO example, public" -c "
  SELECT s.name AS supplier, d.name AS consumer, m.resource,
         round((m.distance_m / 1000)::numeric, 1) AS km,
         round(m.exchange_qty::numeric) AS qty_per_yr,
         round(m.score::numeric, 3) AS score,
         round(m.s_size::numeric, 2) AS s_size,
         round(m.s_dist::numeric, 2) AS s_dist,
         round(m.s_econ::numeric, 2) AS s_econ, m.flags
  FROM matches m JOIN sites s ON s.site_id = m.supply_site_id
  JOIN sites d ON d.site_id = m.demand_site_id
  ORDER BY m.score DESC LIMIT 8"
echo
tools/plot-map.sh example "$out/map.png"
echo "state file:     $out/state.ndjson"
