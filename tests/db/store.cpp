// The libpq layer, migrations and the store against a real PostgreSQL +
// PostGIS: error classes, idempotent and concurrent migrations, exact
// round trips, the net effect of a batch, isolating a refused change,
// dead-letter counting.

#include "db_helpers.hpp"

#include "../test_helpers.hpp"

#include <thread>

using namespace flowmatch;
using namespace flowmatch::test;

TEST_CASE("errors are classified retryable or permanent") {
  auto c = connect_or_fail();
  auto syntax = c.exec("SELEC 1");
  REQUIRE(syntax.error);
  CHECK(syntax.error->sqlstate == "42601");
  CHECK_FALSE(syntax.error->retryable());
  auto div = c.exec("SELECT 1/0");
  REQUIRE(div.error);
  CHECK(div.error->sqlstate == "22012");
  CHECK_FALSE(div.error->retryable());
  // A backend terminated under us: the connection is lost, retry.
  auto other = connect_or_fail();
  auto pid = std::to_string(c.backend_pid());
  REQUIRE_FALSE(other.exec("SELECT pg_terminate_backend(" + pid + ")").error);
  auto lost = c.exec("SELECT 1");
  REQUIRE(lost.error);
  CHECK(lost.error->retryable());
  CHECK(pg::classify("40001") == pg::error_kind::retryable);
  CHECK(pg::classify("40P01") == pg::error_kind::retryable);
  CHECK(pg::classify("08006") == pg::error_kind::retryable);
  CHECK(pg::classify("57P01") == pg::error_kind::retryable);
  CHECK(pg::classify("23505") == pg::error_kind::permanent);
}

TEST_CASE("a pipeline stops at the first error and reports it") {
  auto c = connect_or_fail();
  pg::connection::pipeline p{c};
  p.add("SELECT 1");
  p.add("SELECT 1/0");
  p.add("SELECT 3");
  auto r = p.sync();
  REQUIRE(r.error);
  CHECK(r.error->sqlstate == "22012");
  // The connection is usable afterwards.
  auto after = c.exec("SELECT 42");
  REQUIRE_FALSE(after.error);
  CHECK(after.value->as_int64(0, 0) == 42);
}

TEST_CASE("migrations are versioned, idempotent and safe to run at once") {
  auto schema = fresh_schema("migrate");
  // Two nodes starting at the same moment.
  int applied[2] = {-1, -1};
  std::thread a([&] {
    auto c = connect_or_fail();
    applied[0] = *migrate(c, schema).value;
  });
  std::thread b([&] {
    auto c = pg::connection::open(test_dsn(), "flowmatch-test-b");
    applied[1] = *migrate(*c.value, schema).value;
  });
  a.join();
  b.join();
  CHECK(applied[0] + applied[1] == latest_migration()); // one did the work
  auto c = connect_or_fail();
  auto again = migrate(c, schema);
  REQUIRE(again.value);
  CHECK(*again.value == 0);
  CHECK(query_int(schema, "SELECT max(version) FROM schema_migrations")
        == latest_migration());
  // The contract's tables and the GiST index exist.
  CHECK(query_int(schema,
                  "SELECT count(*) FROM information_schema.tables WHERE "
                  "table_schema = current_schema() AND table_name IN "
                  "('sites','resource_flows','matches','dead_letters',"
                  "'processed_events')")
        == 5);
  CHECK(query_int(schema, "SELECT count(*) FROM pg_indexes WHERE schemaname = "
                          "current_schema() AND indexname = 'sites_geog_idx' "
                          "AND indexdef LIKE '%gist%'")
        == 1);
  drop_schema(schema);
}

namespace {

change site_change(const std::string& id, double lat, double lon) {
  change c;
  c.kind = change::site_upserted;
  c.event_id = "ev-" + id;
  c.site_data.site_id = id;
  c.site_data.lat = lat;
  c.site_data.lon = lon;
  return c;
}

pg::connection migrated(const std::string& schema) {
  auto c = connect_or_fail();
  auto m = migrate(c, schema);
  REQUIRE(m.value);
  REQUIRE_FALSE(store::prepare(c));
  return c;
}

} // namespace

