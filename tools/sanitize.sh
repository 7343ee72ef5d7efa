#!/usr/bin/env bash
# Sanitizer builds (docs/reliability.md).
#
#   tools/sanitize.sh asan   clang, AddressSanitizer + UndefinedBehavior-
#                            Sanitizer + libFuzzer coverage in build-fuzz/
#                            (the same build as tools/fuzz.sh): builds the
#                            unit, actor and db tests and the fuzz targets,
#                            runs those tests and the fuzz regressions.
#                            CI runs this.
#   tools/sanitize.sh tsan   ThreadSanitizer in build-tsan/ (on demand): the
#                            unit and actor tests.
#
# The db tests need the PostgreSQL of tools/pg.sh (FLOWMATCH_TEST_DSN, as
# tools/test.sh sets it). Any report ends its test with a failure
# (halt_on_error, set in every executable by base/sanitizer_options.cpp);
# suppressions, each with its reason, are in tools/sanitizers/.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-asan}


case $mode in
  asan)
    dir=build-fuzz
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++ -DFLOWMATCH_FUZZ=ON \
      -DFLOWMATCH_SANITIZE=address,undefined -DBUILD_TESTING=ON >/dev/null
    labels='^(unit|actors|db|fuzz)$'
    ;;
  tsan)
    dir=build-tsan
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++ -DFLOWMATCH_SANITIZE=thread \
      -DBUILD_TESTING=ON >/dev/null
    labels='^(unit|actors)$'
    ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
# The unit, actor and db tests, the node they run (built with the same
# sanitizers, so its reports fail those tests too) and, in the ASan build,
# the fuzz targets: the target sanitizer-tests (CMakeLists.txt).
cmake --build "$dir" -j"$(nproc)" --target sanitizer-tests
cd "$dir"
ctest -L "$labels" -j"$(nproc)" --output-on-failure --timeout 900
