#pragma once

// The incremental match engine of one partition (one resource class): a
// spatial grid of the active flows' positions, and for every flow its
// neighbours: the flows on the other side within the class's d_max, each
// with the pair's geodesic distance and whether the pair matches now. A
// flow's rule terms, neighbours and ids share two adjacent cache lines;
// ids are only spelled out in the match changes it emits. A flow placed or
// moved finds its neighbours through the grid; a flow whose terms change
// re-evaluates the pairs with its neighbours, and reads no grid and
// computes no distance. Each change reports the match changes it causes,
// in both directions; `from_scratch` computes the whole set, for tests and
// the consistency check. Pure logic, no actors.

#include "core/match_rules.hpp"
#include "core/slot_table.hpp"
#include "core/spatial_grid.hpp"
#include "messages/batch.hpp"
#include "messages/match.hpp"

#include <absl/container/flat_hash_map.h>

#include <memory>
#include <string>
#include <vector>

namespace flowmatch {

class match_index {
public:
  /// With `only`, the index keeps flows of that class alone (a partition);
  /// without, all classes.
  explicit match_index(match_settings settings = {},
                       caf::optional<resource_class> only = caf::none);

  /// Applies one accepted change; appends the match changes it causes.
  void apply(const change& c, std::vector<match_change>& out);

  /// Applies a batch of changes in order, as one by one; while one change
  /// is applied, the memory of the next ones is already being loaded.
  void apply(const std::vector<change>& batch, std::vector<match_change>& out);

  /// Every match of the current flows, computed from nothing (no index).
  std::vector<match> from_scratch() const;

  /// The current match set, sorted by (supply, demand).
  std::vector<match> matches() const;

  /// The sites (placed or only named by flows) whose id passes `keep`,
  /// and the flows at them: what a cluster replaces when a registry shard
  /// changes owner (`keep` tests the shard of a site id).
  template <class Keep>
  void collect(Keep&& keep, std::vector<std::string>& site_ids,
               std::vector<std::string>& flow_ids) const {
    for (auto& [id, info] : sites_) {
      if (!keep(id))
        continue;
      if (info.placed)
        site_ids.push_back(id);
      for (auto slot : info.flows)
        flow_ids.push_back(cores_[slot].flow_id);
    }
  }

  size_t flow_count() const {
    return flows_.size();
  }
  size_t match_count() const {
    return matches_;
  }

  /// Counts of pair evaluations, for benchmarks.
  uint64_t evaluations() const {
    return evaluations_;
  }
  /// Distances computed (candidates a placed or moved flow tested), for
  /// benchmarks.
  uint64_t distances() const {
    return distances_;
  }

private:
  /// A flow on the other side of the same class, at another site, within
  /// the class's d_max (no pair farther can match): the pair's distance,
  /// computed once per pair of positions, and whether the pair matches now.
  /// Both flows hold an entry for the pair, with the same distance and
  /// flag. The match's numbers are not kept: they follow from the two
  /// flows' terms and the distance, so the numbers a pair had before a
  /// change are computed again from the terms before it (cheaper than one
  /// more random memory access per pair at a million flows, and no memory
  /// per match).
  struct neighbour {
    uint32_t partner;
    bool matched;
    double distance_m;
  };

  /// A flow's neighbours in 16 bytes (a std::vector takes 24): what lets a
  /// flow's terms, neighbours and ids fit two cache lines.
  class neighbour_list {
  public:
    neighbour* begin() {
      return data_.get();
    }
    neighbour* end() {
      return data_.get() + size_;
    }
    const neighbour* begin() const {
      return data_.get();
    }
    const neighbour* end() const {
      return data_.get() + size_;
    }
    size_t size() const {
      return size_;
    }
    /// Appends `n`; returns where it is (until the next change).
    neighbour& push_back(const neighbour& n);
    /// Takes the entry of `partner` out (the last one takes its place).
    void remove(uint32_t partner);
    /// The entry of `partner` (it must be there).
    neighbour& of(uint32_t partner);
    void assign(const std::vector<neighbour>& from);

  private:
    std::unique_ptr<neighbour[]> data_;
    uint32_t size_ = 0;
    uint32_t capacity_ = 0;
  };

  /// What a change to a flow and what testing it as a partner read, in two
  /// adjacent cache lines (a random access to one brings the other nearly
  /// for free): the rule terms, the site's number, the neighbours, the ids
  /// a match change copies.
  struct alignas(128) flow_core {
    flow_terms terms;
    uint32_t site = 0; ///< the site's number (same site: no match)
    bool indexed = false;
    neighbour_list neighbours;
    std::string flow_id;
    std::string site_id;
  };

