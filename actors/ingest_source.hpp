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
//
// With a reader that acknowledges (a Redis stream), every item is tracked
// until its outcome is durable, and only then acknowledged: a blank line,
// a duplicate or a rejected line once the dead letters are flushed; an
// admitted event once the commit coordinator reports it (`settled`: applied
// and committed with its matches) or the dispatcher reports it
// dead-lettered (`forget`). The dead-letter sink is flushed before every
// acknowledgement, so a letter is stored before its entry leaves the
// stream. A held flow is acknowledged when it applies or is
// dead-lettered; at a stop it stays pending for the next start.

#include "actors/actors.hpp"
#include "actors/line_reader.hpp"
#include "core/event_id_window.hpp"
#include "core/token_bucket.hpp"
#include "messages/decoder.hpp"

#include <absl/container/flat_hash_map.h>

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
  /// Cluster mode: every event must name its site, the routing key of the
  /// shards (ingest.md: a flow delete without `data.site_id` on a
  /// partitioned stream is dead-lettered as missing_field).
  bool require_site_id = false;
  /// How long a flush of the dead-letter sink may take (before an
  /// acknowledgement). The sink answers once its letters are stored, so a
  /// database outage is waited out here as a commit waits for it: the
  /// stall limit, not a reply's 30 s (with 30 s, PostgreSQL away for 120 s
  /// stopped the node: tools/faults.py --full, pg_away).
  std::chrono::milliseconds flush_timeout{std::chrono::minutes{15}};
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
  admission_actor dispatcher;
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
  /// Bytes of the lines (entries) taken in.
  uint64_t bytes = 0;
  /// Wall-clock ms, read once per read round (not per line).
  int64_t now_ms = 0;

  // Acknowledgement (readers that acknowledge only).
  bool acks = false;
  /// Admitted events not settled yet: event id -> position.
  absl::flat_hash_map<std::string, uint64_t> unsettled;
  /// Settled positions waiting for the dead-letter flush and the ack.
  std::vector<uint64_t> settled;
  bool acknowledging = false;
  uint64_t acknowledged = 0;
  /// The node's drain waits for the last acknowledgement.
  std::vector<caf::typed_response_promise<uint64_t>> drains;
};

/// Spawn with `spawn<caf::detached>`; starts reading at once. Tells
/// `listener` `eof` after the last batch was admitted. With a reader that
/// acknowledges, it subscribes to `coordinator` for settled events and
/// stays until the node's drain asks it for the last acknowledgement;
/// otherwise it quits after `eof` (the coordinator may be invalid).
source_actor::behavior_type
ingest_source(source_actor::stateful_pointer<ingest_source_state> self,
              ingest_settings settings, admission_actor dispatcher,
              source_listener_actor listener,
              dead_letter_sink_actor dead_letters,
              commit_coordinator_actor coordinator,
              processed_ids already_applied);

} // namespace flowmatch
