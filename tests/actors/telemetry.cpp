// The status protocol and the telemetry actor on real stages: a dispatcher
// with its pool and registry workers, the commit coordinator, a sink.

#include "actors/telemetry.hpp"

#include "actors/dispatcher.hpp"
#include "actors/registry_worker.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

const actor_status* find_stage(const std::vector<actor_status>& all,
                               const std::string& name) {
  for (auto& s : all)
    if (s.actor == name)
      return &s;
  return nullptr;
}

/// Asks telemetry until `ready` holds for its answer (each round is a
/// message exchange; the bound only catches a telemetry that never
/// collects).
template <class Pred>
std::vector<actor_status> metrics_when(caf::scoped_actor& self,
                                       const telemetry_actor& t, Pred ready) {
  std::vector<actor_status> all;
  for (int round = 0; round < 2000; ++round) {
    all = ask<std::vector<actor_status>>(self, t, metrics_atom::value);
    if (ready(all))
      return all;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  FAIL("telemetry never showed the expected statuses");
  return all;
}

} // namespace

TEST_CASE("telemetry collects the status of every attached stage") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  telemetry_settings ts;
  ts.interval = std::chrono::milliseconds{20};
  auto t = sys.spawn(telemetry, ts);
  auto watcher = sys.spawn(change_collector);
  auto dead = sys.spawn(dead_letter_collector);
  auto coordinator = watching_coordinator(
    sys, caf::actor_cast<change_sink_actor>(watcher));
  group_settings g;
  g.name = "registry";
  g.workers = 2;
  g.handles = contract_event_types();
  g.factory = registry_worker_factory(
    coordinator, caf::actor_cast<dead_letter_sink_actor>(dead), {});
  g.on_pool_started = [t](const worker_pool_actor& pool) {
    caf::anon_send(t, attach_atom::value, status_source_actor{pool});
  };
  auto d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  self->send(t, attach_atom::value, status_source_actor{d});
  self->send(t, attach_atom::value, status_source_actor{coordinator});
  self->send(t, attach_atom::value, status_source_actor{dead});
  std::vector<event> events;
  for (int i = 0; i < 100; ++i)
    events.push_back(make_site_event("e" + std::to_string(i),
                                     "s" + std::to_string(i)));
  ingest_all(self, d, events, 10);
  drain(self, d);
  auto all = metrics_when(self, t, [](const std::vector<actor_status>& xs) {
    auto disp = find_stage(xs, "dispatcher");
    auto coord = find_stage(xs, "commit-coordinator");
    // Every attached stage answered this round (a slow one, say under a
    // sanitizer, is left out of a round rather than holding it up).
    return disp && disp->value("events_applied") == 100 && coord
           && coord->value("reported") == coord->value("batches")
           && coord->value("batches") > 0
           && find_stage(xs, "dead-letter-collector")
           && find_stage(xs, "worker-pool registry");
  });
  auto disp = find_stage(all, "dispatcher");
  CHECK(disp->value("events_admitted") == 100);
  CHECK(disp->value("in_flight_registry") == 0);
  CHECK(disp->queue_depth == 0);
  auto pool = find_stage(all, "worker-pool registry");
  REQUIRE(pool != nullptr);
  CHECK(pool->value("workers") == 2);
  CHECK(pool->value("restarts") == 0);
  CHECK(find_stage(all, "dead-letter-collector") != nullptr);
  auto own = find_stage(all, "telemetry");
  REQUIRE(own != nullptr);
  CHECK(own->value("attached") == 4);
  // A stage that is gone leaves telemetry.
  self->send_exit(dead, caf::exit_reason::user_shutdown);
  metrics_when(self, t, [](const std::vector<actor_status>& xs) {
    return find_stage(xs, "dead-letter-collector") == nullptr;
  });
  self->send_exit(d, caf::exit_reason::user_shutdown);
  self->send_exit(t, caf::exit_reason::user_shutdown);
  self->send_exit(coordinator, caf::exit_reason::user_shutdown);
  self->send_exit(watcher, caf::exit_reason::user_shutdown);
}
