// Backpressure: a producer far faster than a deliberately slow handler.
// The dispatcher's in-flight count and the process's memory must stay
// bounded, and every event must still arrive: slowed, never dropped.

#include "actors/dispatcher.hpp"
#include "base/memory.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

struct slow_worker_state {
  static inline const char* name = "slow-worker";
};

/// Takes 2 ms per batch whatever its size: far slower than the producer.
/// Detached, so its sleeping does not stall the scheduler.
worker_actor::behavior_type
slow_worker(worker_actor::stateful_pointer<slow_worker_state> self,
            uint32_t index, worker_pool_actor pool) {
  return {
    [self, index, pool](deliver_atom, const event_batch& batch) {
      std::this_thread::sleep_for(std::chrono::milliseconds{2});
      registry_stats stats;
      stats.applied = batch.size();
      self->send(pool, done_atom::value, index, batch.seq,
                 static_cast<uint64_t>(batch.size()), stats, true);
    },
    [](expire_atom) {},
    [](release_atom) { return registry_stats{}; },
    [](snapshot_atom) { return registry_snapshot{}; },
    [](repair_atom, const std::vector<change>&, const registry_snapshot&) {
      // Stateless: nothing to bring back.
    },
    [](restore_atom, registry_snapshot&) {
      return caf::ok_atom::value;
    },
    [](handover_atom, const std::string&) { return registry_part{}; },
    [](takeover_atom, registry_part&) { return caf::ok_atom::value; },
    // Holds no entities: nothing for the routing table.
    [](keys_atom) { return registry_part{}; },
    [](count_atom) { return registry_stats{}; },
  };
}

} // namespace

TEST_CASE("a fast producer and a slow handler: bounded in flight and in memory") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  constexpr uint64_t max_in_flight = 8192;
  constexpr size_t batch_size = 1024;
  constexpr size_t total = 1'000'000;
  constexpr size_t outstanding_limit = 4;
  group_settings g;
  g.name = "slow";
  g.workers = 2;
  g.policy = routing_policy::round_robin;
  g.max_in_flight = max_in_flight;
  g.handles = contract_event_types();
  g.factory.spawn = [](worker_pool_actor::pointer pool, uint32_t index,
                       std::shared_ptr<worker_memory>) {
    return pool->spawn<caf::detached + caf::linked>(
      slow_worker, index, caf::actor_cast<worker_pool_actor>(pool));
  };
  auto d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  auto baseline = resident_bytes();
  size_t peak_rss = baseline;
  size_t sent = 0;
  size_t outstanding = 0;
  size_t batches = 0;
  auto await_one = [&] {
    self->receive([&](caf::ok_atom) { --outstanding; },
                  caf::after(test_timeout) >>
                    [&] { FAIL("no admission within the test timeout"); });
  };
  while (sent < total) {
    std::vector<event> batch;
    batch.reserve(batch_size);
    for (size_t i = 0; i < batch_size && sent < total; ++i, ++sent)
      batch.push_back(make_site_event("e" + std::to_string(sent),
                                      "s" + std::to_string(sent % 5000)));
    // Plain send: the admission reply comes back as an ordinary message.
    self->send(d, ingest_atom::value, std::move(batch));
    ++outstanding;
    if (outstanding >= outstanding_limit)
      await_one();
    if (++batches % 64 == 0)
      peak_rss = std::max(peak_rss, resident_bytes());
  }
  while (outstanding > 0)
    await_one();
  drain(self, d);
  auto status = ask<dispatch_status>(self, d, flight_atom::value);
  INFO("peak in flight " << status.peak_in_flight[0] << ", peak RSS growth "
                         << (peak_rss - baseline) / (1 << 20) << " MiB");
  CHECK(status.admitted == total);
  CHECK(status.totals.applied == total); // nothing dropped
  CHECK(status.in_flight[0] == 0);
  // The budget is never passed by more than the batch that crossed it.
  CHECK(status.peak_in_flight[0] <= max_in_flight + batch_size);
  if (!under_address_sanitizer) {
    // The producer was faster: it reached the budget.
    CHECK(status.peak_in_flight[0] >= max_in_flight);
    // 1M events of ~500 bytes would be ~500 MiB if buffered; bounded
    // in-flight keeps growth to a few MiB (64 MiB leaves room for
    // allocator slack).
    CHECK(peak_rss - baseline < size_t{64} << 20);
  }
  self->send_exit(d, caf::exit_reason::user_shutdown);
}
