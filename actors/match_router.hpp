#pragma once

// The front of the match service: splits each change batch among the match
// partitions (`core/match_placement.hpp`: by class and tile, demands copied
// to the partitions near them), sends each partition its part and answers
// the commit coordinator once their matches are stored. Segments of a
// batch that must not overlap go out one after the other. See
// `match_router_actor` in actors.hpp.

#include "actors/actors.hpp"
#include "core/match_placement.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flowmatch {

struct match_router_state {
  static inline const char* name = "match-router";

  /// A part of a batch, sent as one round of requests.
  struct pending_segment {
    match_placement::segment changes;
    /// How many segments of its batch are not answered yet.
    std::shared_ptr<size_t> left;
    caf::typed_response_promise<commit_result> rp;
  };

  /// Cluster mode: one partition's part of a segment (or a resync), kept
  /// until the partition's owner answered; sent again, in order, when the
  /// owner is lost or refuses (a new owner restores from the database
  /// and takes what its predecessor had not answered).
  struct remote_part {
    bool resync = false;
    uint32_t shard = 0;
    std::vector<change> changes;
    registry_snapshot entities;
    std::function<void()> done;
    /// Where it went (node id, epoch); empty: not sent (again) yet.
    std::string node;
    int64_t epoch = 0;
    bool answered = false;
  };

  /// Numbered as the tiling numbers them: class by class. Empty in
  /// cluster mode, where partitions live on the nodes holding their
  /// leases and parts go through the owners' gateways.
  std::vector<match_partition_actor> partitions;
  bool cluster = false;
  uint32_t shards = 0;
  cluster_directory directory;
  std::vector<std::deque<std::shared_ptr<remote_part>>> remote;
  bool retry_scheduled = false;
  uint64_t resent_parts = 0;
  uint64_t part_failures = 0;
  std::unique_ptr<match_placement> placement;
  /// Segments not sent yet, in order (one that needs quiet waits for
  /// every segment before it to be answered, and the ones after it wait
  /// behind it).
  std::deque<pending_segment> waiting;
  /// Segments sent and not yet answered.
  size_t outstanding = 0;
  /// Batches whose matches are not all stored yet.
  uint64_t in_progress = 0;
  uint64_t batches = 0;
  wait_limits limits;
};

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions,
             match_tiling tiling, wait_limits limits,
             uint32_t cluster_shards);

} // namespace flowmatch
