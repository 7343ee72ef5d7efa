// bench-pipeline: the measures of the performance suite that need the real
// pipeline in one process, each beside a baseline of the same run:
//
//   ingest    NDJSON lines decoded and validated per second, against reading
//             the same file's lines (no decoding)
//   latency   p50 / p99 / p99.9 from an event entering the dispatcher to its
//             change applied and its matches computed (memory), or committed
//             with its matches (PostGIS), at 50 % and 90 % of the measured
//             maximum rate; baseline: a no-op pipeline at the same rates
//   memory    bytes held per site, per flow and per match, against the bytes
//             of their NDJSON events
//   overload  RSS while a producer far faster than a slowed handler pushes
//             for several seconds (flat, as backpressure promises)
//
//   build/bench-pipeline --file=EVENTS.ndjson [--dsn=CONNINFO] [--quick]
//                        [--reps=N] [--json=PATH] [--only=SECTION,...]
//
// tools/bench/suite.py runs it with the other benchmarks and writes the
// report; the file is a generated event log (tools/generate_events.py).

#include "tools/bench/bench_common.hpp"
#include "actors/commit_coordinator.hpp"
#include "actors/dead_letter_file_sink.hpp"
#include "actors/dispatcher.hpp"
#include "core/event_id_window.hpp"
#include "actors/match_partition.hpp"
#include "actors/match_router.hpp"
#include "actors/match_writer.hpp"
#include "actors/postgis_sync.hpp"
#include "actors/registry_worker.hpp"
#include "messages/decoder.hpp"
#include "messages/encoder.hpp"
#include "messages/type_ids.hpp"
#include "base/logging.hpp"
#include "storage/migrations.hpp"
#include "storage/pg.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <malloc.h>
#include <sys/resource.h>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace flowmatch;
using flowmatch::bench::median;
using flowmatch::resident_bytes;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string file;
  std::string dsn;
  std::string json;
  std::string only = "ingest,latency,memory,overload";
  int reps = 3;
  bool quick = false;
  size_t sites = 50000;            ///< preloaded for latency and memory
  double seconds_per_load = 3.0;   ///< paced latency run length
  double overload_seconds = 6.0;
  /// postgis.max-batch-age of the sync and the match writers.
  std::chrono::milliseconds max_batch_age{20};
  /// match.partitions-per-class of the match service.
  uint32_t partitions = 1;
  /// CAF scheduler settings (`work-stealing.*`): numbers, or durations in
  /// microseconds for keys that end in `-duration`.
  std::vector<std::pair<std::string, std::string>> caf_settings;
  /// Shares of the maximum rate to measure latency at (empty: the
  /// suite's 25, 50, 75 and 90 %).
  std::vector<double> loads;
};

bool wants(const options& o, const char* section) {
  return ("," + o.only + ",").find(std::string{","} + section + ",")
         != std::string::npos;
}

/// User and system CPU seconds of this process so far.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

/// Bytes allocated on the heap now (every thread allocates from the main
/// arena: main() sets M_ARENA_MAX to 1, so this counts all of them). More
/// exact than RSS for bytes per entity.
size_t heap_bytes() {
  auto m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           clock_type::now().time_since_epoch())
    .count();
}

// -- ingest ---------------------------------------------------------------

struct ingest_result {
  size_t lines = 0;
  size_t events = 0;
  double decode_per_s = 0;
  double read_per_s = 0;
};

/// Reads the file in 1 MiB blocks and hands each line to `on_line`.
template <class F>
size_t for_each_line(const std::string& path, F on_line) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "bench-pipeline: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  std::vector<char> buf(1 << 20);
  std::string carry;
  size_t lines = 0;
  for (;;) {
    auto n = std::fread(buf.data(), 1, buf.size(), f);
    if (n == 0)
      break;
    const char* p = buf.data();
    const char* end = p + n;
    while (p < end) {
      auto nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
      if (nl == nullptr) {
        carry.append(p, end);
        break;
      }
      if (!carry.empty()) {
        carry.append(p, nl);
        on_line(std::string_view{carry}, ++lines);
        carry.clear();
      } else {
        on_line(std::string_view{p, static_cast<size_t>(nl - p)}, ++lines);
      }
      p = nl + 1;
    }
  }
  if (!carry.empty())
    on_line(std::string_view{carry}, ++lines);
  std::fclose(f);
  return lines;
}

ingest_result bench_ingest(const options& o) {
  ingest_result r;
  std::vector<double> decode, read;
  for (int rep = 0; rep < o.reps + 1; ++rep) {
    // Baseline: the same lines read, each touched once, nothing decoded.
    size_t checksum = 0;
    auto start = clock_type::now();
    auto lines = for_each_line(o.file, [&](std::string_view l, size_t) {
      checksum += l.size();
    });
    auto read_s = std::chrono::duration<double>(clock_type::now() - start)
                    .count();
    // Ours: every line decoded and validated into an event or a rejection.
    event_decoder decoder;
    size_t events = 0;
    start = clock_type::now();
    for_each_line(o.file, [&](std::string_view l, size_t n) {
      auto res = decoder.decode(l, event_origin{"bench", n});
      events += std::holds_alternative<event>(res) ? 1 : 0;
    });
    auto decode_s = std::chrono::duration<double>(clock_type::now() - start)
                      .count();
    if (checksum == 0)
      std::fprintf(stderr, "bench-pipeline: empty input\n");
    if (rep == 0)
      continue;
    r.lines = lines;
    r.events = events;
    read.push_back(static_cast<double>(lines) / read_s);
    decode.push_back(static_cast<double>(lines) / decode_s);
  }
  r.read_per_s = median(read);
  r.decode_per_s = median(decode);
  return r;
}

