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
#                            unit, actor and db tests (the db tests run the
#                            node, built with TSan too), linked against a CAF
#                            0.17.6 built with ThreadSanitizer too (from
#                            Debian's source tarball, checked by its sha256,
#                            into var/caf-tsan/ once): Debian's libcaf is
#                            not instrumented, and TSan reports every
#                            message CAF hands between threads as a race.
#
# The db tests need the PostgreSQL of tools/pg.sh (FLOWMATCH_TEST_DSN, as
# tools/test.sh sets it). Any report ends its test with a failure
# (halt_on_error, set in every executable by base/sanitizer_options.cpp);
# suppressions, each with its reason, are in tools/sanitizers/.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-asan}

# CAF 0.17.6 with -fsanitize=thread, installed under var/caf-tsan/install.
# The tarball is Debian's (the source of libcaf-dev 0.17.6-2.1), fetched by
# apt's own helper and verified against the sha256 of Debian's .dsc; its
# configuration matches Debian's build_config.hpp (log level QUIET, memory
# management on), so the headers our code compiles against are the same.
caf_tsan() {
  local root=$PWD/var/caf-tsan tarball=actor-framework_0.17.6.orig.tar.gz
  local sha=e2bf5bd243f08bb7d8adde197cfe3e6d71314ed3378fe0692f8932f4c3b3928c
  [[ -f $root/install/lib/libcaf_core.so ]] && return
  mkdir -p "$root"
  if [[ ! -f $root/$tarball ]]; then
    /usr/lib/apt/apt-helper download-file \
      "http://deb.debian.org/debian/pool/main/a/actor-framework/$tarball" \
      "$root/$tarball" "SHA256:$sha"
  fi
  rm -rf "$root/src" && mkdir -p "$root/src"
  tar xzf "$root/$tarball" -C "$root/src" --strip-components=1
  # Debian's one source patch, as in /usr/include: newer compilers need
  # <limits> for std::numeric_limits in receive_buffer.hpp.
  sed -i 's/^#include <cstring>$/#include <cstring>\n#include <limits>/' \
    "$root/src/libcaf_io/caf/io/network/receive_buffer.hpp"
  if ! diff -r /usr/include/caf/io "$root/src/libcaf_io/caf/io" >/dev/null; then
    echo "sanitize.sh: CAF's io headers differ from libcaf-dev's" >&2
    exit 1
  fi
  cmake -S "$root/src" -B "$root/build" -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAF_NO_AUTO_LIBCPP=yes \
    -DCMAKE_CXX_FLAGS="-std=c++17 -fsanitize=thread -pthread" \
    -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_TOOLS=yes \
    -DCAF_NO_PYTHON=yes -DCAF_NO_OPENCL=yes -DCAF_NO_SUMMARY=yes \
    -DCMAKE_INSTALL_PREFIX="$root/install" >/dev/null
  cmake --build "$root/build" -j"$(nproc)"
  cmake --install "$root/build" >/dev/null
}


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
    caf_tsan
    caf=$PWD/var/caf-tsan/install
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++ -DFLOWMATCH_SANITIZE=thread \
      -DCAF_INCLUDE_DIR="$caf/include" \
      -DCAF_CORE_LIBRARY="$caf/lib/libcaf_core.so" \
      -DCAF_IO_LIBRARY="$caf/lib/libcaf_io.so" \
      -DCAF_OPENSSL_LIBRARY="$caf/lib/libcaf_openssl.so" \
      -DBUILD_TESTING=ON >/dev/null
    labels='^(unit|actors|db)$'
    ;;
  *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
# The unit, actor and db tests, the node they run (built with the same
# sanitizers, so its reports fail those tests too) and, in the ASan build,
# the fuzz targets: the target sanitizer-tests (CMakeLists.txt).
cmake --build "$dir" -j"$(nproc)" --target sanitizer-tests
cd "$dir"
ctest -L "$labels" -j"$(nproc)" --output-on-failure --timeout 900
