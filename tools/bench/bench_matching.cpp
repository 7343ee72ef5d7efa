// bench-matching: match computations per second with 1e4, 1e5 and 1e6
// flows in the index at the same spatial density, against one PostGIS
// ST_DWithin query per flow over the same data, in one run; also the
// memory per indexed flow. Ratios, medians of several repetitions.
//
//   build/bench-matching [--dsn=CONNINFO] [--sizes=10000,100000,1000000]
//                        [--events=N] [--reps=N] [--density=PER_KM2]
//                        [--json=PATH] [--quick]

#include "tools/bench/bench_common.hpp"
#include "actors/match_index.hpp"
#include "system/pg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace flowmatch;
using flowmatch::bench::median;
using flowmatch::bench::rss_bytes;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string dsn = "host=127.0.0.1 port=54329 dbname=flowmatch user=flowmatch";
  std::vector<size_t> sizes = {10000, 100000, 1000000};
  size_t events = 5000;
  int reps = 3;
  std::string json;
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
  double evaluations_per_event;
  double postgis_us_per_query;
  double bytes_per_flow;
  double matches;
};

result run_size(const options& o, size_t n) {
  result r{};
  r.flows = n;
  auto data = make(n, 42);
  // The index, built by applying every site and flow as changes.
  size_t before = rss_bytes();
  match_index idx;
  std::vector<match_change> out;
  for (auto& s : data.sites) {
    change c;
    c.kind = change::site_upserted;
    c.site_data = s;
    idx.apply(c, out);
  }
  for (auto& f : data.flows) {
    change c;
    c.kind = change::flow_upserted;
    c.flow_data = f;
    idx.apply(c, out);
    out.clear();
  }
  r.bytes_per_flow = static_cast<double>(rss_bytes() - before)
                     / static_cast<double>(n);
  r.matches = static_cast<double>(idx.match_count());
  // Measure: flow updates (new quantity and temperature) at random flows;
  // each recomputes the flow's pairs in both directions.
  std::mt19937 rng{7};
  std::uniform_int_distribution<size_t> pick{0, n - 1};
  std::uniform_real_distribution<double> u{0, 1};
  std::vector<double> per_event;
  for (int rep = 0; rep < o.reps + 1; ++rep) {
    std::vector<change> updates;
    updates.reserve(o.events);
    for (size_t k = 0; k < o.events; ++k) {
      change c;
      c.kind = change::flow_upserted;
      c.flow_data = data.flows[pick(rng)];
      c.flow_data.annual_quantity = c.flow_data.quantity
        = 1000 + u(rng) * 100000;
      updates.push_back(std::move(c));
    }
    auto evals = idx.evaluations();
    auto start = clock_type::now();
    for (auto& c : updates) {
      idx.apply(c, out);
      out.clear();
    }
    auto secs = std::chrono::duration<double>(clock_type::now() - start)
                  .count();
    if (rep > 0) // the first is the warm-up
      per_event.push_back(secs * 1e6 / static_cast<double>(o.events));
    r.evaluations_per_event = static_cast<double>(idx.evaluations() - evals)
                              / static_cast<double>(o.events);
  }
  r.index_us_per_event = median(per_event);
  // Baseline: the same flows in PostGIS with a GiST index; one ST_DWithin
  // query per flow for its candidates (the search alone, no scoring).
  auto c = pg::connection::open(o.dsn, "flowmatch-bench");
  if (c.error) {
    std::fprintf(stderr, "bench-matching: %s\n(start the cluster: "
                         "tools/pg.sh start)\n",
                 c.error->describe().c_str());
    std::exit(1);
  }
  auto& conn = *c.value;
  conn.exec("DROP TABLE IF EXISTS bench_match_flows");
  conn.exec("CREATE TABLE bench_match_flows (flow_id text PRIMARY KEY, "
            "direction text NOT NULL, geog geography(Point, 4326) NOT NULL)");
  std::string copy;
  for (size_t i = 0; i < n; ++i)
    copy += fmt::format("{}\t{}\tSRID=4326;POINT({} {})\n",
                        data.flows[i].flow_id, to_string(data.flows[i].direction),
                        data.sites[i].lon, data.sites[i].lat);
  if (auto e = conn.copy_in("COPY bench_match_flows FROM STDIN", copy)) {
    std::fprintf(stderr, "bench-matching: %s\n", e->describe().c_str());
    std::exit(1);
  }
  conn.exec("CREATE INDEX ON bench_match_flows USING gist (geog)");
  conn.exec("ANALYZE bench_match_flows");
  conn.prepare("candidates",
               "SELECT flow_id FROM bench_match_flows WHERE direction = $1 "
               "AND ST_DWithin(geog, ST_SetSRID(ST_MakePoint($2, $3), "
               "4326)::geography, 20000)");
  std::vector<double> per_query;
  size_t queries = std::min<size_t>(o.events, 1000);
  for (int rep = 0; rep < o.reps + 1; ++rep) {
    auto start = clock_type::now();
    for (size_t k = 0; k < queries; ++k) {
      auto i = pick(rng);
      auto other = data.flows[i].direction == flow_direction::supply
                     ? "demand"
                     : "supply";
      auto res = conn.run("candidates",
                          {std::string{other},
                           fmt::format("{}", data.sites[i].lon),
                           fmt::format("{}", data.sites[i].lat)});
      if (res.error) {
        std::fprintf(stderr, "bench-matching: %s\n",
                     res.error->describe().c_str());
        std::exit(1);
      }
    }
    auto secs = std::chrono::duration<double>(clock_type::now() - start)
                  .count();
    if (rep > 0)
      per_query.push_back(secs * 1e6 / static_cast<double>(queries));
  }
  r.postgis_us_per_query = median(per_query);
  conn.exec("DROP TABLE bench_match_flows");
  return r;
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
    } else if (auto reps = value("--reps")) {
      o.reps = std::stoi(reps);
    } else if (auto json = value("--json")) {
      o.json = json;
    } else if (auto density = value("--density")) {
      density_per_km2 = std::stod(density);
    } else if (a == "--quick") {
      o.sizes = {10000, 100000};
      o.events = 1000;
      o.reps = 1;
    } else {
      std::fprintf(stderr, "usage: bench-matching [--dsn=CONNINFO] "
                           "[--sizes=N,N,...] [--events=N] [--reps=N] "
                           "[--density=PER_KM2] [--json=PATH] [--quick]\n");
      return 2;
    }
  }
  std::vector<result> results;
  for (auto n : o.sizes) {
    std::fprintf(stderr, "bench-matching: %zu flows...\n", n);
    results.push_back(run_size(o, n));
  }
  std::printf("matching: heat flows at %.4f per km2, %zu updates per "
              "repetition, median of %d\n",
              density_per_km2, o.events, o.reps);
  std::printf("  %10s %12s %10s %14s %10s %12s %10s\n", "flows", "us/event",
              "evals/ev", "PostGIS us/q", "ratio", "bytes/flow", "matches");
  for (auto& r : results)
    std::printf("  %10zu %12.2f %10.1f %14.1f %9.0fx %12.0f %10.0f\n",
                r.flows, r.index_us_per_event, r.evaluations_per_event,
                r.postgis_us_per_query,
                r.postgis_us_per_query / r.index_us_per_event,
                r.bytes_per_flow, r.matches);
  auto& small = results.front();
  auto& big = results.back();
  std::printf("  per-event cost %zu vs %zu flows: %.2fx (target <= 2)\n",
              big.flows, small.flows,
              big.index_us_per_event / small.index_us_per_event);
  if (!o.json.empty()) {
    std::ofstream out{o.json};
    out << "{\"benchmark\":\"matching\",\"density_per_km2\":"
        << density_per_km2 << ",\"results\":[";
    for (size_t i = 0; i < results.size(); ++i) {
      auto& r = results[i];
      out << (i ? "," : "")
          << fmt::format("{{\"flows\":{},\"us_per_event\":{:.3f},"
                         "\"evaluations_per_event\":{:.2f},"
                         "\"postgis_us_per_query\":{:.2f},"
                         "\"ratio\":{:.1f},\"bytes_per_flow\":{:.0f},"
                         "\"matches\":{:.0f}}}",
                         r.flows, r.index_us_per_event,
                         r.evaluations_per_event, r.postgis_us_per_query,
                         r.postgis_us_per_query / r.index_us_per_event,
                         r.bytes_per_flow, r.matches);
    }
    out << fmt::format("],\"scaling\":{:.3f}}}\n",
                       big.index_us_per_event / small.index_us_per_event);
  }
  return 0;
}
