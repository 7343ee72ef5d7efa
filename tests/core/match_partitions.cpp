// Match partitions by class and tile: on random event sequences (sites
// created, moved across tile borders and deleted; flows changing terms,
// side, class and site), the registry's changes split by the placement
// over many partitions give the same match set as one index and as the
// rules from scratch, every pair in exactly one partition. The match
// changes the partitions emit, delivered segment by segment with the
// partitions in any order (as the match sinks may receive them), replay
// to that same set. A restore places stored entities and matches where
// the changes would have put them.

#include "core/match_index.hpp"
#include "core/match_placement.hpp"
#include "core/registry.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

using pair_key = std::pair<std::string, std::string>;

/// Short match distances, so a region of 0.3 degrees holds many tiles.
match_settings short_reach() {
  match_settings s;
  s.d_max_heat_km = 5;
  s.d_max_water_km = 5;
  s.d_max_co2_km = 8;
  s.d_max_material_km = 12;
  return s;
}

struct region {
  const char* name;
  double lat;
  double lon;
};

std::vector<match> sorted(std::vector<match> v) {
  std::sort(v.begin(), v.end(), [](const match& a, const match& b) {
    return std::tie(a.supply_flow_id, a.demand_flow_id)
           < std::tie(b.supply_flow_id, b.demand_flow_id);
  });
  return v;
}

void replay_into(std::map<pair_key, match>& set,
                 const std::vector<match_change>& changes) {
  for (auto& ch : changes) {
    pair_key key{ch.value.supply_flow_id, ch.value.demand_flow_id};
    if (ch.removed)
      set.erase(key);
    else
      set[key] = ch.value;
  }
}

/// A random event over
/// 50 sites and 160 flows in a square of 0.3 degrees at `where`.
event random_event(std::mt19937& rng, const region& where, int step) {
  std::uniform_real_distribution<double> u{0, 1};
  auto pick = [&](int n) { return static_cast<int>(u(rng) * n); };
  auto id = "e" + std::to_string(step);
  double r = u(rng);
  if (r < 0.25) {
    double lat = std::min(89.99, where.lat + u(rng) * 0.3);
    double lon = where.lon + u(rng) * 0.3;
    if (lon > 180)
      lon -= 360;
    return make_site_event(id, "s" + std::to_string(pick(50)), caf::none,
                           lat, lon);
  }
  if (r < 0.85) {
    auto ev = make_flow_event(id, "f" + std::to_string(pick(160)),
                              "s" + std::to_string(pick(50)));
    auto& f = ev.flow_data;
    f.direction = u(rng) < 0.5 ? flow_direction::supply
                               : flow_direction::demand;
    f.resource = static_cast<resource_class>(pick(4));
    f.annual_quantity = f.quantity = 100 + u(rng) * 10000;
    f.unit = f.resource == resource_class::heat    ? "MWh/yr"
             : f.resource == resource_class::water ? "m3/yr"
                                                   : "t/yr";
    f.temperature_c = 20 + u(rng) * 140;
    f.ewc = std::string{u(rng) < 0.5 ? "100202" : "101003"};
    f.accepts_ewc = std::vector<std::string>{u(rng) < 0.5 ? "10" : "1002"};
    if (u(rng) < 0.2)
      f.max_transport_km = 1 + u(rng) * 5;
    return ev;
  }
  if (r < 0.95)
    return make_delete_event(id, event_type::resource_flow_deleted,
                             "f" + std::to_string(pick(160)));
  return make_delete_event(id, event_type::site_deleted,
                           "s" + std::to_string(pick(50)));
}

} // namespace

