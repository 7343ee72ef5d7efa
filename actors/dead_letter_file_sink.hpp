#pragma once

// Dead-letter sink for runs without a database: appends one JSON line per
// rejected event (reason, detail, event id, source, line, attempts, raw
// payload) to a file. With no file configured it only logs and counts. A
// write or flush that fails stops the sink with an error naming the file
// and the cause (the node then exits with a failure): a dead letter is
// never lost silently.
// Runs detached: file writes are blocking I/O.

#include "actors/actors.hpp"
#include "base/output_file.hpp"

#include <string>

namespace flowmatch {

struct dead_letter_file_sink_state {
  static inline const char* name = "dead-letter-sink";
  std::string path;
  output_file file;
  uint64_t written = 0;
};

/// Spawn with `spawn<caf::detached>`. An empty `path` means log only.
dead_letter_sink_actor::behavior_type dead_letter_file_sink(
  dead_letter_sink_actor::stateful_pointer<dead_letter_file_sink_state> self,
  std::string path);

} // namespace flowmatch
