#!/usr/bin/env bash
# The main job on the bundled real data: installs what is missing, builds,
# generates an event log from the Hotmaps industrial sites and GeoNames towns
# (with updates, moves, deletes, duplicates, stale versions, orphans and bad
# lines), and runs it through the actor system.
#
#   tools/run-example.sh [extra actor-system options]
#
# Output in var/example/: events.ndjson (input), state.ndjson (sites and
# flows at the end), dead-letters.ndjson (every rejected event and why).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
out=var/example
mkdir -p "$out"
python3 tools/generate_events.py --seed 1 --out "$out/events.ndjson"
build/actor-system --config-file=config.ini \
  --ingest.ndjson="$out/events.ndjson" \
  --output.state="$out/state.ndjson" \
  --output.dead-letters="$out/dead-letters.ndjson" "$@"
echo
echo "state:        $out/state.ndjson ($(wc -l <"$out/state.ndjson") entities)"
echo "dead letters: $out/dead-letters.ndjson ($(wc -l <"$out/dead-letters.ndjson") events)"
