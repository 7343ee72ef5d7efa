// The match model v1 against hand-computed numbers: every gate, every
// component, the contract's own example line, and the incremental index
// against a from-scratch computation on random event sequences.

#include "core/match_rules.hpp"

#include "core/match_index.hpp"

#include <catch2/catch.hpp>

#include <GeographicLib/Geodesic.hpp>

#include <cmath>
#include <random>

using namespace flowmatch;

namespace {

resource_flow flow(const std::string& id, const std::string& site,
                   flow_direction dir, resource_class cls, double annual) {
  resource_flow f;
  f.flow_id = id;
  f.site_id = site;
  f.direction = dir;
  f.resource = cls;
  f.quantity = annual;
  f.annual_quantity = annual;
  f.unit = cls == resource_class::heat    ? "MWh/yr"
           : cls == resource_class::water ? "m3/yr"
                                          : "t/yr";
  return f;
}

resource_flow heat(const std::string& id, const std::string& site,
                   flow_direction dir, double annual, double temp) {
  auto f = flow(id, site, dir, resource_class::heat, annual);
  f.temperature_c = temp;
  return f;
}

const match_settings defaults;

/// The index's input: a site at (lat, 14 E), a flow.
change site_at(const std::string& id, double lat) {
  change c;
  c.kind = change::site_upserted;
  c.site_data.site_id = id;
  c.site_data.lat = lat;
  c.site_data.lon = 14;
  return c;
}

/// Sites a, b and c on one meridian, about 5.6 km apart in that order.
void place_abc(match_index& idx, std::vector<match_change>& out) {
  idx.apply(site_at("a", 48.0), out);
  idx.apply(site_at("b", 48.05), out);
  idx.apply(site_at("c", 48.1), out);
}

change upsert(const resource_flow& f) {
  change c;
  c.kind = change::flow_upserted;
  c.flow_data = f;
  return c;
}

/// Two points on one meridian about `km` apart (1 deg of latitude at 48 N
/// is ~111.2 km); the tests use the geodesic distance they really have.
double lat_for_km(double km) {
  return 48.0 + km / 111.2;
}

} // namespace

TEST_CASE("the contract's example line is reproduced") {
  // events.md: distance 7432.02 m, exchange_qty 184467, s_size 0.2116,
  // s_dist 0.6284, s_econ 0.8466, score 0.5698 for heat. With d_max 20 km:
  //   s_dist = 1 - 7432.02 / 20000 = 0.628399
  //   q = 184467, S = 871772 -> s_size = 184467 / 871772 = 0.211601
  //   h = 5000 -> P = 36.8934 MW -> pipe cost 564 EUR/m (20 < P <= 45)
  //   capex = 2 * 564 * 7432.02 + 15000 * P + 190000 * P = 15,946,466.6
  //   annual = capex * 0.071 = 1,132,199.1; lcot = annual / q = 6.13771
  //   s_econ = 1 - 6.13771 / 40 = 0.846557
  //   score = 0.35 * 0.211601 + 0.25 * 0.628399 + 0.40 * 0.846557
  //         = 0.074060 + 0.157100 + 0.338623 = 0.569783 (0.5698)
  // A point due north of (48, 14) at the exact distance gives d.
  double lat2, lon2;
  GeographicLib::Geodesic::WGS84().Direct(48.0, 14.0, 0.0, 7432.02, lat2,
                                          lon2);
  auto s = heat("s", "a", flow_direction::supply, 871772, 150);
  auto d = heat("d", "b", flow_direction::demand, 184467, 90);
  d.operating_hours = 5000.0;
  auto m = evaluate(s, 48.0, 14.0, d, lat2, lon2, defaults);
  REQUIRE(m);
  CHECK(m->distance_m == Approx(7432.02).epsilon(1e-9));
  CHECK(m->exchange_qty == 184467);
  CHECK(m->s_size == Approx(0.211601).epsilon(1e-5));
  CHECK(m->s_dist == Approx(0.628399).epsilon(1e-5));
  CHECK(m->s_econ == Approx(0.846557).epsilon(1e-5));
  CHECK(m->score == Approx(0.569783).epsilon(1e-5));
  CHECK(m->f_quality == 1);
  CHECK(m->f_taxonomy == 1);
  CHECK(m->flags.empty());
}

