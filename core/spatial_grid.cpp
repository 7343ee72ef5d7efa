#include "core/spatial_grid.hpp"

#include <algorithm>
#include <cmath>

namespace flowmatch {

namespace {

// A degree of latitude is at least 110,574 m and a degree of longitude at
// least 111,319 m times the cosine of the latitude (WGS84), so boxes sized
// with 110,000 and 111,000 overshoot: they surely hold the circle.
constexpr double m_per_deg_lat = 110000.0;
constexpr double m_per_deg_lon_equator = 111000.0;
constexpr double deg = M_PI / 180.0;
/// Beyond this latitude a box spans every longitude.
constexpr double polar_deg = 89.0;
/// The smallest row height (about 22 km): bounds the cells of a row (at
/// most 1,800) for tiny radii, which then read more points per cell.
constexpr double min_row_deg = 0.2;

} // namespace

search_box box_around(double lat, double lon, double radius_m) {
  search_box b{};
  double dlat = radius_m / m_per_deg_lat;
  b.lat_lo = std::max(-90.0, lat - dlat);
  b.lat_hi = std::min(90.0, lat + dlat);
  double far = std::max(std::fabs(b.lat_lo), std::fabs(b.lat_hi));
  double dlon = far >= polar_deg
                  ? 360.0
                  : radius_m / (m_per_deg_lon_equator * std::cos(far * deg));
  b.all_longitudes = dlon >= 180.0;
  b.lon_lo = lon - dlon;
  b.lon_hi = lon + dlon;
  return b;
}

grid_layout::grid_layout(double cell_m) {
  row_deg_ = std::max(min_row_deg, cell_m / m_per_deg_lat);
  auto rows = std::max<int64_t>(1, static_cast<int64_t>(
                                     std::ceil(180.0 / row_deg_)));
  columns_.resize(static_cast<size_t>(rows));
  for (int64_t row = 0; row < rows; ++row) {
    // A box half a cell high that reaches this row lies within one row
    // height of it, so its far latitude is at most `far`; a cell must be
    // at least `cell_m` wide there.
    double lo = -90.0 + static_cast<double>(row) * row_deg_;
    double far = std::min(90.0, std::max(std::fabs(lo - row_deg_),
                                         std::fabs(lo + 2 * row_deg_)));
    int64_t columns = 1;
    if (far < polar_deg) {
      double width = cell_m / (m_per_deg_lon_equator * std::cos(far * deg));
      columns = std::max<int64_t>(1, static_cast<int64_t>(360.0 / width));
    }
    columns_[static_cast<size_t>(row)] = columns;
  }
}

int64_t grid_layout::row_of(double lat) const {
  auto row = static_cast<int64_t>(std::floor((lat + 90.0) / row_deg_));
  return std::clamp<int64_t>(row, 0, rows() - 1);
}

int64_t grid_layout::column_of(int64_t row, double lon) const {
  auto n = columns(row);
  auto col = static_cast<int64_t>(
    std::floor((lon + 180.0) * static_cast<double>(n) / 360.0));
  return std::clamp<int64_t>(col, 0, n - 1);
}

// A query box is 2 * radius high: cells that large hold it in two.
spatial_grid::spatial_grid(double max_radius_m) : layout_(2 * max_radius_m) {
  rows_.resize(static_cast<size_t>(layout_.rows()));
}

void spatial_grid::insert(double lat, double lon, uint32_t slot) {
  auto row = layout_.row_of(lat);
  auto& r = rows_[static_cast<size_t>(row)];
  if (r.empty())
    r.resize(static_cast<size_t>(layout_.columns(row)));
  r[static_cast<size_t>(layout_.column_of(row, lon))].push_back(
    point{lat, lon, slot});
  ++size_;
}

void spatial_grid::remove(double lat, double lon, uint32_t slot) {
  auto row = layout_.row_of(lat);
  auto& r = rows_[static_cast<size_t>(row)];
  if (r.empty())
    return;
  auto& points = r[static_cast<size_t>(layout_.column_of(row, lon))];
  auto i = std::find_if(points.begin(), points.end(),
                        [&](const point& p) { return p.slot == slot; });
  if (i == points.end())
    return;
  *i = points.back();
  points.pop_back();
  --size_;
}

} // namespace flowmatch
