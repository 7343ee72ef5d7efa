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

/// The numbers of one match, without the ids (those are the two flows').
struct match_numbers {
  double distance_m = 0;
  double exchange_qty = 0;
  double score = 0;
  double s_size = 0;
  double s_dist = 0;
  double s_econ = 0;
  double f_quality = 1;
  double f_taxonomy = 1;
  bool heat_pump_required = false;
  bool hazardous = false;

  friend bool operator==(const match_numbers& a, const match_numbers& b) {
    return a.distance_m == b.distance_m && a.exchange_qty == b.exchange_qty
           && a.score == b.score && a.s_size == b.s_size
           && a.s_dist == b.s_dist && a.s_econ == b.s_econ
           && a.f_quality == b.f_quality && a.f_taxonomy == b.f_taxonomy
           && a.heat_pump_required == b.heat_pump_required
           && a.hazardous == b.hazardous;
  }
  friend bool operator!=(const match_numbers& a, const match_numbers& b) {
    return !(a == b);
  }
};

/// A point on the globe in degrees (WGS84).
struct position {
  double lat = 0;
  double lon = 0;
};

/// What the rules read of a flow beyond its position and the material
/// taxonomy, in 40 bytes: the match index keeps these in the first cache
/// line of each flow, so testing a candidate reads one line instead of the
/// whole flow.
struct flow_terms {
  double annual_quantity = 0;
  double effective_hours = 8760;
  /// The temperature, 0 when not given (as the heat gate reads it).
  double temperature_c = 0;
  /// The flow's own transport limit in m, infinity when it has none.
  double max_transport_m = 0;
  flow_direction direction = flow_direction::supply;
  resource_class resource = resource_class::heat;
  /// Flue gas or air: the gaseous heat-exchanger approach applies.
  bool gas = false;

  friend bool operator==(const flow_terms& a, const flow_terms& b) {
    return a.annual_quantity == b.annual_quantity
           && a.effective_hours == b.effective_hours
           && a.temperature_c == b.temperature_c
           && a.max_transport_m == b.max_transport_m
           && a.direction == b.direction && a.resource == b.resource
           && a.gas == b.gas;
  }
};

flow_terms terms_of(const resource_flow& f);

/// What the rules read of a material flow beyond its terms: its EWC code,
/// the prefixes it accepts, the hazardous flags.
struct flow_taxonomy {
  caf::optional<std::string> ewc;
  caf::optional<std::vector<std::string>> accepts_ewc;
  bool hazardous = false;
  bool accepts_hazardous = false;

  friend bool operator==(const flow_taxonomy& a, const flow_taxonomy& b) {
    return a.ewc == b.ewc && a.accepts_ewc == b.accepts_ewc
           && a.hazardous == b.hazardous
           && a.accepts_hazardous == b.accepts_hazardous;
  }
};

flow_taxonomy taxonomy_of(const resource_flow& f);

/// The distance the rules use between a supply and a demand
/// (geodesic_distance_m from the supply to the demand) when it is at most
/// `limit_m`; none beyond. Far pairs cost a spherical estimate only.
caf::optional<double> distance_within(const position& supply,
                                      const position& demand, double limit_m);

/// The d_max of no pair of this class exceeds this: the class default
/// (a flow's own transport limit can only lower it).
double d_max_bound_m(resource_class r, const match_settings& s);

/// Evaluates a supply and a demand flow (at different sites; the caller
/// checks that) from their terms, `distance_m` apart (as distance_within
/// gives it); the taxonomies are read only for material. None when a gate
/// fails; otherwise the numbers of the match.
caf::optional<match_numbers>
evaluate_numbers(const flow_terms& supply, const flow_taxonomy& supply_tax,
                 const flow_terms& demand, const flow_taxonomy& demand_tax,
                 const match_settings& s, double distance_m);

/// The two flows of a match as it names them.
struct match_ends {
  const std::string& supply_flow_id;
  const std::string& supply_site_id;
  const std::string& demand_flow_id;
  const std::string& demand_site_id;
};

/// The match of two flows with the given numbers: the ids, the class, the
/// flags in the contract's order.
match make_match(const match_ends& ends, resource_class r,
                 const match_numbers& n);

/// Evaluates a supply and a demand flow at sites at the given coordinates.
/// None when a gate fails; otherwise the match with every component.
caf::optional<match> evaluate(const resource_flow& supply, double s_lat,
                              double s_lon, const resource_flow& demand,
                              double d_lat, double d_lon,
                              const match_settings& s);

} // namespace flowmatch