TEST_CASE("gate 1: sides and different sites") {
  auto s = heat("s", "a", flow_direction::supply, 100, 150);
  auto d = heat("d", "b", flow_direction::demand, 100, 90);
  CHECK(evaluate(s, 48, 14, d, 48, 14.01, defaults));
  CHECK_FALSE(evaluate(d, 48, 14, s, 48, 14.01, defaults)); // reversed
  auto same_side = s;
  same_side.flow_id = "s2";
  same_side.site_id = "b";
  CHECK_FALSE(evaluate(s, 48, 14, same_side, 48, 14.01, defaults));
  auto same_site = d;
  same_site.site_id = "a";
  CHECK_FALSE(evaluate(s, 48, 14, same_site, 48, 14.01, defaults));
}

TEST_CASE("gate 2: same class") {
  auto s = flow("s", "a", flow_direction::supply, resource_class::water, 10);
  auto d = flow("d", "b", flow_direction::demand, resource_class::co2, 10);
  CHECK_FALSE(evaluate(s, 48, 14, d, 48, 14.01, defaults));
}

TEST_CASE("gate 3: distance against the smallest d_max") {
  auto s = flow("s", "a", flow_direction::supply, resource_class::water, 10);
  auto d = flow("d", "b", flow_direction::demand, resource_class::water, 10);
  // ~19 km: inside water's 20 km, outside a 15 km max_transport_km.
  double lat = lat_for_km(19);
  double dist = geodesic_distance_m(48, 14, lat, 14);
  REQUIRE(dist < 20000);
  REQUIRE(dist > 15000);
  auto m = evaluate(s, 48, 14, d, lat, 14, defaults);
  REQUIRE(m);
  CHECK(m->s_dist == Approx(1 - dist / 20000));
  d.max_transport_km = 15;
  CHECK_FALSE(evaluate(s, 48, 14, d, lat, 14, defaults));
  d.max_transport_km = 100; // larger than the class default: no effect
  s.max_transport_km = 19.5;
  m = evaluate(s, 48, 14, d, lat, 14, defaults);
  REQUIRE(m);
  CHECK(m->s_dist == Approx(1 - dist / 19500)); // d_max is now 19.5 km
  // co2 reaches 50 km, material 120 km, heat and water 20 km.
  CHECK(defaults.d_max_default_m(resource_class::co2) == 50000);
  CHECK(defaults.d_max_default_m(resource_class::material) == 120000);
  CHECK(defaults.d_max_default_m(resource_class::heat) == 20000);
  CHECK(defaults.d_max_default_m(resource_class::water) == 20000);
  // Just inside d_max passes (d <= d_max), just outside does not.
  double lat2, lon2;
  GeographicLib::Geodesic::WGS84().Direct(48.0, 14.0, 90.0, 19999.99, lat2,
                                          lon2);
  s.max_transport_km = caf::none;
  d.max_transport_km = caf::none;
  auto edge = evaluate(s, 48, 14, d, lat2, lon2, defaults);
  REQUIRE(edge);
  CHECK(edge->s_dist == Approx(0).margin(1e-6));
  GeographicLib::Geodesic::WGS84().Direct(48.0, 14.0, 90.0, 20000.01, lat2,
                                          lon2);
  CHECK_FALSE(evaluate(s, 48, 14, d, lat2, lon2, defaults));
}

