#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz/, docs/reliability.md).
#
#   tools/fuzz.sh build               clang build with ASan + UBSan + libFuzzer
#                                     in build-fuzz/
#   tools/fuzz.sh run [SECONDS] [T..] each target (default: all four) for
#                                     SECONDS (default 30), corpus in
#                                     var/fuzz/<target>/, seeded from the
#                                     test data and the adversarial corpus
#   tools/fuzz.sh regress             every saved crash input
#                                     (tests/fuzz/regressions/fuzz-<target>/) once
#
# A crash leaves its input in var/fuzz/crashes/; copy it into
# tests/fuzz/regressions/fuzz-<target>/ with the fix, so `regress` (and CI)
# keeps it fixed. Targets: decoder, redis-reply, config, wire.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(decoder redis-reply config wire)
build=build-fuzz

die() { echo "fuzz.sh: $*" >&2; exit 1; }

do_build() {
  command -v clang++ >/dev/null || die "clang++ is missing: run tools/setup.sh"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DFLOWMATCH_FUZZ=ON \
    -DFLOWMATCH_SANITIZE=address,undefined -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${all[@]/#/fuzz-}"
}

# Seeds: real lines and the adversarial inputs for the decoder; the same
# lines as Redis replies (XREADGROUP, XPENDING, XINFO GROUPS); config.ini
# and the adversarial config files; values the wire target writes itself.
seed() {
  local t=$1 dir=var/fuzz/seeds/$1
  [ -d "$dir" ] && return
  mkdir -p "$dir"
  case $t in
    decoder)
      head -300 tests/data/hotmaps-sample.ndjson | split -l 1 - "$dir/sample-"
      for f in tests/adversarial/inputs/*.ndjson; do
        split -l 1 "$f" "$dir/$(basename "$f" .ndjson)-"
      done ;;
    redis-reply)
      /usr/bin/python3 - "$dir" <<'PY'
import os, sys
out = sys.argv[1]
def bulk(b): return b"$%d\r\n%s\r\n" % (len(b), b)
def arr(items): return b"*%d\r\n" % len(items) + b"".join(items)
lines = open("tests/data/hotmaps-sample.ndjson", "rb").read().splitlines()[:40]
for i in range(0, len(lines), 4):
    entries = [arr([bulk(b"%d-0" % (1000 + j)), arr([bulk(b"event"), bulk(l)])])
               for j, l in enumerate(lines[i:i + 4])]
    reply = arr([arr([bulk(b"flowmatch:events:0"), arr(entries)])])
    open(os.path.join(out, "xreadgroup-%d" % i), "wb").write(reply)
open(os.path.join(out, "nil"), "wb").write(b"*-1\r\n")
open(os.path.join(out, "deleted"), "wb").write(
    arr([arr([bulk(b"s"), arr([arr([bulk(b"5-0"), b"*-1\r\n"])])])]))
open(os.path.join(out, "pending"), "wb").write(
    arr([arr([bulk(b"1-0"), bulk(b"n1"), b":1500\r\n", b":2\r\n"])]))
open(os.path.join(out, "groups"), "wb").write(arr([arr([
    bulk(b"name"), bulk(b"flowmatch"), bulk(b"consumers"), b":1\r\n",
    bulk(b"pending"), b":3\r\n", bulk(b"last-delivered-id"), bulk(b"7-0"),
    bulk(b"entries-read"), b":9\r\n", bulk(b"lag"), b":0\r\n"])]))
open(os.path.join(out, "error"), "wb").write(b"-NOGROUP no such group\r\n")
PY
      ;;
    config)
      cp config.ini "$dir/config.ini"
      for f in tests/adversarial/config/*.ini; do cp "$f" "$dir/"; done
      printf '[ingest]\nbatch-size=64\n%%%%\n--registry.workers=4\n--cluster.node-id=n1\n--cluster.listen=127.0.0.1:7000\n--postgis.dsn=host=x\n--ingest.redis=redis://127.0.0.1:6379\n' \
        > "$dir/cluster-args" ;;
    wire)
      "$build/fuzz-wire" -write_seeds="$dir" >/dev/null 2>&1 || true ;;
  esac
}

run() {
  local seconds=${1:-30}
  shift || true
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
  mkdir -p var/fuzz/crashes
  local t status=0
  for t in "${targets[@]}"; do
    [ -x "$build/fuzz-$t" ] || die "no $build/fuzz-$t: run tools/fuzz.sh build"
    seed "$t"
    mkdir -p "var/fuzz/$t"
    echo "fuzz.sh: $t for ${seconds}s"
    # hiredis 0.14 allocates whatever array length a reply claims:
    # allocator_may_return_null turns a huge claim into its own error.
    if ! ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
         "$build/fuzz-$t" -max_total_time="$seconds" -rss_limit_mb=2048 \
         -timeout=10 -max_len=65536 -print_final_stats=1 \
         -artifact_prefix="var/fuzz/crashes/$t-" \
         "var/fuzz/$t" "var/fuzz/seeds/$t" 2>"var/fuzz/$t.log"; then
      tail -40 "var/fuzz/$t.log" >&2
      echo "fuzz.sh: $t FOUND A CRASH (input in var/fuzz/crashes/)" >&2
      status=1
    else
      grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" \
        "var/fuzz/$t.log" | sed "s/^/  $t /"
      echo "  $t corpus: $(ls "var/fuzz/$t" | wc -l) inputs"
    fi
  done
  return $status
}

regress() {
  local t status=0 files
  for t in "${all[@]}"; do
    files=(tests/fuzz/regressions/fuzz-"$t"/*)
    [ -e "${files[0]}" ] || continue
    [ -x "$build/fuzz-$t" ] || die "no $build/fuzz-$t: run tools/fuzz.sh build"
    echo "fuzz.sh: $t: ${#files[@]} saved inputs"
    ASAN_OPTIONS=allocator_may_return_null=1 "$build/fuzz-$t" "${files[@]}" \
      >/dev/null 2>"var/fuzz-$t-regress.log" || {
      tail -30 "var/fuzz-$t-regress.log" >&2; status=1; }
  done
  return $status
}

case "${1:-}" in
  build) do_build ;;
  run) shift; mkdir -p var; run "$@" ;;
  regress) mkdir -p var; regress ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
