#pragma once

// A match: a supply flow at one site that could feed a demand flow at
// another, with the score and the components that explain it (match model
// v1, docs/contracts/matching.md).

#include "messages/domain.hpp"

#include <caf/meta/type_name.hpp>

#include <string>
#include <vector>

namespace flowmatch {

struct match {
  std::string supply_flow_id;
  std::string demand_flow_id;
  std::string supply_site_id;
  std::string demand_site_id;
  resource_class resource = resource_class::heat;
  double distance_m = 0;
  double exchange_qty = 0;
  double score = 0;
  double s_size = 0;
  double s_dist = 0;
  double s_econ = 0;
  double f_quality = 1;
  double f_taxonomy = 1;
  /// `heat_pump_required`, `hazardous`, in that order when both apply.
  std::vector<std::string> flags;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, match& x) {
  auto checked = caf::meta::load_callback([&x]() -> caf::error {
    for (auto v : {x.distance_m, x.exchange_qty, x.score, x.s_size, x.s_dist,
                   x.s_econ, x.f_quality, x.f_taxonomy})
      if (auto err = check_finite(v, "a match's number"))
        return err;
    return check_enum(x.resource, resource_class::co2, "match.resource");
  });
  return f(caf::meta::type_name("match"), x.supply_flow_id, x.demand_flow_id,
           x.supply_site_id, x.demand_site_id, x.resource, x.distance_m,
           x.exchange_qty, x.score, x.s_size, x.s_dist, x.s_econ, x.f_quality,
           x.f_taxonomy, x.flags, checked);
}

bool operator==(const match& a, const match& b);
inline bool operator!=(const match& a, const match& b) {
  return !(a == b);
}

/// One change of the match set, in the order it took effect. A removal
/// carries only the two flow ids (and sites, for routing).
struct match_change {
  bool removed = false;
  match value;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, match_change& x) {
  return f(caf::meta::type_name("match_change"), x.removed, x.value);
}

/// The match output stream line (events.md): `match_upserted` with every
/// number, or `match_removed` with the two flow ids.
std::string match_change_line(const match_change& c);

} // namespace flowmatch
