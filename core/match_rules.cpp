#include "core/match_rules.hpp"

#include <GeographicLib/Geodesic.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace flowmatch {

double match_settings::d_max_default_m(resource_class r) const {
  switch (r) {
    case resource_class::heat:
      return d_max_heat_km * 1000;
    case resource_class::water:
      return d_max_water_km * 1000;
    case resource_class::co2:
      return d_max_co2_km * 1000;
    case resource_class::material:
      return d_max_material_km * 1000;
  }
  return 0;
}

std::string match_settings::validate() const {
  auto sum = w_size + w_dist + w_econ;
  if (std::fabs(sum - 1.0) > 1e-9)
    return "match weights w-size + w-dist + w-econ must sum to 1, not "
           + std::to_string(sum);
  if (w_size < 0 || w_dist < 0 || w_econ < 0)
    return "match weights must not be negative";
  for (double d : {d_max_heat_km, d_max_water_km, d_max_co2_km,
                   d_max_material_km})
    if (!(d > 0))
      return "match d-max defaults must be positive";
  if (!(material_distance_m > 0) || !(heat_value_eur_mwh > 0))
    return "match material-distance and heat-value must be positive";
  return {};
}

double geodesic_distance_m(double lat1, double lon1, double lat2,
                           double lon2) {
  double s12 = 0;
  GeographicLib::Geodesic::WGS84().Inverse(lat1, lon1, lat2, lon2, s12);
  return s12;
}

double pipe_cost_eur_m(double p) {
  // The first row whose bound is >= P.
  if (p <= 0.2)
    return 195;
  if (p <= 0.6)
    return 220;
  if (p <= 1.2)
    return 240;
  if (p <= 3.6)
    return 288;
  if (p <= 9.8)
    return 357;
  if (p <= 20)
    return 426;
  if (p <= 45)
    return 564;
  if (p <= 125)
    return 839;
  return 976;
}

namespace {

double d_max_m(const flow_terms& supply, const flow_terms& demand,
               const match_settings& s) {
  return std::min({s.d_max_default_m(supply.resource), supply.max_transport_m,
                   demand.max_transport_m});
}

bool is_gas(const resource_flow& f) {
  return f.medium && (*f.medium == "flue_gas" || *f.medium == "air");
}

} // namespace

flow_terms terms_of(const resource_flow& f) {
  flow_terms t;
  t.annual_quantity = f.annual_quantity;
  t.effective_hours = f.effective_hours();
  t.temperature_c = f.temperature_c ? *f.temperature_c : 0;
  t.max_transport_m = f.max_transport_km
                        ? *f.max_transport_km * 1000
                        : std::numeric_limits<double>::infinity();
  t.direction = f.direction;
  t.resource = f.resource;
  t.gas = is_gas(f);
  return t;
}

namespace {

/// Great-circle distance on the mean-radius sphere: within 0.6 % of the
/// ellipsoidal geodesic, a cheap first test before the exact one.
double sphere_distance_m(double lat1, double lon1, double lat2, double lon2) {
  constexpr double r = 6371008.8;
  constexpr double rad = M_PI / 180.0;
  double dlat = (lat2 - lat1) * rad;
  double dlon = (lon2 - lon1) * rad;
  double a = std::sin(dlat / 2) * std::sin(dlat / 2)
             + std::cos(lat1 * rad) * std::cos(lat2 * rad) * std::sin(dlon / 2)
                 * std::sin(dlon / 2);
  return 2 * r * std::asin(std::min(1.0, std::sqrt(a)));
}

} // namespace

caf::optional<double> distance_within(const position& supply,
                                      const position& demand,
                                      double limit_m) {
  // A sphere 1 % beyond the limit is surely beyond it on the ellipsoid
  // (the two differ by at most 0.6 %): the exact geodesic is only computed
  // for pairs that can be within it.
  if (sphere_distance_m(supply.lat, supply.lon, demand.lat, demand.lon)
      > limit_m * 1.01)
    return caf::none;
  auto d = geodesic_distance_m(supply.lat, supply.lon, demand.lat,
                               demand.lon);
  if (d > limit_m)
    return caf::none;
  return d;
}

double d_max_bound_m(resource_class r, const match_settings& s) {
  return s.d_max_default_m(r);
}

flow_taxonomy taxonomy_of(const resource_flow& f) {
  flow_taxonomy t;
  t.ewc = f.ewc;
  t.accepts_ewc = f.accepts_ewc;
  t.hazardous = f.hazardous && *f.hazardous;
  t.accepts_hazardous = f.accepts_hazardous && *f.accepts_hazardous;
  return t;
}

