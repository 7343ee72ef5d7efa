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
# (tools/pg.sh psql), and in var/example/: events.ndjson (the input) and
# state.ndjson (sites and flows at the end).
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
  --output.state="$out/state.ndjson" "$@"
echo
echo "In PostGIS (schema example; tools/pg.sh psql to look around):"
tools/pg.sh psql -qAt -F ' ' -c "SET search_path TO example, public" -c "
  SELECT '  sites          ', count(*) FROM sites
  UNION ALL SELECT '  resource_flows ', count(*) FROM resource_flows
  UNION ALL SELECT '  dead_letters   ', count(*) FROM dead_letters
  UNION ALL SELECT '  processed      ', count(*) FROM processed_events"
echo "state file:     $out/state.ndjson"