TEST_CASE("gate 4: heat quality with delta T and the heat pump") {
  auto d = heat("d", "b", flow_direction::demand, 100, 90);
  // hot water: delta T 10 K. 100 >= 90 + 10: quality 1.
  auto s = heat("s", "a", flow_direction::supply, 100, 100);
  auto m = evaluate(s, 48, 14, d, 48, 14.01, defaults);
  REQUIRE(m);
  CHECK(m->f_quality == 1);
  // 99.9 < 100 but >= 25: heat pump, quality 0.5, flagged.
  s.temperature_c = 99.9;
  m = evaluate(s, 48, 14, d, 48, 14.01, defaults);
  REQUIRE(m);
  CHECK(m->f_quality == 0.5);
  CHECK(m->flags == std::vector<std::string>{"heat_pump_required"});
  // The score carries the factor: 0.5 * (weighted sum).
  double sum = 0.35 * m->s_size + 0.25 * m->s_dist + 0.40 * m->s_econ;
  CHECK(m->score == Approx(0.5 * sum));
  // Below 25 deg C: no match.
  s.temperature_c = 24.9;
  CHECK_FALSE(evaluate(s, 48, 14, d, 48, 14.01, defaults));
  s.temperature_c = 25;
  CHECK(evaluate(s, 48, 14, d, 48, 14.01, defaults));
  // Flue gas and air need delta T 20 K: 105 >= 90 + 20 fails.
  s.temperature_c = 105;
  s.medium = std::string{"flue_gas"};
  m = evaluate(s, 48, 14, d, 48, 14.01, defaults);
  REQUIRE(m);
  CHECK(m->f_quality == 0.5);
  s.medium = std::string{"air"};
  s.temperature_c = 110;
  m = evaluate(s, 48, 14, d, 48, 14.01, defaults);
  REQUIRE(m);
  CHECK(m->f_quality == 1);
  s.medium = std::string{"steam"}; // 10 K again
  s.temperature_c = 100;
  CHECK(evaluate(s, 48, 14, d, 48, 14.01, defaults)->f_quality == 1);
}

TEST_CASE("gate 5: material taxonomy and hazardous waste") {
  auto s = flow("s", "a", flow_direction::supply, resource_class::material,
                1000);
  s.ewc = std::string{"100202"};
  auto d = flow("d", "b", flow_direction::demand, resource_class::material,
                500);
  d.accepts_ewc = std::vector<std::string>{"10", "1002"};
  auto m = evaluate(s, 48, 14, d, 48, 14.1, defaults);
  REQUIRE(m);
  CHECK(m->f_taxonomy == 0.7); // best prefix: 4 digits
  d.accepts_ewc = std::vector<std::string>{"100202", "10"};
  CHECK(evaluate(s, 48, 14, d, 48, 14.1, defaults)->f_taxonomy == 1.0);
  d.accepts_ewc = std::vector<std::string>{"10"};
  CHECK(evaluate(s, 48, 14, d, 48, 14.1, defaults)->f_taxonomy == 0.4);
  d.accepts_ewc = std::vector<std::string>{"1001", "11"};
  CHECK_FALSE(evaluate(s, 48, 14, d, 48, 14.1, defaults));
  // Hazardous supply: only to a demand that accepts it, flagged.
  d.accepts_ewc = std::vector<std::string>{"1002"};
  s.hazardous = true;
  CHECK_FALSE(evaluate(s, 48, 14, d, 48, 14.1, defaults));
  d.accepts_hazardous = true;
  m = evaluate(s, 48, 14, d, 48, 14.1, defaults);
  REQUIRE(m);
  CHECK(m->flags == std::vector<std::string>{"hazardous"});
  // s_dist = exp(-d / 33000); s_econ = 0.5; s_size = 500 / 1000.
  CHECK(m->s_dist == Approx(std::exp(-m->distance_m / 33000)));
  CHECK(m->s_econ == 0.5);
  CHECK(m->s_size == 0.5);
  CHECK(m->score
        == Approx(0.7 * (0.35 * 0.5 + 0.25 * m->s_dist + 0.40 * 0.5)));
}