// -- the pipeline -----------------------------------------------------------

/// Heat flows at one site each, uniform at 0.005 per km2 around (48, 14)
/// (a dense industrial region: a few matches per flow).
struct workload {
  std::vector<event> sites;
  std::vector<event> flows;
  std::vector<resource_flow> flow_values;
};

workload make_workload(size_t n) {
  workload w;
  std::mt19937 rng{11};
  std::uniform_real_distribution<double> u{0, 1};
  double side_km = std::sqrt(static_cast<double>(n) / 0.005);
  double dlat = side_km / 111.2;
  double dlon = side_km / (111.2 * std::cos(48.0 * M_PI / 180.0));
  for (size_t i = 0; i < n; ++i) {
    event s;
    s.id = "s" + std::to_string(i);
    s.type = event_type::site_created;
    s.site_data.site_id = "site" + std::to_string(i);
    s.site_data.name = "Site " + std::to_string(i);
    s.site_data.lat = 48.0 + (u(rng) - 0.5) * dlat;
    s.site_data.lon = 14.0 + (u(rng) - 0.5) * dlon;
    w.sites.push_back(std::move(s));
    resource_flow f;
    f.flow_id = "flow" + std::to_string(i);
    f.site_id = "site" + std::to_string(i);
    f.direction = i % 2 == 0 ? flow_direction::supply : flow_direction::demand;
    f.resource = resource_class::heat;
    f.quantity = f.annual_quantity = 1000 + u(rng) * 100000;
    f.unit = "MWh/yr";
    f.temperature_c = f.direction == flow_direction::supply
                        ? 60 + u(rng) * 100
                        : 50 + u(rng) * 60;
    event e;
    e.id = "f" + std::to_string(i);
    e.type = event_type::resource_flow_created;
    e.flow_data = f;
    w.flow_values.push_back(f);
    w.flows.push_back(std::move(e));
  }
  return w;
}

/// Updates of random flows (a new quantity), with ids u<index>.
std::vector<event> make_updates(const workload& w, size_t n, size_t first) {
  std::mt19937 rng{static_cast<unsigned>(first + 5)};
  std::uniform_int_distribution<size_t> pick{0, w.flow_values.size() - 1};
  std::uniform_real_distribution<double> u{0, 1};
  std::vector<event> out(n);
  for (size_t k = 0; k < n; ++k) {
    auto& e = out[k];
    e.id = "u" + std::to_string(first + k);
    e.type = event_type::resource_flow_updated;
    e.flow_data = w.flow_values[pick(rng)];
    e.flow_data.quantity = e.flow_data.annual_quantity
      = 1000 + u(rng) * 100000;
  }
  return out;
}

/// Where an event's latency ends. The probe stands between the registry
/// workers and the commit coordinator: it passes each batch on with its
/// report addressed to itself, and records the batch's events when the
/// report comes back, which is when the pool would get it (changes
/// applied, matches computed, and with PostGIS matches and entities
/// committed); then it hands the report on to the pool. The baseline's
/// no-op workers send it their ids directly.
struct probe_log {
  std::vector<int64_t> done_ns; ///< by update index; 0 = not seen
};

caf::behavior probe(caf::event_based_actor* self,
                    std::shared_ptr<probe_log> log,
                    std::shared_ptr<commit_coordinator_actor> next) {
  struct pending {
    worker_pool_actor pool;
    std::vector<std::string> ids;
  };
  auto waiting = std::make_shared<std::map<std::pair<uint32_t, uint64_t>,
                                           pending>>();
  auto record = [log](const std::vector<std::string>& ids) {
    auto t = now_ns();
    for (auto& id : ids)
      if (!id.empty() && id[0] == 'u') {
        auto i = std::strtoull(id.c_str() + 1, nullptr, 10);
        if (i < log->done_ns.size())
          log->done_ns[i] = t;
      }
  };
  return {
    [=](change_batch& b) { record(b.event_ids); }, // the baseline
    [=](commit_atom, commit_ticket& t, change_batch& b) {
      (*waiting)[{t.worker, t.seq}] = pending{t.pool, b.event_ids};
      t.pool = caf::actor_cast<worker_pool_actor>(self);
      self->send(*next, commit_atom::value, std::move(t), std::move(b));
    },
    [=](done_atom, uint32_t worker, uint64_t seq, uint64_t count,
        registry_stats& stats, bool complete) {
      auto i = waiting->find({worker, seq});
      if (i == waiting->end())
        return;
      record(i->second.ids);
      self->send(i->second.pool, done_atom::value, worker, seq, count,
                 std::move(stats), complete);
      waiting->erase(i);
    },
    [](caf::get_atom) { return caf::ok_atom::value; },
  };
}

