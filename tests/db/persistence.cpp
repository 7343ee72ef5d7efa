// The real executable against the real server: the tables match the
// registry, a re-feed changes nothing, a restarted node continues where it
// left off, and no fault loses an event or applies one twice: a killed
// backend, a server restart, a database unreachable at start, a refused
// change, and kill -9 of the node itself.

#include "db_helpers.hpp"

#include "../system/process.hpp"
#include "messages/decoder.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <random>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

const std::string data_dir = FLOWMATCH_TEST_DATA;
const std::string pg_tool = std::string{FLOWMATCH_SOURCE_DIR} + "/tools/pg.sh";

std::vector<std::string> db_args(const std::string& schema,
                                 const std::string& input) {
  return {"--ingest.ndjson=" + input, "--postgis.dsn=" + test_dsn(),
          "--postgis.schema=" + schema, "--postgis.retry-initial=50ms",
          "--postgis.retry-max=500ms"};
}

/// A deterministic event log: sites with heat and water flows, then
/// updates, moves, deletes, duplicates and flows ahead of their site.
std::string synthetic_log(int sites, const std::string& name) {
  auto path = scratch(name);
  std::ofstream out{path};
  std::mt19937 rng{7};
  std::uniform_real_distribution<double> u{0, 1};
  int id = 0;
  auto ev = [&](const std::string& type, const std::string& data) {
    auto line = R"({"id":"e)" + std::to_string(++id) + R"(","type":")" + type
                + R"(","data":)" + data + "}\n";
    out << line;
    if (u(rng) < 0.01)
      out << line; // a duplicate, right away
  };
  auto site = [](int i, double dlat, int version) {
    return R"({"site_id":"s)" + std::to_string(i) + R"(","lat":)"
           + std::to_string(40 + (i % 100) * 0.1 + dlat) + R"(,"lon":)"
           + std::to_string(5 + (i / 100) * 0.1) + R"(,"version":)"
           + std::to_string(version) + "}";
  };
  auto heat = [](int i, double q) {
    return R"({"flow_id":"h)" + std::to_string(i) + R"(","site_id":"s)"
           + std::to_string(i)
           + R"(","direction":"supply","resource":"heat","quantity":)"
           + std::to_string(q) + R"(,"unit":"GWh/yr","temperature_c":120})";
  };
  auto water = [](int i) {
    return R"({"flow_id":"w)" + std::to_string(i) + R"(","site_id":"s)"
           + std::to_string(i)
           + R"(","direction":"demand","resource":"water","quantity":12,"unit":"m3/h","operating_hours":4000})";
  };
  for (int i = 0; i < sites; ++i) {
    bool early = u(rng) < 0.01;
    if (early)
      ev("resource_flow_created", heat(i, 10 + i % 7));
    ev("site_created", site(i, 0, 1));
    if (!early)
      ev("resource_flow_created", heat(i, 10 + i % 7));
    ev("resource_flow_created", water(i));
  }
  for (int i = 0; i < sites; ++i) {
    if (u(rng) < 0.2)
      ev("resource_flow_updated", heat(i, 20 + i % 5));
    if (u(rng) < 0.05)
      ev("site_updated", site(i, 0.01, 2));
    if (u(rng) < 0.05)
      ev("resource_flow_deleted", R"({"flow_id":"w)" + std::to_string(i)
                                    + R"("})");
    if (u(rng) < 0.02)
      ev("site_deleted", R"({"site_id":"s)" + std::to_string(i) + R"("})");
  }
  return path;
}

/// Waits (on the database, not the clock) until `sql` yields at least `n`.
void wait_until(const std::string& schema, const std::string& sql,
                int64_t n) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  for (;;) {
    auto c = pg::connection::open(test_dsn(), "flowmatch-test-wait");
    if (c.value && !use_schema(*c.value, schema)) {
      auto r = c.value->exec(sql);
      if (r.value && r.value->as_int64(0, 0) >= n)
        return;
    }
    if (std::chrono::steady_clock::now() > deadline)
      FAIL("timed out waiting for " << sql << " >= " << n);
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
}

