#pragma once

// What the benchmarks share: the median, the process's RSS, and a worker
// pool group whose workers do no registry work, only something a benchmark
// chooses per batch (nothing, tell a probe, sleep), then report the batch
// done: the baseline pipelines and the deliberately slowed handler.

#include "actors/dispatcher.hpp"
#include "base/memory.hpp"
#include "messages/type_ids.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flowmatch::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// The value of `--key=value` when `arg` is that option, else null.
inline const char* option_value(const char* arg, const char* key) {
  auto k = std::string{key} + "=";
  return std::string_view{arg}.substr(0, k.size()) == k ? arg + k.size()
                                                        : nullptr;
}

/// Called by a bench worker with each batch before it reports it done.
using batch_hook = std::function<void(const event_batch&)>;

struct bench_worker_state {
  static inline const char* name = "bench-worker";
};

inline worker_actor::behavior_type
bench_worker(worker_actor::stateful_pointer<bench_worker_state> self,
             uint32_t index, worker_pool_actor pool, batch_hook hook) {
  return {
    [=](deliver_atom, const event_batch& batch) {
      if (hook)
        hook(batch);
      self->send(pool, done_atom::value, index, batch.seq,
                 static_cast<uint64_t>(batch.size()), registry_stats{}, true);
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

/// A dispatcher group of `workers` bench workers, each running `hook` per
/// batch; `detached` for a hook that blocks (sleeps).
inline group_settings bench_group(std::string name, uint32_t workers,
                                  routing_policy policy, batch_hook hook,
                                  bool detached = false) {
  group_settings g;
  g.name = std::move(name);
  g.workers = workers;
  g.policy = policy;
  g.max_in_flight = 1 << 16;
  g.handles = contract_event_types();
  g.factory.spawn = [hook, detached](worker_pool_actor::pointer pool,
                                     uint32_t index, std::shared_ptr<worker_memory>) {
    auto handle = caf::actor_cast<worker_pool_actor>(pool);
    return detached ? pool->spawn<caf::detached + caf::linked>(
                        bench_worker, index, handle, hook)
                    : pool->spawn<caf::linked>(bench_worker, index, handle,
                                               hook);
  };
  return g;
}

} // namespace flowmatch::bench
