#pragma once

// The incremental match engine of one partition (one resource class): a
// spatial grid of the active flows' positions, the flows' rule terms in one
// cache line each, and the current match set kept as numbers linked from
// both flows (ids are only spelled out in the match changes it emits). Each
// change computes only the pairs it can affect, in both directions, and
// reports the match changes it causes; `from_scratch` computes the whole
// set, for tests and the consistency check. Pure logic, no actors.

#include "actors/match_rules.hpp"
#include "actors/spatial_grid.hpp"
#include "messages/batch.hpp"
#include "messages/match.hpp"

#include <absl/container/flat_hash_map.h>

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

  size_t flow_count() const {
    return flows_.size();
  }
  size_t match_count() const {
    return records_.size() - free_records_.size();
  }

  /// Counts of pair evaluations, for benchmarks.
  uint64_t evaluations() const {
    return evaluations_;
  }

private:
  /// One current match as seen from one of its flows: the other flow's
  /// slot and the match's numbers in `records_`. Both flows hold a link.
  struct link {
    uint32_t partner;
    uint32_t record;
  };

  /// A flow's ids, its taxonomy (material only) and its current matches
  /// (few per flow: a vector is smaller and faster than any map here).
  /// Aligned so the two ids a match change copies share one cache line.
  struct alignas(64) flow_slot {
    std::string flow_id;
    std::string site_id;
    bool indexed = false;
    std::vector<link> links;
    flow_taxonomy taxonomy;
  };

  /// What testing a flow as a candidate reads, one cache line per flow.
  struct alignas(64) hot_slot {
    flow_terms terms;
    uint32_t site = 0; ///< the site's number (same site: no match)
  };

  struct site_info {
    double lat = 0;
    double lon = 0;
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

  /// The id of the flow a change is about, if it is about one.
  static const std::string* flow_id_of(const change& c);
  /// One stage of the batch pipeline: hints to the CPU to load what a
  /// coming change will read, `step` (0 to 4) saying how far it got;
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
  /// Recomputes every pair of one flow against the index. With
  /// `same_positions`, neither this flow nor any partner moved since their
  /// matches were computed, so a current match's distance is reused. With
  /// `ids_changed`, the flow's site changed: every match it keeps is
  /// emitted again (the site id is part of it).
  void recompute(uint32_t slot, bool same_positions, bool ids_changed,
                 std::vector<match_change>& out);
  /// Forgets the match of `slot` with `l.partner` and emits its removal;
  /// drops the partner's link (the caller drops the slot's own).
  void drop_match(uint32_t slot, const link& l,
                  std::vector<match_change>& out);
  /// The match of a supply and a demand slot with the given numbers.
  match full_match(uint32_t supply, uint32_t demand,
                   const match_numbers& n) const;
  uint32_t new_record(const match_numbers& n);

  match_settings settings_;
  caf::optional<resource_class> only_;
  absl::flat_hash_map<std::string, site_info> sites_;
  uint32_t next_site_number_ = 1;
  absl::flat_hash_map<std::string, uint32_t> flows_;
  std::vector<flow_slot> slots_;
  std::vector<hot_slot> hot_;
  std::vector<uint32_t> free_slots_;
  /// One grid per class and direction, cells sized by the class's d_max.
  std::vector<spatial_grid> grids_;
  /// The numbers of every current match, addressed by the links.
  std::vector<match_numbers> records_;
  std::vector<uint32_t> free_records_;
  uint64_t evaluations_ = 0;
  /// Scratch space of recompute, kept to avoid allocations per event.
  std::vector<uint32_t> candidates_;
  std::vector<std::pair<uint32_t, match_numbers>> now_;
  std::vector<link> before_;
  std::vector<link> after_;
  /// The slots of a batch's flows as found ahead (hints for prefetching).
  static constexpr uint32_t no_slot = UINT32_MAX;
  std::vector<uint32_t> ahead_;
};

} // namespace flowmatch
