// Matches in the database: the `matches` table after a real-data run
// equals, pair for pair and within 1e-6, what an independent SQL version of
// the rules computes with PostGIS over the same tables; and after kill -9
// and a re-run it still does.

#include "db_helpers.hpp"

#include "../system/process.hpp"
#include "../system/site_moves.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <csignal>
#include <map>
#include <thread>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

const std::string data_dir = FLOWMATCH_TEST_DATA;

std::vector<std::string> db_args(const std::string& schema,
                                 const std::string& input) {
  return {"--ingest.ndjson=" + input, "--postgis.dsn=" + test_dsn(),
          "--postgis.schema=" + schema};
}

// The match model v1 in SQL, written from docs/contracts/matching.md
// without the C++ code: distances by PostGIS on the spheroid.
const char* rules_sql = R"sql(
WITH f AS (
  SELECT rf.*, s.geog FROM resource_flows rf JOIN sites s USING (site_id)
), cand AS (
  SELECT s.flow_id AS sf, d.flow_id AS df, s.resource,
         ST_Distance(s.geog, d.geog) AS dist,
         LEAST(CASE s.resource WHEN 'heat' THEN 20000 WHEN 'water' THEN 20000
                               WHEN 'co2' THEN 50000 ELSE 120000 END,
               coalesce(s.max_transport_km * 1000, 'infinity'),
               coalesce(d.max_transport_km * 1000, 'infinity')) AS dmax,
         s.annual_quantity AS sq, d.annual_quantity AS dq,
         LEAST(s.operating_hours, d.operating_hours) AS h,
         CASE WHEN s.resource <> 'heat' THEN 1.0
              WHEN s.temperature_c >= d.temperature_c
                   + CASE WHEN s.medium IN ('flue_gas', 'air') THEN 20 ELSE 10 END
                THEN 1.0
              WHEN s.temperature_c >= 25 THEN 0.5 END AS fq,
         CASE WHEN s.resource <> 'material' THEN 1.0
              ELSE (SELECT max(CASE length(p) WHEN 6 THEN 1.0 WHEN 4 THEN 0.7
                                              WHEN 2 THEN 0.4 END)
                    FROM unnest(d.accepts_ewc) AS p
                    WHERE left(s.ewc, length(p)) = p) END AS ft,
         s.resource = 'material' AND coalesce(s.hazardous, false)
           AND NOT coalesce(d.accepts_hazardous, false) AS refused
  FROM f s JOIN f d
    ON s.resource = d.resource AND s.direction = 'supply'
   AND d.direction = 'demand' AND s.site_id <> d.site_id
   AND ST_DWithin(s.geog, d.geog, 120000)
), ok AS (
  SELECT *, LEAST(sq, dq) AS q FROM cand
  WHERE dist <= dmax AND fq IS NOT NULL AND ft IS NOT NULL AND NOT refused
), parts AS (
  SELECT sf, df, dist, q, fq, ft,
         q / GREATEST(sq, dq) AS s_size,
         CASE WHEN resource = 'material' THEN exp(-dist / 33000)
              ELSE 1 - dist / dmax END AS s_dist,
         CASE WHEN resource <> 'heat' THEN 0.5
              ELSE GREATEST(0, LEAST(1, 1 - (
                (2 * (CASE WHEN q / h <= 0.2 THEN 195 WHEN q / h <= 0.6 THEN 220
                           WHEN q / h <= 1.2 THEN 240 WHEN q / h <= 3.6 THEN 288
                           WHEN q / h <= 9.8 THEN 357 WHEN q / h <= 20 THEN 426
                           WHEN q / h <= 45 THEN 564 WHEN q / h <= 125 THEN 839
                           ELSE 976 END) * dist
                 + 15000 * (q / h)
                 + CASE WHEN q / h < 1 THEN 505000 ELSE 190000 END * (q / h))
                * (0.0510 + 0.02) / q) / 40)) END AS s_econ
  FROM ok
)
SELECT sf, df, dist, q, fq * ft * (0.35 * s_size + 0.25 * s_dist
                                   + 0.40 * s_econ),
       s_size, s_dist, s_econ, fq, ft
FROM parts ORDER BY sf, df
)sql";

struct numbers {
  double v[8];
};

std::map<std::pair<std::string, std::string>, numbers>
query_pairs(const std::string& schema, const std::string& sql) {
  auto c = connect_or_fail();
  REQUIRE_FALSE(use_schema(c, schema));
  auto r = c.exec(sql);
  if (r.error)
    FAIL(r.error->describe());
  std::map<std::pair<std::string, std::string>, numbers> out;
  for (int i = 0; i < r.value->rows(); ++i) {
    numbers n;
    for (int k = 0; k < 8; ++k)
      n.v[k] = r.value->as_double(i, 2 + k);
    out[{std::string{r.value->text(i, 0)}, std::string{r.value->text(i, 1)}}]
      = n;
  }
  return out;
}

const char* stored_sql
  = "SELECT supply_flow_id, demand_flow_id, distance_m, exchange_qty, score, "
    "s_size, s_dist, s_econ, f_quality, f_taxonomy FROM matches ORDER BY 1, 2";