TEST_CASE("partitions by class and tile give the single-index match set") {
  auto settings = short_reach();
  uint64_t handovers = 0, extra_segments = 0, copies = 0;
  for (auto where : {region{"Austria", 48, 14}, region{"antimeridian", 10, 179.8},
                     region{"north pole", 89.5, 0}})
  for (uint32_t per_class : {2u, 5u, 16u})
  for (unsigned seed = 1; seed <= 8; ++seed) {
    INFO(where.name << ", " << per_class << " partitions per class, seed "
                    << seed);
    std::mt19937 rng{seed * 7919 + per_class};
    registry reg{1000};
    match_index single{settings};
    match_placement placement{match_tiling{settings, per_class}};
    std::vector<match_index> parts;
    for (uint32_t p = 0; p < placement.partitions(); ++p)
      parts.emplace_back(settings, placement.tiling().class_of(p));
    std::map<pair_key, match> replayed;
    std::vector<match_change> single_out;
    auto now = registry::clock::now();
    int step = 0;
    while (step < 600) {
      // A batch of 1 to 30 events, as a worker commits them.
      registry_output out;
      for (int n = 1 + static_cast<int>(rng() % 30); n > 0; --n, ++step)
        reg.apply(random_event(rng, where, step), now, out);
      single.apply(out.changes, single_out);
      for (auto& seg : placement.route(std::move(out.changes))) {
        // Each partition applies its part; the sinks hear the partitions
        // of a segment in any order.
        std::vector<std::vector<match_change>> emitted(parts.size());
        for (size_t p = 0; p < parts.size(); ++p)
          parts[p].apply(seg.parts[p], emitted[p]);
        std::vector<size_t> order(parts.size());
        for (size_t p = 0; p < order.size(); ++p)
          order[p] = p;
        std::shuffle(order.begin(), order.end(), rng);
        for (auto p : order)
          replay_into(replayed, emitted[p]);
      }
    }
    auto expected = single.from_scratch();
    REQUIRE(single.matches() == expected);
    std::vector<match> joined;
    size_t counted = 0;
    for (auto& p : parts) {
      auto mine = p.matches();
      counted += p.match_count();
      joined.insert(joined.end(), mine.begin(), mine.end());
    }
    joined = sorted(std::move(joined));
    CHECK(expected.size() > 20);
    // Each pair in one partition: no key twice, and the counts add up.
    auto twice = std::adjacent_find(joined.begin(), joined.end(),
                                    [](const match& a, const match& b) {
                                      return a.supply_flow_id
                                               == b.supply_flow_id
                                             && a.demand_flow_id
                                                  == b.demand_flow_id;
                                    });
    CHECK(twice == joined.end());
    CHECK(counted == expected.size());
    CHECK(joined == expected);
    std::vector<match> from_stream;
    for (auto& kv : replayed)
      from_stream.push_back(kv.second);
    CHECK(from_stream == expected);

    // A restart: the stored entities and matches, placed afresh, build
    // partitions with the same matches, each stored match at the
    // partition that evaluates it.
    match_placement fresh{match_tiling{settings, per_class}};
    std::vector<registry_snapshot> entities;
    std::vector<std::vector<match>> stored;
    fresh.place(reg.snapshot(), std::vector<match>{expected}, entities,
                stored);
    std::vector<match> rebuilt;
    for (uint32_t p = 0; p < fresh.partitions(); ++p) {
      match_index idx{settings, fresh.tiling().class_of(p)};
      std::vector<match_change> ignored;
      for (auto& s : entities[p].sites) {
        change c;
        c.kind = change::site_upserted;
        c.site_data = s;
        idx.apply(c, ignored);
      }
      for (auto& f : entities[p].flows) {
        change c;
        c.kind = change::flow_upserted;
        c.flow_data = f;
        idx.apply(c, ignored);
      }
      auto mine = idx.matches();
      CHECK(sorted(stored[p]) == mine);
      rebuilt.insert(rebuilt.end(), mine.begin(), mine.end());
    }
    CHECK(sorted(std::move(rebuilt)) == expected);
    handovers += placement.handovers();
    extra_segments += placement.extra_segments();
    copies += placement.copies();
  }
  // The sequences did move supplies across tile borders (the case that
  // needs a second segment) and copied demands near borders.
  CHECK(handovers > 100);
  CHECK(extra_segments > 50);
  CHECK(copies > 1000);
}

TEST_CASE("one partition per class routes as before: no copies of flows") {
  match_settings settings;
  match_placement placement{match_tiling{settings, 1}};
  registry reg{10};
  registry_output out;
  auto now = registry::clock::now();
  reg.apply(make_site_event("e1", "a", caf::none, 48.0, 14.0), now, out);
  reg.apply(make_site_event("e2", "b", caf::none, 48.05, 14.0), now, out);
  reg.apply(make_flow_event("e3", "w1", "a"), now, out);
  auto demand = make_flow_event("e4", "w2", "b");
  demand.flow_data.direction = flow_direction::demand;
  reg.apply(demand, now, out);
  // A move: the registry follows it with a copy of the site's flow.
  reg.apply(make_site_event("e5", "a", caf::none, 48.01, 14.0), now, out);
  REQUIRE(out.changes.size() == 6);
  CHECK(out.changes[5].kind == change::flow_upserted);
  CHECK(out.changes[5].stored);
  auto segments = placement.route(std::move(out.changes));
  REQUIRE(segments.size() == 1);
  auto water = placement.tiling().first(resource_class::water);
  auto heat = placement.tiling().first(resource_class::heat);
  // Both flows and the copy go to the one water partition; sites go to
  // every class (one partition each), the move too.
  CHECK(segments[0].parts[water].size() == 6);
  CHECK(segments[0].parts[heat].size() == 3);
  CHECK(placement.handovers() == 0);
}
