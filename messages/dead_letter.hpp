#pragma once

// Why an event was not applied, and the record the dead-letter sinks keep.

#include "messages/domain.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace flowmatch {

/// One distinct reason per class of bad input (decoder) or of failure after
/// decoding (orphans, poison events). The string form is what operators see
/// and what the dead-letter tables and files store.
enum class reject_reason : uint8_t {
  malformed_json,     ///< not parseable as JSON
  invalid_utf8,       ///< bytes that are not UTF-8
  line_too_long,      ///< over the line limit; rejected before buffering
  not_an_object,      ///< the line is JSON but not an object
  missing_field,      ///< a required field is absent or null
  wrong_type,         ///< a field has the wrong JSON type
  non_finite_number,  ///< NaN, Infinity, or a number beyond double range
  out_of_range,       ///< a number or length outside its allowed range
  invalid_value,      ///< a string outside its allowed set or format
  unit_class_mismatch,///< a unit that does not belong to the resource class
  unknown_event_type, ///< `type` is none of the six
  orphan_flow,        ///< a held flow whose site never arrived in time
  poison_event,       ///< an event that crashed its handler repeatedly
  permanent_db_error, ///< reserved for the PostGIS sync
};

std::string_view to_string(reject_reason r);

/// Number of reject_reason values, for per-reason counters.
constexpr size_t reject_reason_count
  = static_cast<size_t>(reject_reason::permanent_db_error) + 1;

/// An event that was not applied, with where it came from and why.
struct dead_letter {
  std::string event_id; ///< empty when the line had none
  event_origin origin;
  reject_reason reason = reject_reason::malformed_json;
  std::string detail;  ///< human-readable specifics, e.g. "data.lat is 91"
  std::string payload; ///< the raw line (a prefix of it for over-long lines)
  uint32_t attempts = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter& x) {
  auto checked = caf::meta::load_callback([&x]() -> caf::error {
    return check_enum(x.reason, reject_reason::permanent_db_error,
                      "dead_letter.reason");
  });
  return f(caf::meta::type_name("dead_letter"), x.event_id, x.origin,
           x.reason, x.detail, x.payload, x.attempts, checked);
}

} // namespace flowmatch