TEST_CASE("heat economics with a small peak power and the cost table") {
  // q = 4380 MWh/yr over 8760 h: P = 0.5 MW -> 220 EUR/m, small sink.
  //   capex = 2 * 220 * d + 15000 * 0.5 + 505000 * 0.5
  auto s = heat("s", "a", flow_direction::supply, 10000, 120);
  auto d = heat("d", "b", flow_direction::demand, 4380, 70);
  auto m = evaluate(s, 48, 14, d, 48.01, 14, defaults);
  REQUIRE(m);
  double dist = m->distance_m;
  double capex = 2 * 220 * dist + 15000 * 0.5 + 505000 * 0.5;
  double lcot = capex * 0.071 / 4380;
  CHECK(m->s_econ == Approx(std::clamp(1 - lcot / 40, 0.0, 1.0)));
  // A long pipe for little heat: s_econ clamps at 0.
  auto tiny = heat("d", "b", flow_direction::demand, 10, 70);
  CHECK(evaluate(s, 48, 14, tiny, 48.1, 14, defaults)->s_econ == 0);
  CHECK(pipe_cost_eur_m(0.2) == 195);
  CHECK(pipe_cost_eur_m(0.2001) == 220);
  CHECK(pipe_cost_eur_m(1.2) == 240);
  CHECK(pipe_cost_eur_m(3.6) == 288);
  CHECK(pipe_cost_eur_m(9.8) == 357);
  CHECK(pipe_cost_eur_m(20) == 426);
  CHECK(pipe_cost_eur_m(45) == 564);
  CHECK(pipe_cost_eur_m(125) == 839);
  CHECK(pipe_cost_eur_m(125.1) == 976);
}

TEST_CASE("weights must sum to 1") {
  match_settings s;
  CHECK(s.validate().empty());
  s.w_econ = 0.5;
  CHECK_THAT(s.validate(), Catch::Contains("sum to 1"));
}

TEST_CASE("a stale delete of a flow that moved on is ignored") {
  match_index idx;
  std::vector<match_change> out;
  place_abc(idx, out);
  change demand;
  demand.kind = change::flow_upserted;
  demand.flow_data = heat("d", "c", flow_direction::demand, 100, 60);
  idx.apply(demand, out);
  change at_a;
  at_a.kind = change::flow_upserted;
  at_a.flow_data = heat("s", "a", flow_direction::supply, 100, 90);
  idx.apply(at_a, out);
  // The flow moves to b (a worker's upsert), then the old worker's
  // eviction arrives naming site a: it must not remove the flow.
  auto at_b = at_a;
  at_b.flow_data.site_id = "b";
  idx.apply(at_b, out);
  change evict;
  evict.kind = change::flow_deleted;
  evict.id = "s";
  evict.flow_data.site_id = "a";
  idx.apply(evict, out);
  CHECK(idx.flow_count() == 2);
  REQUIRE(idx.match_count() == 1);
  CHECK(idx.matches()[0].supply_site_id == "b");
  // A delete naming its current site removes it.
  evict.flow_data.site_id = "b";
  idx.apply(evict, out);
  CHECK(idx.flow_count() == 1);
  CHECK(idx.match_count() == 0);
}

TEST_CASE("flows that come before their site are matched when it comes") {
  match_index idx;
  std::vector<match_change> out;
  idx.apply(upsert(heat("d", "c", flow_direction::demand, 100, 60)), out);
  idx.apply(upsert(heat("s", "a", flow_direction::supply, 100, 90)), out);
  CHECK(idx.match_count() == 0); // nowhere yet
  idx.apply(site_at("c", 48.1), out);
  CHECK(idx.match_count() == 0); // the supply's site is still unknown
  idx.apply(site_at("a", 48.0), out);
  REQUIRE(idx.match_count() == 1);
  CHECK(idx.matches() == idx.from_scratch());
  REQUIRE(!out.empty());
  CHECK_FALSE(out.back().removed);
  CHECK(out.back().value.supply_flow_id == "s");
  // A flow whose unknown site is deleted (with its flow) leaves nothing.
  idx.apply(upsert(heat("o", "nowhere", flow_direction::supply, 100, 90)),
            out);
  change gone;
  gone.kind = change::site_deleted;
  gone.id = "nowhere";
  idx.apply(gone, out);
  CHECK(idx.flow_count() == 2);
  CHECK(idx.match_count() == 1);
}

