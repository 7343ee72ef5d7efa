#pragma once

// PostGIS sync: makes the accepted changes of one registry worker durable.
// Detached (libpq blocks), one connection. Changes are gathered and written
// in one transaction when enough have come (`batch_size`) or the oldest has
// waited `max_age`: deletes and upserts as bulk statements plus
// processed_events, sent as one pipeline, one round trip. Only after COMMIT
// does it pass the batches' commit tickets to the pool, so the dispatcher's
// credit returns for durable changes only.
//
// A lost connection (killed backend, restarted server) means reconnect with
// backoff and retry the whole transaction: nothing was committed, and every
// write is idempotent. A permanent error means the batch is replayed change
// by change, each in a savepoint: the refused change is dead-lettered with
// its SQLSTATE and message, the rest commits.

#include "actors/actors.hpp"
#include "system/pg.hpp"
#include "system/store.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace flowmatch {

struct postgis_settings {
  std::string dsn;
  std::string schema = "public";
  /// Changes per transaction before a flush.
  size_t batch_size = 16384;
  /// Longest time a change waits for its transaction.
  std::chrono::milliseconds max_age{20};
  /// Reconnect backoff: first delay, doubling up to the max.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
};

struct postgis_sync_state {
  static inline const char* name = "postgis-sync";
  uint32_t index = 0;
  postgis_settings settings;
  dead_letter_sink_actor dead_letters;
  pg::connection conn;
  store::write_set pending;
  std::vector<change_batch> batches; ///< for the change-by-change path
  std::vector<commit_ticket> tickets;
  uint64_t timer_generation = 0;
  bool timer_armed = false;
  uint64_t transactions = 0;
  uint64_t retries = 0;
};

/// Spawn detached. `index` names the worker whose share it writes.
change_sink_actor::extend<caf::reacts_to<tick_atom, uint64_t>>::behavior_type
postgis_sync(
  change_sink_actor::extend<caf::reacts_to<tick_atom, uint64_t>>::
    stateful_pointer<postgis_sync_state>
      self,
  uint32_t index, postgis_settings settings,
  dead_letter_sink_actor dead_letters);

/// Opens a connection for a flowmatch actor: connect, set the schema's
/// search_path, prepare the store's statements. Retries with backoff until
/// it succeeds, logging each failure with `who` first.
pg::connection connect_with_retry(const std::string& who,
                                  const postgis_settings& settings,
                                  const std::string& application_name);

} // namespace flowmatch
