#pragma once

// The root actor of a node: starts the stages (dead-letter sink, dispatcher
// with its supervised pools, ingest source), turns the first signal or the
// end of input into a graceful drain, and reports the run.
//
// Drain order: stop intake -> every admitted event applied (dispatcher
// drained) -> held flows released as dead letters -> state snapshot
// written -> dead letters flushed -> summary. The grace period bounds all
// of it; a second signal or the deadline ends the run at once with a
// non-zero exit code and a log of what was unfinished.

#include "actors/actors.hpp"
#include "actors/ingest_source.hpp"
#include "actors/telemetry.hpp"
#include "system/config.hpp"
#include "storage/pg.hpp"

#include <chrono>
#include <string>

namespace flowmatch {

struct node_state {
  static inline const char* name = "node";
  enum class phase { idle, connecting, running, draining, finished };

  settings cfg;
  phase now = phase::idle;
  dispatcher_actor dispatcher;
  dead_letter_sink_actor dead_letters;
  source_actor source;
  commit_coordinator_actor coordinator;
  telemetry_actor telemetry;
  match_router_actor matcher;
  match_sink_actor match_stream;
  uint64_t matches = 0;
  caf::typed_response_promise<int> done;
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point drained;
  source_stats input;
  registry_stats totals;
  uint64_t dead_letters_written = 0;
  int signals = 0;
  bool deadline_armed = false;
  std::chrono::milliseconds connect_delay{100};
  /// Processed event ids loaded at start, for the source's dedup window.
  processed_ids already_applied;
  /// Holds the schema's owner lock (one writer per schema) while running.
  pg::connection owner_conn;
  /// Progress log: counters at the previous report, for the rate.
  uint64_t progress_applied = 0;
  std::chrono::steady_clock::time_point progress_at;
};

/// Spawn with `spawn<caf::detached>` (it writes the state file at drain).
node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               settings cfg);

/// The one-screen summary of a run.
std::string format_summary(const std::string& input, const source_stats& in,
                           const registry_stats& totals,
                           uint64_t dead_letters_written, double seconds,
                           uint64_t matches);

} // namespace flowmatch
