#pragma once

// The front of the match service: hands each change batch to the partitions
// concerned and answers the commit coordinator once their matches are
// stored. See `match_router_actor` in actors.hpp.

#include "actors/actors.hpp"

#include <string>
#include <unordered_map>
#include <vector>

namespace flowmatch {

struct match_router_state {
  static inline const char* name = "match-router";
  /// One partition per resource class, by class value.
  std::vector<match_partition_actor> partitions;
  /// Class of every flow routed so far (a delete names only the flow).
  std::unordered_map<std::string, resource_class> flow_class;
  /// Batches whose matches are not all stored yet.
  uint64_t in_progress = 0;
  uint64_t batches = 0;
  wait_limits limits;
};

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions, wait_limits limits);

} // namespace flowmatch
