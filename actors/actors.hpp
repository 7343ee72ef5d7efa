#pragma once

// Every actor interface of flowmatch in one place. Peers hold each other by
// these typed handles, so the compiler checks every message.
//
// The path of one event (the ingest driver decodes, validates and
// deduplicates by event id; the dispatcher routes; the coordinator holds
// each batch's report until its effects are stored):
//
//   ingest_source --ingest--> dispatcher --deliver--> worker_pool --> worker
//        |                       ^   (routes by key,      (supervises,   |
//        |                       |    keeps credits)       redelivers)   | commit
//        |                       |                                       v
//        |                       +---- done (credit) ---- pool <-- commit_coordinator
//        v                                                        |  (asks every
//   dead_letter_sink <--- rejected events                         |   committing
//                                                                 v   subscriber)
//                                           postgis_sync (worker i), match_router
//
// Every long-lived actor also answers `status` (messages/status.hpp) for
// the telemetry actor.

#include "core/cluster_plan.hpp"
#include "messages/batch.hpp"
#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"
#include "messages/match.hpp"
#include "messages/status.hpp"
#include "messages/type_ids.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <caf/allowed_unsafe_message_type.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <cstdint>
#include <vector>

namespace flowmatch {

/// How long a stage waits for another (every request has one of these):
/// for an answer (`reply`: snapshots, restores), and for a stage
/// downstream to take work or store it (`stall`: commits, the dead-letter
/// sink's flush before an acknowledgement). A stall is backpressure and may
/// last as long as a database outage; past the limit the stage is taken
/// for broken and the node stops with an error, naming it.
struct wait_limits {
  std::chrono::milliseconds reply{30000};
  std::chrono::milliseconds stall{std::chrono::minutes{15}};
};

/// How the error of a writer that lost a cluster lease begins (the node
/// exits with its own code for it).
inline const std::string lease_lost_prefix = "lease lost: ";

/// Anything that answers the status protocol (messages/status.hpp): every
/// long-lived actor's interface includes this request, so its handle
/// converts to this one for the telemetry actor.
using status_source_actor = caf::typed_actor<
  caf::replies_to<status_atom>::with<actor_status>>;

/// A subscriber that watches accepted changes and holds nothing back (a
/// metrics tap, a change log): batches do not wait for it.
using change_sink_actor = caf::typed_actor<
  // Takes the changes of one worker batch, in the order they took effect.
  caf::reacts_to<change_batch>>;

/// A subscriber that a batch's report waits for: the PostGIS sync (the
/// entities are committed) and the match router (the matches are stored).
using commit_sink_actor = caf::typed_actor<
  // Takes the changes of one worker batch (per worker, in the order they
  // took effect); answers once they are durable in this subscriber.
  caf::replies_to<change_batch>::with<commit_result>>;

/// Told which admitted events are settled for good: their effects are
/// durable (applied and committed, stale, superseded). A stream's ingest
/// driver acknowledges their entries; other outcomes (dead letters) reach
/// it as `forget`.
using settled_sink_actor = caf::typed_actor<
  caf::reacts_to<settled_atom, std::vector<std::string>>>;

/// Dead-letter sink: keeps rejected events with their reason (an NDJSON
/// file without a database; the `dead_letters` table with one).
using dead_letter_sink_actor = caf::typed_actor<
  // Stores rejected events.
  caf::reacts_to<std::vector<dead_letter>>,
  // Makes everything stored so far durable; answers with the total count.
  caf::replies_to<caf::flush_atom>::with<uint64_t>,
  caf::replies_to<status_atom>::with<actor_status>>;

/// What one worker slot keeps across the incarnations of its worker (for
/// the registry group: the sites, flows and held flows). It belongs to one
/// actor at a time, never shared: the worker while it lives; after a crash
/// the failing worker hands it to the pool in its last message
/// (`worker_crash`), and the pool hands it to the next incarnation.
struct worker_memory {
  virtual ~worker_memory() = default;
};

/// A worker's last message before it dies of an exception: where it was
/// (batch `seq`, event `next_index` failed) and its memory. Local only: it
/// never crosses nodes.
struct worker_crash {
  uint32_t worker = 0;
  uint64_t seq = 0;
  uint64_t next_index = 0;
  std::shared_ptr<worker_memory> memory;
};

/// Supervisor of one worker-pool group: owns the workers, restarts a dead
/// one with backoff and redelivers the batches it had not finished.
using worker_pool_actor = caf::typed_actor<
  // From the dispatcher: apply this batch on worker `index`, in order.
  caf::reacts_to<deliver_atom, uint32_t, event_batch>,
  // From a worker: `count` events of batch `seq` are done; `complete` when
  // the batch is finished.
  caf::reacts_to<done_atom, uint32_t, uint64_t, uint64_t, registry_stats,
                 bool>,
  // Timer: restart worker `index` after its backoff.
  caf::reacts_to<respawn_atom, uint32_t>,
  // From a worker about to die of an exception.
  caf::reacts_to<worker_crash>,
  // From the commit coordinator: a subscriber (the PostGIS sync) refused
  // these changes of worker `index` for good; the stored rows of their
  // entities follow.
  caf::reacts_to<repair_atom, uint32_t, std::vector<change>,
                 registry_snapshot>,
  // End of input: every worker dead-letters what it still holds.
  caf::replies_to<release_atom>::with<registry_stats>,
  // The current entities of all workers.
  caf::replies_to<snapshot_atom>::with<registry_snapshot>,
  // How many sites and flows all workers hold (in `sites` and `flows`).
  caf::replies_to<count_atom>::with<registry_stats>,
  // At start-up: restores worker `index` from the database.
  caf::replies_to<restore_atom, uint32_t,
                  registry_snapshot>::with<caf::ok_atom>,
  // From the dispatcher, while nothing is in flight: moves a site and
  // everything linked to it from worker `from` to worker `to`; answers
  // with the ids of the sites and flows that moved.
  caf::replies_to<handover_atom, uint32_t, uint32_t,
                  std::string>::with<registry_part>,
  // From the dispatcher, while nothing is in flight: the routing keys of
  // worker `index` (its flows and sites), to rebuild the routing table.
  caf::replies_to<keys_atom, uint32_t>::with<registry_part>,
  caf::replies_to<status_atom>::with<actor_status>>;

/// What a worker's report to its pool says (see `done_atom` above), held
/// by the commit coordinator until the batch's effects are durable.
struct commit_ticket {
  worker_pool_actor pool; ///< where the report goes
  uint32_t worker = 0;
  uint64_t seq = 0;      ///< the pool's batch sequence number
  uint64_t count = 0;    ///< events of the batch done by this report
  registry_stats stats;  ///< what the worker counted (refusals are added)
  bool complete = false; ///< the batch is finished (not a partial report)
  int64_t admitted_ns = 0; ///< when its events were admitted (steady, ns)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, commit_ticket& x) {
  return f(caf::meta::type_name("commit_ticket"), x.pool, x.worker, x.seq,
           x.count, x.stats, x.complete, x.admitted_ns);
}

/// Subscribers that see the batches of every worker (the scope of a
/// subscription; otherwise a worker index).
constexpr uint32_t all_workers = UINT32_MAX;

/// The commit barrier between the registry workers and everything that
/// stores their changes: a worker hands each batch's changes and report
/// here; the coordinator passes the changes to every subscriber and sends
/// the report to the pool once every committing subscriber has answered,
/// per worker in order. So an event's credit returns only after its
/// entities and its matches are stored, and the writes overlap instead of
/// following each other.
using commit_coordinator_actor = caf::typed_actor<
  // From a worker: the changes of a batch and its report.
  caf::reacts_to<commit_atom, commit_ticket, change_batch>,
  // A subscriber the batches of `worker` (or `all_workers`) wait for.
  // Takes effect for every batch that arrives after it.
  caf::reacts_to<subscribe_atom, commit_sink_actor, uint32_t>,
  // A subscriber that only watches the batches of `worker` (or all).
  caf::reacts_to<subscribe_atom, change_sink_actor, uint32_t>,
  // Told the event ids of every batch once it is reported (durable).
  caf::reacts_to<subscribe_atom, settled_sink_actor>,
  // Counters, queue depth and the oldest waiting batch.
  caf::replies_to<status_atom>::with<actor_status>>;

/// A worker in a pool. Its handler applies batches and reports each to the
/// pool with `done`.
using worker_actor = caf::typed_actor<
  // Applies a batch (skipping what a previous incarnation already applied).
  caf::reacts_to<deliver_atom, event_batch>,
  // Timer: dead-letters held flows past their hold time.
  caf::reacts_to<expire_atom>,
  // The database refused these changes; memory goes back to the stored
  // rows (given) where it still holds exactly a refused change.
  caf::reacts_to<repair_atom, std::vector<change>, registry_snapshot>,
  // End of input: dead-letters every held flow.
  caf::replies_to<release_atom>::with<registry_stats>,
  // Copies out the current entities.
  caf::replies_to<snapshot_atom>::with<registry_snapshot>,
  // How many sites and flows it holds (in `sites` and `flows`): what the
  // drain reports, without copying the entities as `snapshot` does.
  caf::replies_to<count_atom>::with<registry_stats>,
  // At start-up: takes in entities loaded from the database, without
  // publishing them.
  caf::replies_to<restore_atom, registry_snapshot>::with<caf::ok_atom>,
  // Gives up a site and everything linked to it, for another worker.
  caf::replies_to<handover_atom, std::string>::with<registry_part>,
  // Takes in what another worker gave up.
  caf::replies_to<takeover_atom, registry_part>::with<caf::ok_atom>,
  // The ids it holds that routing depends on (registry::routing_keys).
  caf::replies_to<keys_atom>::with<registry_part>>;

/// Routes each event to the worker-pool group that handles its type, and to
/// a worker within it by the group's policy; admits input only while each
/// group has fewer events in flight than its budget (backpressure).
using dispatcher_actor = caf::typed_actor<
  // From a source: admits a batch. The answer comes once the batch is
  // inside the in-flight budget, so a source waiting for it is slowed.
  // The sender must be a source_actor: it is told `forget` for events
  // dead-lettered after admission.
  caf::replies_to<ingest_atom, std::vector<event>>::with<caf::ok_atom>,
  // From a pool: `count` events done on `worker` of `group`.
  caf::reacts_to<done_atom, uint32_t, uint32_t, uint64_t, registry_stats>,
  // Answers once nothing is in flight or parked.
  caf::replies_to<drain_atom>::with<caf::ok_atom>,
  // End of input: held flows are dead-lettered; answers with all counters.
  caf::replies_to<release_atom>::with<registry_stats>,
  // The current entities of every worker, sorted by id.
  caf::replies_to<snapshot_atom>::with<registry_snapshot>,
  // How many sites and flows every worker holds (in `sites` and `flows`).
  caf::replies_to<count_atom>::with<registry_stats>,
  // In-flight accounting, for the node's progress log and tests.
  caf::replies_to<flight_atom>::with<dispatch_status>,
  // The status protocol (see messages/status.hpp).
  caf::replies_to<status_atom>::with<actor_status>,
  // Timer: ask again for a hand-over a restarting worker could not make.
  caf::reacts_to<handover_atom>,
  // At start-up, before any input: the entities loaded from the database,
  // spread over the workers the way events will be routed.
  caf::replies_to<restore_atom, registry_snapshot>::with<caf::ok_atom>>;

/// Admits batches of events (the dispatcher; in a cluster, the shard
/// router): the answer comes once the batch is inside the in-flight budget.
/// The sender must be a source_actor: it hears `forget` and `settled`.
using admission_actor = caf::typed_actor<
  caf::replies_to<ingest_atom, std::vector<event>>::with<caf::ok_atom>>;

// -- cluster mode (docs/cluster.md) ------------------------------------------

/// The reader side of a routed batch: told what became of the events it
/// sent to a registry shard's owner (durable, or dead-lettered).
using shard_client_actor = caf::typed_actor<
  caf::reacts_to<settled_atom, std::vector<std::string>>,
  caf::reacts_to<forget_atom, std::vector<std::string>>>;

/// A node's door for the other nodes, published on `cluster.listen`: the
/// only actor a peer can reach. Every request names the lease epoch its
/// sender believes in; a node refuses work for a resource it does not hold
/// at that epoch (the sender keeps the work and sends it again to the
/// owner the leases name), and holds work that comes a moment before it
/// has restored a resource it just took.
using cluster_gateway_actor = caf::typed_actor<
  // From a node that connected here (the one with the lower id connects,
  // so each pair has one connection): its id and its gateway (an untyped
  // handle: a type cannot name itself), checked and cast by the receiver;
  // the answer is this node's id.
  caf::replies_to<hello_atom, std::string, caf::actor>::with<std::string>,
  // Events of registry shard `shard` at lease epoch; the answer is the
  // credit (admitted), the outcome comes later to the client.
  caf::replies_to<route_atom, uint32_t, int64_t, std::vector<event>,
                  shard_client_actor>::with<caf::ok_atom>,
  // Changes for match partition `p` at lease epoch; answered once the
  // match changes they caused are stored.
  caf::replies_to<partition_atom, uint32_t, int64_t,
                  std::vector<change>>::with<caf::ok_atom>,
  // For partition `p` at its epoch: the entities of registry shard
  // `shard` placed there, replacing what the partition held of that shard
  // (a new owner of the shard, whose predecessor may have died before its
  // last changes reached the partition).
  caf::replies_to<resync_atom, uint32_t, int64_t, uint32_t,
                  registry_snapshot>::with<caf::ok_atom>,
  // Current matches of the partitions this node holds.
  caf::replies_to<matches_atom>::with<uint64_t>>;

/// Who owns what, as the lease table said at the last look, with a handle
/// on every reachable node's gateway. Local only: every node builds its
/// own from PostgreSQL.
struct cluster_directory {
  struct owner {
    int32_t node = -1; ///< index into `nodes`; -1: nobody
    int64_t epoch = 0;
  };
  std::vector<std::string> nodes;
  /// By node index; invalid while the node is unreachable.
  std::vector<cluster_gateway_actor> gateways;
  std::vector<owner> shards;
  std::vector<owner> partitions;
  std::vector<owner> streams;
  /// This node's index.
  int32_t self = -1;

