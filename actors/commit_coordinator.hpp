#pragma once

// The commit barrier: see `commit_coordinator_actor` in actors.hpp.
//
// Each worker batch comes with its report to the pool (a commit ticket).
// The coordinator gives the batch to every subscriber in its scope at
// once: watchers (`change_sink_actor`) are told and forgotten; committing
// subscribers (`commit_sink_actor`: the worker's PostGIS sync, the match
// router) are asked, with the stall limit as timeout. When all of them
// have answered, and every earlier batch of the same worker is reported,
// the ticket goes to the pool, with what the subscribers refused added to
// its counters; refused changes go to the pool first as a repair. A
// subscriber that fails or does not answer within the stall limit stops
// the coordinator with that error, which stops the node.

#include "actors/actors.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

namespace flowmatch {

struct commit_coordinator_state {
  static inline const char* name = "commit-coordinator";

  template <class Handle>
  struct subscription {
    Handle sink;
    uint32_t scope = all_workers; ///< a worker index or all_workers
    bool covers(uint32_t worker) const {
      return scope == all_workers || scope == worker;
    }
  };
  std::vector<subscription<commit_sink_actor>> committers;
  std::vector<subscription<change_sink_actor>> watchers;
  /// Told the event ids of each batch once it is reported (all workers).
  std::vector<subscription<settled_sink_actor>> settlers;

  /// A batch whose committing subscribers have not all answered, or that
  /// waits for an earlier batch of its worker.
  struct pending {
    uint64_t id = 0;
    commit_ticket ticket;
    /// Its committing subscribers have not all answered yet.
    bool waiting = false;
    std::chrono::steady_clock::time_point since;
    /// The batch's event ids, kept for the settlers (only when there are).
    std::vector<std::string> event_ids;
  };
  /// Per worker, in arrival order.
  std::unordered_map<uint32_t, std::deque<pending>> queues;
  uint64_t next_id = 0;

  // Counters for the status protocol.
  uint64_t batches = 0;
  uint64_t reported = 0;
  uint64_t refusals = 0;
  /// Event latency from admission by the dispatcher to durable (reported).
  histogram_data latency = histogram_data::seconds();

  wait_limits limits;
};

commit_coordinator_actor::behavior_type commit_coordinator(
  commit_coordinator_actor::stateful_pointer<commit_coordinator_state> self,
  wait_limits limits);

} // namespace flowmatch
