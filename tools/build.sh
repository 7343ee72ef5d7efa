#!/usr/bin/env bash
# Configures and builds flowmatch into build/ (Release). Warnings become
# errors when CI=true. Incremental: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFLOWMATCH_WERROR="$werror" >/dev/null
cmake --build build -j"$(nproc)"
