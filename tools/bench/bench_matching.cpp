// bench-matching: match computations per second with 1e4, 1e5 and 1e6
// flows in the index at the same spatial density, against one PostGIS
// ST_DWithin query per flow over the same data, in one run; also the
// memory per indexed flow. Ratios, medians of several repetitions.
//
//   build/bench-matching [--dsn=CONNINFO] [--sizes=10000,100000,1000000]
//                        [--events=N] [--batch=N] [--reps=N]
//                        [--density=PER_KM2] [--skip-postgis]
//                        [--json=PATH] [--quick]

#include "tools/bench/bench_common.hpp"
#include "core/match_index.hpp"
#include "storage/pg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace flowmatch;
using flowmatch::bench::median;
using flowmatch::resident_bytes;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string dsn = "host=127.0.0.1 port=54329 dbname=flowmatch user=flowmatch";
  std::vector<size_t> sizes = {10000, 100000, 1000000};
  size_t events = 20000;
  /// Changes per batch handed to the index, as the router sends them.
  size_t batch = 256;
  int reps = 7;
  std::string json;
  /// Measures the index alone (for profiling it): no baseline, no ratio.
  bool skip_postgis = false;
};

/// Flows per square kilometre by default: about 6 flows within the 20 km
/// heat radius, 3 of them on the other side: a dense industrial region
/// (the bundled European data averages about 0.0013).
constexpr double default_density_per_km2 = 0.005;
double density_per_km2 = default_density_per_km2;

struct dataset {
  std::vector<site> sites;
  std::vector<resource_flow> flows;
};

/// N heat flows (one per site), uniform by area (sin(lat) uniform) over a
/// region around the equator whose area grows with N, so the density is
/// the same everywhere and at every N: about square while that fits in
/// +-60 degrees of latitude, a wider band beyond.
dataset make(size_t n, unsigned seed) {
  dataset d;
  constexpr double earth_km = 6371.0088;
  constexpr double rad = M_PI / 180.0;
  double area_km2 = static_cast<double>(n) / density_per_km2;
  double half_lat = std::min(60.0, std::sqrt(area_km2) / 2 / 111.2);
  // Area of lat in [-a, a], lon in [-b, b]: 2 R^2 sin(a) * 2b (b in rad).
  double half_lon = area_km2
                    / (earth_km * earth_km * 2 * std::sin(half_lat * rad) * 2)
                    / rad;
  std::mt19937 rng{seed};
  std::uniform_real_distribution<double> u{0, 1};
  for (size_t i = 0; i < n; ++i) {
    site s;
    s.site_id = "s" + std::to_string(i);
    s.lat = std::asin((2 * u(rng) - 1) * std::sin(half_lat * rad)) / rad;
    s.lon = (2 * u(rng) - 1) * half_lon;
    resource_flow f;
    f.flow_id = "f" + std::to_string(i);
    f.site_id = s.site_id;
    f.direction = i % 2 == 0 ? flow_direction::supply : flow_direction::demand;
    f.resource = resource_class::heat;
    f.annual_quantity = f.quantity = 1000 + u(rng) * 100000;
    f.unit = "MWh/yr";
    f.temperature_c = f.direction == flow_direction::supply
                        ? 60 + u(rng) * 100
                        : 50 + u(rng) * 60;
    d.sites.push_back(std::move(s));
    d.flows.push_back(std::move(f));
  }
  return d;
}



struct result {
  size_t flows;
  double index_us_per_event;
  /// A site moving (by up to about a kilometre each way): its flow's
  /// neighbours found again through the grid, each pair's geodesic and
  /// rules.
  double move_us_per_event;
  /// Candidates whose distance a move computed, per move.
  double distances_per_move;
  double evaluations_per_event;
  double postgis_us_per_query;
  double ratio;
  double bytes_per_flow;
  double matches;
};

/// One size under test: its data, its index, its PostGIS table, and the
/// timings of each repetition.
struct subject {
  size_t n = 0;
  dataset data;
  std::unique_ptr<match_index> idx;
  std::string table;
  std::mt19937 rng{7};
  result r{};
  std::vector<double> index_us;
  std::vector<double> move_us;
  std::vector<double> postgis_us;
};

void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "bench-matching: %s: %s\n", what, detail.c_str());
  std::exit(1);
}

