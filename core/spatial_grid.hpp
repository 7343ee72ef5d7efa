#pragma once

// Points on the globe (a flow slot at a latitude and longitude) in cells at
// least twice a query radius across, so the box around a radius query
// meets at most 2 x 2 cells (two more where it crosses the antimeridian).
// Each cell keeps its points in one contiguous array, and a cell's address
// follows from its row and column: a query reads a few arrays instead of
// walking a tree or probing a hash map. Pure logic, no actors.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace flowmatch {

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

/// Rows of latitude and, per row, columns of longitude, each cell at least
/// `cell_m` across everywhere in it (rows near a pole have fewer columns):
/// the geometry shared by the spatial grid's cells and the match
/// partitions' tiles. A box `cell_m / 2` around a point meets at most 2 x 2
/// cells (more where it wraps or covers a pole).
class grid_layout {
public:
  explicit grid_layout(double cell_m);

  int64_t rows() const {
    return static_cast<int64_t>(columns_.size());
  }
  int64_t columns(int64_t row) const {
    return columns_[static_cast<size_t>(row)];
  }
  int64_t row_of(double lat) const;
  int64_t column_of(int64_t row, double lon) const;

  /// Calls `visit(row, col, lon_lo, lon_hi)` for each cell a box meets,
  /// with the longitudes the box wants from it. Each cell once per half
  /// of a box split at the antimeridian (the halves share no point).
  template <class V>
  void for_each_cell(const search_box& b, V&& visit) const;

private:
  /// Row height in degrees of latitude.
  double row_deg_;
  /// Columns per row: each row's cells are at least as wide as any query
  /// box that can reach the row.
  std::vector<int64_t> columns_;
};

template <class V>
void grid_layout::for_each_cell(const search_box& b, V&& visit) const {
  auto range = [&](int64_t row, double lon_lo, double lon_hi) {
    for (auto col = column_of(row, lon_lo), last = column_of(row, lon_hi);
         col <= last; ++col)
      visit(row, col, lon_lo, lon_hi);
  };
  for (auto row = row_of(b.lat_lo), last = row_of(b.lat_hi); row <= last;
       ++row) {
    if (b.all_longitudes) {
      range(row, -180.0, 180.0);
    } else if (b.lon_lo < -180.0) {
      range(row, b.lon_lo + 360.0, 180.0);
      range(row, -180.0, b.lon_hi);
    } else if (b.lon_hi > 180.0) {
      range(row, b.lon_lo, 180.0);
      range(row, -180.0, b.lon_hi - 360.0);
    } else {
      range(row, b.lon_lo, b.lon_hi);
    }
  }
}

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

  using cell = std::vector<point>;

  grid_layout layout_;
  /// The cells, row by row; a row's cells exist once a point is in it.
  std::vector<std::vector<cell>> rows_;
  size_t size_ = 0;
};

template <class F>
void spatial_grid::query(double lat, double lon, double radius_m,
                         F&& f) const {
  auto b = box_around(lat, lon, radius_m);
  layout_.for_each_cell(b, [&](int64_t row, int64_t col, double lon_lo,
                               double lon_hi) {
    auto& cells = rows_[static_cast<size_t>(row)];
    if (cells.empty())
      return; // no point in this row yet
    for (const auto& p : cells[static_cast<size_t>(col)])
      if (p.lat >= b.lat_lo && p.lat <= b.lat_hi && p.lon >= lon_lo
          && p.lon <= lon_hi)
        f(p.slot);
  });
}

} // namespace flowmatch
