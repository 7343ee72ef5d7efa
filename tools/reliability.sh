#!/usr/bin/env bash
# The reliability suite's stages beyond tools/test.sh (docs/reliability.md),
# as CI runs them after it:
#
#   tools/reliability.sh          the AddressSanitizer + UndefinedBehavior-
#                                 Sanitizer build with its unit, actor and db
#                                 tests and the fuzz regressions
#                                 (tools/sanitize.sh asan), then every fuzz
#                                 target for FUZZ_SECONDS (default 30)
#
# tools/test.sh runs the rest of the suite: the short fault matrix
# (tools/faults.py, CTest label faults), the security tests (label
# security) and the scenarios. On demand: tools/faults.py --full,
# tools/soak.py, tools/fuzz.sh run 900, tools/sanitize.sh tsan.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/pg.sh start
tools/redis.sh start
export FLOWMATCH_TEST_DSN="$(tools/pg.sh dsn)"
export FLOWMATCH_TEST_APP_DSN="$(tools/pg.sh app-dsn)"
export FLOWMATCH_TEST_REDIS_URL="$(tools/redis.sh url)"
start=$(date +%s)
tools/sanitize.sh asan
echo "reliability.sh: sanitizer build and tests took $(( $(date +%s) - start )) s"
start=$(date +%s)
tools/fuzz.sh run "${FUZZ_SECONDS:-30}"
echo "reliability.sh: fuzzing took $(( $(date +%s) - start )) s"