/// Builds the index by applying every site and flow as changes; notes the
/// memory it took.
void build_index(subject& s) {
  size_t before = resident_bytes();
  s.idx = std::make_unique<match_index>();
  std::vector<match_change> out;
  for (auto& site : s.data.sites) {
    change c;
    c.kind = change::site_upserted;
    c.site_data = site;
    s.idx->apply(c, out);
  }
  for (auto& f : s.data.flows) {
    change c;
    c.kind = change::flow_upserted;
    c.flow_data = f;
    s.idx->apply(c, out);
    out.clear();
  }
  s.r.bytes_per_flow = static_cast<double>(resident_bytes() - before)
                       / static_cast<double>(s.n);
  s.r.matches = static_cast<double>(s.idx->match_count());
}

/// The same flows in PostGIS with a GiST index, and the baseline query:
/// one ST_DWithin per flow for its candidates (the search alone, no
/// scoring).
void load_table(pg::connection& conn, subject& s) {
  s.table = fmt::format("bench_match_flows_{}", s.n);
  conn.exec("DROP TABLE IF EXISTS " + s.table);
  conn.exec("CREATE TABLE " + s.table
            + " (flow_id text PRIMARY KEY, direction text NOT NULL, "
              "geog geography(Point, 4326) NOT NULL)");
  std::string copy;
  for (size_t i = 0; i < s.n; ++i)
    copy += fmt::format("{}\t{}\tSRID=4326;POINT({} {})\n",
                        s.data.flows[i].flow_id,
                        to_string(s.data.flows[i].direction),
                        s.data.sites[i].lon, s.data.sites[i].lat);
  if (auto e = conn.copy_in("COPY " + s.table + " FROM STDIN", copy))
    fail("COPY", e->describe());
  conn.exec("CREATE INDEX ON " + s.table + " USING gist (geog)");
  conn.exec("ANALYZE " + s.table);
  conn.prepare("candidates_" + std::to_string(s.n),
               "SELECT flow_id FROM " + s.table
                 + " WHERE direction = $1 AND ST_DWithin(geog, "
                   "ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography, "
                   "20000)");
}

