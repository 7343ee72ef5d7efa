#pragma once

// The domain values of the event contract (v1): sites, resource flows and the
// events that change them. Every type here can cross an actor or a node, so
// each has a CAF `inspect` overload and a type id (see type_ids.hpp).

#include <caf/meta/type_name.hpp>
#include <caf/optional.hpp>

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
  return f(caf::meta::type_name("site"), x.site_id, x.name, x.lat, x.lon,
           x.country, x.nace, x.version);
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
  return f(caf::meta::type_name("resource_flow"), x.flow_id, x.site_id,
           x.direction, x.resource, x.quantity, x.unit, x.annual_quantity,
           x.operating_hours, x.temperature_c, x.medium, x.ewc, x.accepts_ewc,
           x.hazardous, x.accepts_hazardous, x.max_transport_km, x.version);
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
  return f(caf::meta::type_name("event"), x.id, x.type, x.time, x.site_data,
           x.flow_data, x.target_id, x.origin, x.raw);
}

} // namespace flowmatch