/// A flow as the store keeps it: the contract's defaults made explicit.
resource_flow stored_form(resource_flow f) {
  if (!f.operating_hours)
    f.operating_hours = 8760.0;
  if (f.resource == resource_class::heat && !f.medium)
    f.medium = std::string{"hot_water"};
  if (f.direction == flow_direction::supply && !f.hazardous)
    f.hazardous = false;
  if (f.direction == flow_direction::demand && !f.accepts_hazardous)
    f.accepts_hazardous = false;
  return f;
}

/// A memory-mode state file, in the store's form, as snapshot lines.
std::vector<std::string> state_file_in_stored_form(const std::string& path) {
  event_decoder dec;
  std::vector<std::string> lines;
  for (auto& line : read_lines(path)) {
    auto r = dec.decode(line, event_origin{"state", 0});
    REQUIRE(std::holds_alternative<event>(r));
    auto& ev = std::get<event>(r);
    if (ev.type == event_type::site_created)
      lines.push_back(site_snapshot_line(ev.site_data));
    else
      lines.push_back(flow_snapshot_line(stored_form(ev.flow_data)));
  }
  return lines;
}

/// A clean run of `input` into a fresh schema; returns its tables.
std::vector<std::string> clean_tables(const std::string& input,
                                      const std::string& tag) {
  auto schema = fresh_schema(tag);
  std::string out, err;
  int code = run(db_args(schema, input), &out, &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  auto lines = table_lines(schema);
  drop_schema(schema);
  return lines;
}

} // namespace

TEST_CASE("database mode writes the registry's state and a re-feed changes nothing") {
  auto schema = fresh_schema("dbmode");
  auto input = data_dir + "/edge_cases.ndjson";
  auto memory_state = scratch("memory-state.ndjson");
  REQUIRE(run({"--ingest.ndjson=" + input, "--output.state=" + memory_state})
          == 0);
  auto db_state = scratch("db-state.ndjson");
  std::string out, err;
  auto args = db_args(schema, input);
  args.push_back("--output.state=" + db_state);
  REQUIRE(run(args, &out, &err) == 0);
  INFO("stderr:\n" << err);
  // The registry behaves the same with a database...
  CHECK(read_lines(db_state) == read_lines(memory_state));
  // ...and the tables hold exactly its state.
  auto tables = table_lines(schema);
  CHECK(tables == state_file_in_stored_form(memory_state));
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters") == 5);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE reason = "
                          "'orphan_flow' AND event_id = 'e07'")
        == 1);
  // Fed again: every event is a duplicate, the tables stay as they are.
  REQUIRE(run(db_args(schema, input), &out, &err) == 0);
  CHECK_THAT(out, Catch::Contains("applied                 0"));
  // 16 duplicates; the 17th event is the orphan, held and dead-lettered
  // again (it never took effect, so it was never recorded).
  CHECK_THAT(out, Catch::Contains("duplicates skipped      16"));
  CHECK_THAT(out, Catch::Contains("orphan_flow           1"));
  CHECK(table_lines(schema) == tables);
  CHECK_THAT(err, Catch::Contains("restored 3 sites, 2 flows"));
  std::remove(memory_state.c_str());
  std::remove(db_state.c_str());
  drop_schema(schema);
}

TEST_CASE("kill -9 during a large batch, then a re-run, equals a clean run") {
  auto input = synthetic_log(20000, "kill9.ndjson");
  auto expected = clean_tables(input, "kill9clean");
  auto schema = fresh_schema("kill9");
  auto c = child_process::start(db_args(schema, input));
  // Some transactions committed, more in flight.
  wait_until(schema, "SELECT count(*) FROM processed_events", 2000);
  REQUIRE(::kill(c.pid, SIGKILL) == 0);
  CHECK(c.wait() == -SIGKILL);
  auto partial = query_int(schema, "SELECT count(*) FROM sites");
  INFO("sites after the kill: " << partial);
  std::string out, err;
  REQUIRE(run(db_args(schema, input), &out, &err) == 0);
  CHECK(table_lines(schema) == expected);
  std::remove(input.c_str());
  drop_schema(schema);
}

