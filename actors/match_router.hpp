#pragma once

// The front of the match service: hands each change batch to the partitions
// concerned and to the worker's PostGIS sync at once, and reports the batch
// to the pool when both are done. See `match_router_actor` in actors.hpp.

#include "actors/actors.hpp"

#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flowmatch {

struct match_router_state {
  static inline const char* name = "match-router";
  /// One partition per resource class, by class value.
  std::vector<match_partition_actor> partitions;
  /// The PostGIS sync of each registry worker; empty without a database.
  std::vector<change_sink_actor> syncs;
  /// The registry workers' pool (from the first ticket): where a sync's
  /// repair of refused changes goes on to.
  caf::actor pool;
  /// Class of every flow routed so far (a delete names only the flow).
  std::unordered_map<std::string, resource_class> flow_class;
  /// A batch whose matches (and, with a database, whose commit) are not
  /// all in yet; `ticket` is the pool's, for the report once they are.
  struct pending {
    commit_ticket ticket;
    size_t waiting = 0;
  };
  std::map<uint64_t, pending> in_progress;
  /// The router's sequence number of a batch by (worker, pool sequence):
  /// how a sync's commit report finds its batch.
  std::map<std::pair<uint32_t, uint64_t>, uint64_t> at_sync;
  uint64_t next_seq = 0;
  wait_limits limits;
};

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions,
             std::vector<change_sink_actor> syncs, wait_limits limits);

} // namespace flowmatch
