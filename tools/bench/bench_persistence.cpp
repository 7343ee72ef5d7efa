// bench-persistence: sites + flows persisted per second through the sync
// path (what the postgis_sync actors run: net-effect write sets of up to
// postgis.batch-size changes, bulk statements in one pipelined transaction, plus
// processed_events), against two baselines on the same indexed tables in
// the same run: a naive loop of one autocommitted INSERT per row, and COPY.
// Each measure: one warm-up, then the median of the repetitions. Reported
// as ratios, since this machine is shared and noisy.
//
//   build/bench-persistence [--dsn=CONNINFO] [--sites=N] [--reps=N]
//                           [--json=PATH] [--quick]

#include "tools/bench/bench_common.hpp"
#include "actors/postgis_sync.hpp"
#include "messages/batch.hpp"
#include "messages/routing_hash.hpp"
#include "messages/type_ids.hpp"
#include "storage/migrations.hpp"
#include "storage/pg.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using namespace flowmatch;
using flowmatch::bench::median;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string dsn = "host=127.0.0.1 port=54329 dbname=flowmatch user=flowmatch";
  size_t sites = 50000;
  size_t naive_rows = 3000;
  int reps = 3;
  std::string json;
};

std::vector<site> make_sites(size_t n) {
  std::vector<site> out;
  for (size_t i = 0; i < n; ++i) {
    site s;
    s.site_id = "bench-site-" + std::to_string(i);
    s.name = "Bench site " + std::to_string(i);
    s.lat = 40.0 + static_cast<double>(i % 1000) * 0.01;
    s.lon = 5.0 + static_cast<double>(i / 1000) * 0.01;
    s.country = std::string{"DE"};
    s.version = int64_t{1};
    out.push_back(std::move(s));
  }
  return out;
}

/// Two flows per site: a heat supply and a water demand.
std::vector<resource_flow> make_flows(const std::vector<site>& sites) {
  std::vector<resource_flow> out;
  for (auto& s : sites) {
    resource_flow h;
    h.flow_id = s.site_id + "-heat";
    h.site_id = s.site_id;
    h.direction = flow_direction::supply;
    h.resource = resource_class::heat;
    h.quantity = 12.5;
    h.unit = "GWh/yr";
    h.annual_quantity = 12500;
    h.operating_hours = 8000.0;
    h.temperature_c = 150.0;
    h.medium = std::string{"steam"};
    h.hazardous = false;
    out.push_back(h);
    resource_flow w;
    w.flow_id = s.site_id + "-water";
    w.site_id = s.site_id;
    w.direction = flow_direction::demand;
    w.resource = resource_class::water;
    w.quantity = 40;
    w.unit = "m3/h";
    w.annual_quantity = 40 * 8760.0;
    w.operating_hours = 8760.0;
    w.accepts_hazardous = false;
    out.push_back(w);
  }
  return out;
}

pg::connection connect(const options& o) {
  auto c = pg::connection::open(o.dsn, "flowmatch-bench");
  if (c.error) {
    std::fprintf(stderr, "bench-persistence: %s\n(start the cluster: tools/pg.sh start)\n",
                 c.error->describe().c_str());
    std::exit(1);
  }
  return std::move(*c.value);
}

void must(const std::optional<pg::db_error>& e, const char* what) {
  if (e) {
    std::fprintf(stderr, "bench-persistence: %s: %s\n", what,
                 e->describe().c_str());
    std::exit(1);
  }
}

/// Empty, indexed contract tables in schema `bench`.
pg::connection fresh(const options& o) {
  auto c = connect(o);
  must(c.exec("DROP SCHEMA IF EXISTS bench CASCADE").error, "drop");
  must(migrate(c, "bench").error, "migrate");
  must(store::prepare(c), "prepare");
  return c;
}

