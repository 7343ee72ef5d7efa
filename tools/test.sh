#!/usr/bin/env bash
# Sets up, builds and runs every test (CTest; labels unit, actors, system,
# db, scenario, redis), starting the local PostGIS cluster and Redis the
# tests use.
#
#   tools/test.sh            all tests
#   tools/test.sh -L unit    only one label (any ctest options pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
# The db tests use the local PostgreSQL + PostGIS cluster (port 54329), the
# stream tests the local Redis (port 63790).
tools/pg.sh start
export FLOWMATCH_TEST_DSN="$(tools/pg.sh dsn)"
export FLOWMATCH_TEST_APP_DSN="$(tools/pg.sh app-dsn)"
tools/redis.sh start
export FLOWMATCH_TEST_REDIS_URL="$(tools/redis.sh url)"
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
