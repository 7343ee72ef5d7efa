// What an adversarial test broke with a database, each kept as a test:
// unrecoverable connection errors fail fast, one writer per schema, NUL
// strings never stall the node, a later success resolves a dead letter,
// the dedup window's retention reaches processed_events, a slow drain ends
// with the deadline's exit code.

#include "db_helpers.hpp"

#include "../system/process.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <sstream>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

const std::string pg_tool = std::string{FLOWMATCH_SOURCE_DIR} + "/tools/pg.sh";

std::vector<std::string> db_args(const std::string& schema,
                                 const std::string& input,
                                 const std::string& dsn = test_dsn()) {
  return {"--ingest.ndjson=" + input, "--postgis.dsn=" + dsn,
          "--postgis.schema=" + schema, "--postgis.retry-initial=50ms",
          "--postgis.retry-max=200ms"};
}

std::string write_input(const std::string& name, const std::string& text) {
  auto path = scratch(name);
  std::ofstream{path} << text;
  return path;
}

/// The number a summary row ends with ("  duplicates skipped      3"), or
/// -1 when the row is missing.
int64_t summary_count(const std::string& summary, const std::string& label) {
  std::istringstream in{summary};
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find(label);
    if (at == std::string::npos || line.compare(0, 2, "  ") != 0)
      continue;
    auto rest = line.substr(at + label.size());
    auto digits = rest.find_first_of("0123456789");
    if (digits == std::string::npos)
      continue;
    return std::stoll(rest.substr(digits));
  }
  return -1;
}

const std::string one_site
  = R"({"id":"e1","type":"site_created","data":{"site_id":"s1","lat":1,"lon":1}})"
    "\n";

} // namespace

TEST_CASE("database errors that retrying cannot fix stop the start with "
          "exit 2") {
  auto input = write_input("one.ndjson", one_site);
  auto schema = fresh_schema("failfast");
  struct bad_dsn {
    std::string dsn;
    std::string mention;
  };
  for (auto& bad : std::vector<bad_dsn>{
         {test_dsn() + " dbname=no_such_database_xyz", "does not exist"},
         {test_dsn() + " user=no_such_role_xyz", "does not exist"},
         {"hots=127.0.0.1 port=54329", "invalid conninfo"},
       }) {
    std::string out, err;
    auto started = std::chrono::steady_clock::now();
    int code = run(db_args(schema, input, bad.dsn), &out, &err);
    auto took = std::chrono::steady_clock::now() - started;
    INFO("dsn: " << bad.dsn << "\nstderr:\n" << err);
    CHECK(code == 2);
    CHECK_THAT(err, Catch::Contains(bad.mention));
    CHECK_THAT(err, !Catch::Contains("retrying"));
    CHECK(took < std::chrono::seconds{20});
  }
  std::remove(input.c_str());
  drop_schema(schema);
}

TEST_CASE("a second node on a schema that a running node owns refuses to "
          "start") {
  auto schema = fresh_schema("owner");
  auto first = child_process::start(
    {"--ingest.ndjson=-", "--postgis.dsn=" + test_dsn(),
     "--postgis.schema=" + schema, "--ingest.poll-interval=10ms"},
    true);
  REQUIRE(first.wait_for_log("reading stdin"));
  auto input = write_input("second.ndjson", one_site);
  std::string out, err;
  int code = run(db_args(schema, input), &out, &err);
  INFO("second node's stderr:\n" << err);
  CHECK(code == 2);
  CHECK_THAT(err, Catch::Contains("schema " + schema + " is owned by"));
  // The first node is unaffected and finishes cleanly; then the schema is
  // free again.
  first.write_input(one_site);
  first.close_input();
  CHECK(first.wait() == 0);
  CHECK(run(db_args(schema, input), &out, &err) == 0);
  std::remove(first.stdout_path.c_str());
  std::remove(input.c_str());
  drop_schema(schema);
}

