#pragma once

// The root actor of a node: starts the stages from a table (in order; they
// stop in reverse), turns the first signal or the end of input into a
// graceful drain, and reports the run.
//
// Start order: telemetry, dead-letter sink, commit coordinator, PostGIS
// syncs, match stream, match writers and partitions, match router,
// dispatcher (with its pools and workers), ingest source. With a database
// the schema owner comes first: it migrates and owns the schema and loads
// the stored state, which the match service and the registry take in
// before the source starts.
//
// Drain (see `drain_steps` in node.cpp): stop intake -> every admitted
// event applied and committed (dispatcher drained) -> held flows released
// as dead letters -> matches counted, match stream flushed -> state file
// written -> dead letters flushed -> summary. The grace period bounds all
// of it; a second signal or the deadline ends the run at once with a
// non-zero exit code and a log of what was unfinished.

#include "actors/actors.hpp"
#include "actors/cluster.hpp"
#include "actors/postgis_sync.hpp"
#include "actors/ingest_source.hpp"
#include "actors/schema_owner.hpp"
#include "actors/telemetry.hpp"
#include "system/config.hpp"

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace flowmatch {

struct node_state {
  static inline const char* name = "node";
  enum class phase { idle, connecting, running, draining, finished };

  /// A stage the node started, by name; stopped in reverse order of start.
  struct component {
    std::string name;
    caf::actor handle;
  };

  settings cfg;
  phase now = phase::idle;
  std::vector<component> components;
  schema_owner_actor owner;
  telemetry_actor telemetry;
  dead_letter_sink_actor dead_letters;
  commit_coordinator_actor coordinator;
  match_router_actor matcher;
  match_sink_actor match_stream;
  dispatcher_actor dispatcher;
  source_actor source;
  caf::typed_response_promise<int> done;
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point drained;
  // What the run counted, for the summary.
  source_stats input;
  registry_stats totals;
  uint64_t matches = 0;
  uint64_t dead_letters_written = 0;
  /// Stream entries left unacknowledged at the end (held flows).
  uint64_t unacknowledged = 0;
  bool state_written = true;
  int signals = 0;
  bool deadline_armed = false;
  /// Processed event ids loaded at start, for the source's dedup window.
  processed_ids already_applied;
  /// Progress log: counters at the previous report, for the rate.
  uint64_t progress_applied = 0;
  std::chrono::steady_clock::time_point progress_at;

  // Cluster mode (settings.cluster.enabled()): see actors/cluster.hpp.
  std::vector<postgis_sync_actor> syncs;
  shard_host_actor shard_host;
  gateway_control_actor gateway;
  shard_router_actor shard_router;
  lease_keeper_actor keeper;
  /// A lost lease is stopping the node (exit 7).
  bool stopping_lease_lost = false;
  cluster_membership_actor membership;
  /// The shard leases held (name -> epoch): every sync's fence.
  std::map<std::string, int64_t> shard_leases;
  /// Rounds of gained leases, taken in one at a time.
  std::deque<std::vector<lease_gain>> gains;
  bool gaining = false;
  /// This node's stream readers and the match partitions it holds (with
  /// their writers), for the drain.
  std::vector<source_actor> sources;
  size_t sources_running = 0;
  std::vector<match_partition_actor> partitions;
  std::vector<match_sink_actor> partition_writers;
};

/// Spawn with `spawn<caf::detached>` (it writes the state file at drain).
node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               settings cfg);

} // namespace flowmatch