struct pipeline {
  dispatcher_actor dispatcher;
  match_router_actor router;
  caf::actor probe_actor;
  std::vector<caf::actor> others;
};

constexpr uint32_t workers = 2;

/// The node's stages as start-up wires them (registry workers -> match
/// service -> [PostGIS sync]), with the probe at the end of the chain.
pipeline make_pipeline(caf::actor_system& sys, const std::string& dsn,
                       const std::string& schema,
                       std::shared_ptr<probe_log> log,
                       std::chrono::milliseconds max_batch_age,
                       uint32_t partitions_per_class) {
  pipeline p;
  auto dead = caf::actor_cast<dead_letter_sink_actor>(
    sys.spawn<caf::detached>(dead_letter_file_sink, std::string{}));
  p.others.push_back(caf::actor_cast<caf::actor>(dead));
  postgis_settings pg;
  pg.dsn = dsn;
  pg.schema = schema;
  pg.max_age = max_batch_age;
  auto coordinator = sys.spawn(commit_coordinator, wait_limits{});
  p.others.push_back(caf::actor_cast<caf::actor>(coordinator));
  if (!dsn.empty())
    for (uint32_t i = 0; i < workers; ++i) {
      auto s = sys.spawn<caf::detached>(postgis_sync, i, pg, dead,
                                        std::string{});
      p.others.push_back(caf::actor_cast<caf::actor>(s));
      caf::anon_send(coordinator, subscribe_atom::value, commit_sink_actor{s},
                     i);
    }
  p.probe_actor = sys.spawn(
    probe, log, std::make_shared<commit_coordinator_actor>(coordinator));
  match_tiling tiling{match_settings{}, partitions_per_class};
  std::vector<std::vector<match_sink_actor>> sinks(match_tiling::classes);
  if (!dsn.empty())
    for (uint32_t c = 0; c < match_tiling::classes; ++c) {
      auto w = caf::actor_cast<match_sink_actor>(sys.spawn<caf::detached>(
        match_writer,
        std::string{to_string(static_cast<resource_class>(c))}, pg,
        store::fence{}));
      p.others.push_back(caf::actor_cast<caf::actor>(w));
      sinks[c].push_back(w);
    }
  std::vector<match_partition_actor> partitions;
  for (uint32_t k = 0; k < tiling.partitions(); ++k) {
    auto cls = tiling.class_of(k);
    auto part = sys.spawn(match_partition, cls, partition_label(tiling, k),
                          match_settings{},
                          sinks[static_cast<size_t>(cls)], wait_limits{});
    p.others.push_back(caf::actor_cast<caf::actor>(part));
    partitions.push_back(part);
  }
  p.router = sys.spawn(match_router, std::move(partitions), std::move(tiling),
                       wait_limits{}, 0u);
  caf::anon_send(coordinator, subscribe_atom::value,
                 commit_sink_actor{p.router}, all_workers);
  group_settings g;
  g.name = "registry";
  g.workers = workers;
  g.policy = routing_policy::key_hash;
  g.max_in_flight = 65536;
  g.handles = contract_event_types();
  // The workers report to the probe, which passes everything on to the
  // coordinator.
  g.factory = registry_worker_factory(
    caf::actor_cast<commit_coordinator_actor>(p.probe_actor), dead,
    registry_worker_settings{});
  p.dispatcher = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  return p;
}

/// The baseline pipeline: the dispatcher and a supervised pool whose
/// workers only tell the probe each batch's ids and report it done.
pipeline make_noop_pipeline(caf::actor_system& sys,
                            std::shared_ptr<probe_log> log) {
  pipeline p;
  p.probe_actor = sys.spawn(probe, log,
                            std::make_shared<commit_coordinator_actor>());
  auto probe_actor = p.probe_actor;
  auto g = bench::bench_group(
    "noop", workers, routing_policy::key_hash,
    [probe_actor](const event_batch& batch) {
      change_batch ids;
      ids.event_ids.reserve(batch.size());
      for (size_t i = 0; i < batch.size(); ++i)
        ids.event_ids.push_back(batch.at(i).id);
      caf::anon_send(probe_actor, std::move(ids));
    });
  p.dispatcher = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  return p;
}