TEST_CASE("a change emits the matches it changes and no others") {
  match_index idx;
  std::vector<match_change> out;
  place_abc(idx, out);
  idx.apply(upsert(heat("d1", "b", flow_direction::demand, 100, 60)), out);
  idx.apply(upsert(heat("d2", "c", flow_direction::demand, 300, 60)), out);
  auto supply = heat("s", "a", flow_direction::supply, 200, 90);
  out.clear();
  idx.apply(upsert(supply), out);
  REQUIRE(out.size() == 2); // s with d1 and with d2
  // Warmer but still past delta T: no number of either match changes.
  supply.temperature_c = 95;
  out.clear();
  idx.apply(upsert(supply), out);
  CHECK(out.empty());
  // The same site again, unmoved: nothing.
  idx.apply(site_at("c", 48.1), out);
  CHECK(out.empty());
  // Less heat: both matches change (s_size, the economics).
  supply.annual_quantity = supply.quantity = 150;
  idx.apply(upsert(supply), out);
  CHECK(out.size() == 2);
  CHECK(idx.matches() == idx.from_scratch());
  // Below delta T (60 + 10): both need a heat pump now, a new quality
  // factor and flag; then a demand moves out of reach: its match goes.
  supply.temperature_c = 65;
  out.clear();
  idx.apply(upsert(supply), out);
  REQUIRE(out.size() == 2);
  for (auto& c : out)
    CHECK(c.value.f_quality == defaults.heat_pump_quality);
  out.clear();
  idx.apply(site_at("c", 50.0), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].removed);
  CHECK(out[0].value.demand_flow_id == "d2");
  CHECK(idx.match_count() == 1);
  CHECK(idx.matches() == idx.from_scratch());
}