TEST_CASE("NUL in an event id or a name is dead-lettered and the node neither "
          "stalls nor splits memory from the tables") {
  auto schema = fresh_schema("nul");
  auto input = write_input(
    "nul.ndjson",
    R"({"id":"bad\u0000id","type":"site_created","data":{"site_id":"s1","lat":1,"lon":1}})"
    "\n"
    R"({"id":"e2","type":"site_created","data":{"site_id":"s\u00002","lat":1,"lon":1}})"
    "\n"
    R"({"id":"e3","type":"site_created","data":{"site_id":"s3","name":"A\u0000B","lat":1,"lon":1}})"
    "\n" R"({"id":"e4","type":"site_created","data":{"site_id":"s4","lat":1,"lon":1}})"
    "\n");
  auto state = scratch("nul-state.ndjson");
  std::string out, err;
  auto args = db_args(schema, input);
  args.push_back("--output.state=" + state);
  args.push_back("--shutdown.grace-period=20s");
  int code = run(args, &out, &err);
  INFO("stderr:\n" << err << "\nstdout:\n" << out);
  CHECK(code == 0);
  CHECK(summary_count(out, "invalid_value") == 3);
  CHECK(query_int(schema, "SELECT count(*) FROM sites") == 1);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE reason = "
                          "'invalid_value' AND detail LIKE '%U+0000%'")
        == 3);
  // Memory (the state file) and the table agree.
  CHECK(read_lines(state).size() == 1);
  // A re-run is a no-op, not a stall.
  CHECK(run(args, &out, &err) == 0);
  std::remove(input.c_str());
  std::remove(state.c_str());
  drop_schema(schema);
}

TEST_CASE("a dead letter is resolved when its event id applies later") {
  auto schema = fresh_schema("resolved");
  // A flow whose site never comes: orphaned at the end of input.
  auto first = write_input(
    "orphan.ndjson",
    R"({"id":"f1","type":"resource_flow_created","data":{"flow_id":"w1","site_id":"late","direction":"demand","resource":"water","quantity":1,"unit":"m3/h"}})"
    "\n");
  std::string out, err;
  REQUIRE(run(db_args(schema, first), &out, &err) == 0);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE event_id "
                          "= 'f1' AND reason = 'orphan_flow' AND resolved_at "
                          "IS NULL")
        == 1);
  // The producer sends the site, then the same event again: it applies
  // (a dead-lettered id is not "seen"), and its letter is resolved.
  auto second = write_input(
    "resend.ndjson",
    R"({"id":"s1","type":"site_created","data":{"site_id":"late","lat":1,"lon":1}})"
    "\n"
    R"({"id":"f1","type":"resource_flow_created","data":{"flow_id":"w1","site_id":"late","direction":"demand","resource":"water","quantity":1,"unit":"m3/h"}})"
    "\n");
  int code = run(db_args(schema, second), &out, &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  CHECK(query_int(schema, "SELECT count(*) FROM resource_flows") == 1);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE event_id "
                          "= 'f1' AND resolved_at IS NOT NULL")
        == 1);
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE "
                          "resolved_at IS NULL")
        == 0);
  std::remove(first.c_str());
  std::remove(second.c_str());
  drop_schema(schema);
}

