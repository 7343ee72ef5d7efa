#!/usr/bin/env bash
# A local flowmatch cluster on 127.0.0.1 (docs/cluster.md): N nodes of the
# same executable and config, with PostgreSQL and Redis from tools/pg.sh and
# tools/redis.sh. Node I is `nI`, listens for the others on port BASE+I
# (FLOWMATCH_CLUSTER_PORT, default 27400) and serves /metrics on BASE+100+I;
# its log is var/cluster/nI.log.
#
#   tools/cluster.sh up N [actor-system options for every node]
#       starts the services and N nodes; returns once every node has joined
#       and taken its leases (exit 1 if one stopped or none did in 60 s)
#   tools/cluster.sh kill I      SIGKILL node I (a crash)
#   tools/cluster.sh stop I      SIGSTOP node I (a freeze)
#   tools/cluster.sh cont I      SIGCONT node I
#   tools/cluster.sh term I      SIGTERM node I (a graceful leave); waits for it
#   tools/cluster.sh restart I   starts node I again with its id and options
#   tools/cluster.sh status      each node's state and leases, the streams' lag
#   tools/cluster.sh wait-idle [SECONDS]
#       waits until every stream partition's group has pending 0 and lag 0
#   tools/cluster.sh down        SIGTERM every node, waits for them
#
# Defaults for every node (options after `up N` override them): schema
# `cluster`, stream `flowmatch:events` with 4 partitions, config.ini.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=var/cluster
base=${FLOWMATCH_CLUSTER_PORT:-27400}
mkdir -p "$dir"

