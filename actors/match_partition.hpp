#pragma once

// One partition of the match service: the spatial index, flows and matches
// of one resource class; stores the match changes it computes with every
// match sink. See `match_partition_actor` in actors.hpp.

#include "actors/actors.hpp"
#include "core/match_index.hpp"

#include <memory>
#include <vector>

namespace flowmatch {

struct match_partition_state {
  static inline const char* name = "match-partition";
  resource_class cls = resource_class::heat;
  /// Match changes emitted so far (upserts and removals).
  uint64_t match_changes = 0;
  std::unique_ptr<match_index> index;
  std::vector<match_sink_actor> sinks;
  wait_limits limits;
};

match_partition_actor::behavior_type
match_partition(match_partition_actor::stateful_pointer<match_partition_state> self,
                resource_class cls, match_settings settings,
                std::vector<match_sink_actor> sinks, wait_limits limits);

} // namespace flowmatch
