// bench-routing: events per second through dispatcher -> supervised pool ->
// no-op handler, with per-key ordering (key-hash), events built in memory
// beforehand (no parsing). Baselines in the same run, same worker count:
// one CAF message per event straight to a caf::actor_pool, and the same
// events batched 64 per message to that pool. Median of the repetitions
// after a warm-up; reported as ratios.
//
//   build/bench-routing [--events=N] [--workers=N] [--reps=N] [--json=PATH]
//                       [--quick]

#include "tools/bench/bench_common.hpp"
#include "messages/type_ids.hpp"

#include <caf/actor_pool.hpp>
#include <caf/all.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using namespace flowmatch;
using flowmatch::bench::median;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  size_t events = 2'000'000;
  uint32_t workers = 2;
  int reps = 5;
  std::string json;
};

/// Site upserts over 100,000 sites: short ids, no strings on the heap.
std::vector<event> make_events(size_t n) {
  std::vector<event> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].id = std::to_string(i);
    out[i].type = event_type::site_updated;
    out[i].site_data.site_id = "s" + std::to_string(i % 100000);
  }
  return out;
}

double run_dispatcher(caf::actor_system& sys, const options& o,
                      std::vector<event> events) {
  // Our path: dispatcher -> supervised pool -> a worker that does
  // nothing with the events and reports each batch done.
  auto g = bench::bench_group("noop", o.workers, routing_policy::key_hash, {});
  auto d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  caf::scoped_actor self{sys};
  // Batches as a source sends them, prepared before the clock starts.
  constexpr size_t batch = 1024;
  std::vector<std::vector<event>> batches;
  for (size_t i = 0; i < events.size(); i += batch) {
    std::vector<event> b;
    auto end = std::min(events.size(), i + batch);
    b.reserve(end - i);
    for (size_t k = i; k < end; ++k)
      b.push_back(std::move(events[k]));
    batches.push_back(std::move(b));
  }
  auto start = clock_type::now();
  size_t outstanding = 0;
  for (auto& b : batches) {
    self->send(d, ingest_atom::value, std::move(b));
    if (++outstanding >= 4) {
      self->receive([&](caf::ok_atom) { --outstanding; });
    }
  }
  while (outstanding > 0)
    self->receive([&](caf::ok_atom) { --outstanding; });
  self->request(d, caf::infinite, drain_atom::value)
    .receive([](caf::ok_atom) {}, [](caf::error&) {});
  auto secs = std::chrono::duration<double>(clock_type::now() - start).count();
  self->send_exit(d, caf::exit_reason::user_shutdown);
  return static_cast<double>(events.size()) / secs;
}

/// The actor_pool baselines: workers count what they got and tell the
/// collector when the expected total is reached.
double run_pool(caf::actor_system& sys, const options& o,
                std::vector<event> events, size_t per_message) {
  caf::scoped_actor self{sys};
  auto collector = caf::actor{self};
  auto total = events.size();
  auto factory = [&sys, collector, total, n = o.workers] {
    return sys.spawn([collector, total, n](caf::event_based_actor* a) {
      auto seen = std::make_shared<size_t>(0);
      auto share = total / n; // each worker gets an equal share
      return caf::behavior{
        [=](event&) {
          if (++*seen == share)
            a->send(collector, done_atom::value);
        },
        [=](std::vector<event>& xs) {
          *seen += xs.size();
          if (*seen == share)
            a->send(collector, done_atom::value);
        },
      };
    });
  };
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(), o.workers,
                                    factory, caf::actor_pool::round_robin());
  std::vector<caf::message> messages;
  if (per_message == 1) {
    messages.reserve(events.size());
    for (auto& ev : events)
      messages.push_back(caf::make_message(std::move(ev)));
  } else {
    for (size_t i = 0; i < events.size(); i += per_message) {
      std::vector<event> b;
      for (size_t k = i; k < std::min(events.size(), i + per_message); ++k)
        b.push_back(std::move(events[k]));
      messages.push_back(caf::make_message(std::move(b)));
    }
  }
  auto start = clock_type::now();
  for (auto& m : messages)
    self->send(pool, std::move(m));
  for (uint32_t w = 0; w < o.workers; ++w)
    self->receive([](done_atom) {});
  auto secs = std::chrono::duration<double>(clock_type::now() - start).count();
  self->send_exit(pool, caf::exit_reason::user_shutdown);
  return static_cast<double>(total) / secs;
}


} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* key) {
      return bench::option_value(argv[i], key);
    };
    if (auto n = value("--events"))
      o.events = std::stoul(n);
    else if (auto w = value("--workers"))
      o.workers = static_cast<uint32_t>(std::stoul(w));
    else if (auto r = value("--reps"))
      o.reps = std::stoi(r);
    else if (auto j = value("--json"))
      o.json = j;
    else if (a == "--quick") {
      o.events = 200'000;
      o.reps = 1;
    } else {
      std::fprintf(stderr, "usage: bench-routing [--events=N] [--workers=N] "
                           "[--reps=N] [--json=PATH] [--quick]\n");
      return 2;
    }
  }
  // An even split for the pool baselines' completion count.
  o.events -= o.events % (o.workers * 64);
  caf::actor_system_config cfg;
  flowmatch::add_message_types(cfg);
  cfg.set("scheduler.max-threads", size_t{2});
  caf::actor_system sys{cfg};
  auto events = make_events(o.events);
  std::vector<double> ours, single, batched;
  for (int r = 0; r < o.reps + 1; ++r) {
    std::fprintf(stderr, "bench-routing: round %d of %d\n", r, o.reps);
    auto a = run_dispatcher(sys, o, events);
    auto b = run_pool(sys, o, events, 1);
    auto c = run_pool(sys, o, events, 64);
    if (r == 0)
      continue; // warm-up
    ours.push_back(a);
    single.push_back(b);
    batched.push_back(c);
  }
  double a = median(ours), b = median(single), c = median(batched);
  std::printf("routing: %zu events, %u workers, events/s, median of %d\n",
              o.events, o.workers, o.reps);
  std::printf("  dispatcher -> pool -> no-op (key-hash)  %12.0f\n", a);
  std::printf("  actor_pool, 1 event per message         %12.0f\n", b);
  std::printf("  actor_pool, 64 events per message       %12.0f\n", c);
  std::printf("  ours / batched pool                     %12.2f   (target >= 0.6)\n",
              a / c);
  std::printf("  ours / one message per event            %12.2f\n", a / b);
  if (!o.json.empty()) {
    std::ofstream out{o.json};
    out << fmt::format("{{\"benchmark\":\"routing\",\"events\":{},"
                       "\"workers\":{},\"dispatcher_per_s\":{:.0f},"
                       "\"pool_single_per_s\":{:.0f},"
                       "\"pool_batched_per_s\":{:.0f},"
                       "\"ratio_batched\":{:.3f},\"ratio_single\":{:.3f}}}\n",
                       o.events, o.workers, a, b, c, a / c, a / b);
  }
  return 0;
}
