// The spatial grid: a radius query returns every point within the radius
// (the geodesic says which), each once, and only points inside the box it
// reads; at the antimeridian, at the poles, for small and large radii.

#include "core/match_rules.hpp"
#include "core/spatial_grid.hpp"

#include <GeographicLib/Geodesic.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

using namespace flowmatch;

namespace {

struct place {
  double lat;
  double lon;
};

/// Points spread over the globe, and more of them crowded near the places
/// where boxes wrap or cover every longitude.
std::vector<place> make_points(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<double> u{0, 1};
  std::vector<place> out;
  for (size_t i = 0; i < n; ++i) {
    double r = u(rng);
    place p;
    if (r < 0.4) { // anywhere
      p.lat = -90 + 180 * u(rng);
      p.lon = -180 + 360 * u(rng);
    } else if (r < 0.7) { // the antimeridian
      p.lat = -60 + 120 * u(rng);
      p.lon = u(rng) < 0.5 ? 180 - 1.5 * u(rng) : -180 + 1.5 * u(rng);
    } else { // the poles
      p.lat = (u(rng) < 0.5 ? 1 : -1) * (88 + 2 * u(rng));
      p.lon = -180 + 360 * u(rng);
    }
    out.push_back(p);
  }
  return out;
}

} // namespace

TEST_CASE("a grid query returns every point within the radius, each once") {
  std::mt19937 rng{42};
  std::uniform_real_distribution<double> u{0, 1};
  for (double max_radius : {5000.0, 20000.0, 120000.0}) {
    spatial_grid grid{max_radius};
    auto points = make_points(rng, 4000);
    for (uint32_t i = 0; i < points.size(); ++i)
      grid.insert(points[i].lat, points[i].lon, i);
    REQUIRE(grid.size() == points.size());
    for (int q = 0; q < 300; ++q) {
      // Query around a stored point (so some are near), at a radius up to
      // the grid's (and past it: still right, only slower). A ring of
      // points just inside the radius, all around, must all be found;
      // they are removed again after the query.
      auto at = points[static_cast<size_t>(u(rng) * points.size())];
      double radius = max_radius * (q % 10 == 0 ? 2.5 : 0.05 + u(rng));
      constexpr uint32_t ring = 1000000;
      std::vector<place> ring_points;
      for (int k = 0; k < 24; ++k) {
        place p;
        GeographicLib::Geodesic::WGS84().Direct(at.lat, at.lon, k * 15.0,
                                                radius * 0.999, p.lat, p.lon);
        ring_points.push_back(p);
        grid.insert(p.lat, p.lon, ring + static_cast<uint32_t>(k));
      }
      std::vector<uint32_t> found;
      grid.query(at.lat, at.lon, radius,
                 [&](uint32_t slot) { found.push_back(slot); });
      for (int k = 0; k < 24; ++k)
        grid.remove(ring_points[k].lat, ring_points[k].lon,
                    ring + static_cast<uint32_t>(k));
      std::sort(found.begin(), found.end());
      INFO("grid for " << max_radius << " m, query at " << at.lat << ", "
                       << at.lon << " within " << radius << " m");
      CHECK(std::adjacent_find(found.begin(), found.end()) == found.end());
      for (uint32_t k = 0; k < 24; ++k) {
        INFO("ring point at bearing " << k * 15 << ": " << ring_points[k].lat
                                      << ", " << ring_points[k].lon);
        CHECK(std::binary_search(found.begin(), found.end(), ring + k));
      }
      for (uint32_t i = 0; i < points.size(); ++i) {
        auto d = geodesic_distance_m(at.lat, at.lon, points[i].lat,
                                     points[i].lon);
        if (d <= radius) {
          INFO("point " << i << " at " << points[i].lat << ", "
                        << points[i].lon << ", " << d << " m away");
          CHECK(std::binary_search(found.begin(), found.end(), i));
        }
      }
      // Nothing outside the box's latitudes.
      auto box = box_around(at.lat, at.lon, radius);
      for (auto i : found) {
        if (i >= ring)
          continue;
        CHECK(points[i].lat >= box.lat_lo);
        CHECK(points[i].lat <= box.lat_hi);
      }
      CHECK(grid.size() == points.size());
    }
  }
}

TEST_CASE("a removed point is no longer found, the others stay") {
  spatial_grid grid{20000};
  grid.insert(48.2, 16.37, 1);
  grid.insert(48.21, 16.38, 2);
  grid.insert(48.21, 16.38, 3); // same place, other slot
  grid.remove(48.21, 16.38, 2);
  grid.remove(48.21, 16.38, 7); // never there: nothing happens
  std::vector<uint32_t> found;
  grid.query(48.2, 16.37, 5000, [&](uint32_t slot) { found.push_back(slot); });
  std::sort(found.begin(), found.end());
  CHECK(found == std::vector<uint32_t>{1, 3});
  CHECK(grid.size() == 2);
}
