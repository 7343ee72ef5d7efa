#!/usr/bin/env bash
# The reliability suite's stages beyond tools/test.sh (docs/reliability.md),
# as CI runs them after it, each alone on the machine:
#
#   tools/reliability.sh    1. the short fault matrix (tools/faults.py) on
#                              build/ (tools/test.sh builds it): Redis ->
#                              node(s) -> PostGIS under each fault, lost and
#                              duplicate effects counted; it restarts
#                              PostgreSQL and Redis, so nothing runs beside it
#                           2. the AddressSanitizer + UndefinedBehavior-
#                              Sanitizer build with its unit, actor and db
#                              tests and the fuzz regressions
#                              (tools/sanitize.sh asan)
#                           3. every fuzz target for FUZZ_SECONDS (default 30)
#
# Each stage prints its time. On demand: tools/faults.py --full,
# tools/soak.py, tools/fuzz.sh run 900, tools/sanitize.sh tsan.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
[ -x build/actor-system ] || tools/build.sh
tools/pg.sh start
tools/redis.sh start
export FLOWMATCH_TEST_DSN="$(tools/pg.sh dsn)"
export FLOWMATCH_TEST_APP_DSN="$(tools/pg.sh app-dsn)"
export FLOWMATCH_TEST_REDIS_URL="$(tools/redis.sh url)"

stage() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "reliability.sh: $name ..."
  "$@"
  echo "reliability.sh: $name took $(( $(date +%s) - start )) s"
}

stage "short fault matrix" /usr/bin/python3 tools/faults.py \
  --exe build/actor-system --report build/faults-report.json
stage "sanitizer build and tests" tools/sanitize.sh asan
stage "fuzzing" tools/fuzz.sh run "${FUZZ_SECONDS:-30}"
