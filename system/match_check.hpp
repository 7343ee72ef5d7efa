#pragma once

// The operators' consistency check: recomputes every match from scratch
// over the stored sites and flows, with the configured match settings, and
// reports every difference from the stored `matches` table.
//
//   build/actor-system --config-file=config.ini --match.check
//       --postgis.dsn=... [--postgis.schema=...]

#include "system/config.hpp"

#include <string>

namespace flowmatch {

/// Prints the report to stdout. Returns 0 when the stored set equals the
/// rules' result, 1 when it differs, exit_failure when the database
/// cannot be read.
int check_matches(const settings& cfg);

} // namespace flowmatch
