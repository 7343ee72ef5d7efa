// Supervision: a handler that throws is restarted with its state, the
// batch is redelivered from where it failed, and an event that keeps
// killing its worker is dead-lettered as poison while everything else
// completes.

#include "actors/worker_pool.hpp"

#include "actors/dispatcher.hpp"
#include "actors/registry_worker.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

/// Throws on every event whose id starts with "poison" and on the first
/// attempt of events whose id starts with "flaky". The counter is shared by
/// all incarnations of the worker; this is test scaffolding, not actor code.
struct fault_plan {
  std::shared_ptr<std::atomic<int>> flaky_failures
    = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> poison_attempts
    = std::make_shared<std::atomic<int>>(0);

  std::function<void(const event&)> hook() const {
    auto flaky = flaky_failures;
    auto poison = poison_attempts;
    return [flaky, poison](const event& ev) {
      if (ev.id.rfind("poison", 0) == 0) {
        ++*poison;
        throw std::runtime_error("cannot digest " + ev.id);
      }
      if (ev.id.rfind("flaky", 0) == 0 && flaky->fetch_add(1) == 0)
        throw std::runtime_error("transient failure on " + ev.id);
    };
  }
};

dispatcher_actor start(caf::actor_system& sys, dead_letter_collector_actor dead,
                       std::function<void(const event&)> hook,
                       supervision_settings sup) {
  group_settings g;
  g.name = "registry";
  g.workers = 2;
  g.max_in_flight = 1000;
  g.handles = contract_event_types();
  registry_worker_settings w;
  w.before_apply = std::move(hook);
  g.factory = registry_worker_factory(
    {}, caf::actor_cast<dead_letter_sink_actor>(dead), w);
  g.supervision = sup;
  return sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
}

} // namespace

TEST_CASE("a poison event is dead-lettered after N attempts while the rest completes") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dead = sys.spawn(dead_letter_collector);
  fault_plan faults;
  supervision_settings sup;
  sup.max_attempts = 3;
  sup.backoff_initial = std::chrono::milliseconds{1};
  sup.backoff_max = std::chrono::milliseconds{5};
  auto d = start(sys, dead, faults.hook(), sup);
  // 2000 sites; the poison sits in the middle of a batch, so events before
  // it in the same batch are applied once and events after it only after
  // the restarts.
  std::vector<event> input;
  for (int i = 0; i < 2000; ++i) {
    auto sid = "s" + std::to_string(i);
    std::string id = "e" + std::to_string(i);
    if (i == 777)
      id = "poison-777";
    if (i == 1500)
      id = "flaky-1500";
    input.push_back(make_site_event(id, sid));
  }
  ingest_all(self, d, std::move(input), 250);
  drain(self, d);
  auto status = ask<dispatch_status>(self, d, flight_atom::value);
  CHECK(status.totals.applied == 1999);
  auto snap = ask<registry_snapshot>(self, d, snapshot_atom::value);
  CHECK(snap.sites.size() == 1999);
  bool has_poisoned = false, has_flaky = false;
  for (auto& s : snap.sites) {
    has_poisoned |= s.site_id == "s777";
    has_flaky |= s.site_id == "s1500";
  }
  CHECK_FALSE(has_poisoned);
  CHECK(has_flaky); // failed once, restarted, applied on redelivery
  CHECK(*faults.poison_attempts == 3);
  CHECK(*faults.flaky_failures == 2); // one failure, one success
  auto letters = ask<std::vector<dead_letter>>(self, dead,
                                               caf::get_atom::value);
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].event_id == "poison-777");
  CHECK(letters[0].reason == reject_reason::poison_event);
  CHECK(letters[0].attempts == 3);
  CHECK_THAT(letters[0].detail, Catch::Contains("cannot digest poison-777"));
  self->send_exit(d, caf::exit_reason::user_shutdown);
  self->send_exit(dead, caf::exit_reason::user_shutdown);
}

TEST_CASE("past the restart intensity the pool gives up and says why") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dead = sys.spawn(dead_letter_collector);
  supervision_settings sup;
  sup.max_attempts = 1000; // never poison: keep crashing
  sup.max_restarts = 3;
  sup.backoff_initial = std::chrono::milliseconds{1};
  sup.backoff_max = std::chrono::milliseconds{1};
  auto d = start(
    sys, dead,
    [](const event&) { throw std::runtime_error("always broken"); }, sup);
  self->monitor(d);
  self->send(d, ingest_atom::value,
             std::vector<event>{make_site_event("e1", "s")});
  bool down = false;
  self->receive(
    [&](caf::down_msg& msg) {
      down = true;
      CHECK(msg.reason);
      CHECK_THAT(sys.render(msg.reason),
                 Catch::Contains("restart intensity exceeded"));
    },
    caf::after(test_timeout) >> [&] { FAIL("the dispatcher did not stop"); });
  CHECK(down);
  self->send_exit(dead, caf::exit_reason::user_shutdown);
}

