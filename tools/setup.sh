#!/usr/bin/env bash
# Installs every Debian package flowmatch needs to build, test and run.
# This is the one list of dependencies. Idempotent: packages already present
# are skipped, so running it twice costs one dpkg query.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config
  clang libclang-rt-14-dev  # fuzzing and sanitizer builds (tools/fuzz.sh, tools/sanitize.sh)
  # libraries
  libcaf-dev            # C++ Actor Framework 0.17.6 (core, io, openssl)
  libssl-dev openssl    # TLS between cluster nodes; tools/certs.sh
  libspdlog-dev         # logging
  libsimdjson-dev       # NDJSON decoding
  libgeographiclib-dev  # WGS84 geodesic distance (matching)
  libabsl-dev           # Abseil flat hash maps (match index)
  libpq-dev             # PostgreSQL client library
  libhiredis-dev        # Redis client library (the stream ingest)
  prometheus-cpp-dev    # metric model and text format (/metrics)
  libcivetweb-dev       # the HTTP server of /metrics, /healthz, /readyz
  prometheus            # promtool, which checks /metrics in a test
  catch2                # tests (Catch2 v2)
  # services and tools
  postgresql-15 postgresql-15-postgis-3 postgresql-client-15
  redis-server redis-tools  # the event stream (tools/redis.sh)
  python3-redis         # a publisher flowmatch did not write (wire tests)
  gnuplot-nox           # map picture and benchmark plots
  python3               # the event generator (tools/generate_events.py)
  python3-yaml          # scenario files (tools/scenario.py)
  iproute2              # network namespaces for the cluster's cut tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
