#!/usr/bin/env bash
# Builds the .deb with CPack, installs it on this machine, and checks what
# an operator gets: the executables, /etc/flowmatch/config.ini, the
# flowmatch system user, a unit that `systemd-analyze verify` accepts, and
# a node that runs as that user. Purges the package at the end.
#
#   test_package.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
fail() { echo "FAIL: $*"; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
  fail "installing a package needs root (CI runs as root)"
fi
cd "$build"
rm -f flowmatch_*.deb
cpack -G DEB >cpack.log 2>&1 || { cat cpack.log; fail "cpack failed"; }
deb=$(ls flowmatch_*_amd64.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no .deb built: $(cat cpack.log)"
# (Whole outputs first: grep -q closing a pipe early fails under pipefail.)
info=$(dpkg-deb --info "$deb")
contents=$(dpkg-deb --contents "$deb")
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
grep -q "Depends:.*libcaf" <<<"$info" \
  || fail "the package does not depend on CAF: $info"
grep -q "\./etc/flowmatch/config.ini" <<<"$contents" \
  || fail "no /etc/flowmatch/config.ini in the package: $contents"
grep -qx "/etc/flowmatch/config.ini" <<<"$conffiles" \
  || fail "config.ini is not a conffile: $conffiles"
trap 'dpkg --purge flowmatch >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb" >dpkg.log 2>&1 || { cat dpkg.log; fail "dpkg -i failed"; }
for exe in actor-system flowmatch-publish flowmatch-redrive; do
  [ -x "/usr/bin/$exe" ] || fail "/usr/bin/$exe is not installed"
done
getent passwd flowmatch >/dev/null || fail "no flowmatch system user"
unit=/usr/lib/systemd/system/flowmatch.service
[ -f "$unit" ] || unit=/lib/systemd/system/flowmatch.service
[ -f "$unit" ] || fail "the systemd unit is not installed"
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
if echo "$verify" | grep -qi "flowmatch.service"; then
  fail "systemd-analyze verify complains about the unit: $verify"
fi
for key in "NoNewPrivileges=yes" "ProtectSystem=strict" "User=flowmatch" \
           "Restart=on-failure" "KillSignal=SIGTERM"; do
  grep -qx "$key" "$unit" || fail "the unit lacks $key"
done
# Stop timeout above the grace period the shipped config sets.
grace=$(sed -n 's/^grace-period=\([0-9]*\)s$/\1/p' /etc/flowmatch/config.ini)
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")
[ -n "$grace" ] && [ -n "$stop" ] && [ "$stop" -gt "$grace" ] \
  || fail "TimeoutStopSec ($stop s) is not above shutdown.grace-period ($grace s)"
# The installed node runs as its user with the installed configuration.
out=$(runuser -u flowmatch -- /usr/bin/actor-system \
        --config-file=/etc/flowmatch/config.ini \
        --ingest.ndjson="$src/tests/data/edge_cases.ndjson" \
        --metrics.listen= --log.level=error) \
  || fail "the installed node failed: $out"
echo "$out" | grep -q "applied" || fail "no run summary: $out"
dpkg --purge flowmatch >/dev/null 2>&1 || fail "dpkg --purge failed"
[ ! -e /usr/bin/actor-system ] || fail "purge left /usr/bin/actor-system"
echo "package: ok"
