#pragma once

// Points on the globe (a flow slot at a latitude and longitude) in cells at
// least twice a query radius across, so the box around a radius query
// meets at most 2 x 2 cells (two more where it crosses the antimeridian).
// Each cell keeps its points in one contiguous array: a query reads a few
// arrays instead of walking a tree, which is what keeps the per-event cost
// flat as the index grows past the caches. Pure logic, no actors.

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <vector>

namespace flowmatch {

class spatial_grid {
public:
  /// A grid for queries of radius up to `max_radius_m` (larger ones are
  /// still answered right, reading more cells).
  explicit spatial_grid(double max_radius_m);

  void insert(double lat, double lon, uint32_t slot);

  /// Removes the point of `slot` inserted at exactly (lat, lon).
  void remove(double lat, double lon, uint32_t slot);

  /// Calls `f(slot)` for every point inside a box around (lat, lon) that
  /// holds every point within `radius_m` on the WGS84 ellipsoid (a
  /// superset of the circle, each point once).
  template <class F>
  void query(double lat, double lon, double radius_m, F&& f) const;

  size_t size() const {
    return size_;
  }

private:
  struct point {
    double lat;
    double lon;
    uint32_t slot;
  };

  int64_t row_of(double lat) const;
  int64_t column_of(int64_t row, double lon) const;
  static uint64_t key(int64_t row, int64_t column) {
    return (static_cast<uint64_t>(row) << 32) | static_cast<uint64_t>(column);
  }
  template <class F>
  void scan(int64_t row, double lat_lo, double lat_hi, double lon_lo,
            double lon_hi, F& f) const;

  /// Row height in degrees of latitude.
  double row_deg_;
  /// Columns per row: each row's cells are at least as wide as any query
  /// box that can reach the row.
  std::vector<int64_t> columns_;
  absl::flat_hash_map<uint64_t, std::vector<point>> cells_;
  size_t size_ = 0;
};

/// The box around (lat, lon) that holds the circle of `radius_m`, in
/// degrees; lon_lo may be below -180 or lon_hi above 180 (the caller
/// wraps), and a box that reaches a pole spans all longitudes.
struct search_box {
  double lat_lo;
  double lat_hi;
  double lon_lo;
  double lon_hi;
  bool all_longitudes;
};

search_box box_around(double lat, double lon, double radius_m);

template <class F>
void spatial_grid::query(double lat, double lon, double radius_m,
                         F&& f) const {
  auto b = box_around(lat, lon, radius_m);
  for (auto row = row_of(b.lat_lo), last = row_of(b.lat_hi); row <= last;
       ++row) {
    if (b.all_longitudes) {
      scan(row, b.lat_lo, b.lat_hi, -180.0, 180.0, f);
    } else if (b.lon_lo < -180.0) {
      scan(row, b.lat_lo, b.lat_hi, b.lon_lo + 360.0, 180.0, f);
      scan(row, b.lat_lo, b.lat_hi, -180.0, b.lon_hi, f);
    } else if (b.lon_hi > 180.0) {
      scan(row, b.lat_lo, b.lat_hi, b.lon_lo, 180.0, f);
      scan(row, b.lat_lo, b.lat_hi, -180.0, b.lon_hi - 360.0, f);
    } else {
      scan(row, b.lat_lo, b.lat_hi, b.lon_lo, b.lon_hi, f);
    }
  }
}

template <class F>
void spatial_grid::scan(int64_t row, double lat_lo, double lat_hi,
                        double lon_lo, double lon_hi, F& f) const {
  // The two halves of a box split at the antimeridian never share a
  // point (one ends at 180, the other starts at -180), so no point is
  // reported twice even when both halves read the same cell.
  for (auto col = column_of(row, lon_lo), last = column_of(row, lon_hi);
       col <= last; ++col) {
    auto cell = cells_.find(key(row, col));
    if (cell == cells_.end())
      continue;
    for (const auto& p : cell->second)
      if (p.lat >= lat_lo && p.lat <= lat_hi && p.lon >= lon_lo
          && p.lon <= lon_hi)
        f(p.slot);
  }
}

} // namespace flowmatch
