#pragma once

// The incremental match engine of one partition (one resource class): an
// R-tree of the active flows' positions and the current match set. Each
// change computes only the pairs it can affect, in both directions, and
// reports the match changes it causes; `from_scratch` computes the whole
// set, for tests and the consistency check. Pure logic, no actors.

#include "actors/match_rules.hpp"
#include "messages/batch.hpp"
#include "messages/match.hpp"

#include <boost/geometry.hpp>
#include <boost/geometry/index/rtree.hpp>

#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace flowmatch {

class match_index {
public:
  /// With `only`, the index keeps flows of that class alone (a partition);
  /// without, all classes.
  explicit match_index(match_settings settings = {},
                       caf::optional<resource_class> only = caf::none)
    : settings_(std::move(settings)), only_(only) {
  }

  /// Applies one accepted change; appends the match changes it causes.
  void apply(const change& c, std::vector<match_change>& out);

  /// Every match of the current flows, computed from nothing (no index).
  std::vector<match> from_scratch() const;

  /// The current match set, sorted by (supply, demand).
  std::vector<match> matches() const;

  size_t flow_count() const {
    return flows_.size();
  }
  size_t match_count() const {
    return matches_.size();
  }

  /// Counts of pair evaluations, for benchmarks.
  uint64_t evaluations() const {
    return evaluations_;
  }

private:
  using point = boost::geometry::model::point<double, 2,
                                              boost::geometry::cs::cartesian>;
  using box = boost::geometry::model::box<point>;
  using entry = std::pair<point, uint32_t>; ///< (lon, lat), flow slot
  using tree = boost::geometry::index::rtree<
    entry, boost::geometry::index::rstar<16>>;

  struct flow_slot {
    resource_flow flow;
    double lat = 0;
    double lon = 0;
    bool indexed = false;
    /// Slots of the partners with a current match (few: a plain vector
    /// is smaller and faster than a hash set here).
    std::vector<uint32_t> partners;
  };

  struct site_info {
    double lat = 0;
    double lon = 0;
    std::unordered_set<std::string> flows;
  };

  /// (supply slot, demand slot) in one integer.
  static uint64_t pair_key(uint32_t supply, uint32_t demand) {
    return (static_cast<uint64_t>(supply) << 32) | demand;
  }

  void upsert_site(const site& s, std::vector<match_change>& out);
  void upsert_flow(const resource_flow& f, std::vector<match_change>& out);
  void remove_flow(const std::string& id, std::vector<match_change>& out);
  void unindex(uint32_t slot);
  void index(uint32_t slot);
  /// Recomputes every pair of one flow against the index. With
  /// `same_positions`, neither this flow nor any partner moved since their
  /// matches were computed, so a current match's distance is reused.
  void recompute(uint32_t slot, bool same_positions,
                 std::vector<match_change>& out);
  void set_match(uint32_t supply, uint32_t demand, caf::optional<match> m,
                 std::vector<match_change>& out);
  /// Fills `candidates_` with the flows of the opposite direction within
  /// `radius_m` of the flow's position (a superset: a box around it).
  void find_candidates(const flow_slot& f, double radius_m);

  match_settings settings_;
  caf::optional<resource_class> only_;
  std::unordered_map<std::string, site_info> sites_;
  std::unordered_map<std::string, uint32_t> flows_;
  std::vector<flow_slot> slots_;
  std::vector<uint32_t> free_slots_;
  tree supplies_;
  tree demands_;
  std::unordered_map<uint64_t, match> matches_;
  uint64_t evaluations_ = 0;
  /// Scratch space of recompute, kept to avoid allocations per event.
  std::vector<uint32_t> candidates_;
  std::vector<std::pair<uint32_t, match>> now_;
  std::vector<uint32_t> gone_;
};

} // namespace flowmatch
