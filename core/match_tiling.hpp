#pragma once

// Which match partition a flow belongs to: the partitions of each resource
// class split the globe into tiles (cells of a `grid_layout` no smaller
// than the class's largest match distance), and a tile belongs to one
// partition of its class by a hash of its row and column.
//
// A supply lives in the partition of its tile alone (its *owner*). A
// demand lives there too and, as a copy, in every partition with a tile
// within the class's d_max of it (its *near* set). So every pair that can
// match (distance <= d_max) meets in exactly one partition, the supply's
// owner, and no pair meets twice (a supply is nowhere else): the union of
// the partitions' match sets is the single-index set. A site goes to every
// partition one of its flows could live in, over all classes.
//
// Partitions are numbered class by class: class c's partition k is
// `c * per_class + k`. Sets of partitions are bit masks (at most 64
// partitions in all). Pure logic, no actors.

#include "core/match_rules.hpp"
#include "core/spatial_grid.hpp"

#include <array>
#include <cstdint>

namespace flowmatch {

using partition_mask = uint64_t;

/// Calls `f(partition)` for each partition in `mask`, lowest first.
template <class F>
void for_each_partition(partition_mask mask, F&& f) {
  while (mask != 0) {
    f(static_cast<uint32_t>(__builtin_ctzll(mask)));
    mask &= mask - 1;
  }
}

class match_tiling {
public:
  static constexpr uint32_t classes = 4;
  static constexpr uint32_t max_per_class = 16;

  /// `per_class` partitions for each class (1 to `max_per_class`); tiles
  /// of each class at least `min_tile_km` across and never smaller than
  /// the class's d_max.
  match_tiling(const match_settings& settings, uint32_t per_class,
               double min_tile_km = 0);

  uint32_t per_class() const {
    return per_class_;
  }
  uint32_t partitions() const {
    return per_class_ * classes;
  }
  /// The tile size of a class, in metres.
  double tile_m(resource_class r) const {
    return classes_[index(r)].tile_m;
  }

  /// The partition whose tile holds (lat, lon), for class `r`.
  uint32_t owner(resource_class r, double lat, double lon) const;

  /// The partitions of class `r` with a tile within the class's d_max of
  /// (lat, lon) (the owner among them).
  partition_mask near(resource_class r, double lat, double lon) const;

  /// Where a flow of that class and side at (lat, lon) lives.
  partition_mask holders(resource_class r, flow_direction d, double lat,
                         double lon) const {
    return d == flow_direction::supply ? bit(owner(r, lat, lon))
                                       : near(r, lat, lon);
  }

  /// Where a site at (lat, lon) goes: every partition that may hold one
  /// of its flows.
  partition_mask site_holders(double lat, double lon) const;

  /// The first partition of a class (where a flow goes while its place is
  /// unknown).
  uint32_t first(resource_class r) const {
    return index(r) * per_class_;
  }

  static partition_mask bit(uint32_t partition) {
    return partition_mask{1} << partition;
  }

  /// The class a partition number belongs to, and its number in it.
  resource_class class_of(uint32_t partition) const {
    return static_cast<resource_class>(partition / per_class_);
  }
  uint32_t number_in_class(uint32_t partition) const {
    return partition % per_class_;
  }

private:
  struct per_class_layout {
    double d_max_m = 0;
    double tile_m = 0;
    grid_layout tiles{1};
  };

  static uint32_t index(resource_class r) {
    return static_cast<uint32_t>(r);
  }
  uint32_t partition_of_tile(resource_class r, int64_t row,
                             int64_t col) const;

  uint32_t per_class_;
  std::array<per_class_layout, classes> classes_;
};

} // namespace flowmatch