double seconds(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// The change batches registry workers would publish: one per site (the
/// site and its two flows).
std::vector<change_batch> worker_batches(const std::vector<site>& sites,
                                         const std::vector<resource_flow>& flows) {
  std::vector<change_batch> out;
  size_t event = 0;
  for (size_t i = 0; i < sites.size(); ++i) {
    change_batch b;
    change s;
    s.kind = change::site_upserted;
    s.event_id = "e" + std::to_string(event);
    s.site_data = sites[i];
    b.changes.push_back(std::move(s));
    b.event_ids.push_back("e" + std::to_string(event++));
    b.event_keys.push_back(sites[i].site_id);
    for (size_t k = 2 * i; k < 2 * i + 2; ++k) {
      change f;
      f.kind = change::flow_upserted;
      f.event_id = "e" + std::to_string(event);
      f.flow_data = flows[k];
      b.changes.push_back(std::move(f));
      b.event_ids.push_back("e" + std::to_string(event++));
      b.event_keys.push_back(sites[i].site_id);
    }
    out.push_back(std::move(b));
  }
  return out;
}

/// The store alone on one connection: the same batches folded into write
/// sets of postgis.batch-size changes, one transaction each.
double run_sync(const options& o, const std::vector<site>& sites,
                const std::vector<resource_flow>& flows) {
  auto c = fresh(o);
  auto batches = worker_batches(sites, flows);
  auto start = clock_type::now();
  store::write_set ws;
  for (size_t i = 0; i < batches.size(); ++i) {
    ws.add(batches[i]);
    if (ws.changes() >= postgis_settings{}.batch_size
        || i + 1 == batches.size()) {
      ws.collapse();
      must(store::write(c, ws), "sync write");
      ws.clear();
    }
  }
  return seconds(start, clock_type::now());
}

/// The deployed sync path: one postgis_sync actor (own connection) per
/// registry worker, fed the batches of the sites key-hash routing gives
/// it; the clock stops when every batch's commit answer came back.
double run_sync_actors(const options& o, const std::vector<site>& sites,
                       const std::vector<resource_flow>& flows,
                       uint32_t workers) {
  fresh(o);
  auto batches = worker_batches(sites, flows);
  caf::actor_system_config cfg;
  flowmatch::add_message_types(cfg);
  cfg.set("scheduler.max-threads", size_t{2});
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  postgis_settings ps;
  ps.dsn = o.dsn;
  ps.schema = "bench";
  std::vector<postgis_sync_actor> syncs;
  for (uint32_t w = 0; w < workers; ++w)
    syncs.push_back(
      sys.spawn<caf::detached>(postgis_sync, w, ps, dead_letter_sink_actor{},
                               std::string{}));
  auto start = clock_type::now();
  // Sent, not requested: each answer comes back as a plain message.
  for (auto& b : batches) {
    auto w = routing_slot(b.changes.front().site_data.site_id, workers);
    self->send(syncs[w], std::move(b));
  }
  for (size_t answers = 0; answers < batches.size(); ++answers)
    self->receive([](commit_result&) {},
                  caf::after(std::chrono::seconds{120}) >> [&] {
                    std::fprintf(stderr,
                                 "bench-persistence: sync actors stalled\n");
                    std::exit(1);
                  });
  auto elapsed = seconds(start, clock_type::now());
  for (auto& a : syncs)
    self->send_exit(a, caf::exit_reason::user_shutdown);
  return elapsed;
}

std::string copy_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\\' || ch == '\t' || ch == '\n' || ch == '\r')
      out.push_back('\\');
    out.push_back(ch);
  }
  return out;
}

double run_copy(const options& o, const std::vector<site>& sites,
                const std::vector<resource_flow>& flows) {
  auto c = fresh(o);
  auto start = clock_type::now();
  std::string data;
  for (auto& s : sites)
    data += fmt::format("{}\t{}\tSRID=4326;POINT({} {})\t{}\t{}\t{}\t\\N\t{}\n",
                        copy_escape(s.site_id), copy_escape(*s.name), s.lon,
                        s.lat, s.lat, s.lon, *s.country, *s.version);
  must(c.copy_in("COPY sites (site_id, name, geog, lat, lon, country, nace, "
                 "version) FROM STDIN",
                 data),
       "copy sites");
  data.clear();
  for (auto& f : flows)
    data += fmt::format(
      "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t\\N\t\\N\t{}\t{}\t\\N\t\\N\n",
      copy_escape(f.flow_id), copy_escape(f.site_id), to_string(f.direction),
      to_string(f.resource), f.quantity, f.unit, f.annual_quantity,
      f.effective_hours(),
      f.temperature_c ? fmt::format("{}", *f.temperature_c) : "\\N",
      f.medium ? *f.medium : "\\N",
      f.hazardous ? (*f.hazardous ? "t" : "f") : "\\N",
      f.accepts_hazardous ? (*f.accepts_hazardous ? "t" : "f") : "\\N");
  must(c.copy_in("COPY resource_flows (flow_id, site_id, direction, resource, "
                 "quantity, unit, annual_quantity, operating_hours, "
                 "temperature_c, medium, ewc, accepts_ewc, hazardous, "
                 "accepts_hazardous, max_transport_km, version) FROM STDIN",
                 data),
       "copy flows");
  return seconds(start, clock_type::now());
}

