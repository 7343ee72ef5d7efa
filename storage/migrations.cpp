#include "storage/migrations.hpp"

#include "base/logging.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace flowmatch {

namespace {

struct migration {
  int version;
  const char* name;
  const char* sql;
};

// Append only: a released migration never changes. The tables and columns
// named in docs/contracts/storage.md are a contract: add, never rename or
// drop.
const std::vector<migration> migrations = {
  {1, "contract tables: sites, resource_flows, matches, dead_letters, "
      "processed_events",
   R"sql(
CREATE TABLE sites (
  site_id    text PRIMARY KEY,
  name       text,
  geog       geography(Point, 4326) NOT NULL,
  lat        double precision NOT NULL,
  lon        double precision NOT NULL,
  country    text,
  nace       text,
  version    bigint,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_geog_idx ON sites USING gist (geog);

CREATE TABLE resource_flows (
  flow_id           text PRIMARY KEY,
  site_id           text NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
  direction         text NOT NULL CHECK (direction IN ('supply', 'demand')),
  resource          text NOT NULL
                    CHECK (resource IN ('heat', 'water', 'material', 'co2')),
  quantity          double precision NOT NULL,
  unit              text NOT NULL,
  annual_quantity   double precision NOT NULL,
  operating_hours   double precision NOT NULL,
  temperature_c     double precision,
  medium            text,
  ewc               text,
  accepts_ewc       text[],
  hazardous         boolean,
  accepts_hazardous boolean,
  max_transport_km  double precision,
  version           bigint,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_flows_site_idx ON resource_flows (site_id);
CREATE INDEX resource_flows_class_idx ON resource_flows (resource, direction);

CREATE TABLE matches (
  supply_flow_id text NOT NULL,
  demand_flow_id text NOT NULL,
  supply_site_id text NOT NULL,
  demand_site_id text NOT NULL,
  resource       text NOT NULL,
  distance_m     double precision NOT NULL,
  exchange_qty   double precision NOT NULL,
  score          double precision NOT NULL,
  s_size         double precision NOT NULL,
  s_dist         double precision NOT NULL,
  s_econ         double precision NOT NULL,
  f_quality      double precision NOT NULL,
  f_taxonomy     double precision NOT NULL,
  flags          text[] NOT NULL DEFAULT '{}',
  computed_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (supply_flow_id, demand_flow_id)
);
CREATE INDEX matches_demand_idx ON matches (demand_flow_id);

CREATE TABLE dead_letters (
  id          bigserial PRIMARY KEY,
  event_id    text,
  source      text,
  line        bigint,
  reason      text NOT NULL,
  detail      text,
  payload     text,
  attempts    int NOT NULL DEFAULT 1,
  first_seen  timestamptz NOT NULL DEFAULT now(),
  last_seen   timestamptz NOT NULL DEFAULT now(),
  -- The same rejection seen again (a re-fed input) counts an attempt
  -- instead of adding a row.
  fingerprint text NOT NULL UNIQUE
);

CREATE TABLE processed_events (
  event_id     text PRIMARY KEY,
  processed_at timestamptz NOT NULL DEFAULT now(),
  -- The routing key (site id) of the event, so a restarted node puts the
  -- id back into the worker that will see its duplicates.
  routing_key  text
);
)sql"},
  {2, "v1.1: dead_letters.resolved_at",
   R"sql(
-- A later success clears an earlier failure (events.md v1.1): set when the
-- same event id is applied after all. Open letters are the ones to look at.
ALTER TABLE dead_letters ADD COLUMN resolved_at timestamptz;
CREATE INDEX dead_letters_open_idx ON dead_letters (event_id)
  WHERE resolved_at IS NULL;
CREATE INDEX processed_events_at_idx ON processed_events (processed_at);
)sql"},
  {3, "stream entries: dead_letters.entry_id",
   R"sql(
-- A letter of a Redis stream entry (ingest.md) names the entry id; `line`
-- stays for files.
ALTER TABLE dead_letters ADD COLUMN entry_id text;
)sql"},
  {4, "cluster mode: members, leases, the fence",
   R"sql(
-- Cluster mode (docs/contracts/cluster.md). Who is there: one row per node
-- id, its address and the incarnation (one process run) that last beat.
CREATE TABLE cluster_members (
  node_id      text PRIMARY KEY,
  address      text NOT NULL,
  incarnation  text NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  left_at      timestamptz
);
-- Who owns what: a registry shard ('shard/12'), a match partition
-- ('match/3') or a stream partition ('stream/0'). The epoch grows with
-- every change of owner; `owner` is null once released. `clean` says the
-- owner before the current one released it (nothing of it was lost).
CREATE TABLE cluster_leases (
  resource   text PRIMARY KEY,
  owner      text,
  epoch      bigint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL DEFAULT '-infinity',
  clean      boolean NOT NULL DEFAULT true
);
-- The fence: called first in every transaction that writes a resource's
-- data. It locks the writer's lease rows FOR KEY SHARE: a takeover (an
-- upsert, which locks the row FOR UPDATE) waits for the writer's COMMIT,
-- so the successor reads what was written, while the owner's own renewal
-- (a plain UPDATE of expires_at) never waits for its writers. It
-- raises FL001 unless the writer still holds each lease with its epoch: a
-- node that froze past its lease can never write over its successor. (An
-- expired lease nobody took yet still has its owner and epoch: taking
-- it over changes the epoch, so the epoch alone decides; a writer is not
-- stopped by a database outage longer than its lease.)
CREATE FUNCTION cluster_fence(writer text, resources text[], epochs bigint[])
RETURNS void LANGUAGE plpgsql AS $fence$
DECLARE
  held int;
BEGIN
  SELECT count(*) INTO held FROM (
    SELECT 1 FROM cluster_leases l
    JOIN unnest(resources, epochs) AS t(resource, epoch)
      ON l.resource = t.resource AND l.epoch = t.epoch
    WHERE l.owner = writer
    FOR KEY SHARE OF l) AS locked;
  IF held <> coalesce(cardinality(resources), 0) THEN
    RAISE EXCEPTION 'lease lost: % no longer holds all of %', writer,
      resources USING ERRCODE = 'FL001';
  END IF;
END
$fence$;
)sql"},
};

} // namespace

int latest_migration() {
  return migrations.back().version;
}

std::optional<pg::db_error> use_schema(pg::connection& conn,
                                       const std::string& schema) {
  auto r = conn.exec("SET search_path TO " + conn.quote_identifier(schema)
                     + ", public");
  return r.error;
}

namespace {

constexpr const char* insufficient_privilege = "42501";

/// The newest migration applied to `schema`: 0 when it has none, -1 when
/// it has no `schema_migrations` table (or no such schema).
pg::outcome<int> applied_version(pg::connection& conn,
                                 const std::string& schema) {
  pg::outcome<int> out;
  if (auto e = conn.prepare("flowmatch_has_migrations",
                            "SELECT 1 FROM pg_class c JOIN pg_namespace n "
                            "ON n.oid = c.relnamespace WHERE n.nspname = $1 "
                            "AND c.relname = 'schema_migrations'")) {
    out.error = std::move(e);
    return out;
  }
  auto r = conn.run("flowmatch_has_migrations", {schema});
  conn.exec("DEALLOCATE flowmatch_has_migrations");
  if (r.error) {
    out.error = std::move(r.error);
    return out;
  }
  if (r.value->rows() == 0) {
    out.value = -1;
    return out;
  }
  auto v = conn.exec("SELECT coalesce(max(version), 0) FROM "
                     + conn.quote_identifier(schema) + ".schema_migrations");
  if (v.error)
    out.error = std::move(v.error);
  else
    out.value = static_cast<int>(v.value->as_int64(0, 0));
  return out;
}

/// Lets `role` do what a node does and no more: use the schema, read and
/// write its tables and sequences, run its functions (the fence). No
/// CREATE, ALTER, DROP or TRUNCATE: those stay with the owner.
std::optional<pg::db_error> grant_app_role(pg::connection& conn,
                                           const std::string& schema,
                                           const std::string& role) {
  auto s = conn.quote_identifier(schema);
  auto r = conn.quote_identifier(role);
  for (auto sql :
       {"GRANT USAGE ON SCHEMA " + s + " TO " + r,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s
          + " TO " + r,
        "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA " + s
          + " TO " + r,
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA " + s + " TO " + r})
    if (auto res = conn.exec(sql); res.error)
      return res.error;
  return std::nullopt;
}

} // namespace

pg::outcome<int> migrate(pg::connection& conn, const std::string& schema,
                         const std::string& app_role) {
  pg::outcome<int> out;
  // Up to date: nothing here needs more than reading, so a node that runs
  // as a role without the owner's rights starts (the owner migrated it).
  auto before = applied_version(conn, schema);
  if (before.error) {
    out.error = std::move(before.error);
    return out;
  }
  if (*before.value >= latest_migration() && app_role.empty()) {
    out.error = use_schema(conn, schema);
    if (!out.error)
      out.value = 0;
    return out;
  }
  auto fail = [&](pg::db_error e) {
    // Release the lock on every path (a no-op when not held).
    conn.exec("SELECT pg_advisory_unlock_all()");
    if (e.sqlstate == insufficient_privilege)
      e.message = fmt::format(
        "this role may not migrate schema {} (it is at migration {}, this "
        "build needs {}): run `actor-system --migrate` with the owner's "
        "conninfo, or set postgis.owner-dsn ({})",
        schema, std::max(*before.value, 0), latest_migration(), e.message);
    out.error = std::move(e);
    return out;
  };
  // One lock for every node migrating this database: a constant key.
  constexpr const char* lock_key = "7274310524";
  if (auto r = conn.exec(std::string{"SELECT pg_advisory_lock("} + lock_key
                         + ")");
      r.error)
    return fail(*r.error);
  auto q = conn.quote_identifier(schema);
  // "already exists, skipping" is no news to an operator.
  for (const char* sql :
       {"SET client_min_messages TO warning",
        "CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public"}) {
    if (auto r = conn.exec(sql); r.error)
      return fail(*r.error);
  }
  if (auto r = conn.exec("CREATE SCHEMA IF NOT EXISTS " + q); r.error)
    return fail(*r.error);
  if (auto e = use_schema(conn, schema))
    return fail(*e);
  if (auto r = conn.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version int PRIMARY KEY, name text NOT NULL, "
                         "applied_at timestamptz NOT NULL DEFAULT now())");
      r.error)
    return fail(*r.error);
  auto applied = conn.exec("SELECT coalesce(max(version), 0) FROM "
                           "schema_migrations");
  if (applied.error)
    return fail(*applied.error);
  int current = static_cast<int>(applied.value->as_int64(0, 0));
  int count = 0;
  for (const auto& m : migrations) {
    if (m.version <= current)
      continue;
    pg::transaction tx{conn};
    if (tx.begin_error())
      return fail(*tx.begin_error());
    auto r = conn.exec(m.sql);
    if (!r.error) {
      if (auto e = conn.prepare("record_migration",
                                "INSERT INTO schema_migrations (version, "
                                "name) VALUES ($1, $2)"))
        r.error = e;
      else
        r = conn.run("record_migration",
                     {std::to_string(m.version), std::string{m.name}});
    }
    if (r.error) {
      tx.rollback(); // before the unlock, which an aborted transaction refuses
      return fail(*r.error);
    }
    if (auto e = tx.commit())
      return fail(*e);
    conn.exec("DEALLOCATE record_migration");
    log()->info("migrations applied version {} ({}) in schema {}", m.version,
                m.name, schema);
    ++count;
  }
  if (!app_role.empty()) {
    if (auto e = grant_app_role(conn, schema, app_role))
      return fail(*e);
    log()->info("migrations granted role {} the use of schema {} (read "
                "and write its tables; no schema changes)",
                app_role, schema);
  }
  conn.exec(std::string{"SELECT pg_advisory_unlock("} + lock_key + ")");
  out.value = count;
  return out;
}

} // namespace flowmatch
