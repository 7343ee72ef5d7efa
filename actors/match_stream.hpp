#pragma once

// The match stream (`[output] matches`): the match changes as NDJSON
// lines, in the order they took effect (docs/contracts/events.md, "Match
// output stream"). Detached; every write checked.

#include "actors/actors.hpp"
#include "base/output_file.hpp"

#include <string>

namespace flowmatch {

/// Match stream: writes `match_upserted` / `match_removed` lines to a file
/// (or stdout for `-`) in the order the changes took effect.
struct match_stream_state {
  static inline const char* name = "match-stream";
  std::string path;
  output_file file;
  uint64_t written = 0;
};

match_sink_actor::behavior_type
match_stream(match_sink_actor::stateful_pointer<match_stream_state> self,
             std::string path);

} // namespace flowmatch