TEST_CASE("written entities load back exactly") {
  auto schema = fresh_schema("roundtrip");
  auto c = migrated(schema);
  change s = site_change("s1", 48.28194400000001, -0.1);
  s.site_data.name = std::string{"Hütte \"Linz\" {1,2}"};
  s.site_data.country = std::string{"AT"};
  s.site_data.version = int64_t{7};
  change f;
  f.kind = change::flow_upserted;
  f.event_id = "ev-f1";
  auto& fl = f.flow_data;
  fl.flow_id = "f1";
  fl.site_id = "s1";
  fl.direction = flow_direction::demand;
  fl.resource = resource_class::material;
  fl.quantity = 1.0 / 3.0;
  fl.unit = "kt/yr";
  fl.annual_quantity = 1000.0 / 3.0;
  fl.operating_hours = 7000.5;
  fl.accepts_ewc = std::vector<std::string>{"10", "1002", "100101"};
  fl.accepts_hazardous = true;
  fl.max_transport_km = 80;
  fl.version = int64_t{2};
  change_batch b{{s, f}, {"ev-s1", "ev-f1"}, {"s1", "s1"}};
  store::write_set ws;
  ws.add(b);
  ws.collapse();
  REQUIRE_FALSE(store::write(c, ws));
  auto loaded = store::load(c);
  REQUIRE(loaded.value);
  auto& snap = loaded.value->snapshot;
  REQUIRE(snap.sites.size() == 1);
  CHECK(snap.sites[0] == s.site_data);
  REQUIRE(snap.flows.size() == 1);
  CHECK(snap.flows[0] == fl);
  CHECK(loaded.value->event_ids.size() == 2);
  // The geography is the point given, in WGS84.
  CHECK(query_int(schema, "SELECT count(*) FROM sites WHERE "
                          "ST_Y(geog::geometry) = lat AND "
                          "ST_X(geog::geometry) = lon AND "
                          "ST_SRID(geog::geometry) = 4326")
        == 1);
  // Writing the same again changes nothing.
  REQUIRE_FALSE(store::write(c, ws));
  CHECK(query_int(schema, "SELECT count(*) FROM resource_flows") == 1);
  CHECK(query_int(schema, "SELECT count(*) FROM processed_events") == 2);
  drop_schema(schema);
}

TEST_CASE("collapsing again after more changes keeps what the first kept") {
  // A write that failed is tried again later with what came meanwhile:
  // the sync collapses once per attempt. (Before, the second collapse
  // dropped everything the first had kept: rows lost after a restart of
  // the database.)
  change del;
  del.kind = change::site_deleted;
  del.id = "s2";
  store::write_set ws;
  ws.add(change_batch{{site_change("s1", 1, 1), site_change("s2", 2, 2),
                       site_change("s3", 3, 3)},
                      {},
                      {}});
  ws.collapse();
  REQUIRE(ws.site_upserts.size() == 3);
  // Later: s2 deleted, s3 moved, s4 new.
  ws.add(change_batch{{del, site_change("s3", 5, 5), site_change("s4", 4, 4)},
                      {},
                      {}});
  ws.collapse();
  std::vector<std::string> kept;
  for (auto& s : ws.site_upserts)
    kept.push_back(s.site_id + "@" + std::to_string(static_cast<int>(s.lat)));
  std::sort(kept.begin(), kept.end());
  CHECK(kept == std::vector<std::string>{"s1@1", "s3@5", "s4@4"});
  CHECK(ws.site_deletes == std::vector<std::string>{"s2"});
  ws.collapse(); // and a third time, with nothing new: the same
  CHECK(ws.site_upserts.size() == 3);
  CHECK(ws.site_deletes.size() == 1);
}

TEST_CASE("a batch writes its net effect") {
  auto schema = fresh_schema("net");
  auto c = migrated(schema);
  // s1 created, moved, deleted; s2 created, deleted, created again.
  change del1;
  del1.kind = change::site_deleted;
  del1.id = "s1";
  change del2 = del1;
  del2.id = "s2";
  change_batch b{{site_change("s1", 1, 1), site_change("s1", 2, 2), del1,
                  site_change("s2", 3, 3), del2, site_change("s2", 4, 4)},
                 {},
                 {}};
  store::write_set ws;
  ws.add(b);
  ws.collapse();
  CHECK(ws.site_upserts.size() == 1);
  REQUIRE_FALSE(store::write(c, ws));
  auto lines = table_lines(schema);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Catch::Contains("\"site_id\":\"s2\",\"lat\":4"));
  drop_schema(schema);
}

