#pragma once

// The state file (`output.state`): the sites and flows at the end of a run
// as NDJSON, one site_created / resource_flow_created event per entity, so
// the file is itself valid input.

#include "messages/batch.hpp"

#include <string>

namespace flowmatch {

/// Writes the file whole: under a temporary name, renamed into place once
/// every byte is on disk. Returns the failure (naming the file and the
/// cause), empty on success.
std::string write_state_file(const std::string& path,
                             const registry_snapshot& snap);

} // namespace flowmatch
