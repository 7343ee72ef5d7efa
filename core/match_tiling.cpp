#include "core/match_tiling.hpp"

#include <algorithm>
#include <stdexcept>

namespace flowmatch {

namespace {

/// splitmix64's finalizer: neighbouring tiles land on unrelated partitions,
/// so a dense region's load spreads over the class's partitions.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

} // namespace

match_tiling::match_tiling(const match_settings& settings, uint32_t per_class,
                           double min_tile_km)
  : per_class_(per_class) {
  if (per_class < 1 || per_class > max_per_class)
    throw std::invalid_argument("match_tiling: partitions per class out of "
                                "range");
  for (uint32_t c = 0; c < classes; ++c) {
    auto r = static_cast<resource_class>(c);
    auto& layout = classes_[c];
    layout.d_max_m = d_max_bound_m(r, settings);
    layout.tile_m = std::max(layout.d_max_m, min_tile_km * 1000.0);
    // One partition needs no tiles: a single cell (the layout's coarsest)
    // keeps `near` to one bit without reading a box.
    layout.tiles = grid_layout{per_class == 1 ? 2.0e7 : layout.tile_m};
  }
}

uint32_t match_tiling::partition_of_tile(resource_class r, int64_t row,
                                         int64_t col) const {
  if (per_class_ == 1)
    return first(r);
  auto key = (static_cast<uint64_t>(row) << 32) ^ static_cast<uint64_t>(col);
  return first(r) + static_cast<uint32_t>(mix(key) % per_class_);
}

uint32_t match_tiling::owner(resource_class r, double lat, double lon) const {
  if (per_class_ == 1)
    return first(r);
  auto& tiles = classes_[index(r)].tiles;
  auto row = tiles.row_of(lat);
  return partition_of_tile(r, row, tiles.column_of(row, lon));
}

partition_mask match_tiling::near(resource_class r, double lat,
                                  double lon) const {
  if (per_class_ == 1)
    return bit(first(r));
  auto& layout = classes_[index(r)];
  partition_mask out = bit(owner(r, lat, lon));
  // The box around the d_max circle holds every point within it, so it
  // meets the tile of every supply that can match a demand here.
  layout.tiles.for_each_cell(box_around(lat, lon, layout.d_max_m),
                             [&](int64_t row, int64_t col, double, double) {
                               out |= bit(partition_of_tile(r, row, col));
                             });
  return out;
}

partition_mask match_tiling::site_holders(double lat, double lon) const {
  partition_mask out = 0;
  for (uint32_t c = 0; c < classes; ++c)
    out |= near(static_cast<resource_class>(c), lat, lon);
  return out;
}

} // namespace flowmatch