/// One INSERT per row, each its own (autocommitted) transaction.
double run_naive(const options& o, const std::vector<site>& sites,
                 const std::vector<resource_flow>& flows, size_t rows) {
  auto c = fresh(o);
  must(c.prepare("naive_site",
                 "INSERT INTO sites (site_id, name, geog, lat, lon, country, "
                 "version) VALUES ($1, $2, ST_SetSRID(ST_MakePoint($4, $3), "
                 "4326)::geography, $3, $4, $5, $6)"),
       "prepare");
  must(c.prepare("naive_flow",
                 "INSERT INTO resource_flows (flow_id, site_id, direction, "
                 "resource, quantity, unit, annual_quantity, "
                 "operating_hours, temperature_c, medium, hazardous, "
                 "accepts_hazardous) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                 "$9, $10, $11, $12)"),
       "prepare");
  auto num = [](double v) { return fmt::format("{}", v); };
  auto start = clock_type::now();
  size_t done = 0;
  for (size_t i = 0; i < sites.size() && done < rows; ++i) {
    auto& s = sites[i];
    must(c.run("naive_site", {s.site_id, *s.name, num(s.lat), num(s.lon),
                              *s.country, std::to_string(*s.version)})
           .error,
         "naive site");
    ++done;
    for (size_t k = 2 * i; k < 2 * i + 2 && done < rows; ++k, ++done) {
      auto& f = flows[k];
      pg::param temp, medium, hazardous, accepts;
      if (f.temperature_c)
        temp = num(*f.temperature_c);
      if (f.medium)
        medium = *f.medium;
      if (f.hazardous)
        hazardous = *f.hazardous ? "t" : "f";
      if (f.accepts_hazardous)
        accepts = *f.accepts_hazardous ? "t" : "f";
      must(c.run("naive_flow",
                 {f.flow_id, f.site_id, std::string{to_string(f.direction)},
                  std::string{to_string(f.resource)}, num(f.quantity), f.unit,
                  num(f.annual_quantity), num(f.effective_hours()), temp,
                  medium, hazardous, accepts})
             .error,
           "naive flow");
    }
  }
  return static_cast<double>(done) / seconds(start, clock_type::now());
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
    if (auto dsn = value("--dsn"))
      o.dsn = dsn;
    else if (auto n = value("--sites"))
      o.sites = std::stoul(n);
    else if (auto reps = value("--reps"))
      o.reps = std::stoi(reps);
    else if (auto json = value("--json"))
      o.json = json;
    else if (a == "--quick") {
      o.sites = 3000;
      o.naive_rows = 1000;
      o.reps = 1;
    } else {
      std::fprintf(stderr, "usage: bench-persistence [--dsn=CONNINFO] "
                           "[--sites=N] [--reps=N] [--json=PATH] [--quick]\n");
      return 2;
    }
  }
  auto sites = make_sites(o.sites);
  auto flows = make_flows(sites);
  double rows = static_cast<double>(sites.size() + flows.size());
  std::fprintf(stderr, "bench-persistence: %zu sites + %zu flows, %d reps\n",
               sites.size(), flows.size(), o.reps);
  // Warm-up: caches, catalog, WAL segments.
  run_copy(o, sites, flows);
  run_sync(o, sites, flows);
  std::vector<double> sync_rates, one_rates, copy_rates, naive_rates;
  for (int r = 0; r < o.reps; ++r) {
    std::fprintf(stderr, "  repetition %d of %d\n", r + 1, o.reps);
    copy_rates.push_back(rows / run_copy(o, sites, flows));
    sync_rates.push_back(rows / run_sync_actors(o, sites, flows, 2));
    one_rates.push_back(rows / run_sync(o, sites, flows));
    naive_rates.push_back(run_naive(o, sites, flows, o.naive_rows));
  }
  double sync = median(sync_rates);
  double one = median(one_rates);
  double copy = median(copy_rates);
  double naive = median(naive_rates);
  std::printf("persistence: %.0f rows (sites + flows), rows/s, median of %d\n",
              rows, o.reps);
  std::printf("  sync path, 2 sync actors       %10.0f\n", sync);
  std::printf("  store writes, 1 connection     %10.0f\n", one);
  std::printf("  COPY, 1 connection             %10.0f\n", copy);
  std::printf("  naive INSERT per row           %10.0f\n", naive);
  std::printf("  sync path / COPY               %10.2f   (target >= 0.70)\n",
              sync / copy);
  std::printf("  sync path / naive              %10.1f   (target >= 20)\n",
              sync / naive);
  std::printf("  1-connection store / COPY      %10.2f\n", one / copy);
  if (rows < 100000)
    std::printf("  (a quick run: too few rows to fill the sync path's "
                "transactions; the targets apply to full runs)\n");
  if (!o.json.empty()) {
    std::ofstream out{o.json};
    out << fmt::format(
      "{{\"benchmark\":\"persistence\",\"rows\":{},\"reps\":{},"
      "\"sync_rows_per_s\":{:.0f},\"copy_rows_per_s\":{:.0f},"
      "\"naive_rows_per_s\":{:.0f},\"store_one_connection_rows_per_s\":{:.0f},"
      "\"sync_over_copy\":{:.3f},\"sync_over_naive\":{:.2f}}}\n",
      rows, o.reps, sync, copy, naive, one, sync / copy, sync / naive);
  }
  auto c = connect(o);
  c.exec("DROP SCHEMA IF EXISTS bench CASCADE");
  return 0;
}
