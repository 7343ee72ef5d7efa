#pragma once

// Where every site and flow lives among the match partitions, and the
// split of a change batch into what each partition must apply. The
// tiling (`core/match_tiling.hpp`) says where a flow at a place belongs;
// this keeps each site's position and each flow's class, side and
// partitions (never a flow's data), so it can send deletes to the
// partitions a flow leaves. A flow that must move to another partition
// travels in the batch itself: the registry follows a site move with a
// copy of each of the site's flows.
//
// A batch usually splits into one segment (one round of requests). When a
// supply leaves one partition and enters another within a batch, the old
// partition may remove a match the new one emits again with the same key;
// the match sinks must see the removal first, so the part after it is a
// new segment that goes out only once the one before is stored. Pure
// logic, no actors.

#include "core/match_tiling.hpp"
#include "messages/batch.hpp"
#include "messages/match.hpp"

#include <absl/container/flat_hash_map.h>

#include <string>
#include <vector>

namespace flowmatch {

class match_placement {
public:
  /// Changes for each partition, by partition number.
  using split = std::vector<std::vector<change>>;

  struct segment {
    split parts;
    /// True from the second segment of a batch on: send only once every
    /// earlier segment is answered.
    bool needs_quiet = false;
  };

  explicit match_placement(match_tiling tiling);

  const match_tiling& tiling() const {
    return tiling_;
  }
  uint32_t partitions() const {
    return tiling_.partitions();
  }

  /// Splits a batch (taking its changes) into segments in order, and
  /// records where everything now lives.
  std::vector<segment> route(std::vector<change>&& changes);

  /// At start-up: the stored entities and matches of each partition (a
  /// match goes to the partition of its supply, which evaluates it).
  void place(registry_snapshot&& stored, std::vector<match>&& matches,
             std::vector<registry_snapshot>& entities,
             std::vector<std::vector<match>>& stored_matches);

  size_t sites() const {
    return sites_.size();
  }
  size_t flows() const {
    return flows_.size();
  }
  /// Flows that moved from one partition to another so far.
  uint64_t handovers() const {
    return handovers_;
  }
  /// Segments beyond the first of their batch so far.
  uint64_t extra_segments() const {
    return extra_segments_;
  }
  /// Copies sent beyond one per change (sites to several partitions,
  /// demands near a tile border).
  uint64_t copies() const {
    return copies_;
  }

private:
  struct placed_site {
    double lat = 0;
    double lon = 0;
  };
  struct placed_flow {
    partition_mask holders = 0;
    resource_class cls = resource_class::heat;
    flow_direction side = flow_direction::supply;
  };

  /// Where a flow of that class and side at that site lives (the first
  /// partition of its class while the site is unknown).
  partition_mask holders_of(resource_class cls, flow_direction side,
                            const std::string& site_id) const;

  /// Appends `c` to every partition in `mask` (moving it into the last).
  void send(partition_mask mask, change&& c);
  /// Starts a new segment if the current one has changes.
  void break_segment();
  /// A supply leaves `from`: a later entry of it elsewhere must wait.
  void note_leave(const std::string& flow_id, partition_mask from);
  /// A supply enters `to`: break first if it left another this segment.
  void before_enter(const std::string& flow_id, partition_mask to);

  void route_site_upsert(change&& c);
  void route_site_delete(change&& c);
  void route_flow_upsert(change&& c);
  void route_flow_delete(change&& c);

  match_tiling tiling_;
  absl::flat_hash_map<std::string, placed_site> sites_;
  absl::flat_hash_map<std::string, placed_flow> flows_;
  /// The batch being split.
  std::vector<segment> out_;
  /// Supplies that left a partition in the current segment, and which.
  absl::flat_hash_map<std::string, partition_mask> left_;
  uint64_t handovers_ = 0;
  uint64_t extra_segments_ = 0;
  uint64_t copies_ = 0;
};

} // namespace flowmatch
