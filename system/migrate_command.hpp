#pragma once

// `--migrate`: the one step that needs the schema owner's rights. It
// applies the migrations this build knows and grants postgis.app-role the
// use of the schema's tables, then exits; the nodes then run as that role
// (postgis.dsn), which may read and write the tables and nothing more.
//
//   build/actor-system --migrate --postgis.owner-dsn='host=... user=owner'
//       --postgis.app-role=flowmatch_app [--postgis.schema=...]

#include "system/config.hpp"

namespace flowmatch {

/// Prints what it did to stdout. Returns exit_ok, or exit_failure (with
/// the reason on stderr) when the database refused.
int run_migrations(const settings& cfg);

} // namespace flowmatch