  /// The gateway of a resource's owner, if known and reachable.
  const cluster_gateway_actor* gateway_of(const owner& o) const {
    if (o.node < 0 || static_cast<size_t>(o.node) >= gateways.size()
        || !gateways[static_cast<size_t>(o.node)])
      return nullptr;
    return &gateways[static_cast<size_t>(o.node)];
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f,
                                        cluster_directory::owner& x) {
  return f(caf::meta::type_name("directory_owner"), x.node, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_directory& x) {
  return f(caf::meta::type_name("cluster_directory"), x.nodes, x.gateways,
           x.shards, x.partitions, x.streams, x.self);
}

/// A lease this node took, as the node hears of it.
struct lease_gain {
  resource_id resource;
  int64_t epoch = 0;
  bool clean = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, resource_id& x) {
  return f(caf::meta::type_name("resource_id"), x.kind, x.index);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_gain& x) {
  return f(caf::meta::type_name("lease_gain"), x.resource, x.epoch, x.clean);
}

/// Told by the membership actor what this node now owns.
using lease_listener_actor = caf::typed_actor<
  // Leases taken in one beat (restore them, then open them).
  caf::reacts_to<gain_atom, std::vector<lease_gain>>,
  // A lease was lost, or the node id was taken over: stop now.
  caf::reacts_to<leave_atom, std::string>>;

/// Told whenever the directory changes (the shard router, the match
/// router).
using directory_sink_actor = caf::typed_actor<
  caf::reacts_to<directory_atom, cluster_directory>>;

/// Stores or emits match changes: the match writer (the `matches` table)
/// and the match stream (`[output] matches`).
using match_sink_actor = caf::typed_actor<
  // Takes match changes in the order they took effect; answers once they
  // are stored (the writer: after COMMIT) or written out (the stream).
  caf::replies_to<std::vector<match_change>>::with<caf::ok_atom>,
  // Makes everything so far durable; answers with the count so far.
  caf::replies_to<caf::flush_atom>::with<uint64_t>,
  caf::replies_to<status_atom>::with<actor_status>>;

/// One partition of the match service: the spatial index, flows and
/// matches of one resource class.
using match_partition_actor = caf::typed_actor<
  // Applies accepted changes; answers once the match changes they caused
  // are stored by every match sink.
  caf::replies_to<std::vector<change>>::with<caf::ok_atom>,
  // At start-up: builds the index from the stored entities and repairs the
  // stored matches of its class to equal the rules' result.
  caf::replies_to<restore_atom, registry_snapshot,
                  std::vector<match>>::with<caf::ok_atom>,
  // Cluster mode: the entities of registry shard `shard` (of `shards`)
  // placed here replace what the partition held of that shard; the match
  // changes this causes are stored before the answer.
  caf::replies_to<resync_atom, uint32_t, uint32_t,
                  registry_snapshot>::with<caf::ok_atom>,
  // Number of current matches.
  caf::replies_to<matches_atom>::with<uint64_t>,
  caf::replies_to<status_atom>::with<actor_status>>;

/// The match service's front, a committing subscriber of every worker: it
/// hands each change batch to the partitions concerned and answers once
/// the matches they caused are stored by every match sink.
using match_router_actor = commit_sink_actor::extend<
  // At start-up: the stored entities and matches, for the partitions.
  caf::replies_to<restore_atom, registry_snapshot,
                  std::vector<match>>::with<caf::ok_atom>,
  // Cluster mode: this node took registry shard `shard`; its entities
  // (loaded from the database) are placed, and unless its previous owner
  // released it cleanly (`clean`), sent to every partition to replace
  // what they held of the shard. Answers once the parts are queued ahead
  // of the shard's next changes (not once the partitions took them: a
  // partition may be the next lease round's, which waits for this one).
  caf::replies_to<resync_atom, uint32_t, bool,
                  registry_snapshot>::with<caf::ok_atom>,
  // Cluster mode: who owns which partition now.
  caf::reacts_to<directory_atom, cluster_directory>,
  // Cluster mode, timer: send again what a partition's owner did not take.
  caf::reacts_to<retry_atom>,
  // Number of current matches over all partitions.
  caf::replies_to<matches_atom>::with<uint64_t>,
  caf::replies_to<status_atom>::with<actor_status>>;

/// Told by an ingest source when it has no more input.
using source_listener_actor = caf::typed_actor<
  // The source read its last line (end of input or stop) and every batch
  // it sent was admitted.
  caf::reacts_to<eof_atom, source_stats>>;

/// The ingest driver (ingest_source.hpp): takes lines from a reader,
/// decodes and validates events, sends them to the dispatcher in batches
/// and waits for admission (backpressure).
using source_actor = caf::typed_actor<
  // Self-message: read and send more.
  caf::reacts_to<read_atom>,
  // Stop intake: decode what was already read, send it, then report eof.
  caf::reacts_to<stop_atom>,
  // From the dispatcher: these admitted events were dead-lettered after
  // all; their ids leave the dedup window (a corrected resend applies).
  caf::reacts_to<forget_atom, std::vector<std::string>>,
  // From the commit coordinator (when the reader acknowledges): these
  // admitted events are durable.
  caf::reacts_to<settled_atom, std::vector<std::string>>,
  // At the end of a drain: acknowledges everything settled; answers with
  // the entries left unacknowledged (held flows wait for their sites).
  caf::replies_to<drain_atom>::with<uint64_t>,
  // Timer: ids older than the retention leave the window, a shard a time.
  caf::reacts_to<expire_atom>,
  caf::replies_to<status_atom>::with<actor_status>>;


/// The root of a node: starts the stages, turns signals into a graceful
/// drain, and reports the run.
using node_actor = caf::typed_actor<
  // Starts the run; answers with the process exit code when it is over.
  caf::replies_to<run_atom>::with<int>,
  // From the signal thread.
  caf::reacts_to<signal_atom, int>,
  // From the source.
  caf::reacts_to<eof_atom, source_stats>,
  // Timer: the shutdown grace period is over.
  caf::reacts_to<deadline_atom>,
  // Timer: log the progress of the run.
  caf::reacts_to<progress_atom>,
  // From the HTTP endpoint: why the node cannot do its work, or "" when
  // it can (database connected, state restored, input connected).
  caf::replies_to<ready_atom>::with<std::string>,
  // From the HTTP endpoint: the latest status of every stage.
  caf::replies_to<metrics_atom>::with<std::vector<actor_status>>,
  // Cluster mode, from the membership actor (lease_listener_actor).
  caf::reacts_to<gain_atom, std::vector<lease_gain>>,
  caf::reacts_to<leave_atom, std::string>,
  // Cluster mode, timer: take the next round of gained leases.
  caf::reacts_to<retry_atom>>;

} // namespace flowmatch

// Type ids of the messages that carry actor handles (the rest are in
// messages/type_ids.hpp). Register both blocks with
// `add_message_types(cfg)` below.
CAF_BEGIN_TYPE_ID_BLOCK(flowmatch_actors, caf::id_block::flowmatch::end)

  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::commit_ticket))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::commit_sink_actor))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::change_sink_actor))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::settled_sink_actor))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::status_source_actor))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::worker_crash))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::shard_client_actor))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::cluster_gateway_actor))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::cluster_directory))
  CAF_ADD_TYPE_ID(flowmatch_actors, (flowmatch::lease_gain))
  CAF_ADD_TYPE_ID(flowmatch_actors, (std::vector<flowmatch::lease_gain>))
  CAF_ADD_TYPE_ID(flowmatch_actors,
                  (std::vector<flowmatch::cluster_gateway_actor>))

CAF_END_TYPE_ID_BLOCK(flowmatch_actors)

// A worker's memory is handed over, not serialized (worker_crash is local).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(flowmatch::worker_crash)

namespace flowmatch {

/// Registers every message type of flowmatch with an actor system's
/// configuration (the process, tests, benchmarks).
inline void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::flowmatch>();
  cfg.add_message_types<caf::id_block::flowmatch_actors>();
}

} // namespace flowmatch
