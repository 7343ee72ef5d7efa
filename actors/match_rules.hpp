#pragma once

// The match model v1 (docs/contracts/matching.md) as pure functions: the
// gates, the score components, the score. Every default of the model is a
// field of match_settings, so configuration can change each.

#include "messages/domain.hpp"
#include "messages/match.hpp"

#include <caf/optional.hpp>

#include <string>

namespace flowmatch {

struct match_settings {
  /// Class defaults of d_max, in km.
  double d_max_heat_km = 20;
  double d_max_water_km = 20;
  double d_max_co2_km = 50;
  double d_max_material_km = 120;
  /// Heat-exchanger approach: delta T for gaseous media (flue gas, air)
  /// and for the others, in K.
  double delta_t_gas_k = 20;
  double delta_t_k = 10;
  /// Below delta T a heat pump can still lift a supply this warm (deg C);
  /// the match then gets this quality factor.
  double heat_pump_min_c = 25;
  double heat_pump_quality = 0.5;
  /// Material taxonomy factors by matched prefix length (6, 4, 2 digits).
  double taxonomy_6 = 1.0;
  double taxonomy_4 = 0.7;
  double taxonomy_2 = 0.4;
  /// s_dist for material: exp(-d / this), in m (NISP median distance).
  double material_distance_m = 33000;
  /// Heat economics: value of heat (EUR/MWh), annuity and upkeep shares,
  /// exchanger and pump costs (EUR per MW of peak power).
  double heat_value_eur_mwh = 40;
  double annuity = 0.0510;
  double upkeep = 0.02;
  double source_exchanger_eur_mw = 15000;
  double sink_small_eur_mw = 505000; ///< for P < 1 MW
  double sink_large_eur_mw = 190000;
  /// s_econ of classes without prices.
  double econ_without_prices = 0.5;
  /// Weights; validate() checks they sum to 1.
  double w_size = 0.35;
  double w_dist = 0.25;
  double w_econ = 0.40;

  double d_max_default_m(resource_class r) const;

  /// Empty when valid, else what is wrong.
  std::string validate() const;
};

/// Geodesic distance on the WGS84 ellipsoid in metres, as PostGIS
/// ST_Distance(geography, geography) computes it (GeographicLib).
double geodesic_distance_m(double lat1, double lon1, double lat2, double lon2);

/// Pipe cost in EUR per metre for a peak power in MW (the Hotmaps table).
double pipe_cost_eur_m(double peak_mw);

/// The largest d_max a flow can have (its class default, or its own
/// max_transport_km when smaller): the candidate search radius.
double search_radius_m(const resource_flow& f, const match_settings& s);

/// Evaluates a supply and a demand flow at sites at the given coordinates.
/// None when a gate fails; otherwise the match with every component.
/// `known_distance_m`, when given, is the geodesic distance of these two
/// positions computed before (the index passes it when neither site moved
/// since), so the exact distance is not computed again.
caf::optional<match> evaluate(const resource_flow& supply, double s_lat,
                              double s_lon, const resource_flow& demand,
                              double d_lat, double d_lon,
                              const match_settings& s,
                              const double* known_distance_m = nullptr);

} // namespace flowmatch