TEST_CASE("killed database connections mid-batch lose nothing") {
  auto input = synthetic_log(20000, "terminate.ndjson");
  auto expected = clean_tables(input, "termclean");
  auto schema = fresh_schema("terminate");
  auto c = child_process::start(db_args(schema, input));
  wait_until(schema, "SELECT count(*) FROM processed_events", 1000);
  auto killer = connect_or_fail();
  int64_t killed = 0;
  for (int round = 0; round < 3; ++round) {
    auto r = killer.exec("SELECT count(pg_terminate_backend(pid)) FROM "
                         "pg_stat_activity WHERE application_name LIKE "
                         "'flowmatch-sync-%'");
    REQUIRE(r.value);
    killed += r.value->as_int64(0, 0);
    wait_until(schema, "SELECT count(*) FROM processed_events",
               2000 + 4000 * round);
  }
  int code = c.wait();
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 0);
  CHECK(killed > 0);
  CHECK_THAT(c.stderr_text, Catch::Contains("lost the database"));
  CHECK(table_lines(schema) == expected);
  std::remove(input.c_str());
  std::remove(c.stdout_path.c_str());
  drop_schema(schema);
}

TEST_CASE("a server restart during ingest loses nothing") {
  auto input = synthetic_log(20000, "restart.ndjson");
  auto expected = clean_tables(input, "restartclean");
  auto schema = fresh_schema("restart");
  auto c = child_process::start(db_args(schema, input));
  wait_until(schema, "SELECT count(*) FROM processed_events", 2000);
  REQUIRE(std::system((pg_tool + " restart >/dev/null").c_str()) == 0);
  int code = c.wait();
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 0);
  CHECK(table_lines(schema) == expected);
  std::remove(input.c_str());
  std::remove(c.stdout_path.c_str());
  drop_schema(schema);
}

TEST_CASE("a database unreachable at start is waited for") {
  auto schema = fresh_schema("unreachable");
  auto input = data_dir + "/edge_cases.ndjson";
  REQUIRE(std::system((pg_tool + " stop >/dev/null").c_str()) == 0);
  auto c = child_process::start(db_args(schema, input));
  bool logged = c.wait_for_log("database unreachable at start");
  // Bring the server back whatever happened, for the other tests.
  REQUIRE(std::system((pg_tool + " start >/dev/null").c_str()) == 0);
  REQUIRE(logged);
  int code = c.wait();
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 0);
  CHECK(table_lines(schema).size() == 5);
  std::remove(c.stdout_path.c_str());
  drop_schema(schema);
}

TEST_CASE("a change the database refuses is dead-lettered with its SQLSTATE") {
  auto schema = fresh_schema("refused");
  {
    auto c = connect_or_fail();
    REQUIRE(migrate(c, schema).value);
  }
  exec_sql(schema, R"(
    CREATE FUNCTION refuse_d() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.site_id = 'D' THEN
        RAISE EXCEPTION 'site D is embargoed' USING ERRCODE = 'P0001';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_d BEFORE INSERT OR UPDATE ON sites
      FOR EACH ROW EXECUTE FUNCTION refuse_d();)");
  std::string out, err;
  int code = run(db_args(schema, data_dir + "/edge_cases.ndjson"), &out, &err);
  INFO("stderr:\n" << err);
  CHECK(code == 0);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE reason = "
                          "'permanent_db_error' AND detail LIKE "
                          "'SQLSTATE P0001: site D is embargoed%'")
        >= 1);
  CHECK(query_int(schema, "SELECT count(*) FROM sites WHERE site_id = 'D'")
        == 0);
  // Everything else committed.
  CHECK(query_int(schema, "SELECT count(*) FROM sites WHERE site_id IN "
                          "('A','B')")
        == 2);
  CHECK(query_int(schema, "SELECT count(*) FROM resource_flows") == 2);
  CHECK_THAT(out, Catch::Contains("permanent_db_error"));
  drop_schema(schema);
}
