#pragma once

// The supervisor of one worker-pool group. CAF 0.17's actor_pool neither
// restarts a dead worker nor keeps its mailbox, so this actor does both: it
// keeps every batch until its worker reports it complete, restarts a dead
// worker with exponential backoff, redelivers the unfinished batches in
// order, and after `max_attempts` crashes on the same event tells the new
// worker to dead-letter that event (poison) instead of applying it. More than
// `max_restarts` restarts within `restart_window` means something is broken
// beyond one event: the pool stops with an error, which stops the node.

#include "actors/actors.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flowmatch {

struct supervision_settings {
  /// Crashes on one event before it is dead-lettered as poison.
  uint32_t max_attempts = 3;
  /// First restart delay; doubles with each consecutive crash up to the max.
  std::chrono::milliseconds backoff_initial{10};
  std::chrono::milliseconds backoff_max{2000};
  /// Intensity limit: at most this many restarts within the window.
  uint32_t max_restarts = 50;
  std::chrono::milliseconds restart_window{10000};
  /// How long the pool waits for a worker's answer (release, snapshot,
  /// hand-over) and for a crashed worker's memory: the node's limits.
  wait_limits limits;
};

/// How a pool makes its workers; knows nothing of what they do.
struct worker_factory {
  /// Creates the memory of one worker slot, which outlives the worker's
  /// incarnations (see `worker_memory`). Empty: workers keep nothing.
  std::function<std::shared_ptr<worker_memory>()> make_memory;
  /// Spawns worker `index`, linked to the pool, with that memory.
  std::function<worker_actor(worker_pool_actor::pointer pool, uint32_t index,
                             std::shared_ptr<worker_memory> memory)>
    spawn;
};

struct worker_pool_state {
  static inline const char* name = "worker-pool";

  struct slot {
    worker_actor worker;
    /// The slot's memory while no worker holds it (between a crash and the
    /// restart); null while the worker lives.
    std::shared_ptr<worker_memory> memory;
    /// Whether the worker keeps memory (and so hands it back when it
    /// crashes).
    bool keeps_memory = false;
    /// A crash is handled once both the exit and the worker's crash report
    /// are in (they may come in either order).
    caf::optional<caf::error> exit_reason;
    caf::optional<worker_crash> crash;
    std::chrono::steady_clock::time_point exited_at;
    std::deque<event_batch> unacked;
    uint64_t next_seq = 1;
    bool restarting = false;
    uint32_t consecutive_crashes = 0;
    std::deque<std::chrono::steady_clock::time_point> restarts;
    /// Crash count per (batch seq, event index).
    std::map<std::pair<uint64_t, size_t>, uint32_t> attempts;
  };

  std::string group;
  uint32_t group_index = 0;
  dispatcher_actor dispatcher;
  worker_factory factory;
  supervision_settings supervision;
  std::vector<slot> slots;
  uint64_t total_restarts = 0;
};

worker_pool_actor::behavior_type
worker_pool(worker_pool_actor::stateful_pointer<worker_pool_state> self,
            std::string group, uint32_t group_index, uint32_t size,
            dispatcher_actor dispatcher, worker_factory factory,
            supervision_settings supervision);

} // namespace flowmatch
