#pragma once

// A worker of the registry group: the site and resource-flow handler. It
// applies batches to its share of the registry (every event of a site and
// of that site's flows lands on the same worker, in order), publishes the
// accepted changes to the subscribers, dead-letters orphans and poison
// events, and reports each batch to its pool.

#include "actors/actors.hpp"
#include "core/registry.hpp"
#include "actors/worker_pool.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace flowmatch {

struct registry_worker_settings {
  /// How long a flow waits for its site before it is dead-lettered.
  std::chrono::milliseconds hold_timeout{60000};
  /// How often held flows are checked against the hold timeout.
  std::chrono::milliseconds hold_check_interval{1000};
  /// At most this many flows held at once per worker; the oldest gives way.
  size_t hold_limit = 1'000'000;
  /// Called before each event is applied. Tests and fault injection use it
  /// to make a handler throw; empty in production.
  std::function<void(const event&)> before_apply;
};

/// A registry worker's memory: its share of the registry, which survives
/// the worker's crashes (see `worker_memory`).
struct registry_memory : worker_memory {
  explicit registry_memory(size_t hold_limit) : reg(hold_limit) {
  }
  registry reg;
};

struct registry_worker_state {
  static inline const char* name = "registry-worker";
  uint32_t index = 0;
  worker_pool_actor pool;
  std::shared_ptr<registry_memory> memory;
  /// Where each batch's changes and report go: the coordinator passes the
  /// changes to the subscribers and the report to the pool once they are
  /// stored. None in tests that run workers alone: then the worker reports
  /// to the pool itself.
  commit_coordinator_actor coordinator;
  dead_letter_sink_actor dead_letters;
  registry_worker_settings settings;
  registry_output out;
  /// When the batch being applied was admitted (for its latency); 0 for
  /// reports of no batch (expiries).
  int64_t admitted_ns = 0;
};

worker_actor::behavior_type
registry_worker(worker_actor::stateful_pointer<registry_worker_state> self,
                uint32_t index, worker_pool_actor pool,
                std::shared_ptr<registry_memory> memory,
                commit_coordinator_actor coordinator,
                dead_letter_sink_actor dead_letters,
                registry_worker_settings settings);

/// The worker_factory of the registry group (`coordinator` may be null).
worker_factory registry_worker_factory(commit_coordinator_actor coordinator,
                                       dead_letter_sink_actor dead_letters,
                                       registry_worker_settings settings);

} // namespace flowmatch