caf::optional<match_numbers>
evaluate_numbers(const flow_terms& supply, const flow_taxonomy& supply_tax,
                 const flow_terms& demand, const flow_taxonomy& demand_tax,
                 const match_settings& s, double distance_m) {
  // 1. Sides (the caller checked the sites differ). 2. Class.
  if (supply.direction != flow_direction::supply
      || demand.direction != flow_direction::demand
      || supply.resource != demand.resource)
    return caf::none;
  double f_quality = 1;
  double f_taxonomy = 1;
  bool heat_pump = false;
  bool hazardous = false;
  // 4. Heat quality.
  if (supply.resource == resource_class::heat) {
    double ts = supply.temperature_c;
    double td = demand.temperature_c;
    double delta = supply.gas ? s.delta_t_gas_k : s.delta_t_k;
    if (ts >= td + delta) {
      f_quality = 1;
    } else if (ts >= s.heat_pump_min_c) {
      f_quality = s.heat_pump_quality;
      heat_pump = true;
    } else {
      return caf::none;
    }
  }
  // 5. Material taxonomy.
  if (supply.resource == resource_class::material) {
    const auto& ewc = supply_tax.ewc;
    const auto& accepts = demand_tax.accepts_ewc;
    if (!ewc || !accepts)
      return caf::none;
    double best = -1;
    for (const auto& prefix : *accepts) {
      if (prefix.size() > ewc->size()
          || ewc->compare(0, prefix.size(), prefix) != 0)
        continue;
      double f = prefix.size() == 6   ? s.taxonomy_6
                 : prefix.size() == 4 ? s.taxonomy_4
                                      : s.taxonomy_2;
      best = std::max(best, f);
    }
    if (best < 0)
      return caf::none;
    f_taxonomy = best;
    hazardous = supply_tax.hazardous;
    if (hazardous && !demand_tax.accepts_hazardous)
      return caf::none;
  }
  // 3. Distance.
  double dmax = d_max_m(supply, demand, s);
  double d = distance_m;
  if (d > dmax)
    return caf::none;
  match_numbers m;
  m.distance_m = d;
  m.f_quality = f_quality;
  m.f_taxonomy = f_taxonomy;
  m.heat_pump_required = heat_pump;
  m.hazardous = hazardous;
  // Components.
  double S = supply.annual_quantity;
  double D = demand.annual_quantity;
  double q = std::min(S, D);
  m.exchange_qty = q;
  m.s_size = q / std::max(S, D);
  if (supply.resource == resource_class::material)
    m.s_dist = std::exp(-d / s.material_distance_m);
  else
    m.s_dist = 1 - d / dmax;
  if (supply.resource == resource_class::heat) {
    double h = std::min(supply.effective_hours, demand.effective_hours);
    double p = q / h;
    double capex = 2 * pipe_cost_eur_m(p) * d + s.source_exchanger_eur_mw * p
                   + (p < 1 ? s.sink_small_eur_mw : s.sink_large_eur_mw) * p;
    double annual = capex * (s.annuity + s.upkeep);
    double lcot = annual / q;
    m.s_econ = std::clamp(1 - lcot / s.heat_value_eur_mwh, 0.0, 1.0);
  } else {
    m.s_econ = s.econ_without_prices;
  }
  m.score = m.f_quality * m.f_taxonomy
            * (s.w_size * m.s_size + s.w_dist * m.s_dist
               + s.w_econ * m.s_econ);
  return m;
}

match make_match(const match_ends& ends, resource_class r,
                 const match_numbers& n) {
  match m;
  m.supply_flow_id = ends.supply_flow_id;
  m.demand_flow_id = ends.demand_flow_id;
  m.supply_site_id = ends.supply_site_id;
  m.demand_site_id = ends.demand_site_id;
  m.resource = r;
  m.distance_m = n.distance_m;
  m.exchange_qty = n.exchange_qty;
  m.score = n.score;
  m.s_size = n.s_size;
  m.s_dist = n.s_dist;
  m.s_econ = n.s_econ;
  m.f_quality = n.f_quality;
  m.f_taxonomy = n.f_taxonomy;
  if (n.heat_pump_required)
    m.flags.emplace_back("heat_pump_required");
  if (n.hazardous)
    m.flags.emplace_back("hazardous");
  return m;
}

caf::optional<match> evaluate(const resource_flow& supply, double s_lat,
                              double s_lon, const resource_flow& demand,
                              double d_lat, double d_lon,
                              const match_settings& s) {
  if (supply.site_id == demand.site_id)
    return caf::none;
  auto d = distance_within({s_lat, s_lon}, {d_lat, d_lon},
                           d_max_bound_m(supply.resource, s));
  if (!d)
    return caf::none;
  auto n = evaluate_numbers(terms_of(supply), taxonomy_of(supply),
                            terms_of(demand), taxonomy_of(demand), s, *d);
  if (!n)
    return caf::none;
  return make_match({supply.flow_id, supply.site_id, demand.flow_id,
                     demand.site_id},
                    supply.resource, *n);
}

} // namespace flowmatch
