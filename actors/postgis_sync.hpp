#pragma once

// PostGIS sync: makes the accepted changes of one registry worker durable.
// Detached (libpq blocks), one connection. Changes are gathered and written
// in one transaction when enough have come (`batch_size`) or the oldest has
// waited `max_age`: deletes and upserts as bulk statements plus
// processed_events, sent as one pipeline, one round trip. Only after COMMIT
// does it answer the commit coordinator for each batch (which reports to
// the pool once the matches are stored too), so the dispatcher's credit
// returns for durable changes only.
//
// A lost connection (killed backend, restarted server) means reconnect with
// backoff (delayed messages: see write_schedule.hpp) and retry the whole
// transaction: nothing was committed, and every
// write is idempotent. A permanent error means the batch is replayed change
// by change, each in a savepoint: the refused change is dead-lettered with
// its SQLSTATE and message, the rest commits.

#include "actors/actors.hpp"
#include "actors/write_schedule.hpp"
#include "storage/session.hpp"
#include "storage/store.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace flowmatch {

struct postgis_sync_state {
  static inline const char* name = "postgis-sync";
  uint32_t index = 0;
  postgis_settings settings;
  dead_letter_sink_actor dead_letters;
  pg::connection conn;
  store::write_set pending;
  std::vector<change_batch> batches; ///< for the change-by-change path
  /// The coordinator's requests, answered after COMMIT, in order.
  std::vector<caf::typed_response_promise<commit_result>> answers;
  write_schedule schedule;
  /// The database refused the pending batch: write it change by change,
  /// each in a savepoint, to find the culprit (kept across retries).
  bool isolating = false;
  uint64_t transactions = 0;
  /// Cluster mode: the shard leases every transaction must still hold
  /// (the node's, updated as it takes more); empty writer: a single node.
  store::fence fence;
};

/// The sync's interface: a committing subscriber, its batch timer and the
/// status protocol.
using postgis_sync_actor = commit_sink_actor::extend<
  caf::reacts_to<tick_atom, uint64_t>,
  // Cluster mode: the node's shard leases (names, epochs), checked in
  // every transaction from now on.
  caf::reacts_to<fence_atom, std::vector<std::string>, std::vector<int64_t>>,
  caf::replies_to<status_atom>::with<actor_status>>;

/// Spawn detached. `index` names the worker whose share it writes.
postgis_sync_actor::behavior_type
postgis_sync(postgis_sync_actor::stateful_pointer<postgis_sync_state> self,
             uint32_t index, postgis_settings settings,
             dead_letter_sink_actor dead_letters,
             std::string fence_writer);

} // namespace flowmatch