die() { echo "cluster.sh: $*" >&2; exit 1; }
pid_of() { cat "$dir/n$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# The options every node gets, as saved by `up`.
saved_opt() {
  grep -E "^--$1=" "$dir/options" 2>/dev/null | tail -1 | cut -d= -f2- || true
}

start_node() {
  local i=$1 n=$2
  local seeds="" j
  for j in $(seq 1 "$n"); do
    [ "$j" = "$i" ] && continue
    seeds+="${seeds:+,}\"127.0.0.1:$((base + j))\""
  done
  local opts=()
  mapfile -t opts < "$dir/options"
  # setsid: a node is its own process group, so a signal to this script's
  # group (a test runner's timeout) does not reach it by accident.
  setsid build/actor-system --config-file=config.ini "${opts[@]}" \
    --cluster.node-id="n$i" --cluster.listen="127.0.0.1:$((base + i))" \
    --cluster.seeds="[$seeds]" \
    --metrics.listen="127.0.0.1:$((base + 100 + i))" \
    >> "$dir/n$i.log" 2>&1 < /dev/null &
  echo $! > "$dir/n$i.pid"
}

wait_joined() {
  local deadline=$((SECONDS + 60)) i
  for i in "$@"; do
    until grep -q "took over" "$dir/n$i.log" 2>/dev/null; do
      if ! alive "$i"; then
        tail -20 "$dir/n$i.log" >&2
        die "node $i stopped before it joined (log: $dir/n$i.log)"
      fi
      [ $SECONDS -lt $deadline ] || die "node $i did not join within 60 s"
      sleep 0.2
    done
  done
}

psql_cluster() {
  tools/pg.sh psql -qAt -F ' ' -c "SET search_path TO $(schema), public" \
    -c "$1"
}
schema() { local s; s=$(saved_opt postgis.schema); echo "${s:-cluster}"; }
stream() { local s; s=$(saved_opt ingest.stream); echo "${s:-flowmatch:events}"; }
partitions() { local p; p=$(saved_opt ingest.partitions); echo "${p:-4}"; }
# Stream key of partition $1.
partition_key() {
  local key; key=$(stream)
  [ "$(partitions)" -gt 1 ] && key="$key:$1"
  echo "$key"
}
# "PENDING LAG" of the flowmatch group on stream key $1 ("? ?" if unknown).
group_progress() {
  local info pending lag
  info=$(tools/redis.sh cli XINFO GROUPS "$1" 2>/dev/null | tr '\n' ' ')
  pending=$(echo "$info" | sed -n 's/.*pending \([0-9]*\).*/\1/p')
  lag=$(echo "$info" | sed -n 's/.* lag \([0-9-]*\).*/\1/p')
  echo "${pending:-?} ${lag:-?}"
}

case "${1:-}" in
  up)
    n=${2:?usage: cluster.sh up N [options]}
    shift 2
    [ -x build/actor-system ] || tools/build.sh
    tools/pg.sh start >/dev/null
    tools/redis.sh start >/dev/null
    for i in $(seq 1 "$n"); do
      alive "$i" && die "node $i runs already (tools/cluster.sh down first)"
    done
    {
      echo "--ingest.ndjson="
      echo "--ingest.redis=$(tools/redis.sh url)"
      echo "--ingest.partitions=4"
      echo "--postgis.dsn=$(tools/pg.sh dsn)"
      echo "--postgis.schema=cluster"
      for o in "$@"; do echo "$o"; done
    } > "$dir/options"
    echo "$n" > "$dir/size"
    for i in $(seq 1 "$n"); do
      : > "$dir/n$i.log"
      start_node "$i" "$n"
    done
    wait_joined $(seq 1 "$n")
    echo "cluster.sh: $n nodes up (logs in $dir/)"
    ;;
  kill|stop|cont)
    i=${2:?usage: cluster.sh $1 I}
    p=$(pid_of "$i")
    [ -n "$p" ] || die "no node $i"
    case "$1" in
      kill) kill -KILL "$p" ;;
      stop) kill -STOP "$p" ;;
      cont) kill -CONT "$p" ;;
    esac
    ;;
  term)
    i=${2:?usage: cluster.sh term I}
    p=$(pid_of "$i")
    [ -n "$p" ] || die "no node $i"
    kill -TERM "$p" 2>/dev/null || true
    while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    ;;
  restart)
    i=${2:?usage: cluster.sh restart I}
    alive "$i" && die "node $i still runs (kill or term it first)"
    n=$(cat "$dir/size")
    echo "--- restart $(date -Is)" >> "$dir/n$i.log"
    before=$(grep -c "took over" "$dir/n$i.log" || true)
    start_node "$i" "$n"
    deadline=$((SECONDS + 60))
    # Joined again: it logs its first lease round (it may take nothing
    # while the others hold everything: then it has joined when it runs).
    until [ "$(grep -c "running as cluster node" "$dir/n$i.log")" -gt "$before" ] \
      || [ "$(grep -c "took over" "$dir/n$i.log")" -gt "$before" ]; do
      alive "$i" || die "node $i stopped at restart (log: $dir/n$i.log)"
      [ $SECONDS -lt $deadline ] || die "node $i did not start within 60 s"
      sleep 0.2
    done
    ;;
  status)
    n=$(cat "$dir/size" 2>/dev/null || echo 0)
    for i in $(seq 1 "$n"); do
      if alive "$i"; then
        state=$(ps -o stat= -p "$(pid_of "$i")" | cut -c1)
        [ "$state" = "T" ] && s="stopped (SIGSTOP)" || s="running"
      else
        s="down"
      fi
      echo "n$i: $s, pid $(pid_of "$i"), port $((base + i))"
    done
    echo "leases by owner (shard / match / stream):"
    psql_cluster "SELECT '  ' || coalesce(owner, '(free)'),
        count(*) FILTER (WHERE resource LIKE 'shard/%'),
        count(*) FILTER (WHERE resource LIKE 'match/%'),
        count(*) FILTER (WHERE resource LIKE 'stream/%'),
        CASE WHEN bool_or(expires_at < now()) THEN '(some expired)' ELSE '' END
      FROM cluster_leases GROUP BY owner ORDER BY owner" || true
    echo "stream partitions (pending, lag):"
    for q in $(seq 0 $(($(partitions) - 1))); do
      key=$(partition_key "$q")
      read -r pending lag <<< "$(group_progress "$key")"
      echo "  $key: pending $pending, lag $lag"
    done
    ;;
  wait-idle)
    limit=${2:-300}
    deadline=$((SECONDS + limit))
    while :; do
      busy=0
      for q in $(seq 0 $(($(partitions) - 1))); do
        read -r pending lag <<< "$(group_progress "$(partition_key "$q")")"
        [ "$pending" = 0 ] && [ "$lag" = 0 ] || busy=1
      done
      [ $busy = 0 ] && break
      [ $SECONDS -lt $deadline ] || die "the streams were not consumed within $limit s"
      sleep 0.2
    done
    ;;
  down)
    n=$(cat "$dir/size" 2>/dev/null || echo 0)
    for i in $(seq 1 "$n"); do
      p=$(pid_of "$i")
      [ -n "$p" ] || continue
      kill -CONT "$p" 2>/dev/null || true
      kill -TERM "$p" 2>/dev/null || true
    done
    for i in $(seq 1 "$n"); do
      p=$(pid_of "$i")
      [ -n "$p" ] || continue
      while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
      rm -f "$dir/n$i.pid"
    done
    echo "cluster.sh: down"
    ;;
  *)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