/// Seconds to apply the batches in turn (the match changes are dropped).
double seconds_to_apply(match_index& idx,
                        const std::vector<std::vector<change>>& batches) {
  std::vector<match_change> out;
  auto start = clock_type::now();
  for (auto& batch : batches) {
    idx.apply(batch, out);
    out.clear();
  }
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// One repetition on the index: flow updates (a new quantity) at random
/// flows, in batches as a match partition receives them from the router;
/// each recomputes the flow's pairs in both directions. Microseconds per
/// update.
double time_index(const options& o, subject& s) {
  std::uniform_int_distribution<size_t> pick{0, s.n - 1};
  std::uniform_real_distribution<double> u{0, 1};
  std::vector<std::vector<change>> batches;
  for (size_t k = 0; k < o.events; ++k) {
    if (k % o.batch == 0) {
      batches.emplace_back();
      batches.back().reserve(o.batch);
    }
    change c;
    c.kind = change::flow_upserted;
    c.flow_data = s.data.flows[pick(s.rng)];
    c.flow_data.annual_quantity = c.flow_data.quantity
      = 1000 + u(s.rng) * 100000;
    batches.back().push_back(std::move(c));
  }
  auto evals = s.idx->evaluations();
  auto secs = seconds_to_apply(*s.idx, batches);
  s.r.evaluations_per_event = static_cast<double>(s.idx->evaluations()
                                                  - evals)
                              / static_cast<double>(o.events);
  return secs * 1e6 / static_cast<double>(o.events);
}

/// One repetition of site moves: random sites move by up to about a
/// kilometre north-south and east-west, in batches as for updates.
/// Microseconds per move.
double time_moves(const options& o, subject& s) {
  std::uniform_int_distribution<size_t> pick{0, s.n - 1};
  std::uniform_real_distribution<double> step{-0.009, 0.009}; // ~1 km
  size_t moves = std::max<size_t>(1, o.events / 4);
  std::vector<std::vector<change>> batches;
  for (size_t k = 0; k < moves; ++k) {
    if (k % o.batch == 0) {
      batches.emplace_back();
      batches.back().reserve(o.batch);
    }
    auto& site = s.data.sites[pick(s.rng)];
    site.lat = std::clamp(site.lat + step(s.rng), -89.0, 89.0);
    site.lon += step(s.rng);
    change c;
    c.kind = change::site_upserted;
    c.site_data = site;
    batches.back().push_back(std::move(c));
  }
  auto distances = s.idx->distances();
  auto us = seconds_to_apply(*s.idx, batches) * 1e6
            / static_cast<double>(moves);
  s.r.distances_per_move = static_cast<double>(s.idx->distances() - distances)
                           / static_cast<double>(moves);
  return us;
}

/// What one distance costs the index: the sphere bound, then the WGS84
/// geodesic (GeographicLib) for a pair within reach; pairs 0 to 20 km
/// apart. Microseconds per call.
double time_distance() {
  std::mt19937 rng{11};
  std::uniform_real_distribution<double> u{0, 1};
  std::vector<std::pair<position, position>> pairs(200000);
  for (auto& [a, b] : pairs) {
    a = position{-50 + 100 * u(rng), -170 + 340 * u(rng)};
    b = position{a.lat + (u(rng) - 0.5) * 0.25, a.lon + (u(rng) - 0.5) * 0.25};
  }
  double sink = 0;
  auto start = clock_type::now();
  for (auto& [a, b] : pairs)
    if (auto d = distance_within(a, b, 20000))
      sink += *d;
  auto secs = std::chrono::duration<double>(clock_type::now() - start).count();
  if (sink < 0)
    std::puts("");
  return secs * 1e6 / static_cast<double>(pairs.size());
}

/// One repetition of the baseline: microseconds per query.
double time_postgis(const options& o, pg::connection& conn, subject& s) {
  std::uniform_int_distribution<size_t> pick{0, s.n - 1};
  auto statement = "candidates_" + std::to_string(s.n);
  size_t queries = std::min<size_t>(o.events, 1000);
  auto start = clock_type::now();
  for (size_t k = 0; k < queries; ++k) {
    auto i = pick(s.rng);
    auto other = s.data.flows[i].direction == flow_direction::supply
                   ? "demand"
                   : "supply";
    auto res = conn.run(statement, {std::string{other},
                                    fmt::format("{}", s.data.sites[i].lon),
                                    fmt::format("{}", s.data.sites[i].lat)});
    if (res.error)
      fail("query", res.error->describe());
  }
  auto secs = std::chrono::duration<double>(clock_type::now() - start)
                .count();
  return secs * 1e6 / static_cast<double>(queries);
}

/// Median of the per-repetition ratios a[i] / b[i]: each ratio compares
/// two timings taken side by side, so a noisy neighbour that slows one
/// repetition slows both its terms.
double median_ratio(const std::vector<double>& a,
                    const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    r.push_back(a[i] / b[i]);
  return median(r);
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (const char* dsn = std::getenv("FLOWMATCH_TEST_DSN"))
    o.dsn = dsn;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* key) {
      return bench::option_value(argv[i], key);
    };
    if (auto dsn = value("--dsn")) {
      o.dsn = dsn;
    } else if (auto sizes = value("--sizes")) {
      o.sizes.clear();
      std::stringstream ss{sizes};
      for (std::string part; std::getline(ss, part, ',');)
        o.sizes.push_back(std::stoul(part));
    } else if (auto events = value("--events")) {
      o.events = std::stoul(events);
    } else if (auto batch = value("--batch")) {
      o.batch = std::max<size_t>(1, std::stoul(batch));
    } else if (auto reps = value("--reps")) {
      o.reps = std::stoi(reps);
    } else if (auto json = value("--json")) {
      o.json = json;
    } else if (auto density = value("--density")) {
      density_per_km2 = std::stod(density);
    } else if (a == "--skip-postgis") {
      o.skip_postgis = true;
    } else if (a == "--quick") {
      o.sizes = {10000, 100000};
      o.events = 1000;
      o.reps = 1;
    } else {
      std::fprintf(stderr, "usage: bench-matching [--dsn=CONNINFO] "
                           "[--sizes=N,N,...] [--events=N] [--batch=N] [--reps=N] "
                           "[--density=PER_KM2] [--json=PATH] [--quick] "
                           "[--skip-postgis]\n");
      return 2;
    }
  }
  // Every size is built first; then each repetition times every size and
  // its baseline in turn, so the ratios compare timings taken together.
  std::vector<subject> subjects(o.sizes.size());
  std::optional<pg::connection> conn;
  if (!o.skip_postgis) {
    auto c = pg::connection::open(o.dsn, "flowmatch-bench");
    if (c.error)
      fail("connect (start the cluster: tools/pg.sh start)",
           c.error->describe());
    conn = std::move(c.value);
  }
  for (size_t i = 0; i < o.sizes.size(); ++i) {
    auto& s = subjects[i];
    s.n = o.sizes[i];
    s.r.flows = s.n;
    std::fprintf(stderr, "bench-matching: building %zu flows...\n", s.n);
    s.data = make(s.n, 42);
    build_index(s);
    if (conn)
      load_table(*conn, s);
  }
  for (int rep = 0; rep < o.reps + 1; ++rep) {
    std::fprintf(stderr, "bench-matching: repetition %d of %d%s\n", rep,
                 o.reps, rep == 0 ? " (warm-up)" : "");
    for (auto& s : subjects) {
      auto index_us = time_index(o, s);
      auto move_us = time_moves(o, s);
      auto postgis_us = conn ? time_postgis(o, *conn, s) : 0.0;
      if (rep == 0)
        continue;
      s.index_us.push_back(index_us);
      s.move_us.push_back(move_us);
      s.postgis_us.push_back(postgis_us);
    }
  }
  std::vector<result> results;
  for (auto& s : subjects) {
    s.r.index_us_per_event = median(s.index_us);
    s.r.move_us_per_event = median(s.move_us);
    s.r.postgis_us_per_query = median(s.postgis_us);
    s.r.ratio = conn ? median_ratio(s.postgis_us, s.index_us) : 0.0;
    results.push_back(s.r);
    if (conn)
      conn->exec("DROP TABLE " + s.table);
  }
  auto scaling = median_ratio(subjects.back().index_us,
                              subjects.front().index_us);
  std::vector<double> distance_us;
  for (int rep = 0; rep < 3; ++rep)
    distance_us.push_back(time_distance());
  auto us_per_distance = median(distance_us);
  std::printf("matching: heat flows at %.4f per km2, %zu updates per "
              "repetition in batches of %zu, median of %d\n",
              density_per_km2, o.events, o.batch, o.reps);
  std::printf("  %10s %12s %10s %14s %10s %10s %12s %10s\n", "flows",
              "us/event", "evals/ev", "PostGIS us/q", "ratio", "us/move",
              "bytes/flow", "matches");
  for (auto& r : results)
    std::printf("  %10zu %12.2f %10.1f %14.1f %9.0fx %10.2f %12.0f %10.0f\n",
                r.flows, r.index_us_per_event, r.evaluations_per_event,
                r.postgis_us_per_query, r.ratio, r.move_us_per_event,
                r.bytes_per_flow, r.matches);
  auto& small = results.front();
  auto& big = results.back();
  std::printf("  per-event cost %zu vs %zu flows: %.2fx (target <= 2; "
              "median of the per-repetition ratios)\n",
              big.flows, small.flows, scaling);
  std::printf("  a move computes %.1f distances (largest size); one "
              "distance (sphere bound + geodesic): %.3f us\n",
              big.distances_per_move, us_per_distance);
  if (!o.json.empty()) {
    std::ofstream out{o.json};
    out << "{\"benchmark\":\"matching\",\"density_per_km2\":"
        << density_per_km2 << ",\"results\":[";
    for (size_t i = 0; i < results.size(); ++i) {
      auto& r = results[i];
      out << (i ? "," : "")
          << fmt::format("{{\"flows\":{},\"us_per_event\":{:.3f},"
                         "\"us_per_move\":{:.3f},"
                         "\"distances_per_move\":{:.2f},"
                         "\"evaluations_per_event\":{:.2f},"
                         "\"postgis_us_per_query\":{:.2f},"
                         "\"ratio\":{:.1f},\"bytes_per_flow\":{:.0f},"
                         "\"matches\":{:.0f}}}",
                         r.flows, r.index_us_per_event, r.move_us_per_event,
                         r.distances_per_move, r.evaluations_per_event, r.postgis_us_per_query,
                         r.ratio, r.bytes_per_flow, r.matches);
    }
    out << fmt::format("],\"scaling\":{:.3f},\"us_per_distance\":{:.4f}}}\n",
                       scaling, us_per_distance);
  }
  return 0;
}
