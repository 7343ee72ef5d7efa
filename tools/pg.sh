#!/usr/bin/env bash
# A local PostgreSQL 15 + PostGIS cluster for flowmatch: development, tests,
# CI and the example. Idempotent; safe to call repeatedly.
#
#   tools/pg.sh create    initdb (once) under var/pg/
#   tools/pg.sh start     create if needed, start, wait until ready
#   tools/pg.sh stop      fast shutdown
#   tools/pg.sh restart   immediate restart (crash-like; used by fault tests)
#   tools/pg.sh status    running or not (exit 0 / 3)
#   tools/pg.sh dsn       print the libpq conninfo of the cluster (the owner)
#   tools/pg.sh app-dsn   print the conninfo of flowmatch_app, a role that may
#                         only read and write the tables it is granted
#                         (least privilege: nodes run as it, the owner
#                         migrates; docs/operations.md)
#   tools/pg.sh psql ...  run psql against the cluster
#
# Port: FLOWMATCH_PG_PORT (default 54329). Data: var/pg/data in the project
# (ignored by git). initdb refuses to run as root, so as root the cluster
# belongs to the unprivileged `postgres` user that Debian's package creates;
# if that user cannot reach the project folder (say, under /root), the data
# goes to /tmp/flowmatch-pg-<uid>-<port> instead, and this says so.
set -euo pipefail
cd "$(dirname "$0")/.."
project=$(pwd)
port=${FLOWMATCH_PG_PORT:-54329}
bindir=/usr/lib/postgresql/15/bin
db=flowmatch
role=flowmatch
# The least-privilege role of the tests and the example. Its password
# guards a cluster on loopback that exists for development only; it is
# checked (scram-sha-256), so a test sees it pass through, and masked
# wherever flowmatch prints a conninfo.
app_role=flowmatch_app
app_password=flowmatch-app-local-only

if [ ! -x "$bindir/initdb" ]; then
  echo "pg.sh: PostgreSQL 15 is not installed; run tools/setup.sh" >&2
  exit 1
fi

run_as=""
owner=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  run_as="runuser -u postgres --"
fi

base="$project/var/pg"
if [ -n "$run_as" ]; then
  mkdir -p "$base"
  # The cluster owner must be able to reach the folder.
  if ! $run_as test -x "$base" 2>/dev/null; then
    base="/tmp/flowmatch-pg-$(id -u)-$port"
    echo "pg.sh: $owner cannot reach $project; using $base" >&2
  fi
fi
data="$base/data"
sock="$base/run"
log="$base/server.log"

as_owner() { if [ -n "$run_as" ]; then $run_as "$@"; else "$@"; fi; }

is_running() {
  [ -f "$data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

create() {
  if [ -f "$data/PG_VERSION" ]; then
    return 0
  fi
  mkdir -p "$base"
  [ -n "$run_as" ] && chown "$owner" "$base"
  as_owner mkdir -p "$data" "$sock"
  as_owner "$bindir/initdb" -D "$data" -U "$role" --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$base/initdb.log" 2>&1 || {
    cat "$base/initdb.log" >&2
    exit 1
  }
  cat >>"$data/postgresql.conf" <<EOF
# flowmatch local cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
max_connections = 100
shared_buffers = 256MB
fsync = on
synchronous_commit = on
EOF
  echo "pg.sh: created cluster in $data (port $port)"
}

start() {
  create
  if is_running; then
    ensure_app_role
    return 0
  fi
  as_owner mkdir -p "$sock"
  if ! as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
    echo "pg.sh: the server did not start; the end of $log says:" >&2
    tail -n 5 "$log" >&2 || true
    echo "pg.sh: (another server on port $port? set FLOWMATCH_PG_PORT)" >&2
    exit 1
  fi
  # The database and PostGIS; the role is the cluster's superuser.
  if ! as_owner "$bindir/psql" -h "$sock" -p "$port" -U "$role" -d postgres -tAc \
      "select 1 from pg_database where datname = '$db'" | grep -q 1; then
    as_owner "$bindir/createdb" -h "$sock" -p "$port" -U "$role" "$db"
  fi
  ensure_app_role
  echo "pg.sh: running on 127.0.0.1:$port"
}

# The app role: may log in (with its password, over TCP) and connect; every
# right on a schema's tables comes from `actor-system --migrate
# --postgis.app-role=flowmatch_app` (or a node started with owner-dsn).
ensure_app_role() {
  local hba="$data/pg_hba.conf" line="host all $app_role 127.0.0.1/32 scram-sha-256"
  if ! as_owner grep -qx "$line" "$hba"; then
    # First match wins: before the trust lines initdb wrote.
    as_owner sh -c "{ echo '$line'; cat '$hba'; } > '$hba.new' && mv '$hba.new' '$hba'"
    as_owner "$bindir/pg_ctl" -D "$data" reload >/dev/null
  fi
  as_owner "$bindir/psql" -h "$sock" -p "$port" -U "$role" -d "$db" -qtAc "
    DO \$\$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$app_role') THEN
        CREATE ROLE $app_role LOGIN PASSWORD '$app_password';
      END IF;
    END \$\$;" >/dev/null
}

stop() {
  if is_running; then
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "pg.sh: stopped"
  fi
}

case "${1:-}" in
  create) create ;;
  start) start ;;
  stop) stop ;;
  restart)
    as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -m immediate -w -t 60 restart >/dev/null
    echo "pg.sh: restarted (immediate)"
    ;;
  status)
    if is_running; then echo "running on 127.0.0.1:$port"; else echo "not running"; exit 3; fi
    ;;
  dsn) echo "host=127.0.0.1 port=$port dbname=$db user=$role" ;;
  app-dsn) echo "host=127.0.0.1 port=$port dbname=$db user=$app_role password=$app_password" ;;
  psql)
    shift
    exec "$bindir/psql" "host=127.0.0.1 port=$port dbname=$db user=$role" "$@"
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
