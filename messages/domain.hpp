#pragma once

// The domain values of the event contract (v1): sites, resource flows and the
// events that change them. Every type here can cross an actor or a node, so
// each has a CAF `inspect` overload and a type id (see type_ids.hpp).

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/optional.hpp>
#include <caf/sec.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flowmatch {

/// The six event types of the contract.
enum class event_type : uint8_t {
  site_created,
  site_updated,
  site_deleted,
  resource_flow_created,
  resource_flow_updated,
  resource_flow_deleted,
};

std::string_view to_string(event_type t);

/// For `inspect` when loading: a value that crossed from another node (or
/// any bytes a peer could send) must be one of the enum's values. CAF 0.17
/// loads an enum as its underlying integer, unchecked; a value past the
/// last enumerator would index past the tables kept per type, reason or
/// class. Each struct with an enum checks it in a load callback.
/// For `inspect` when loading: every number that crosses nodes is finite
/// (v1.1: no output ever holds NaN or infinity). CAF 0.17.6 decodes an
/// all-ones exponent as infinity, and its encoder never returns from an
/// infinity (caf/detail/ieee_754.hpp halves it until it is below 2): a
/// peer's bytes would hang the next node that sends the value on. Found
/// by tests/fuzz/fuzz_wire.cpp.
inline caf::error check_finite(double value, const char* what) {
  if (std::isfinite(value))
    return caf::none;
  return caf::make_error(caf::sec::invalid_argument,
                         std::string{what} + " is not finite");
}

inline caf::error check_finite(const caf::optional<double>& value,
                               const char* what) {
  return value ? check_finite(*value, what) : caf::none;
}

template <class Enum>
caf::error check_enum(Enum value, Enum last, const char* what) {
  if (static_cast<uint64_t>(value) <= static_cast<uint64_t>(last))
    return caf::none;
  return caf::make_error(caf::sec::invalid_argument,
                         std::string{what} + " out of range: "
                           + std::to_string(static_cast<uint64_t>(value)));
}

/// True for the two site types and the two flow types that mean upsert.
inline bool is_site_event(event_type t) {
  return t == event_type::site_created || t == event_type::site_updated
         || t == event_type::site_deleted;
}

enum class flow_direction : uint8_t { supply, demand };
enum class resource_class : uint8_t { heat, water, material, co2 };

std::string_view to_string(flow_direction d);
std::string_view to_string(resource_class r);

/// A place where a company operates. Optional fields are absent unless the
/// producer sent them.
struct site {
  std::string site_id;
  caf::optional<std::string> name;
  double lat = 0;
  double lon = 0;
  caf::optional<std::string> country;
  caf::optional<std::string> nace;
  caf::optional<int64_t> version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, site& x) {
  auto checked = caf::meta::load_callback([&x]() -> caf::error {
    if (auto err = check_finite(x.lat, "site.lat"))
      return err;
    return check_finite(x.lon, "site.lon");
  });
  return f(caf::meta::type_name("site"), x.site_id, x.name, x.lat, x.lon,
           x.country, x.nace, x.version, checked);
}

bool operator==(const site& a, const site& b);

/// What a site offers (supply) or needs (demand), with the class-specific
/// fields of the contract. `annual_quantity` is the canonical annual amount
/// (MWh/yr, t/yr or m3/yr) computed from `quantity`, `unit` and the
/// effective operating hours.
struct resource_flow {
  std::string flow_id;
  std::string site_id;
  flow_direction direction = flow_direction::supply;
  resource_class resource = resource_class::heat;
  double quantity = 0;
  std::string unit;
  double annual_quantity = 0;
  caf::optional<double> operating_hours;
  caf::optional<double> temperature_c;
  caf::optional<std::string> medium;
  caf::optional<std::string> ewc;
  caf::optional<std::vector<std::string>> accepts_ewc;
  caf::optional<bool> hazardous;
  caf::optional<bool> accepts_hazardous;
  caf::optional<double> max_transport_km;
  caf::optional<int64_t> version;

  /// Operating hours with the contract's default of 8760 applied.
  double effective_hours() const {
    return operating_hours ? *operating_hours : 8760.0;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, resource_flow& x) {
  auto checked = caf::meta::load_callback([&x]() -> caf::error {
    if (auto err = check_enum(x.direction, flow_direction::demand,
                              "resource_flow.direction"))
      return err;
    for (auto [value, what] :
         {std::pair{&x.quantity, "resource_flow.quantity"},
          std::pair{&x.annual_quantity, "resource_flow.annual_quantity"}})
      if (auto err = check_finite(*value, what))
        return err;
    for (auto [value, what] :
         {std::pair{&x.operating_hours, "resource_flow.operating_hours"},
          std::pair{&x.temperature_c, "resource_flow.temperature_c"},
          std::pair{&x.max_transport_km, "resource_flow.max_transport_km"}})
      if (auto err = check_finite(*value, what))
        return err;
    return check_enum(x.resource, resource_class::co2,
                      "resource_flow.resource");
  });
  return f(caf::meta::type_name("resource_flow"), x.flow_id, x.site_id,
           x.direction, x.resource, x.quantity, x.unit, x.annual_quantity,
           x.operating_hours, x.temperature_c, x.medium, x.ewc, x.accepts_ewc,
           x.hazardous, x.accepts_hazardous, x.max_transport_km, x.version,
           checked);
}

bool operator==(const resource_flow& a, const resource_flow& b);

/// Where an event came from: the source's name (a file path, `stdin`,
/// `redis:<stream key>`) and the 1-based line in it; for a stream, `line`
/// counts the entries this node read and `entry` is the entry's id (what
/// dead letters and logs show).
struct event_origin {
  std::string source;
  uint64_t line = 0;
  std::string entry;

  event_origin() = default;
  event_origin(std::string source_name, uint64_t line_no,
               std::string entry_id = {})
    : source(std::move(source_name)),
      line(line_no),
      entry(std::move(entry_id)) {
  }

  /// The position for people: the entry id, else the line number.
  std::string position() const {
    return entry.empty() ? std::to_string(line) : entry;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_origin& x) {
  return f(caf::meta::type_name("event_origin"), x.source, x.line, x.entry);
}

/// One validated event. Exactly one of `site_data` (site upserts),
/// `flow_data` (flow upserts) or `target_id` (deletes) is
/// meaningful, as `type` says. `raw` keeps the payload as received so that
/// a later rejection (an orphan flow, a poison event) can dead-letter it.
struct event {
  std::string id;
  event_type type = event_type::site_created;
  std::string time;
  site site_data;
  resource_flow flow_data;
  std::string target_id;
  event_origin origin;
  std::string raw;

  /// The site this event belongs to, or empty for a flow delete (whose
  /// site only the dispatcher's routing table knows).
  const std::string& site_key() const {
    if (is_site_event(type))
      return type == event_type::site_deleted ? target_id : site_data.site_id;
    if (type == event_type::resource_flow_created
        || type == event_type::resource_flow_updated)
      return flow_data.site_id;
    return target_id;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event& x) {
  auto checked = caf::meta::load_callback([&x]() -> caf::error {
    return check_enum(x.type, event_type::resource_flow_deleted,
                      "event.type");
  });
  return f(caf::meta::type_name("event"), x.id, x.type, x.time, x.site_data,
           x.flow_data, x.target_id, x.origin, x.raw, checked);
}

} // namespace flowmatch
