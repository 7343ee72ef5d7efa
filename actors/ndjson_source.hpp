#pragma once

// Ingest source for NDJSON from a file or stdin. Reads in large chunks,
// splits lines (\n or \r\n), rejects over-long lines without buffering them
// whole, decodes and validates each line, and sends the events to the
// dispatcher in batches. At most `max_outstanding` batches wait for
// admission at once: when the dispatcher withholds its answer (no credit),
// the source stops reading. Runs detached, since reading a pipe blocks.
//
// Deduplication by event id (events.md v1.1) happens here, the one place
// that sees every event of this input in order: an id within the window is
// counted as a duplicate and not sent on. Events dead-lettered after
// admission come back as `forget` from the dispatcher.

#include "actors/actors.hpp"
#include "core/event_id_window.hpp"
#include "messages/decoder.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace flowmatch {

struct ndjson_source_settings {
  /// A file path, or `-` for stdin.
  std::string path = "-";
  /// Events per batch sent to the dispatcher.
  size_t batch_size = 1024;
  /// Batches awaiting admission at once.
  size_t max_outstanding = 2;
  /// Bytes per read call.
  size_t read_size = 256 * 1024;
  /// How long one wait for pipe input lasts before the source looks at its
  /// mailbox again (a stop request, say).
  std::chrono::milliseconds poll_interval{100};
  /// How long a batch may wait for admission (backpressure) before the
  /// source takes the dispatcher for broken and stops.
  std::chrono::milliseconds admission_timeout{std::chrono::minutes{15}};
  /// How long an applied event id is remembered.
  std::chrono::milliseconds dedup_retention = default_dedup_retention;
};

/// Event ids already applied (from processed_events at a restart), with
/// the times they were applied in ms since the Unix epoch.
struct processed_ids {
  std::vector<std::string> ids;
  std::vector<int64_t> applied_ms;
};

struct ndjson_source_state {
  static inline const char* name = "ndjson-source";
  ndjson_source_settings settings;
  std::string source_name;
  dispatcher_actor dispatcher;
  source_listener_actor listener;
  dead_letter_sink_actor dead_letters;
  int fd = -1;
  bool owns_fd = false;
  bool is_stream = false;
  std::vector<char> buf;
  size_t begin = 0;
  size_t end = 0;
  /// Set while discarding the rest of an over-long line.
  bool skipping = false;
  std::string skip_prefix;
  size_t skip_bytes = 0;
  uint64_t line_no = 0;
  bool eof = false;
  bool stopping = false;
  /// The line being decoded is the rest of a stream at a stop: its end
  /// may not have arrived yet.
  bool last_line_cut = false;
  bool input_done = false;
  bool reported = false;
  bool read_scheduled = false;
  size_t outstanding = 0;
  event_decoder decoder;
  std::vector<event> batch;
  std::vector<dead_letter> rejects;
  source_stats stats;
  event_id_window seen{default_dedup_retention.count()};
  /// Wall-clock ms, read once per chunk of lines (not per line).
  int64_t now_ms = 0;
  ~ndjson_source_state();
};

/// Spawn with `spawn<caf::detached>`; starts reading at once. Tells
/// `listener` `eof` after the last batch was admitted.
source_actor::behavior_type
ndjson_source(source_actor::stateful_pointer<ndjson_source_state> self,
              ndjson_source_settings settings, dispatcher_actor dispatcher,
              source_listener_actor listener,
              dead_letter_sink_actor dead_letters,
              processed_ids already_applied);

} // namespace flowmatch