void check_against_sql(const std::string& schema) {
  auto expected = query_pairs(schema, rules_sql);
  auto stored = query_pairs(schema, stored_sql);
  CHECK(expected.size() > 500);
  REQUIRE(stored.size() == expected.size());
  const char* names[] = {"distance_m", "exchange_qty", "score", "s_size",
                         "s_dist",     "s_econ",       "f_quality",
                         "f_taxonomy"};
  size_t differences = 0;
  for (auto& [key, want] : expected) {
    auto i = stored.find(key);
    REQUIRE(i != stored.end());
    for (int k = 0; k < 8; ++k) {
      double a = i->second.v[k], b = want.v[k];
      // 1e-6 relative; distance within 1 m (k == 0).
      double tol = k == 0 ? 1.0 : 1e-6 * std::max(1.0, std::fabs(b));
      if (std::fabs(a - b) > tol) {
        ++differences;
        UNSCOPED_INFO(key.first << " -> " << key.second << " " << names[k]
                                << ": stored " << a << ", SQL " << b);
      }
    }
  }
  CHECK(differences == 0);
}

/// Starts the node, waits for its first committed matches and kills it
/// with SIGKILL mid-run.
void kill_after_first_matches(const std::vector<std::string>& args,
                              const std::string& schema) {
  auto c = child_process::start(args);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  for (;;) {
    auto conn = pg::connection::open(test_dsn(), "flowmatch-test-wait");
    if (conn.value && !use_schema(*conn.value, schema)) {
      auto r = conn.value->exec("SELECT count(*) FROM matches");
      if (r.value && r.value->as_int64(0, 0) > 0)
        break;
    }
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  ::kill(c.pid, SIGKILL);
  c.wait();
}

} // namespace

TEST_CASE("stored matches equal an independent SQL version of the rules") {
  auto schema = fresh_schema("matchsql");
  std::string out, err;
  int code = run(db_args(schema, data_dir + "/hotmaps-sample.ndjson"), &out,
                 &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  check_against_sql(schema);
  // Every class is there, with both flags somewhere.
  CHECK(query_int(schema, "SELECT count(DISTINCT resource) FROM matches")
        == 4);
  CHECK(query_int(schema, "SELECT count(*) FROM matches WHERE "
                          "'heat_pump_required' = ANY(flags)")
        > 0);
  CHECK(query_int(schema, "SELECT count(*) FROM matches WHERE 'hazardous' = "
                          "ANY(flags)")
        > 0);
  drop_schema(schema);
}

TEST_CASE("matches stay right across kill -9 and a re-run") {
  auto schema = fresh_schema("matchkill");
  auto input = data_dir + "/hotmaps-sample.ndjson";
  kill_after_first_matches(db_args(schema, input), schema);
  std::string out, err;
  REQUIRE(run(db_args(schema, input), &out, &err) == 0);
  INFO("stderr:\n" << err);
  check_against_sql(schema);
  // The operators' check agrees...
  std::vector<std::string> check = {"--match.check", "--postgis.dsn=" + test_dsn(),
                                    "--postgis.schema=" + schema};
  CHECK(run(check, &out, &err) == 0);
  CHECK_THAT(out, Catch::Contains("missing 0, extra 0, differing 0: consistent"));
  // ...and sees tampering, which the next start repairs.
  exec_sql(schema, "DELETE FROM matches WHERE resource = 'heat'");
  exec_sql(schema, "UPDATE matches SET score = 0 WHERE resource = 'co2'");
  exec_sql(schema, "INSERT INTO matches (supply_flow_id, demand_flow_id, "
                   "supply_site_id, demand_site_id, resource, distance_m, "
                   "exchange_qty, score, s_size, s_dist, s_econ, f_quality, "
                   "f_taxonomy) VALUES ('ghost-s', 'ghost-d', 'x', 'y', "
                   "'heat', 1, 1, 1, 1, 1, 1, 1, 1)");
  CHECK(run(check, &out, &err) == 1);
  CHECK_THAT(out, Catch::Contains("INCONSISTENT"));
  CHECK_THAT(out, Catch::Contains("extra   ghost-s -> ghost-d"));
  CHECK_THAT(out, Catch::Contains("missing "));
  CHECK_THAT(out, Catch::Contains("differs "));
  REQUIRE(run(db_args(schema, input), &out, &err) == 0);
  check_against_sql(schema);
  CHECK(run(check, &out, &err) == 0);
  drop_schema(schema);
}

TEST_CASE("with many partitions and sites moving across tiles, stored "
          "matches equal the SQL rules, also after kill -9 and a restart "
          "with another partition count") {
  auto schema = fresh_schema("matchparts");
  auto input = scratch("db-moves-input.ndjson");
  REQUIRE(write_with_site_moves(data_dir + "/hotmaps-sample.ndjson", input)
          > 100);
  auto args = [&](int partitions) {
    auto a = db_args(schema, input);
    a.push_back("--match.partitions-per-class=" + std::to_string(partitions));
    return a;
  };
  std::string out, err;
  REQUIRE(run(args(7), &out, &err) == 0);
  INFO("stderr:\n" << err);
  check_against_sql(schema);
  // Killed mid-run with 3 partitions per class...
  drop_schema(schema);
  schema = fresh_schema("matchparts");
  kill_after_first_matches(args(3), schema);
  // ...then tampered with, and restarted with 16: the restore places every
  // stored match at the partition of its supply, which repairs it.
  exec_sql(schema, "UPDATE matches SET score = 0 WHERE resource = 'heat'");
  REQUIRE(run(args(16), &out, &err) == 0);
  check_against_sql(schema);
  std::vector<std::string> check = {"--match.check",
                                    "--postgis.dsn=" + test_dsn(),
                                    "--postgis.schema=" + schema};
  CHECK(run(check, &out, &err) == 0);
  CHECK_THAT(out,
             Catch::Contains("missing 0, extra 0, differing 0: consistent"));
  drop_schema(schema);
  std::remove(input.c_str());
}
