#pragma once

// Match writer: stores one partition's match changes in the `matches`
// table. Detached, one connection; gathers changes until `batch_size` or
// `max_age`, writes their net effect in one pipelined transaction, and only
// then answers the requests it gathered (so the credits behind them return
// after COMMIT). Lost connections are retried like the PostGIS sync
// (write_schedule.hpp).

#include "actors/actors.hpp"
#include "actors/write_schedule.hpp"
#include "storage/session.hpp"
#include "storage/store.hpp"

namespace flowmatch {

struct match_writer_state {
  static inline const char* name = "match-writer";
  std::string label;
  postgis_settings settings;
  pg::connection conn;
  std::vector<match_change> pending;
  std::vector<caf::typed_response_promise<caf::ok_atom>> waiting;
  std::vector<caf::typed_response_promise<uint64_t>> flushes;
  uint64_t written = 0;
  write_schedule schedule;
  /// Cluster mode: the partition's lease, checked in every transaction.
  store::fence fence;
};

using match_writer_actor
  = match_sink_actor::extend<caf::reacts_to<tick_atom, uint64_t>>;

match_writer_actor::behavior_type
match_writer(match_writer_actor::stateful_pointer<match_writer_state> self,
             std::string label, postgis_settings settings,
             store::fence fence);

} // namespace flowmatch