  /// What only placing a flow and material rules read.
  struct flow_rest {
    position at;
    flow_taxonomy taxonomy; ///< material only
  };

  struct site_info {
    position at;
    uint32_t number = 0;
    /// False while only flows named the site: they wait, unindexed, and
    /// are placed when the site itself arrives.
    bool placed = false;
    std::vector<uint32_t> flows; ///< slots of the flows at this site
  };

  /// The site of that id, created (unplaced, with a new number) if new.
  site_info& site_named(const std::string& id);
  /// Takes a flow's slot off its site's list; forgets an unplaced site
  /// no flow names any more.
  void leave_site(const std::string& id, uint32_t slot);

  /// The slot of the flow with that id (and that hash), or none.
  uint32_t slot_of(const std::string& id, uint64_t hash) const;
  uint32_t slot_of(const std::string& id) const;
  /// The id of the flow a change is about, if it is about one.
  static const std::string* flow_id_of(const change& c);
  /// One stage of the batch pipeline: hints to the CPU to load what a
  /// coming change will read, `step` (0 to 3) saying how far it got;
  /// `slot` carries the flow's slot from stage 1 on.
  void load_ahead(const change& c, uint32_t& slot, size_t step) const;
  void upsert_site(const site& s, std::vector<match_change>& out);
  void upsert_flow(const resource_flow& f, std::vector<match_change>& out);
  void remove_flow(const std::string& id, std::vector<match_change>& out);
  static flow_direction opposite(flow_direction d);
  static size_t grid_index(resource_class r, flow_direction d);
  spatial_grid& grid(resource_class r, flow_direction d);
  const spatial_grid& grid(resource_class r, flow_direction d) const;
  void unindex(uint32_t slot);
  void index(uint32_t slot);
  /// What a flow was before a change: the terms and taxonomy its pairs'
  /// current numbers were computed with.
  struct flow_before {
    const flow_terms& terms;
    const flow_taxonomy& taxonomy;
  };
  /// A flow whose terms changed but whose position did not: evaluates the
  /// pair with each neighbour again, at the distance known.
  void refresh(uint32_t slot, flow_before was, std::vector<match_change>& out);
  /// A flow that was placed, moved or left its position: finds its
  /// neighbours anew through the grid (none while it is not indexed),
  /// updates both sides of every pair and evaluates each. With
  /// `ids_changed`, the flow's site changed: every match it keeps is
  /// emitted again (the site id is part of it).
  void rebuild(uint32_t slot, flow_before was, bool ids_changed,
               std::vector<match_change>& out);
  /// The rules for a flow with these terms and taxonomy and `partner` at
  /// that distance.
  caf::optional<match_numbers> pair_numbers(const flow_terms& terms,
                                            const flow_taxonomy& taxonomy,
                                            uint32_t partner,
                                            double distance_m);
  /// Evaluates the pair of `slot` and its neighbour `n` as they are now
  /// and brings it up to date: the flags in `n` and in the partner's entry
  /// (`theirs`, looked up when null), the match count, the emitted
  /// changes. `was` and `distance_before` are what the pair's numbers were
  /// last computed with (read only if it matched).
  void reevaluate(uint32_t slot, neighbour& n, neighbour* theirs,
                  flow_before was, double distance_before, bool ids_changed,
                  std::vector<match_change>& out);
  /// Emits the removal of the match of `slot` and `partner`.
  void emit_removal(uint32_t slot, uint32_t partner,
                    std::vector<match_change>& out) const;
  /// The match of a supply and a demand slot with the given numbers.
  match full_match(uint32_t supply, uint32_t demand,
                   const match_numbers& n) const;

  match_settings settings_;
  caf::optional<resource_class> only_;
  absl::flat_hash_map<std::string, site_info> sites_;
  uint32_t next_site_number_ = 1;
  /// Flow ids to slots (the ids themselves are in the cores).
  slot_table flows_;
  /// Per flow slot: the core and the rest.
  std::vector<flow_core> cores_;
  std::vector<flow_rest> rest_;
  std::vector<uint32_t> free_slots_;
  /// One grid per class and direction, cells sized by the class's d_max.
  std::vector<spatial_grid> grids_;
  size_t matches_ = 0;
  uint64_t evaluations_ = 0;
  uint64_t distances_ = 0;
  /// Scratch space of rebuild, kept to avoid allocations per event.
  std::vector<uint32_t> candidates_;
  std::vector<neighbour> before_;
  std::vector<neighbour> after_;
  /// The slots of a batch's flows as found ahead (hints for prefetching).
  static constexpr uint32_t no_slot = UINT32_MAX;
  std::vector<uint32_t> ahead_;
};

} // namespace flowmatch
