#pragma once

// The dispatcher: the single entry of validated events. It routes each
// event to the worker-pool group that handles its type and, within the
// group, to a worker chosen by the group's policy. Events are batched per
// destination worker, one CAF message per (worker, input batch).
//
// Per-key ordering (policy key-hash): every event of a site and of that
// site's flows goes to the same worker, by default the site's hash. Flow
// deletes name only the flow, so the dispatcher remembers which worker
// holds each flow. Routing never moves an event: each worker gets the
// shared input batch and the positions of its events in it.
//
// A flow that moves to a site on another worker would need both workers to
// decide (the flow's version on one, whether the site exists on the other),
// and its held upserts may wait on a third. So the outcome never depends on
// the number of workers (events.md v1.1), the two sides first come
// together: the dispatcher stops routing at that event, waits until the
// group has nothing in flight (everything before it applied and
// committed), and has the pool move the target site, with every site and
// flow linked to it through flows, to the flow's worker. From then on that
// site routes there (`site_home`); the move event follows. Moves between
// sites are rare; the pause costs one commit round trip each.
//
// Deduplication is by event id alone, in the source before the dispatcher
// (each input has one window: see event_id_window.hpp). Ids of events
// dead-lettered after admission come back with the workers' reports; the
// dispatcher tells the sources that fed it to forget them (`forget`), so a
// corrected resend applies.
//
// Backpressure: each group has a budget of events in flight (admitted, not
// yet reported done by its workers). A source's batch is admitted only while
// every group is below its budget; otherwise its reply is withheld, which
// holds the source, so no mailbox grows without bound and nothing is dropped.

#include "actors/actors.hpp"
#include "actors/worker_pool.hpp"

#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace flowmatch {

enum class routing_policy { key_hash, round_robin, least_loaded };

std::string_view to_string(routing_policy p);
caf::optional<routing_policy> parse_routing_policy(std::string_view s);

struct group_settings {
  std::string name;
  uint32_t workers = 2;
  routing_policy policy = routing_policy::key_hash;
  /// The in-flight budget: events admitted but not yet done.
  uint64_t max_in_flight = 65536;
  /// Key-hash groups: the routing table (flows and moved sites) is rebuilt
  /// from the workers once it reaches this size, and then whenever it
  /// doubles what was live at its last rebuild.
  size_t routing_table_floor = 65536;
  /// Event types routed to this group.
  std::vector<event_type> handles;
  worker_factory factory;
  supervision_settings supervision;
  /// Called with the group's pool once it is spawned (the node attaches
  /// it to telemetry); may be empty.
  std::function<void(const worker_pool_actor&)> on_pool_started;
};

/// The six event types of the contract: what a group handling every input
/// event lists in `handles`.
inline std::vector<event_type> contract_event_types() {
  return {event_type::site_created,          event_type::site_updated,
          event_type::site_deleted,          event_type::resource_flow_created,
          event_type::resource_flow_updated, event_type::resource_flow_deleted};
}

/// Number of event_type values.
constexpr size_t event_type_count
  = static_cast<size_t>(event_type::resource_flow_deleted) + 1;

struct dispatcher_state {
  static inline const char* name = "dispatcher";

  struct group {
    group_settings settings;
    worker_pool_actor pool;
    uint64_t in_flight = 0;
    uint64_t peak = 0;
    std::vector<uint64_t> worker_load;
    uint64_t next_round_robin = 0;
    /// Per-worker picks of the batch being routed.
    std::vector<std::vector<uint32_t>> picks;
    /// Worker of each flow routed (key-hash groups only). Deletes do not
    /// take entries out: only the worker knows which flows a site's delete
    /// removed, and an entry may only go once nothing routed before its
    /// delete is in flight. So the table is rebuilt from the workers from
    /// time to time (a compaction, see `compact_at`).
    std::unordered_map<std::string, uint32_t> flow_owner;
    /// Sites that moved to another worker than their hash's (hand-overs).
    std::unordered_map<std::string, uint32_t> site_home;
    uint64_t handovers = 0;
    /// Size of flow_owner + site_home at which the next compaction starts:
    /// twice what was live at the last one, at least the floor, so its
    /// cost per routed event stays constant.
    size_t compact_at = 0;
    uint64_t compactions = 0;
  };

  /// An input batch waiting for credit or for a hand-over; `next` is the
  /// first event not routed yet.
  struct parked_batch {
    std::shared_ptr<const std::vector<event>> events;
    size_t next = 0;
    caf::typed_response_promise<caf::ok_atom> promise;
    std::chrono::steady_clock::time_point since;
  };

  /// The hand-over routing waits for: `site` moves from worker `from` to
  /// worker `to` of group `group` once that group has nothing in flight.
  struct handover {
    uint32_t group = 0;
    uint32_t from = 0;
    uint32_t to = 0;
    std::string site;
    bool asked = false;
  };

  std::vector<group> groups;
  /// The sources that sent batches: told to forget the ids of events
  /// dead-lettered after admission.
  std::vector<caf::actor> feeders;
  std::array<int, event_type_count> route;
  std::deque<parked_batch> parked;
  caf::optional<handover> pending_handover;

  /// A routing-table compaction of group `group`: routing waits, as for a
  /// hand-over, until the group has nothing in flight; then the workers'
  /// keys (asked one after another into `parts`) replace the table.
  struct compaction {
    uint32_t group = 0;
    bool asked = false;
    std::vector<registry_part> parts;
  };
  caf::optional<compaction> pending_compaction;
  std::vector<caf::typed_response_promise<caf::ok_atom>> drain_waiters;
  uint64_t admitted = 0;
  registry_stats totals;
};

/// Spawns one supervised pool per group, linked to the dispatcher. Every
/// event type must be handled by exactly one group.
dispatcher_actor::behavior_type
dispatcher(dispatcher_actor::stateful_pointer<dispatcher_state> self,
           std::vector<group_settings> groups);

} // namespace flowmatch