TEST_CASE("the incremental index equals a from-scratch computation") {
  // Random sequences over 60 sites in a 0.4 x 0.4 degree square (so many
  // pairs are within reach): site creates and moves, flow upserts of every
  // class and side (some changing side, class or site), deletes of flows
  // and sites with their cascade, as the registry would publish them. The
  // square lies in Austria, across the antimeridian, or at the north pole
  // (where the grid's boxes wrap or span every longitude). The same
  // changes are also applied in batches (the prefetching path the match
  // partitions take) and must give the same stream.
  struct region {
    const char* name;
    double lat;
    double lon;
  };
  for (auto where : {region{"Austria", 48, 14}, region{"antimeridian", 10, 179.8},
                     region{"north pole", 89.6, 0}})
  for (unsigned seed = 1; seed <= 20; ++seed) {
    INFO(where.name);
    std::mt19937 rng{seed};
    std::uniform_real_distribution<double> u{0, 1};
    match_index idx;
    match_index batched;
    std::vector<change> applied;
    std::vector<match_change> stream;
    std::map<std::string, std::vector<std::string>> site_flows;
    std::map<std::string, std::string> flow_site;
    auto pick = [&](int n) { return static_cast<int>(u(rng) * n); };
    for (int step = 0; step < 400; ++step) {
      double r = u(rng);
      change c;
      if (r < 0.25) {
        c.kind = change::site_upserted;
        c.site_data.site_id = "s" + std::to_string(pick(60));
        c.site_data.lat = std::min(90.0, where.lat + u(rng) * 0.4);
        c.site_data.lon = where.lon + u(rng) * 0.4;
        if (c.site_data.lon > 180)
          c.site_data.lon -= 360;
        site_flows[c.site_data.site_id];
        idx.apply(c, stream);
        applied.push_back(c);
      } else if (r < 0.85 && !site_flows.empty()) {
        auto it = std::next(site_flows.begin(), pick(site_flows.size()));
        auto id = "f" + std::to_string(pick(150));
        if (flow_site.count(id) && flow_site[id] != it->first) {
          // The flow moves to another site.
          auto& old = site_flows[flow_site[id]];
          old.erase(std::remove(old.begin(), old.end(), id), old.end());
          flow_site.erase(id);
        }
        c.kind = change::flow_upserted;
        auto cls = static_cast<resource_class>(pick(4));
        auto dir = u(rng) < 0.5 ? flow_direction::supply
                                : flow_direction::demand;
        auto f = flow(id, it->first, dir, cls, 100 + u(rng) * 10000);
        f.temperature_c = 20 + u(rng) * 140;
        if (u(rng) < 0.3)
          f.medium = std::string{u(rng) < 0.5 ? "flue_gas" : "steam"};
        f.ewc = std::string{u(rng) < 0.5 ? "100202" : "101003"};
        f.accepts_ewc = std::vector<std::string>{u(rng) < 0.5 ? "10" : "1002"};
        f.hazardous = u(rng) < 0.3;
        f.accepts_hazardous = u(rng) < 0.5;
        if (u(rng) < 0.2)
          f.max_transport_km = 5 + u(rng) * 30;
        f.operating_hours = 2000 + u(rng) * 6760;
        c.flow_data = f;
        if (!flow_site.count(id))
          it->second.push_back(id);
        flow_site[id] = it->first;
        idx.apply(c, stream);
        applied.push_back(c);
      } else if (r < 0.95 && !flow_site.empty()) {
        auto it = std::next(flow_site.begin(), pick(flow_site.size()));
        c.kind = change::flow_deleted;
        c.id = it->first;
        auto& fl = site_flows[it->second];
        fl.erase(std::remove(fl.begin(), fl.end(), it->first), fl.end());
        flow_site.erase(it);
        idx.apply(c, stream);
        applied.push_back(c);
      } else if (!site_flows.empty()) {
        auto it = std::next(site_flows.begin(), pick(site_flows.size()));
        for (auto& f : it->second) {
          change fd;
          fd.kind = change::flow_deleted;
          fd.id = f;
          flow_site.erase(f);
          idx.apply(fd, stream);
          applied.push_back(fd);
        }
        c.kind = change::site_deleted;
        c.id = it->first;
        site_flows.erase(it);
        idx.apply(c, stream);
        applied.push_back(c);
      }
    }
    auto incremental = idx.matches();
    auto scratch = idx.from_scratch();
    INFO("seed " << seed << ": " << incremental.size() << " incremental, "
                 << scratch.size() << " from scratch");
    CHECK(incremental.size() > 0);
    CHECK(incremental == scratch);
    CHECK(idx.match_count() == scratch.size());
    // Replaying the emitted stream from the start gives the same set.
    std::map<std::pair<std::string, std::string>, match> replay;
    for (auto& ch : stream) {
      auto key = std::make_pair(ch.value.supply_flow_id,
                                ch.value.demand_flow_id);
      if (ch.removed)
        replay.erase(key);
      else
        replay[key] = ch.value;
    }
    std::vector<match> replayed;
    for (auto& kv : replay)
      replayed.push_back(kv.second);
    CHECK(replayed == scratch);
    // In batches of 1 to 40 changes: the very same stream.
    std::vector<match_change> batched_stream;
    for (size_t k = 0; k < applied.size();) {
      auto len = 1 + static_cast<size_t>(pick(40));
      auto end = std::min(applied.size(), k + len);
      std::vector<change> batch(applied.begin() + k, applied.begin() + end);
      batched.apply(batch, batched_stream);
      k = end;
    }
    REQUIRE(batched_stream.size() == stream.size());
    for (size_t k = 0; k < stream.size(); ++k) {
      INFO("change " << k << " of the stream");
      CHECK(batched_stream[k].removed == stream[k].removed);
      CHECK(batched_stream[k].value == stream[k].value);
    }
  }
}
