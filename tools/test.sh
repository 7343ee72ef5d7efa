#!/usr/bin/env bash
# Sets up, builds and runs every test (CTest; labels unit, actors, system).
#
#   tools/test.sh            all tests
#   tools/test.sh -L unit    only one label (any ctest options pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
