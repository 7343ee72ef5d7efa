#!/usr/bin/env python3
"""tools/redis.sh keeps its promises: it starts a Redis on 127.0.0.1 with
an append-only file synced on every write, an entry added by a client
flowmatch did not write (python3-redis) survives a stop and a start, and
status tells running from stopped. Uses its own port so it never touches a
developer's Redis."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = "63791"
ENV = dict(os.environ, FLOWMATCH_REDIS_PORT=PORT)
SCRIPT = os.path.join(ROOT, "tools", "redis.sh")


def redis_sh(*args, check=True):
    r = subprocess.run([SCRIPT, *args], env=ENV, capture_output=True,
                       text=True)
    if check and r.returncode != 0:
        sys.exit(f"tools/redis.sh {' '.join(args)} failed ({r.returncode}): "
                 f"{r.stderr.strip()}")
    return r


def main():
    import redis  # python3-redis, installed by tools/setup.sh

    shutil.rmtree(os.path.join(ROOT, "var", "redis", PORT),
                  ignore_errors=True)
    redis_sh("start")
    redis_sh("start")  # idempotent
    try:
        url = redis_sh("url").stdout.strip()
        if url != f"redis://127.0.0.1:{PORT}/0":
            sys.exit(f"url printed {url!r}")
        client = redis.Redis.from_url(url)
        config = {**client.config_get("appendonly"),
                  **client.config_get("appendfsync"),
                  **client.config_get("bind")}
        if config.get("appendonly") != "yes" or \
                config.get("appendfsync") != "always":
            sys.exit(f"not durable: {config}")
        if config.get("bind") != "127.0.0.1":
            sys.exit(f"listens beyond loopback: bind={config.get('bind')}")
        client.xadd("flowmatch:test", {"event": '{"id":"e1"}'})
        redis_sh("stop")
        if redis_sh("status", check=False).returncode != 3:
            sys.exit("status does not say stopped after stop")
        redis_sh("start")
        client = redis.Redis.from_url(url)
        n = client.xlen("flowmatch:test")
        if n != 1:
            sys.exit(f"the stream lost its entry across a restart: xlen={n}")
        if redis_sh("status").stdout.strip() != f"running on 127.0.0.1:{PORT}":
            sys.exit("status does not say running")
    finally:
        redis_sh("stop", check=False)
    print("redis.sh: durable local Redis on", PORT)


if __name__ == "__main__":
    main()
