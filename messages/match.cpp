#include "messages/match.hpp"

#include "messages/encoder.hpp"

#include <tuple>

namespace flowmatch {

bool operator==(const match& a, const match& b) {
  return std::tie(a.supply_flow_id, a.demand_flow_id, a.supply_site_id,
                  a.demand_site_id, a.resource, a.distance_m, a.exchange_qty,
                  a.score, a.s_size, a.s_dist, a.s_econ, a.f_quality,
                  a.f_taxonomy, a.flags)
         == std::tie(b.supply_flow_id, b.demand_flow_id, b.supply_site_id,
                     b.demand_site_id, b.resource, b.distance_m,
                     b.exchange_qty, b.score, b.s_size, b.s_dist, b.s_econ,
                     b.f_quality, b.f_taxonomy, b.flags);
}

std::string match_change_line(const match_change& c) {
  std::string out;
  auto str = [&](const char* key, std::string_view v, bool first = false) {
    if (!first)
      out.push_back(',');
    append_json_string(out, key);
    out.push_back(':');
    append_json_string(out, v);
  };
  auto num = [&](const char* key, double v) {
    out.push_back(',');
    append_json_string(out, key);
    out.push_back(':');
    append_json_number(out, v);
  };
  out.push_back('{');
  auto& m = c.value;
  if (c.removed) {
    str("type", "match_removed", true);
    str("supply_flow_id", m.supply_flow_id);
    str("demand_flow_id", m.demand_flow_id);
    out.push_back('}');
    return out;
  }
  str("type", "match_upserted", true);
  str("supply_flow_id", m.supply_flow_id);
  str("demand_flow_id", m.demand_flow_id);
  str("supply_site_id", m.supply_site_id);
  str("demand_site_id", m.demand_site_id);
  str("resource", to_string(m.resource));
  num("distance_m", m.distance_m);
  num("exchange_qty", m.exchange_qty);
  num("score", m.score);
  num("s_size", m.s_size);
  num("s_dist", m.s_dist);
  num("s_econ", m.s_econ);
  num("f_quality", m.f_quality);
  num("f_taxonomy", m.f_taxonomy);
  out.append(",\"flags\":[");
  for (size_t i = 0; i < m.flags.size(); ++i) {
    if (i > 0)
      out.push_back(',');
    append_json_string(out, m.flags[i]);
  }
  out.append("]}");
  return out;
}

} // namespace flowmatch
