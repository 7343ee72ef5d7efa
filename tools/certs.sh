#!/usr/bin/env bash
# Makes a private certificate authority for one flowmatch cluster and a
# certificate for each node, with the `openssl` command (docs/cluster.md).
# The nodes accept exactly the peers whose certificates this CA signed, so
# the CA must be the cluster's own: CAF checks no host names.
#
#   tools/certs.sh DIR NAME...     DIR/ca.pem (+ ca.key, keep it private),
#                                  DIR/NAME.pem and DIR/NAME.key per node
#
# A node then runs with
#   --openssl.certificate=DIR/NAME.pem --openssl.key=DIR/NAME.key
#   --openssl.cafile=DIR/ca.pem
# An existing CA in DIR is reused (new nodes join the same cluster); an
# existing node certificate is kept. Keys are EC P-256, readable by the
# owner only; certificates last 825 days (the CA 10 years).
set -euo pipefail
dir=${1:?usage: tools/certs.sh DIR NAME...}
shift
[ $# -gt 0 ] || { echo "usage: tools/certs.sh DIR NAME..." >&2; exit 2; }
command -v openssl >/dev/null || { echo "certs.sh: install openssl (tools/setup.sh)" >&2; exit 1; }
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=flowmatch cluster CA $(date +%Y%m%d%H%M%S)" 2>/dev/null
  echo "certs.sh: made the cluster CA $dir/ca.pem"
fi
ext=$(mktemp)
trap 'rm -f "$ext"' EXIT
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' > "$ext"
for name in "$@"; do
  case "$name" in
    *[!A-Za-z0-9._-]*|"") echo "certs.sh: '$name' is not a node name" >&2; exit 2 ;;
  esac
  [ -f "$dir/$name.pem" ] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" \
    -CAkey "$dir/ca.key" -CAcreateserial -out "$dir/$name.pem" -days 825 \
    -extfile "$ext" 2>/dev/null
  rm -f "$dir/$name.csr"
  echo "certs.sh: made $dir/$name.pem and $dir/$name.key"
done
chmod 644 "$dir"/*.pem
