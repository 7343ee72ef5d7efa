#include "system/match_check.hpp"

#include "core/match_index.hpp"
#include "base/logging.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <map>

namespace flowmatch {

namespace {

/// Relative 1e-6 for numbers, 1 m for distances (the convergence rule).
std::string differences(const match& want, const match& got) {
  std::string out;
  auto num = [&](const char* name, double a, double b, double tol) {
    if (std::fabs(a - b) > tol)
      out += fmt::format(" {} stored {} expected {};", name, b, a);
  };
  num("distance_m", want.distance_m, got.distance_m, 1.0);
  auto rel = [](double v) { return 1e-6 * std::max(1.0, std::fabs(v)); };
  num("exchange_qty", want.exchange_qty, got.exchange_qty, rel(want.exchange_qty));
  num("score", want.score, got.score, rel(want.score));
  num("s_size", want.s_size, got.s_size, rel(want.s_size));
  num("s_dist", want.s_dist, got.s_dist, rel(want.s_dist));
  num("s_econ", want.s_econ, got.s_econ, rel(want.s_econ));
  num("f_quality", want.f_quality, got.f_quality, rel(want.f_quality));
  num("f_taxonomy", want.f_taxonomy, got.f_taxonomy, rel(want.f_taxonomy));
  if (want.flags != got.flags)
    out += " flags differ;";
  if (want.supply_site_id != got.supply_site_id
      || want.demand_site_id != got.demand_site_id)
    out += " site ids differ;";
  return out;
}

} // namespace

int check_matches(const settings& cfg) {
  if (cfg.postgis.dsn.empty()) {
    std::fprintf(stderr, "actor-system: --match.check needs postgis.dsn\n");
    return exit_config;
  }
  auto conn = pg::connection::open(cfg.postgis.dsn, "flowmatch-check");
  std::optional<pg::db_error> err = conn.error;
  if (!err)
    err = use_schema(*conn.value, cfg.postgis.schema);
  pg::outcome<store::stored_state> st;
  if (!err) {
    st = store::load(*conn.value);
    err = st.error;
  }
  if (err) {
    std::fprintf(stderr, "actor-system: cannot read the database: %s\n",
                 err->describe().c_str());
    return exit_failure;
  }
  match_index idx{cfg.match};
  std::vector<match_change> ignored;
  for (auto& s : st.value->snapshot.sites) {
    change c;
    c.kind = change::site_upserted;
    c.site_data = s;
    idx.apply(c, ignored);
  }
  for (auto& f : st.value->snapshot.flows) {
    change c;
    c.kind = change::flow_upserted;
    c.flow_data = f;
    idx.apply(c, ignored);
  }
  std::map<std::pair<std::string, std::string>, match> want;
  for (auto& m : idx.matches())
    want.emplace(std::make_pair(m.supply_flow_id, m.demand_flow_id), m);
  size_t missing = 0, extra = 0, wrong = 0, shown = 0;
  auto show = [&](const std::string& line) {
    if (shown++ < 50)
      std::printf("  %s\n", line.c_str());
  };
  for (auto& got : st.value->matches) {
    auto key = std::make_pair(got.supply_flow_id, got.demand_flow_id);
    auto i = want.find(key);
    if (i == want.end()) {
      ++extra;
      show(fmt::format("extra   {} -> {}: stored, but the rules give no "
                       "match",
                       key.first, key.second));
      continue;
    }
    auto diff = differences(i->second, got);
    if (!diff.empty()) {
      ++wrong;
      show(fmt::format("differs {} -> {}:{}", key.first, key.second, diff));
    }
    want.erase(i);
  }
  for (auto& [key, m] : want) {
    ++missing;
    show(fmt::format("missing {} -> {}: the rules give score {}", key.first,
                     key.second, m.score));
  }
  if (shown > 50)
    std::printf("  ... and %zu more\n", shown - 50);
  std::printf("match check of schema %s: %zu sites, %zu flows, %zu stored "
              "matches, %zu expected\n",
              cfg.postgis.schema.c_str(), st.value->snapshot.sites.size(),
              st.value->snapshot.flows.size(), st.value->matches.size(),
              idx.match_count());
  std::printf("  missing %zu, extra %zu, differing %zu: %s\n", missing, extra,
              wrong,
              missing + extra + wrong == 0 ? "consistent" : "INCONSISTENT");
  return missing + extra + wrong == 0 ? 0 : 1;
}

} // namespace flowmatch