TEST_CASE("processed event ids older than the retention are pruned and may "
          "apply again") {
  auto schema = fresh_schema("retention");
  auto input = write_input("retention.ndjson", one_site);
  std::string out, err;
  REQUIRE(run(db_args(schema, input), &out, &err) == 0);
  REQUIRE(query_int(schema, "SELECT count(*) FROM processed_events") == 1);
  // Within the retention a re-feed is a duplicate...
  REQUIRE(run(db_args(schema, input), &out, &err) == 0);
  CHECK(summary_count(out, "duplicates skipped") == 1);
  // ...and once the id is older than it, the row is pruned at start and
  // the event applies again.
  exec_sql(schema, "UPDATE processed_events SET processed_at = now() - "
                   "interval '2 hours'");
  auto args = db_args(schema, input);
  args.push_back("--registry.dedup-retention=1h");
  int code = run(args, &out, &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  CHECK(summary_count(out, "duplicates skipped") == 0);
  CHECK(query_int(schema, "SELECT count(*) FROM processed_events WHERE "
                          "processed_at > now() - interval '1 hour'")
        == 1);
  std::remove(input.c_str());
  drop_schema(schema);
}

TEST_CASE("a drain that cannot finish ends with the deadline's exit code 3") {
  auto schema = fresh_schema("deadline");
  auto c = child_process::start(
    {"--ingest.ndjson=-", "--postgis.dsn=" + test_dsn(),
     "--postgis.schema=" + schema, "--ingest.poll-interval=10ms",
     "--postgis.retry-initial=50ms", "--postgis.retry-max=200ms",
     "--shutdown.grace-period=2s"},
    true);
  REQUIRE(c.wait_for_log("reading stdin"));
  // The database goes away; the events cannot commit, so the drain after
  // the end of input cannot finish.
  REQUIRE(std::system((pg_tool + " stop >/dev/null").c_str()) == 0);
  c.write_input(one_site);
  c.close_input();
  int code = c.wait();
  REQUIRE(std::system((pg_tool + " start >/dev/null").c_str()) == 0);
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 3);
  CHECK_THAT(c.stderr_text, Catch::Contains("grace period of 2000 ms is over"));
  std::remove(c.stdout_path.c_str());
  drop_schema(schema);
}

TEST_CASE("a change the database refuses leaves memory equal to the "
          "tables") {
  auto schema = fresh_schema("refusedmem");
  {
    auto c = connect_or_fail();
    REQUIRE(migrate(c, schema).value);
  }
  // An operator's rule the events do not know about.
  exec_sql(schema, R"(
    CREATE FUNCTION refuse_name() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.name = 'refuse me' THEN
        RAISE EXCEPTION 'name refused' USING ERRCODE = 'P0001';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_name BEFORE INSERT OR UPDATE ON sites
      FOR EACH ROW EXECUTE FUNCTION refuse_name();)");
  auto site = [](const std::string& id, const std::string& sid, int v,
                 const std::string& name) {
    return R"({"id":")" + id + R"(","type":"site_updated","data":{"site_id":")"
           + sid + R"(","name":")" + name + R"(","lat":1,"lon":1,"version":)"
           + std::to_string(v) + "}}\n";
  };
  auto input = write_input(
    "refusedmem.ndjson",
    site("e1", "A", 1, "ok") + site("e2", "A", 2, "refuse me")
      + site("e3", "B", 1, "refuse me")
      + R"({"id":"e4","type":"resource_flow_created","data":{"flow_id":"w1","site_id":"B","direction":"demand","resource":"water","quantity":1,"unit":"m3/h"}})"
        "\n"
      + site("e5", "C", 1, "ok") + site("e6", "C", 2, "refuse me")
      + site("e7", "C", 3, "fine"));
  auto state = scratch("refusedmem-state.ndjson");
  auto args = db_args(schema, input);
  args.push_back("--output.state=" + state);
  std::string out, err;
  int code = run(args, &out, &err);
  INFO("stderr:\n" << err << "\nstdout:\n" << out);
  REQUIRE(code == 0);
  // A is back at version 1 (its update was refused), B and its flow are
  // gone (refused, and the flow for want of B's row), C is at version 3
  // (its refused version 2 was overtaken): in memory as in the table.
  auto tables = table_lines(schema);
  auto memory = read_lines(state);
  CHECK(memory == tables);
  REQUIRE(tables.size() == 2);
  CHECK_THAT(tables[0], Catch::Contains("\"site_id\":\"A\"")
                          && Catch::Contains("\"version\":1"));
  CHECK_THAT(tables[1], Catch::Contains("\"site_id\":\"C\"")
                          && Catch::Contains("\"version\":3"));
  // e2, e3, e6 by the rule, e4 for want of B's row.
  CHECK(query_int(schema, "SELECT count(*) FROM dead_letters WHERE reason = "
                          "'permanent_db_error'")
        == 4);
  std::remove(input.c_str());
  std::remove(state.c_str());
  drop_schema(schema);
}
