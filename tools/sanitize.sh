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
# Only the test executables of these labels (the benchmarks and the
# scenarios' executable are not needed), plus the fuzz targets in the ASan
# build: the tests/CMakeLists.txt lines `flowmatch_test(NAME LABEL ...)`.
targets=$(sed -n 's/^flowmatch_test(\([a-z_0-9]*\) \(unit\|actors\|db\) .*/\1 \2/p' \
  tests/CMakeLists.txt | grep -E " (${labels//[()^$]/})\$" | cut -d' ' -f1)
# The db and system tests run the node itself: built with the same
# sanitizers, so its reports fail those tests too.
extra=(actor-system)
[ "$mode" = asan ] && extra+=(fuzz-decoder fuzz-redis-reply fuzz-config fuzz-wire)
# shellcheck disable=SC2086
cmake --build "$dir" -j"$(nproc)" --target $targets "${extra[@]}"
cd "$dir"
ctest -L "$labels" -j"$(nproc)" --output-on-failure --timeout 900