void stop(pipeline& p) {
  caf::anon_send_exit(p.dispatcher, caf::exit_reason::user_shutdown);
  if (p.router)
    caf::anon_send_exit(p.router, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(p.probe_actor, caf::exit_reason::user_shutdown);
  for (auto& a : p.others)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

/// Feeds events unpaced in a source's batches of 1024, each sent once the
/// one before is admitted, then waits for the drain. Returns events per
/// second.
double feed_all(caf::scoped_actor& self, const pipeline& p,
                std::vector<event> events) {
  auto start = clock_type::now();
  for (size_t i = 0; i < events.size(); i += 1024) {
    std::vector<event> b(std::make_move_iterator(events.begin() + i),
                         std::make_move_iterator(
                           events.begin() + std::min(events.size(), i + 1024)));
    self->request(p.dispatcher, caf::infinite, ingest_atom::value, std::move(b))
      .receive([](caf::ok_atom) {}, [](caf::error&) {});
  }
  self->request(p.dispatcher, caf::infinite, drain_atom::value)
    .receive([](caf::ok_atom) {}, [](caf::error&) {});
  auto secs = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(events.size()) / secs;
}

struct percentiles {
  double p25 = 0, p50 = 0, p75 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  size_t seen = 0, sent = 0;
};

/// Sends `events` at `rate` per second, one batch per millisecond, then
/// drains; the latency of each is its probe time minus its send time.
percentiles feed_paced(caf::scoped_actor& self, const pipeline& p,
                       std::vector<event> events, size_t first, double rate,
                       probe_log& log) {
  std::vector<int64_t> sent_ns(events.size(), 0);
  auto per_batch = std::max<size_t>(1, static_cast<size_t>(rate / 1000));
  auto tick = std::chrono::nanoseconds{
    static_cast<int64_t>(1e9 * static_cast<double>(per_batch) / rate)};
  // The batches are cut before the clock starts: the producer only stamps
  // and sends while it keeps the pace (it shares the two cores).
  std::vector<std::vector<event>> batches;
  for (size_t i = 0; i < events.size(); i += per_batch) {
    auto end = std::min(events.size(), i + per_batch);
    batches.emplace_back(std::make_move_iterator(events.begin() + i),
                         std::make_move_iterator(events.begin() + end));
  }
  auto next = clock_type::now();
  for (size_t b = 0, i = 0; b < batches.size(); ++b, i += per_batch) {
    std::this_thread::sleep_until(next);
    next += tick;
    auto t = now_ns();
    for (size_t k = i; k < i + batches[b].size(); ++k)
      sent_ns[k] = t;
    // Not waiting for admission: a paced producer keeps its pace.
    self->send(p.dispatcher, ingest_atom::value, std::move(batches[b]));
  }
  self->request(p.dispatcher, caf::infinite, drain_atom::value)
    .receive([](caf::ok_atom) {}, [](caf::error&) {});
  // Every probe record happened before this answer.
  self->request(p.probe_actor, caf::infinite, caf::get_atom::value)
    .receive([](caf::ok_atom) {}, [](caf::error&) {});
  if (auto* path = std::getenv("BENCH_TIMELINE")) {
    // For looking into the tail: per batch, its send time and its
    // slowest event's latency (ms).
    if (auto* f = std::fopen(path, "a")) {
      for (size_t i = 0; i < events.size(); i += per_batch) {
        double worst = 0;
        for (size_t k = i; k < std::min(events.size(), i + per_batch); ++k)
          if (log.done_ns[first + k] != 0)
            worst = std::max(worst, static_cast<double>(
                                      log.done_ns[first + k] - sent_ns[k])
                                      / 1e6);
        std::fprintf(f, "%.6f %.3f\n",
                     static_cast<double>(sent_ns[i]) / 1e9,
                     worst);
      }
      std::fprintf(f, "\n");
      std::fclose(f);
    }
  }
  std::vector<double> lat;
  lat.reserve(events.size());
  for (size_t k = 0; k < events.size(); ++k)
    if (log.done_ns[first + k] != 0)
      lat.push_back(static_cast<double>(log.done_ns[first + k] - sent_ns[k])
                    / 1e6);
  percentiles r;
  r.sent = events.size();
  r.seen = lat.size();
  if (lat.empty())
    return r;
  std::sort(lat.begin(), lat.end());
  auto at = [&](double q) {
    return lat[std::min(lat.size() - 1,
                        static_cast<size_t>(q * static_cast<double>(lat.size())))];
  };
  r.p25 = at(0.25);
  r.p50 = at(0.5);
  r.p75 = at(0.75);
  r.p90 = at(0.9);
  r.p99 = at(0.99);
  r.p999 = at(0.999);
  r.max = lat.back();
  return r;
}

struct latency_point {
  double load = 0; ///< share of the maximum rate
  double rate = 0;
  percentiles ours, baseline;
};

struct latency_result {
  std::string mode;
  double max_rate = 0;
  double cpu_us_per_event = 0;
  double baseline_max_rate = 0;
  std::vector<latency_point> points;
};

latency_result bench_latency(caf::actor_system& sys, const options& o,
                             const std::string& dsn) {
  latency_result r;
  r.mode = dsn.empty() ? "memory" : "postgis";
  std::string schema = "bench_pipeline";
  if (!dsn.empty()) {
    auto c = pg::connection::open(dsn, "bench-pipeline");
    if (c.error) {
      std::fprintf(stderr, "bench-pipeline: %s\n",
                   c.error->describe().c_str());
      std::exit(1);
    }
    c.value->exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    auto m = migrate(*c.value, schema);
    if (m.error) {
      std::fprintf(stderr, "bench-pipeline: %s\n",
                   m.error->describe().c_str());
      std::exit(1);
    }
  }
  auto w = make_workload(o.sites);
  size_t max_updates = o.quick ? 100000 : 400000;
  auto log = std::make_shared<probe_log>();
  log->done_ns.assign(max_updates * 8, 0);
  auto noop_log = std::make_shared<probe_log>();
  noop_log->done_ns.assign(max_updates * 8, 0);
  caf::scoped_actor self{sys};
  auto p = make_pipeline(sys, dsn, schema, log, o.max_batch_age, o.partitions);
  auto noop = make_noop_pipeline(sys, noop_log);
  std::fprintf(stderr, "bench-pipeline: latency (%s): preloading %zu sites "
                       "and flows\n", r.mode.c_str(), o.sites);
  feed_all(self, p, w.sites);
  feed_all(self, p, w.flows);
  // The maximum rate: updates as fast as admission allows.
  size_t first = 0;
  std::vector<double> max_ours, max_noop;
  for (int rep = 0; rep < 2; ++rep) {
    auto updates = make_updates(w, max_updates, first);
    auto cpu_before = cpu_seconds();
    max_ours.push_back(feed_all(self, p, std::move(updates)));
    // CPU of the whole process (every stage, both scheduler threads) per
    // event at the maximum rate: what bounds the rate on two cores.
    r.cpu_us_per_event = (cpu_seconds() - cpu_before) * 1e6
                         / static_cast<double>(max_updates);
    max_noop.push_back(
      feed_all(self, noop, make_updates(w, max_updates, first)));
    first += max_updates;
  }
  r.max_rate = *std::max_element(max_ours.begin(), max_ours.end());
  r.baseline_max_rate = *std::max_element(max_noop.begin(), max_noop.end());
  std::fprintf(stderr, "bench-pipeline: latency (%s): max %.0f events/s "
                       "(no-op pipeline %.0f)\n",
               r.mode.c_str(), r.max_rate, r.baseline_max_rate);
  auto loads = !o.loads.empty() ? o.loads
               : o.quick      ? std::vector<double>{0.5, 0.9}
                              : std::vector<double>{0.25, 0.5, 0.75, 0.9};
  for (double load : loads) {
    latency_point pt;
    pt.load = load;
    pt.rate = load * r.max_rate;
    auto n = std::min(max_updates,
                      static_cast<size_t>(pt.rate * o.seconds_per_load));
    std::fprintf(stderr, "bench-pipeline: latency (%s): %.0f events/s for "
                         "%.1f s\n", r.mode.c_str(), pt.rate,
                 static_cast<double>(n) / pt.rate);
    pt.ours = feed_paced(self, p, make_updates(w, n, first), first, pt.rate,
                         *log);
    pt.baseline = feed_paced(self, noop, make_updates(w, n, first), first,
                             pt.rate, *noop_log);
    first += n;
    r.points.push_back(pt);
  }
  stop(p);
  stop(noop);
  return r;
}

// -- memory ---------------------------------------------------------------

struct memory_result {
  size_t sites = 0, flows = 0, matches = 0;
  double bytes_per_site = 0, bytes_per_flow = 0, bytes_per_match = 0;
  double ndjson_bytes_per_site = 0, ndjson_bytes_per_flow = 0;
  /// The source's dedup window: bytes per remembered event id, for ids of
  /// the length of a UUID (what producers commonly send).
  size_t event_ids = 0;
  double bytes_per_event_id = 0, id_bytes = 0;
};

/// Heap bytes per event id the dedup window holds, after `n` admissions.
void measure_dedup_window(memory_result& r, size_t n) {
  std::vector<std::string> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i)
    ids.push_back(fmt::format("{:08x}-4b1d-4c0e-9a7f-{:012x}", i * 2654435761u,
                              i));
  ::malloc_trim(0);
  auto before = heap_bytes();
  {
    auto w = std::make_unique<event_id_window>(default_dedup_retention.count());
    for (auto& id : ids)
      w->admit(id, 1);
    r.bytes_per_event_id = (static_cast<double>(heap_bytes())
                            - static_cast<double>(before))
                           / static_cast<double>(n);
  }
  r.event_ids = n;
  r.id_bytes = static_cast<double>(ids.front().size());
}

/// The bytes of the entity as a contract line (the state file's form).
size_t ndjson_size(const event& e) {
  return is_site_event(e.type) ? site_snapshot_line(e.site_data).size()
                               : flow_snapshot_line(e.flow_data).size();
}

memory_result bench_memory(caf::actor_system& sys, const options& o) {
  memory_result r;
  auto log = std::make_shared<probe_log>();
  caf::scoped_actor self{sys};
  auto p = make_pipeline(sys, "", "", log, o.max_batch_age, o.partitions);
  auto w = make_workload(o.sites);
  // Sites only, then the supplies (no demand yet: no match), then the
  // demands (which bring the matches).
  std::vector<event> supplies, demands;
  double site_bytes = 0, flow_bytes = 0;
  for (auto& e : w.sites)
    site_bytes += static_cast<double>(ndjson_size(e));
  for (auto& e : w.flows) {
    flow_bytes += static_cast<double>(ndjson_size(e));
    (e.flow_data.direction == flow_direction::supply ? supplies : demands)
      .push_back(e);
  }
  auto settle = [&] { return heap_bytes(); };
  auto before = settle();
  feed_all(self, p, w.sites);
  auto after_sites = settle();
  auto n_supplies = supplies.size();
  feed_all(self, p, std::move(supplies));
  auto after_supplies = settle();
  auto n_demands = demands.size();
  feed_all(self, p, std::move(demands));
  auto after_demands = settle();
  uint64_t matches = 0;
  self->request(p.router, std::chrono::minutes{1}, matches_atom::value)
    .receive([&](uint64_t n) { matches = n; }, [](caf::error&) {});
  r.sites = w.sites.size();
  r.flows = n_supplies + n_demands;
  r.matches = matches;
  r.bytes_per_site = (static_cast<double>(after_sites) - static_cast<double>(before))
                     / static_cast<double>(r.sites);
  r.bytes_per_flow = (static_cast<double>(after_supplies) - static_cast<double>(after_sites))
                     / static_cast<double>(n_supplies);
  double demand_bytes = static_cast<double>(after_demands)
                        - static_cast<double>(after_supplies);
  r.bytes_per_match = matches == 0
                        ? 0
                        : std::max(0.0, demand_bytes
                                          - r.bytes_per_flow
                                              * static_cast<double>(n_demands))
                            / static_cast<double>(matches);
  r.ndjson_bytes_per_site = site_bytes / static_cast<double>(r.sites);
  r.ndjson_bytes_per_flow = flow_bytes / static_cast<double>(w.flows.size());
  stop(p);
  measure_dedup_window(r, 1'000'000);
  return r;
}

// -- overload -------------------------------------------------------------

struct overload_result {
  double handler_per_s = 0;  ///< what the slowed handler takes
  double offered_per_s = 0;  ///< what the producer offers unthrottled
  double seconds = 0;
  size_t rss_start = 0, rss_peak = 0, rss_end = 0;
  double growth_second_half_mb = 0;
  std::vector<std::pair<double, double>> samples; ///< (s, MiB)
};

overload_result bench_overload(caf::actor_system& sys, const options& o) {
  overload_result r;
  // 10 us per event: two workers take about 200,000 events/s. Detached,
  // so their sleeping does not stall the scheduler.
  auto g = bench::bench_group(
    "slow", workers, routing_policy::round_robin,
    [](const event_batch& batch) {
      std::this_thread::sleep_for(std::chrono::microseconds{10}
                                  * static_cast<int64_t>(batch.size()));
    },
    true);
  auto d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  caf::scoped_actor self{sys};
  // The offered rate: the same producer into a no-op pipeline.
  {
    auto log = std::make_shared<probe_log>();
    auto noop = make_noop_pipeline(sys, log);
    auto w = make_workload(20000);
    r.offered_per_s = feed_all(self, noop, make_updates(w, 400000, 0));
    stop(noop);
  }
  auto w = make_workload(20000);
  auto batch_template = make_updates(w, 1024, 0);
  ::malloc_trim(0);
  r.rss_start = resident_bytes();
  r.rss_peak = r.rss_start;
  auto start = clock_type::now();
  auto next_sample = start;
  size_t sent = 0, outstanding = 0;
  auto elapsed = [&] {
    return std::chrono::duration<double>(clock_type::now() - start).count();
  };
  // As fast as admission allows, two batches unanswered, like the source.
  while (elapsed() < o.overload_seconds) {
    self->send(d, ingest_atom::value, batch_template);
    sent += batch_template.size();
    if (++outstanding >= 2) {
      self->receive([&](caf::ok_atom) { --outstanding; });
    }
    if (clock_type::now() >= next_sample) {
      auto rss = resident_bytes();
      r.rss_peak = std::max(r.rss_peak, rss);
      r.samples.emplace_back(elapsed(), static_cast<double>(rss) / 1048576.0);
      next_sample += std::chrono::milliseconds{100};
    }
  }
  while (outstanding > 0)
    self->receive([&](caf::ok_atom) { --outstanding; });
  self->request(d, caf::infinite, drain_atom::value)
    .receive([](caf::ok_atom) {}, [](caf::error&) {});
  r.seconds = elapsed();
  r.handler_per_s = static_cast<double>(sent) / r.seconds;
  r.rss_end = resident_bytes();
  // Growth over the second half of the samples.
  if (r.samples.size() >= 4) {
    auto mid = r.samples.size() / 2;
    r.growth_second_half_mb = r.samples.back().second - r.samples[mid].second;
  }
  caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  return r;
}

} // namespace

