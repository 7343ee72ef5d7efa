#pragma once

// One partition of the match service: the spatial index of one resource
// class over the tiles the router gives it (its own flows and copies of the
// demands near its tiles), and the matches of its own supplies; stores the
// match changes it computes with every match sink. See
// `match_partition_actor` in actors.hpp.

#include "actors/actors.hpp"
#include "core/match_index.hpp"
#include "core/match_tiling.hpp"

#include <memory>
#include <string>
#include <vector>

namespace flowmatch {

struct match_partition_state {
  static inline const char* name = "match-partition";
  resource_class cls = resource_class::heat;
  /// "heat", or "heat/2" when the class has several partitions.
  std::string label;
  /// Match changes emitted so far (upserts and removals).
  uint64_t match_changes = 0;
  std::unique_ptr<match_index> index;
  std::vector<match_sink_actor> sinks;
  wait_limits limits;
};

/// The name of partition `p` in status, logs and metrics: its class, and
/// its number when the class has several ("heat", "heat/2").
std::string partition_label(const match_tiling& tiling, uint32_t p);

match_partition_actor::behavior_type
match_partition(match_partition_actor::stateful_pointer<match_partition_state> self,
                resource_class cls, std::string label, match_settings settings,
                std::vector<match_sink_actor> sinks, wait_limits limits);

} // namespace flowmatch
