#pragma once

// JSON output of domain values: the state snapshot (one upsert event per
// entity, so a snapshot is itself valid input) and dead-letter records.

#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"

#include <string>
#include <string_view>

namespace flowmatch {

/// Appends `s` as a JSON string literal (quoted, escaped) to `out`. Bytes
/// that are not valid UTF-8 become U+FFFD.
void append_json_string(std::string& out, std::string_view s);

/// Appends a finite double in its shortest round-trip form.
void append_json_number(std::string& out, double v);

/// The `data` object of a site upsert.
std::string site_data_json(const site& s);

/// The `data` object of a flow upsert: the contract's fields as accepted
/// (the canonical annual quantity is derived again on decoding).
std::string flow_data_json(const resource_flow& f);

/// A `site_created` event line (without line end) whose id is derived from
/// the site id, for state snapshots.
std::string site_snapshot_line(const site& s);

/// A `resource_flow_created` event line for state snapshots.
std::string flow_snapshot_line(const resource_flow& f);

/// A dead letter as one JSON line: reason, detail, event_id, source, line,
/// attempts and the raw payload.
std::string dead_letter_line(const dead_letter& dl);

} // namespace flowmatch
