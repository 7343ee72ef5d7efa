#pragma once

// CAF type ids and atoms of every message type, in one block: the wire
// format lives in this folder. Register with
// `flowmatch::add_message_types(cfg)` (actors/actors.hpp).

#include "messages/batch.hpp"
#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"
#include "messages/match.hpp"
#include "messages/status.hpp"

#include <caf/type_id.hpp>

#include <vector>

CAF_BEGIN_TYPE_ID_BLOCK(flowmatch, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::event_type))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::site))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::resource_flow))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::event_origin))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::event))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<flowmatch::event>))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::event_batch))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::dead_letter))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<flowmatch::dead_letter>))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::change))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::change_batch))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::registry_stats))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::registry_snapshot))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::registry_part))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::commit_result))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::stored_state))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::actor_status))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<flowmatch::actor_status>))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::source_stats))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::dispatch_status))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::match))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<flowmatch::match>))
  CAF_ADD_TYPE_ID(flowmatch, (flowmatch::match_change))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<flowmatch::match_change>))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<flowmatch::change>))
  CAF_ADD_TYPE_ID(flowmatch, (std::vector<int64_t>))

  // Atoms: at most 10 characters in CAF 0.17.
  CAF_ADD_ATOM(flowmatch, flowmatch, ingest_atom, "ingest")
  CAF_ADD_ATOM(flowmatch, flowmatch, deliver_atom, "deliver")
  CAF_ADD_ATOM(flowmatch, flowmatch, done_atom, "done")
  CAF_ADD_ATOM(flowmatch, flowmatch, drain_atom, "drain")
  CAF_ADD_ATOM(flowmatch, flowmatch, release_atom, "release")
  CAF_ADD_ATOM(flowmatch, flowmatch, snapshot_atom, "snapshot")
  CAF_ADD_ATOM(flowmatch, flowmatch, eof_atom, "eof")
  CAF_ADD_ATOM(flowmatch, flowmatch, stop_atom, "stop")
  CAF_ADD_ATOM(flowmatch, flowmatch, read_atom, "read")
  CAF_ADD_ATOM(flowmatch, flowmatch, respawn_atom, "respawn")
  CAF_ADD_ATOM(flowmatch, flowmatch, expire_atom, "expire")
  CAF_ADD_ATOM(flowmatch, flowmatch, signal_atom, "signal")
  CAF_ADD_ATOM(flowmatch, flowmatch, status_atom, "status")
  CAF_ADD_ATOM(flowmatch, flowmatch, run_atom, "run")
  CAF_ADD_ATOM(flowmatch, flowmatch, deadline_atom, "deadline")
  CAF_ADD_ATOM(flowmatch, flowmatch, restore_atom, "restore")
  CAF_ADD_ATOM(flowmatch, flowmatch, tick_atom, "tick")
  CAF_ADD_ATOM(flowmatch, flowmatch, forget_atom, "forget")
  CAF_ADD_ATOM(flowmatch, flowmatch, repair_atom, "repair")
  CAF_ADD_ATOM(flowmatch, flowmatch, handover_atom, "handover")
  CAF_ADD_ATOM(flowmatch, flowmatch, takeover_atom, "takeover")
  CAF_ADD_ATOM(flowmatch, flowmatch, matches_atom, "matches")
  CAF_ADD_ATOM(flowmatch, flowmatch, progress_atom, "progress")
  CAF_ADD_ATOM(flowmatch, flowmatch, connect_atom, "connect")
  CAF_ADD_ATOM(flowmatch, flowmatch, commit_atom, "commit")
  CAF_ADD_ATOM(flowmatch, flowmatch, subscribe_atom, "subscribe")
  CAF_ADD_ATOM(flowmatch, flowmatch, flight_atom, "flight")
  CAF_ADD_ATOM(flowmatch, flowmatch, attach_atom, "attach")
  CAF_ADD_ATOM(flowmatch, flowmatch, metrics_atom, "metrics")
  CAF_ADD_ATOM(flowmatch, flowmatch, settled_atom, "settled")
  CAF_ADD_ATOM(flowmatch, flowmatch, ready_atom, "ready")
  CAF_ADD_ATOM(flowmatch, flowmatch, count_atom, "count")
  // Cluster mode (actors/cluster_*.hpp).
  CAF_ADD_ATOM(flowmatch, flowmatch, hello_atom, "hello")
  CAF_ADD_ATOM(flowmatch, flowmatch, route_atom, "route")
  CAF_ADD_ATOM(flowmatch, flowmatch, partition_atom, "partition")
  CAF_ADD_ATOM(flowmatch, flowmatch, resync_atom, "resync")
  CAF_ADD_ATOM(flowmatch, flowmatch, open_atom, "open")
  CAF_ADD_ATOM(flowmatch, flowmatch, fence_atom, "fence")
  CAF_ADD_ATOM(flowmatch, flowmatch, directory_atom, "directory")
  CAF_ADD_ATOM(flowmatch, flowmatch, gain_atom, "gain")
  CAF_ADD_ATOM(flowmatch, flowmatch, leave_atom, "leave")
  CAF_ADD_ATOM(flowmatch, flowmatch, retry_atom, "retry")
  CAF_ADD_ATOM(flowmatch, flowmatch, keys_atom, "keys")

CAF_END_TYPE_ID_BLOCK(flowmatch)
