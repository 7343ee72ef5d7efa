#pragma once

// The ingest driver: the one source actor, whatever the transport. A reader
// (line_reader.hpp: a file, stdin, next a Redis stream) yields lines and
// their positions; the driver owns everything else: it decodes and
// validates each line, deduplicates by event id, sends the events to the
// dispatcher in batches, keeps at most `max_outstanding` batches waiting
// for admission (when the dispatcher withholds its answer, for lack of
// credit, the driver stops reading), dead-letters what it rejects, stops
// when told and reports the end of input. Runs detached: readers block.
//
// Deduplication by event id (events.md v1.1) happens here, the one place
// that sees every event of this input in order: an id within the window is
// counted as a duplicate and not sent on. Events dead-lettered after
// admission come back as `forget` from the dispatcher.

#include "actors/actors.hpp"
#include "actors/line_reader.hpp"
#include "core/event_id_window.hpp"
#include "core/token_bucket.hpp"
#include "messages/decoder.hpp"

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace flowmatch {

struct ingest_settings {
  /// What to read (selects the reader).
  reader_settings reader;
  /// Events per batch sent to the dispatcher.
  size_t batch_size = 1024;
  /// Batches awaiting admission at once.
  size_t max_outstanding = 2;
  /// How long a batch may wait for admission (backpressure) before the
  /// driver takes the dispatcher for broken and stops.
  std::chrono::milliseconds admission_timeout{std::chrono::minutes{15}};
  /// How long an applied event id is remembered.
  std::chrono::milliseconds dedup_retention = default_dedup_retention;
  /// Lines per second read at most (0: no limit), and how many may come at
  /// once after a pause (0: one batch). See core/token_bucket.hpp.
  double max_rate = 0;
  size_t burst = 0;
};

/// Event ids already applied (from processed_events at a restart), with
/// the times they were applied in ms since the Unix epoch.
struct processed_ids {
  std::vector<std::string> ids;
  std::vector<int64_t> applied_ms;
};

struct ingest_source_state {
  static inline const char* name = "ingest-source";
  ingest_settings settings;
  std::unique_ptr<line_reader> reader;
  dispatcher_actor dispatcher;
  source_listener_actor listener;
  dead_letter_sink_actor dead_letters;
  bool stopping = false;
  bool input_done = false;
  bool reported = false;
  bool read_scheduled = false;
  size_t outstanding = 0;
  /// When each batch waiting for admission was sent, oldest first.
  std::deque<std::chrono::steady_clock::time_point> sent_at;
  event_decoder decoder;
  std::vector<event> batch;
  std::vector<dead_letter> rejects;
  source_stats stats;
  event_id_window seen{default_dedup_retention.count()};
  token_bucket bucket;
  /// Times the rate limit made the driver pause.
  uint64_t rate_waits = 0;
  /// Wall-clock ms, read once per read round (not per line).
  int64_t now_ms = 0;
};

/// Spawn with `spawn<caf::detached>`; starts reading at once. Tells
/// `listener` `eof` after the last batch was admitted.
source_actor::behavior_type
ingest_source(source_actor::stateful_pointer<ingest_source_state> self,
              ingest_settings settings, dispatcher_actor dispatcher,
              source_listener_actor listener,
              dead_letter_sink_actor dead_letters,
              processed_ids already_applied);

} // namespace flowmatch
