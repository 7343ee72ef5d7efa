#!/usr/bin/env python3
"""Least privilege and secrets, against the real executable and the real
PostgreSQL of tools/pg.sh (docs/reliability.md, "Least privilege"):

- `actor-system --migrate` as the schema's owner grants an app role the
  schema's tables and nothing more; a node runs as that role end to end
  (file and Redis input), while the role cannot change the schema;
- a node as that role on a schema that is not migrated stops at once with
  a message that says to run --migrate (exit 2), and a wrong password is
  refused for good, naming the key;
- the app role's password appears nowhere flowmatch writes: logs (text and
  JSON, debug level), /metrics, /healthz, /readyz, --help, --dump-config,
  configuration errors, the dead letters (table and file), the summary.

    test_least_privilege.py ACTOR_SYSTEM SAMPLE.ndjson

Needs $FLOWMATCH_TEST_DSN (the owner) and $FLOWMATCH_TEST_APP_DSN (the app
role with its password), as tools/test.sh sets them; $FLOWMATCH_TEST_REDIS_URL
for the stream run.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

from http_get import get  # tests/tools/http_get.py

EXE, SAMPLE = sys.argv[1], sys.argv[2]
OWNER = os.environ.get("FLOWMATCH_TEST_DSN", "")
APP = os.environ.get("FLOWMATCH_TEST_APP_DSN", "")
REDIS = os.environ.get("FLOWMATCH_TEST_REDIS_URL", "")
SCHEMA = "least_privilege_check"
PSQL = "/usr/lib/postgresql/15/bin/psql"


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


if not OWNER or not APP:
    fail("FLOWMATCH_TEST_DSN and FLOWMATCH_TEST_APP_DSN must be set "
         "(tools/test.sh sets them from tools/pg.sh)")
m = re.search(r"\bpassword=(\S+)", APP)
ROLE = re.search(r"\buser=(\S+)", APP).group(1)
if not m:
    fail("the app conninfo has no password: " + APP)
SECRET = m.group(1)


def psql(dsn, sql, ok=True):
    r = subprocess.run([PSQL, dsn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True)
    if ok and r.returncode != 0:
        fail(f"psql {sql!r}: {r.stderr.strip()}")
    return r


def run(args, timeout=120, **kw):
    return subprocess.run([EXE] + args, capture_output=True, text=True,
                          timeout=timeout, **kw)


# Everything flowmatch wrote, to search for the secret at the end.
written = {}


def keep(name, text):
    written[name] = written.get(name, "") + text


psql(OWNER, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
work = tempfile.mkdtemp(prefix="flowmatch-lp-")

# 1. A node as the app role on a schema nobody migrated: refused at once.
r = run(["--postgis.dsn=" + APP, "--postgis.schema=" + SCHEMA,
         "--ingest.ndjson=" + SAMPLE, "--metrics.listen="])
keep("unmigrated run", r.stdout + r.stderr)
if r.returncode != 2 or "actor-system --migrate" not in r.stderr:
    fail(f"an app role on an unmigrated schema: want exit 2 and advice to "
         f"run --migrate, got {r.returncode}: {r.stderr[-800:]}")
print("ok: the app role cannot migrate; the node says to run --migrate")

# 2. The owner migrates and grants.
r = run(["--migrate", "--postgis.owner-dsn=" + OWNER,
         "--postgis.app-role=" + ROLE, "--postgis.schema=" + SCHEMA])
keep("--migrate", r.stdout + r.stderr)
if r.returncode != 0 or f"granted to role {ROLE}" not in r.stdout:
    fail(f"--migrate: exit {r.returncode}: {r.stdout} {r.stderr}")
print("ok: " + r.stdout.strip())
again = run(["--migrate", "--postgis.owner-dsn=" + OWNER,
             "--postgis.app-role=" + ROLE, "--postgis.schema=" + SCHEMA])
if again.returncode != 0 or "(0 applied now)" not in again.stdout:
    fail(f"--migrate twice: the second must apply nothing: {again.stdout} "
         f"{again.stderr}")

# 3. What the role may not do: change the schema, empty a table, create
# tables elsewhere.
for sql in [f"CREATE TABLE {SCHEMA}.intruder (a int)",
            f"DROP TABLE {SCHEMA}.sites",
            f"ALTER TABLE {SCHEMA}.sites ADD COLUMN x int",
            f"TRUNCATE {SCHEMA}.matches",
            f"CREATE SCHEMA intruder_{SCHEMA}",
            "CREATE TABLE public.intruder (a int)",
            f"CREATE OR REPLACE FUNCTION {SCHEMA}.cluster_fence() "
            "RETURNS void LANGUAGE sql AS ''"]:
    r = psql(APP, sql, ok=False)
    if r.returncode == 0:
        fail(f"the app role could run {sql!r}")
    if "permission denied" not in r.stderr and "must be owner" not in r.stderr:
        fail(f"{sql!r} failed for another reason than rights: {r.stderr}")
print("ok: the app role cannot create, alter, drop or truncate")

# 4. A node as the app role, file input, with a dead letters file, debug
# logs and the metrics endpoint: everything works, and the secret never
# shows.
poison = ['not json', '{"id":"p1","type":"site_created","data":{}}',
          '{"id":"p2","type":"resource_flow_created","data":'
          '{"flow_id":"f","site_id":"nowhere","direction":"supply",'
          '"resource":"heat","quantity":1,"unit":"MWh/a"}}']
feed = open(SAMPLE).read() + "\n".join(poison) + "\n"
for fmt in ["text", "json"]:
    letters = os.path.join(work, f"letters-{fmt}.ndjson")
    args = ["--postgis.dsn=" + APP, "--postgis.schema=" + SCHEMA,
            "--ingest.ndjson=-", "--log.level=debug", "--log.format=" + fmt,
            "--metrics.listen=127.0.0.1:0", "--output.dead-letters=" + letters,
            "--registry.hold-timeout=1s"]
    p = subprocess.Popen([EXE] + args, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The port from the endpoint's log line (it listens on port 0).
    port, seen = None, b""
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
        mm = re.search(rb"http://127\.0\.0\.1:(\d+)", line)
        if mm:
            port = int(mm.group(1))
    if port is None:
        p.kill()
        fail("the node did not serve its endpoint: " + seen.decode()[-800:])
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        status, _body = get(base + "/readyz")
        if status == 200:
            break
        time.sleep(0.1)
    else:
        p.kill()
        fail("the node as the app role never became ready")
    for path in ["/metrics", "/healthz", "/readyz"]:
        keep(f"{fmt} {path}", get(base + path)[1])
    out, err = p.communicate(feed.encode(), timeout=120)
    keep(f"{fmt} run", seen.decode() + out.decode() + err.decode())
    if p.returncode != 0:
        fail(f"the node as the app role ({fmt} logs) exited {p.returncode}: "
             f"{err.decode()[-1500:]}")
    keep(f"{fmt} dead letters file", open(letters).read())
sites = int(psql(APP, f"SELECT count(*) FROM {SCHEMA}.sites").stdout)
matches = int(psql(APP, f"SELECT count(*) FROM {SCHEMA}.matches").stdout)
letters = int(psql(APP, f"SELECT count(*) FROM {SCHEMA}.dead_letters").stdout)
if sites == 0 or matches == 0 or letters < len(poison):
    fail(f"the app role's run stored {sites} sites, {matches} matches, "
         f"{letters} dead letters")
keep("dead_letters table",
     psql(OWNER, f"SELECT d::text FROM {SCHEMA}.dead_letters d").stdout)
print(f"ok: a node as {ROLE} stored {sites} sites, {matches} matches, "
      f"{letters} dead letters (text and JSON logs)")

# 5. Over Redis too (the cluster-capable path), when a Redis is there.
if REDIS:
    import redis as redis_client  # Debian's python3-redis
    rc = redis_client.Redis.from_url(REDIS)
    key = "least-privilege-check"
    rc.delete(key)
    for line in open(SAMPLE).read().splitlines()[:200]:
        rc.xadd(key, {"event": line})
    r = run(["--postgis.dsn=" + APP, "--postgis.schema=" + SCHEMA,
             "--ingest.redis=" + REDIS, "--ingest.stream=" + key,
             "--ingest.until-caught-up", "--metrics.listen=",
             "--log.level=debug"])
    keep("redis run", r.stdout + r.stderr)
    rc.delete(key)
    if r.returncode != 0:
        fail(f"the app role over Redis exited {r.returncode}: "
             f"{r.stderr[-1500:]}")
    print("ok: a node as the app role over a Redis stream")

# 6. A wrong password: refused for good, naming the key, the password
# masked.
wrong = re.sub(r"password=\S+", "password=not-" + SECRET, APP)
t0 = time.monotonic()
r = run(["--postgis.dsn=" + wrong, "--postgis.schema=" + SCHEMA,
         "--ingest.ndjson=" + SAMPLE, "--metrics.listen="], timeout=60)
keep("wrong password", r.stdout + r.stderr)
if r.returncode != 2 or "postgis.dsn" not in r.stderr \
        or "password authentication failed" not in r.stderr:
    fail(f"a wrong password: want exit 2 naming postgis.dsn, got "
         f"{r.returncode}: {r.stderr[-800:]}")
if time.monotonic() - t0 > 20:
    fail("a wrong password was retried instead of refused at once")
print("ok: a wrong password is refused at once, naming postgis.dsn")

# 7. The secret on the command line and in a config file, where the
# options are printed or echoed.
conf = os.path.join(work, "secret.ini")
with open(conf, "w") as f:
    f.write(f'[postgis]\ndsn="{APP}"\nowner-dsn="{OWNER} password={SECRET}"\n')
for name, args in [
        ("--help", ["--help", "--postgis.dsn=" + APP]),
        ("--help with a file", ["--config-file=" + conf, "--help"]),
        ("--dump-config", ["--dump-config", "--postgis.dsn=" + APP,
                           "--ingest.ndjson=" + SAMPLE]),
        ("--dump-config with a file", ["--config-file=" + conf,
                                       "--dump-config",
                                       "--ingest.ndjson=" + SAMPLE]),
        ("a bad key beside it", ["--postgis.dsn=" + APP,
                                 "--postgis.batch-size=0",
                                 "--ingest.ndjson=" + SAMPLE]),
        ("a conninfo that does not parse",
         ["--postgis.dsn=" + APP + " hots", "--ingest.ndjson=" + SAMPLE,
          "--metrics.listen="]),
        ("a postgres URI", ["--postgis.dsn=postgresql://" + ROLE + ":" + SECRET
                            + "@127.0.0.1:1/x?connect_timeout=1",
                            "--ingest.ndjson=" + SAMPLE, "--metrics.listen=",
                            "--postgis.retry-max=200ms", "--log.level=debug",
                            "--shutdown.grace-period=2s"]),
        ("a Redis URL with a password",
         ["--ingest.redis=redis://:" + SECRET + "@127.0.0.1:1"]),
        ("--migrate as a wrong owner",
         ["--migrate", "--postgis.owner-dsn=" + wrong]),
]:
    try:
        r = run(args, timeout=30)
        keep(name, r.stdout + r.stderr)
        if name.startswith("--dump-config") and "dsn" not in r.stdout:
            fail(f"{name} printed no dsn at all: {r.stdout[:500]}")
    except subprocess.TimeoutExpired as e:
        # The URI run retries an unreachable server: what it logged counts.
        keep(name, (e.stdout or b"").decode() + (e.stderr or b"").decode())
print(f"ok: --help, --dump-config and {len(written)} outputs in all")

# The check: the secret nowhere; masks where a password was.
leaks = [name for name, text in written.items() if SECRET in text]
if leaks:
    for name in leaks:
        text = written[name]
        at = text.index(SECRET)
        print(f"  {name}: ...{text[max(0, at - 120):at + 40]}...")
    fail("the app role's password appears in: " + ", ".join(leaks))
masked = [n for n, t in written.items() if "***" in t]
if "--dump-config" not in masked or "a Redis URL with a password" not in masked:
    fail("expected *** where the password was; masked: " + ", ".join(masked))
psql(OWNER, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
print(f"ok: the password appears in none of {len(written)} outputs "
      f"(masked in {len(masked)})")
