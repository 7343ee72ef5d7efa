#pragma once

// Dead-letter sink with a database: rows in `dead_letters` (the same
// rejection again increments `attempts`). Detached, one connection; writes
// in batches on flush, when `dead_letter_batch_size` have gathered, or
// `dead_letter_max_age` after the first; lost connections are retried like
// the other writers (write_schedule.hpp).

#include "actors/actors.hpp"
#include "actors/write_schedule.hpp"
#include "storage/session.hpp"

namespace flowmatch {

/// Rows per transaction: a dead letter keeps its payload (up to 1 MiB), so
/// batches stay far smaller than the entity writers'.
constexpr size_t dead_letter_batch_size = 500;
/// Dead letters do not hold credit, so they may wait longer than changes.
constexpr std::chrono::milliseconds dead_letter_max_age{200};
/// The first ones are also logged, to show a problem in the log at once;
/// the rest only in the table, so a flood of bad input cannot flood the
/// log.
constexpr uint64_t dead_letters_logged = 10;

struct postgis_dead_letter_sink_state {
  static inline const char* name = "dead-letter-table";
  postgis_settings settings;
  pg::connection conn;
  std::vector<dead_letter> pending;
  uint64_t written = 0;
  write_schedule schedule;
  std::vector<caf::typed_response_promise<uint64_t>> flushes;
};

using postgis_dead_letter_sink_actor
  = dead_letter_sink_actor::extend<caf::reacts_to<tick_atom, uint64_t>>;

postgis_dead_letter_sink_actor::behavior_type postgis_dead_letter_sink(
  postgis_dead_letter_sink_actor::stateful_pointer<
    postgis_dead_letter_sink_state>
    self,
  postgis_settings settings);

} // namespace flowmatch