TEST_CASE("a refused change is isolated and the rest commits") {
  auto schema = fresh_schema("refuse");
  auto c = migrated(schema);
  exec_sql(schema, R"(
    CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.site_id = 'bad' THEN
        RAISE EXCEPTION 'site % is refused', NEW.site_id
          USING ERRCODE = 'P0001';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_bad BEFORE INSERT OR UPDATE ON sites
      FOR EACH ROW EXECUTE FUNCTION refuse_bad();)");
  change_batch b{{site_change("a", 1, 1), site_change("bad", 2, 2),
                  site_change("c", 3, 3)},
                 {"ev-a", "ev-bad", "ev-c"},
                 {"a", "bad", "c"}};
  store::write_set ws;
  ws.add(b);
  ws.collapse();
  auto err = store::write(c, ws);
  REQUIRE(err);
  CHECK_FALSE(err->retryable());
  auto r = store::write_isolating(c, {b});
  REQUIRE(r.value);
  REQUIRE(r.value->size() == 1);
  CHECK((*r.value)[0].what.event_id == "ev-bad");
  CHECK((*r.value)[0].error.sqlstate == "P0001");
  CHECK_THAT((*r.value)[0].error.message, Catch::Contains("site bad is refused"));
  CHECK(query_int(schema, "SELECT count(*) FROM sites") == 2);
  CHECK(query_int(schema, "SELECT count(*) FROM processed_events WHERE "
                          "event_id IN ('ev-a','ev-c')")
        == 2);
  CHECK(query_int(schema, "SELECT count(*) FROM processed_events WHERE "
                          "event_id = 'ev-bad'")
        == 0);
  drop_schema(schema);
}

TEST_CASE("the same dead letter again counts an attempt") {
  auto schema = fresh_schema("dead");
  auto c = migrated(schema);
  dead_letter dl;
  dl.event_id = "e1";
  dl.origin = event_origin{"in.ndjson", 3};
  dl.reason = reject_reason::out_of_range;
  dl.detail = "data.lat is 95";
  dl.payload = "{\"id\":\"e1\",\"bad\":\"\xff\"}"; // invalid UTF-8 too
  REQUIRE_FALSE(store::insert_dead_letters(c, {dl}));
  REQUIRE_FALSE(store::insert_dead_letters(c, {dl}));
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters") == 1);
  CHECK(query_int(schema, "SELECT attempts FROM dead_letters") == 2);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE "
                          "last_seen >= first_seen AND reason = "
                          "'out_of_range' AND line = 3")
        == 1);
  drop_schema(schema);
}

TEST_CASE("a transaction not committed rolls back when it goes out of scope") {
  auto schema = fresh_schema("tx");
  auto c = migrated(schema);
  {
    pg::transaction tx{c};
    REQUIRE_FALSE(tx.begin_error());
    REQUIRE_FALSE(c.exec("INSERT INTO sites (site_id, lat, lon, geog) VALUES "
                         "('gone', 1, 1, 'POINT(1 1)')")
                    .error);
    // Leaves the scope without commit: an early return on an error.
  }
  CHECK(query_int(schema, "SELECT count(*) FROM sites") == 0);
  // The connection is usable at once, and a commit keeps the row.
  {
    pg::transaction tx{c};
    REQUIRE_FALSE(c.exec("INSERT INTO sites (site_id, lat, lon, geog) VALUES "
                         "('kept', 1, 1, 'POINT(1 1)')")
                    .error);
    CHECK_FALSE(tx.commit());
  }
  CHECK(query_int(schema, "SELECT count(*) FROM sites") == 1);
  // A statement failing inside aborts the transaction; the scope's end
  // rolls it back and the next transaction works.
  {
    pg::transaction tx{c};
    CHECK(c.exec("SELECT no_such_column FROM sites").error);
    CHECK(tx.commit()); // refused: the transaction is aborted
  }
  CHECK_FALSE(c.exec("SELECT 1").error);
  drop_schema(schema);
}