namespace {

/// A committing subscriber that holds every batch until told to let go,
/// like a PostGIS sync waiting for COMMIT.
using holding_committer_actor = commit_sink_actor::extend<
  caf::replies_to<caf::flush_atom>::with<uint64_t>>;

struct holding_state {
  static inline const char* name = "holding-committer";
  std::vector<caf::typed_response_promise<commit_result>> held;
};

holding_committer_actor::behavior_type
holding_committer(holding_committer_actor::stateful_pointer<holding_state> self) {
  return {
    [self](change_batch&) -> caf::result<commit_result> {
      auto rp = self->make_response_promise<commit_result>();
      self->state.held.push_back(rp);
      return rp;
    },
    [self](caf::flush_atom) {
      auto n = self->state.held.size();
      for (auto& rp : self->state.held)
        rp.deliver(commit_result{});
      self->state.held.clear();
      return static_cast<uint64_t>(n);
    },
  };
}

} // namespace

TEST_CASE("a crash does not replay batches whose reports are still on their way") {
  // Batches 1 and 2 of the single worker are applied, but their tickets
  // wait at the committer (no COMMIT yet); batch 3 crashes the worker once.
  // The restarted worker must skip 1 and 2 (not apply them again, not
  // report them twice), resume 3, and every credit must come back once.
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dead = sys.spawn(dead_letter_collector);
  auto committer = sys.spawn(holding_committer);
  auto coordinator = sys.spawn(commit_coordinator, wait_limits{});
  self->send(coordinator, subscribe_atom::value, commit_sink_actor{committer},
             all_workers);
  fault_plan faults;
  group_settings g;
  g.name = "registry";
  g.workers = 1;
  g.max_in_flight = 100000;
  g.handles = contract_event_types();
  registry_worker_settings w;
  w.before_apply = faults.hook();
  g.factory = registry_worker_factory(
    coordinator, caf::actor_cast<dead_letter_sink_actor>(dead), w);
  g.supervision.backoff_initial = std::chrono::milliseconds{1};
  auto d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  auto batch_of = [](int from, int to, bool flaky_last) {
    std::vector<event> xs;
    for (int i = from; i < to; ++i)
      xs.push_back(make_site_event((flaky_last && i == to - 1 ? "flaky-"
                                                              : "e")
                                     + std::to_string(i),
                                   "s" + std::to_string(i)));
    return xs;
  };
  ingest_all(self, d, batch_of(0, 100, false), 100);
  ingest_all(self, d, batch_of(100, 200, false), 100);
  ingest_all(self, d, batch_of(200, 300, true), 100);
  // Wait until the crash happened and the worker was restarted and has
  // finished batch 3: three tickets (batch 3 partly twice) are held.
  for (int round = 0; round < 1000; ++round) {
    auto status = ask<dispatch_status>(self, d, flight_atom::value);
    if (*faults.flaky_failures >= 2)
      break;
    REQUIRE(status.in_flight[0] > 0);
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  REQUIRE(*faults.flaky_failures == 2); // failed once, then applied
  // Let the committer go, repeatedly, until everything is credited back.
  for (int round = 0; round < 1000; ++round) {
    ask<uint64_t>(self, committer, caf::flush_atom::value);
    auto status = ask<dispatch_status>(self, d, flight_atom::value);
    // More credit back than was taken would wrap the count around.
    REQUIRE(status.in_flight[0] <= status.admitted);
    if (status.in_flight[0] == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
  drain(self, d);
  auto status = ask<dispatch_status>(self, d, flight_atom::value);
  CHECK(status.in_flight[0] == 0);
  CHECK(status.admitted == 300);
  CHECK(status.totals.applied == 300);
  auto snap = ask<registry_snapshot>(self, d, snapshot_atom::value);
  CHECK(snap.sites.size() == 300);
  self->send_exit(d, caf::exit_reason::user_shutdown);
  self->send_exit(dead, caf::exit_reason::user_shutdown);
  self->send_exit(committer, caf::exit_reason::user_shutdown);
  self->send_exit(coordinator, caf::exit_reason::user_shutdown);
}
