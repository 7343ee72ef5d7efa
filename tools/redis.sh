#!/usr/bin/env bash
# A local Redis for flowmatch's event stream: development, tests, CI and
# the example. Idempotent; safe to call repeatedly.
#
#   tools/redis.sh start    start (if not running) and wait until it answers
#   tools/redis.sh stop     shut down (the append-only file is kept)
#   tools/redis.sh restart  kill -9 and start again: a crash (what the
#                           append-only file holds survives)
#   tools/redis.sh status   running or not (exit 0 / 3)
#   tools/redis.sh url      print the URL (ingest.redis)
#   tools/redis.sh cli ...  run redis-cli against it
#
# Port: FLOWMATCH_REDIS_PORT (default 63790), on 127.0.0.1 only. Data:
# var/redis in the project (ignored by git). Durable like the stream
# contract asks (docs/contracts/ingest.md): appendonly yes, appendfsync
# always, so an acknowledged XADD survives a crash of the server.
set -euo pipefail
cd "$(dirname "$0")/.."
project=$(pwd)
port=${FLOWMATCH_REDIS_PORT:-63790}
dir="$project/var/redis/$port"

if ! command -v redis-server >/dev/null; then
  echo "redis.sh: redis-server is not installed; run tools/setup.sh" >&2
  exit 1
fi

cli() {
  redis-cli -h 127.0.0.1 -p "$port" "$@"
}

running() {
  [ "$(cli ping 2>/dev/null)" = "PONG" ]
}

start() {
    if running; then
      return 0
    fi
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
      --appendonly yes --appendfsync always --save "" \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 100); do
      if running; then
        return 0
      fi
      sleep 0.1
    done
    echo "redis.sh: redis-server did not answer on port $port within 10 s;" \
      "see $dir/redis.log" >&2
    exit 1
}

case "${1:-}" in
  start)
    start
    ;;
  restart)
    if [ -f "$dir/redis.pid" ]; then
      pid=$(cat "$dir/redis.pid")
      kill -9 "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
      rm -f "$dir/redis.pid"
    fi
    start
    ;;
  stop)
    if running; then
      cli shutdown >/dev/null 2>&1 || true
      for _ in $(seq 1 100); do
        running || exit 0
        sleep 0.1
      done
      echo "redis.sh: redis-server on port $port did not stop" >&2
      exit 1
    fi
    ;;
  status)
    if running; then
      echo "running on 127.0.0.1:$port"
    else
      echo "not running"
      exit 3
    fi
    ;;
  url)
    echo "redis://127.0.0.1:$port/0"
    ;;
  cli)
    shift
    cli "$@"
    ;;
  *)
    echo "usage: tools/redis.sh start|stop|restart|status|url|cli [args]" >&2
    exit 2
    ;;
esac
