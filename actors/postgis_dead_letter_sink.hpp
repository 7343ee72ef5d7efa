#pragma once

// Dead-letter sink with a database: rows in `dead_letters` (the same
// rejection again increments `attempts`). Detached, one connection; writes
// in batches on flush, when 500 have gathered, or 200 ms after the first.

#include "actors/actors.hpp"
#include "storage/session.hpp"

namespace flowmatch {

struct postgis_dead_letter_sink_state {
  static inline const char* name = "dead-letter-table";
  postgis_settings settings;
  pg::connection conn;
  std::vector<dead_letter> pending;
  uint64_t written = 0;
  uint64_t timer_generation = 0;
  bool timer_armed = false;
};

using postgis_dead_letter_sink_actor
  = dead_letter_sink_actor::extend<caf::reacts_to<tick_atom, uint64_t>>;

postgis_dead_letter_sink_actor::behavior_type postgis_dead_letter_sink(
  postgis_dead_letter_sink_actor::stateful_pointer<
    postgis_dead_letter_sink_state>
    self,
  postgis_settings settings);

} // namespace flowmatch
