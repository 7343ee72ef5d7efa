#include "messages/domain.hpp"

#include "messages/dead_letter.hpp"

#include <tuple>

namespace flowmatch {

std::string_view to_string(event_type t) {
  switch (t) {
    case event_type::site_created:
      return "site_created";
    case event_type::site_updated:
      return "site_updated";
    case event_type::site_deleted:
      return "site_deleted";
    case event_type::resource_flow_created:
      return "resource_flow_created";
    case event_type::resource_flow_updated:
      return "resource_flow_updated";
    case event_type::resource_flow_deleted:
      return "resource_flow_deleted";
  }
  return "unknown";
}

std::string_view to_string(flow_direction d) {
  return d == flow_direction::supply ? "supply" : "demand";
}

std::string_view to_string(resource_class r) {
  switch (r) {
    case resource_class::heat:
      return "heat";
    case resource_class::water:
      return "water";
    case resource_class::material:
      return "material";
    case resource_class::co2:
      return "co2";
  }
  return "unknown";
}

std::string_view to_string(reject_reason r) {
  switch (r) {
    case reject_reason::malformed_json:
      return "malformed_json";
    case reject_reason::invalid_utf8:
      return "invalid_utf8";
    case reject_reason::line_too_long:
      return "line_too_long";
    case reject_reason::not_an_object:
      return "not_an_object";
    case reject_reason::missing_field:
      return "missing_field";
    case reject_reason::wrong_type:
      return "wrong_type";
    case reject_reason::non_finite_number:
      return "non_finite_number";
    case reject_reason::out_of_range:
      return "out_of_range";
    case reject_reason::invalid_value:
      return "invalid_value";
    case reject_reason::unit_class_mismatch:
      return "unit_class_mismatch";
    case reject_reason::unknown_event_type:
      return "unknown_event_type";
    case reject_reason::orphan_flow:
      return "orphan_flow";
    case reject_reason::poison_event:
      return "poison_event";
    case reject_reason::permanent_db_error:
      return "permanent_db_error";
  }
  return "unknown";
}

namespace {

template <class T>
bool same(const caf::optional<T>& a, const caf::optional<T>& b) {
  if (static_cast<bool>(a) != static_cast<bool>(b))
    return false;
  return !a || *a == *b;
}

} // namespace

bool operator==(const site& a, const site& b) {
  return a.site_id == b.site_id && same(a.name, b.name) && a.lat == b.lat
         && a.lon == b.lon && same(a.country, b.country)
         && same(a.nace, b.nace) && same(a.version, b.version);
}

bool operator==(const resource_flow& a, const resource_flow& b) {
  return a.flow_id == b.flow_id && a.site_id == b.site_id
         && a.direction == b.direction && a.resource == b.resource
         && a.quantity == b.quantity && a.unit == b.unit
         && a.annual_quantity == b.annual_quantity
         && same(a.operating_hours, b.operating_hours)
         && same(a.temperature_c, b.temperature_c) && same(a.medium, b.medium)
         && same(a.ewc, b.ewc) && same(a.accepts_ewc, b.accepts_ewc)
         && same(a.hazardous, b.hazardous)
         && same(a.accepts_hazardous, b.accepts_hazardous)
         && same(a.max_transport_km, b.max_transport_km)
         && same(a.version, b.version);
}

} // namespace flowmatch
