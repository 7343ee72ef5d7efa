#pragma once

// Helpers of the `db` tests: the local cluster's DSN, a fresh schema per
// test, and reading tables back as comparable lines.

#include "messages/encoder.hpp"
#include "storage/migrations.hpp"
#include "storage/pg.hpp"
#include "storage/store.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

namespace flowmatch::test {

/// tools/test.sh starts the local cluster and exports its DSN.
inline std::string test_dsn() {
  if (const char* dsn = std::getenv("FLOWMATCH_TEST_DSN"))
    return dsn;
  return "host=127.0.0.1 port=54329 dbname=flowmatch user=flowmatch";
}

inline pg::connection connect_or_fail() {
  auto c = pg::connection::open(test_dsn(), "flowmatch-test");
  if (c.error)
    FAIL("cannot reach the test database (start it with tools/pg.sh "
         "start): "
         << c.error->describe());
  return std::move(*c.value);
}

/// A schema name unique to this test process and tag, dropped first.
inline std::string fresh_schema(const std::string& tag) {
  auto name = "t_" + tag + "_" + std::to_string(::getpid());
  auto c = connect_or_fail();
  auto r = c.exec("DROP SCHEMA IF EXISTS " + c.quote_identifier(name)
                  + " CASCADE");
  REQUIRE_FALSE(r.error);
  return name;
}

inline void drop_schema(const std::string& name) {
  auto c = connect_or_fail();
  c.exec("DROP SCHEMA IF EXISTS " + c.quote_identifier(name) + " CASCADE");
}

/// Sites then flows of a schema as snapshot lines (sorted by id).
inline std::vector<std::string> table_lines(const std::string& schema) {
  auto c = connect_or_fail();
  REQUIRE_FALSE(use_schema(c, schema));
  auto st = store::load(c);
  if (st.error)
    FAIL("load failed: " << st.error->describe());
  std::vector<std::string> lines;
  for (auto& s : st.value->snapshot.sites)
    lines.push_back(site_snapshot_line(s));
  for (auto& f : st.value->snapshot.flows)
    lines.push_back(flow_snapshot_line(f));
  return lines;
}

/// One integer from a query.
inline int64_t query_int(const std::string& schema, const std::string& sql) {
  auto c = connect_or_fail();
  REQUIRE_FALSE(use_schema(c, schema));
  auto r = c.exec(sql);
  if (r.error)
    FAIL(sql << ": " << r.error->describe());
  return r.value->as_int64(0, 0);
}

inline void exec_sql(const std::string& schema, const std::string& sql) {
  auto c = connect_or_fail();
  REQUIRE_FALSE(use_schema(c, schema));
  auto r = c.exec(sql);
  if (r.error)
    FAIL(sql << ": " << r.error->describe());
}

} // namespace flowmatch::test