int main(int argc, char** argv) {
  // One malloc arena for all threads, so mallinfo2 sees every allocation.
  ::mallopt(M_ARENA_MAX, 1);
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* key) {
      return bench::option_value(argv[i], key);
    };
    if (auto v = value("--file"))
      o.file = v;
    else if (auto v_dsn = value("--dsn"))
      o.dsn = v_dsn;
    else if (auto v_json = value("--json"))
      o.json = v_json;
    else if (auto v_only = value("--only"))
      o.only = v_only;
    else if (auto v_reps = value("--reps"))
      o.reps = std::stoi(v_reps);
    else if (auto v_sites = value("--sites"))
      o.sites = std::stoul(v_sites);
    else if (auto v_log = value("--log-level"))
      configure_logging(v_log, "%H:%M:%S.%e %l %v");
    else if (auto v_caf = value("--caf")) {
      std::string kv = v_caf;
      auto eq = kv.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "bench-pipeline: --caf=KEY=VALUE\n");
        return 2;
      }
      o.caf_settings.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else if (auto v_loads = value("--loads")) {
      std::string list = v_loads;
      for (size_t at = 0; at < list.size();) {
        auto comma = list.find(',', at);
        if (comma == std::string::npos)
          comma = list.size();
        o.loads.push_back(std::stod(list.substr(at, comma - at)));
        at = comma + 1;
      }
    } else if (auto v_parts = value("--partitions"))
      o.partitions = static_cast<uint32_t>(std::stoul(v_parts));
    else if (auto v_age = value("--max-batch-age"))
      o.max_batch_age = std::chrono::milliseconds{std::stol(v_age)};
    else if (a == "--quick") {
      o.quick = true;
      o.reps = 1;
      o.sites = 10000;
      o.seconds_per_load = 1.0;
      o.overload_seconds = 2.0;
    } else {
      std::fprintf(stderr,
                   "usage: bench-pipeline --file=EVENTS.ndjson [--dsn=CONNINFO] "
                   "[--quick] [--reps=N] [--sites=N] [--max-batch-age=MS] [--partitions=N] [--json=PATH] "
                   "[--only=ingest,latency,memory,overload]\n");
      return 2;
    }
  }
  caf::actor_system_config cfg;
  flowmatch::add_message_types(cfg);
  cfg.set("scheduler.max-threads", size_t{2});
  for (auto& [key, v] : o.caf_settings) {
    if (key.size() > 9 && key.compare(key.size() - 9, 9, "-duration") == 0)
      cfg.set(key, caf::timespan{std::chrono::microseconds{std::stol(v)}});
    else
      cfg.set(key, static_cast<size_t>(std::stoul(v)));
  }
  caf::actor_system sys{cfg};
  std::string json = "{\"benchmark\":\"pipeline\"";
  if (wants(o, "ingest")) {
    if (o.file.empty()) {
      std::fprintf(stderr, "bench-pipeline: ingest needs --file\n");
      return 2;
    }
    std::fprintf(stderr, "bench-pipeline: ingest of %s\n", o.file.c_str());
    auto r = bench_ingest(o);
    std::printf("ingest: %zu lines (%zu events), median of %d\n", r.lines,
                r.events, o.reps);
    std::printf("  decode + validate       %12.0f lines/s\n", r.decode_per_s);
    std::printf("  read lines (baseline)   %12.0f lines/s\n", r.read_per_s);
    std::printf("  ratio                   %12.3f\n",
                r.decode_per_s / r.read_per_s);
    json += fmt::format(",\"ingest\":{{\"lines\":{},\"events\":{},"
                        "\"decode_per_s\":{:.0f},\"read_per_s\":{:.0f},"
                        "\"ratio\":{:.4f}}}",
                        r.lines, r.events, r.decode_per_s, r.read_per_s,
                        r.decode_per_s / r.read_per_s);
  }
  if (wants(o, "latency")) {
    json += ",\"latency\":[";
    bool first_mode = true;
    for (const std::string& dsn : {std::string{}, o.dsn}) {
      if (!first_mode && dsn.empty())
        break;
      auto r = bench_latency(sys, o, dsn);
      std::printf("latency (%s): max %.0f events/s, no-op pipeline %.0f; "
                  "ms from dispatcher to %s\n",
                  r.mode.c_str(), r.max_rate, r.baseline_max_rate,
                  dsn.empty() ? "applied + matched" : "committed + matched");
      if (!first_mode)
        json += ",";
      first_mode = false;
      std::printf("  CPU at the maximum rate: %.2f us per event (both "
                  "threads, every stage); %u partitions per class\n",
                  r.cpu_us_per_event, o.partitions);
      json += fmt::format("{{\"mode\":\"{}\",\"max_rate\":{:.0f},"
                          "\"baseline_max_rate\":{:.0f},"
                          "\"cpu_us_per_event\":{:.3f},\"partitions\":{},"
                          "\"points\":[",
                          r.mode, r.max_rate, r.baseline_max_rate,
                          r.cpu_us_per_event, o.partitions);
      bool first_pt = true;
      for (auto& pt : r.points) {
        std::printf("  %3.0f%% (%8.0f/s)  p50 %7.3f  p99 %7.3f  p99.9 %7.3f  "
                    "max %7.3f  | no-op p50 %7.3f p99 %7.3f p99.9 %7.3f  "
                    "(%zu of %zu seen)\n",
                    pt.load * 100, pt.rate, pt.ours.p50, pt.ours.p99,
                    pt.ours.p999, pt.ours.max, pt.baseline.p50,
                    pt.baseline.p99, pt.baseline.p999, pt.ours.seen,
                    pt.ours.sent);
        if (!first_pt)
          json += ",";
        first_pt = false;
        json += fmt::format(
          "{{\"load\":{},\"rate\":{:.0f},\"sent\":{},\"seen\":{},"
          "\"p25_ms\":{:.4f},\"p75_ms\":{:.4f},\"p90_ms\":{:.4f},"
          "\"p50_ms\":{:.4f},\"p99_ms\":{:.4f},\"p999_ms\":{:.4f},"
          "\"max_ms\":{:.4f},\"baseline_p50_ms\":{:.4f},"
          "\"baseline_p99_ms\":{:.4f},\"baseline_p999_ms\":{:.4f}}}",
          pt.load, pt.rate, pt.ours.sent, pt.ours.seen, pt.ours.p25,
          pt.ours.p75, pt.ours.p90, pt.ours.p50,
          pt.ours.p99, pt.ours.p999, pt.ours.max, pt.baseline.p50,
          pt.baseline.p99, pt.baseline.p999);
      }
      json += "]}";
      if (dsn.empty() && o.dsn.empty())
        break;
    }
    json += "]";
  }
  if (wants(o, "memory")) {
    std::fprintf(stderr, "bench-pipeline: memory\n");
    auto r = bench_memory(sys, o);
    std::printf("memory: %zu sites, %zu flows, %zu matches held\n", r.sites,
                r.flows, r.matches);
    std::printf("  per site   %8.0f bytes  (as an NDJSON line %4.0f bytes)\n",
                r.bytes_per_site, r.ndjson_bytes_per_site);
    std::printf("  per flow   %8.0f bytes  (as an NDJSON line %4.0f bytes)\n",
                r.bytes_per_flow, r.ndjson_bytes_per_flow);
    std::printf("  per match  %8.0f bytes\n", r.bytes_per_match);
    std::printf("  per event id in the dedup window %4.0f bytes (%zu ids of "
                "%.0f bytes)\n",
                r.bytes_per_event_id, r.event_ids, r.id_bytes);
    json += fmt::format(
      ",\"memory\":{{\"sites\":{},\"flows\":{},\"matches\":{},"
      "\"bytes_per_site\":{:.0f},\"bytes_per_flow\":{:.0f},"
      "\"bytes_per_match\":{:.0f},\"ndjson_bytes_per_site\":{:.0f},"
      "\"ndjson_bytes_per_flow\":{:.0f},\"event_ids\":{},"
      "\"bytes_per_event_id\":{:.1f},\"event_id_bytes\":{:.0f}}}",
      r.sites, r.flows, r.matches, r.bytes_per_site, r.bytes_per_flow,
      r.bytes_per_match, r.ndjson_bytes_per_site, r.ndjson_bytes_per_flow,
      r.event_ids, r.bytes_per_event_id, r.id_bytes);
  }
  if (wants(o, "overload")) {
    std::fprintf(stderr, "bench-pipeline: overload\n");
    auto r = bench_overload(sys, o);
    std::printf("overload: producer offers %.0f events/s, slowed handler "
                "takes %.0f (%.1fx overload) for %.1f s\n",
                r.offered_per_s, r.handler_per_s,
                r.offered_per_s / r.handler_per_s, r.seconds);
    std::printf("  RSS start %.1f MiB, peak %.1f MiB, end %.1f MiB; "
                "second half %+.1f MiB\n",
                static_cast<double>(r.rss_start) / 1048576.0,
                static_cast<double>(r.rss_peak) / 1048576.0,
                static_cast<double>(r.rss_end) / 1048576.0,
                r.growth_second_half_mb);
    json += fmt::format(
      ",\"overload\":{{\"offered_per_s\":{:.0f},\"handler_per_s\":{:.0f},"
      "\"overload_factor\":{:.2f},\"seconds\":{:.2f},"
      "\"rss_start_mb\":{:.2f},\"rss_peak_mb\":{:.2f},\"rss_end_mb\":{:.2f},"
      "\"growth_second_half_mb\":{:.2f},\"samples\":[",
      r.offered_per_s, r.handler_per_s, r.offered_per_s / r.handler_per_s,
      r.seconds, static_cast<double>(r.rss_start) / 1048576.0,
      static_cast<double>(r.rss_peak) / 1048576.0,
      static_cast<double>(r.rss_end) / 1048576.0, r.growth_second_half_mb);
    for (size_t i = 0; i < r.samples.size(); ++i)
      json += fmt::format("{}[{:.2f},{:.2f}]", i ? "," : "",
                          r.samples[i].first, r.samples[i].second);
    json += "]}";
  }
  json += "}\n";
  if (!o.json.empty()) {
    std::ofstream out{o.json};
    out << json;
  }
  return 0;
}
