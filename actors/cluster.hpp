#pragma once

// The actors of cluster mode (docs/cluster.md, docs/contracts/cluster.md).
// Each node runs the same stages as a single node, and these beside them:
//
//   lease_keeper (detached, libpq): heartbeats, renews, takes leases
//        ^ view                     (membership and ownership in PostgreSQL)
//        |
//   cluster_membership: asks the keeper every beat, connects to the other
//        |   nodes' gateways (monitors them), tells the node what it took
//        |   or lost, and tells routers who owns what (the directory)
//        v
//   shard_router (reader side)  --route-->  cluster_gateway (published)
//     ingest sources admit here               |-> shard_host -> dispatcher
//                                             |     (registry shards)
//   match_router (every node)  --partition--> |-> match partitions held here
//
// A node that finds a lease gone stops (exit 7): it never goes on with
// state a successor has taken over, and the fence in every writing
// transaction keeps it from writing meanwhile.

#include "actors/actors.hpp"
#include "core/cluster_plan.hpp"
#include "core/event_id_window.hpp"
#include "storage/cluster_store.hpp"
#include "storage/pg.hpp"
#include "storage/session.hpp"

#include <absl/container/flat_hash_map.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flowmatch {

/// The `[cluster]` settings (validated in system/config.cpp).
struct cluster_settings {
  /// Empty: not a cluster (a single node, as without these settings).
  std::string node_id;
  /// Where this node listens for the others: an explicit host and port.
  std::string listen_host;
  uint16_t listen_port = 0;
  /// The address the others connect to, when not the listen address (a
  /// proxy or a NAT in between); empty: the listen address.
  std::string advertise;
  /// The other nodes' addresses (host:port), to wait for at start.
  std::vector<std::string> seeds;
  cluster_shape shape;
  /// A lease lasts this long unless renewed; renewed every `beat`.
  std::chrono::milliseconds lease{6000};
  std::chrono::milliseconds beat{1000};
  /// How long a new node waits for its seeds before it takes leases.
  std::chrono::milliseconds join_timeout{10000};
  /// Largest batch of events sent to another node, in bytes.
  size_t max_batch_bytes = 1 << 20;
  /// Events a shard router keeps unsettled at most (the credit of a
  /// node's readers across the cluster).
  uint64_t max_unsettled = 65536;
  /// Mutual TLS between the nodes (`openssl.*` set).
  bool tls = false;

  bool enabled() const {
    return !node_id.empty();
  }
  /// What the members table says the others connect to.
  std::string address() const {
    return advertise.empty()
             ? listen_host + ":" + std::to_string(listen_port)
             : advertise;
  }
};

/// What the keeper saw and did in one beat.
struct cluster_view {
  std::vector<cluster_store::member_row> members;
  std::vector<cluster_store::lease_row> leases;
  std::vector<lease_gain> taken;
  /// Leases this node held and found gone (fatal).
  std::vector<std::string> lost;
  /// Why this node must stop (its id is used by another process).
  std::string fatal;
};

} // namespace flowmatch

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(flowmatch::cluster_view)

namespace flowmatch {

using cluster_membership_actor = caf::typed_actor<
  // Timer: the beat.
  caf::reacts_to<tick_atom>,
  // A beat now, off the timer (to take leases once the seeds are there).
  caf::reacts_to<retry_atom>,
  // From this node's gateway: a node connected here and said hello.
  caf::reacts_to<hello_atom, std::string, cluster_gateway_actor>,
  // Subscribes to directory changes (gets the current one at once).
  caf::reacts_to<subscribe_atom, directory_sink_actor>,
  // The node starts to leave: take no more leases (keep renewing).
  caf::reacts_to<stop_atom>,
  // The node is leaving: stop taking leases, release them all.
  caf::replies_to<leave_atom>::with<caf::ok_atom>,
  // The latest directory.
  caf::replies_to<directory_atom>::with<cluster_directory>,
  caf::replies_to<status_atom>::with<actor_status>>;

// -- lease keeper -------------------------------------------------------------

/// The node's session with the membership and lease tables. Detached
/// (libpq blocks); only the membership actor talks to it.
using lease_keeper_actor = caf::typed_actor<
  // One beat: join (first time), heartbeat, renew, read members and
  // leases; with `true`, also take the free or expired leases that
  // rendezvous hashing gives this node.
  caf::replies_to<tick_atom, bool>::with<cluster_view>,
  // A graceful leave: releases every lease, marks the member gone.
  caf::replies_to<leave_atom>::with<caf::ok_atom>,
  // Stopping after a lost lease: marks this run's member row gone so that
  // a restart can join at once, and releases nothing (what it holds was
  // not finished: the next owners repair it after the leases expire).
  caf::replies_to<stop_atom>::with<caf::ok_atom>>;

struct lease_keeper_state {
  static inline const char* name = "lease-keeper";
  cluster_settings cluster;
  postgis_settings postgis;
  std::string incarnation;
  pg::connection conn;
  bool joined = false;
  /// Held leases: resource name -> epoch.
  std::map<std::string, int64_t> held;
};

lease_keeper_actor::behavior_type
lease_keeper(lease_keeper_actor::stateful_pointer<lease_keeper_state> self,
             cluster_settings cluster, postgis_settings postgis);

// -- membership ---------------------------------------------------------------

struct cluster_membership_state {
  static inline const char* name = "cluster-membership";
  cluster_settings cluster;
  lease_keeper_actor keeper;
  lease_listener_actor listener;
  cluster_gateway_actor own_gateway;
  cluster_directory directory;
  std::vector<directory_sink_actor> subscribers;
  /// Gateways by node id; connects in progress.
  std::map<std::string, cluster_gateway_actor> links;
  std::map<std::string, bool> connecting;
  std::map<std::string, std::string> addresses;
  std::chrono::steady_clock::time_point started;
  bool acquiring = false;
  /// The join wait is over (or a leave began): `acquiring` says all.
  bool join_done = false;
  bool leaving = false;
  bool beat_pending = false;
  uint64_t beats = 0;
  uint64_t beat_failures = 0;
  uint64_t connects = 0;
  uint64_t peers_lost = 0;
  uint64_t leases_taken = 0;
};

/// `tls`: connect through caf_openssl's middleman (mutual TLS).
cluster_membership_actor::behavior_type cluster_membership(
  cluster_membership_actor::stateful_pointer<cluster_membership_state> self,
  cluster_settings cluster, lease_keeper_actor keeper,
  lease_listener_actor listener, cluster_gateway_actor own_gateway);

// -- shard host ---------------------------------------------------------------

/// The owner side of registry shards: admits routed events of the shards
/// this node holds into the local dispatcher, once each shard is restored;
/// skips events already applied (a resend after a failover) and reports
/// every outcome to the router that sent the event.
using shard_host_actor = caf::typed_actor<
  caf::replies_to<route_atom, uint32_t, int64_t, std::vector<event>,
                  shard_client_actor>::with<caf::ok_atom>,
  // From the node: shard restored at that epoch; the processed event ids
  // of the database (with when they were applied, ms since the epoch)
  // join the dedup window.
  caf::reacts_to<open_atom, uint32_t, int64_t, std::vector<std::string>,
                 std::vector<int64_t>>,
  // From the dispatcher (as a source): dead-lettered after admission.
  caf::reacts_to<forget_atom, std::vector<std::string>>,
  // From the commit coordinator: durable.
  caf::reacts_to<settled_atom, std::vector<std::string>>,
  // Timer: old ids leave the window; requests for shards never opened
  // are refused.
  caf::reacts_to<expire_atom>,
  // The node is leaving: refuse every new request (its senders keep the
  // events for the shards' next owners).
  caf::reacts_to<stop_atom>,
  caf::replies_to<status_atom>::with<actor_status>>;

struct shard_host_state {
  static inline const char* name = "shard-host";
  struct waiting {
    caf::typed_response_promise<caf::ok_atom> rp;
    uint32_t shard;
    int64_t epoch;
    std::vector<event> events;
    shard_client_actor client;
    std::chrono::steady_clock::time_point since;
  };
  cluster_settings cluster;
  admission_actor dispatcher;
  /// Open shards: epoch by shard (0: not held).
  std::vector<int64_t> open;
  std::deque<waiting> queued;
  event_id_window seen{default_dedup_retention.count()};
  /// Admitted, not settled: event id -> who to tell.
  absl::flat_hash_map<std::string, std::vector<shard_client_actor>> in_flight;
  wait_limits limits;
  bool closed = false;
  uint64_t admitted = 0;
  uint64_t duplicates = 0;
  uint64_t refused = 0;
};

shard_host_actor::behavior_type
shard_host(shard_host_actor::stateful_pointer<shard_host_state> self,
           cluster_settings cluster, admission_actor dispatcher,
           commit_coordinator_actor coordinator,
           std::chrono::milliseconds dedup_retention, wait_limits limits);

// -- gateway ------------------------------------------------------------------

/// The node-side extension of the gateway: what the node tells it.
using gateway_control_actor = cluster_gateway_actor::extend<
  // The membership actor, told of every hello.
  caf::reacts_to<attach_atom, cluster_membership_actor>,
  // Partition `p` is restored at that epoch and served by that actor.
  caf::reacts_to<open_atom, uint32_t, int64_t, match_partition_actor>,
  // Timer: refuse held requests for partitions never opened.
  caf::reacts_to<expire_atom>,
  // The node is leaving and its own work drained: refuse every new
  // request; answers once the parts already handed to partitions are
  // answered (then the writers can be flushed and the leases released).
  caf::replies_to<stop_atom>::with<caf::ok_atom>>;

struct cluster_gateway_state {
  static inline const char* name = "cluster-gateway";
  struct held {
    caf::typed_response_promise<caf::ok_atom> rp;
    uint32_t partition;
    int64_t epoch;
    bool resync;
    uint32_t shard;
    std::vector<change> changes;
    registry_snapshot entities;
    std::chrono::steady_clock::time_point since;
  };
  cluster_settings cluster;
  shard_host_actor shards;
  cluster_membership_actor membership;
  std::vector<int64_t> partition_epochs;
  std::vector<match_partition_actor> partitions;
  std::deque<held> waiting;
  wait_limits limits;
  bool closed = false;
  /// Parts handed to partitions and not answered yet.
  size_t forwarded = 0;
  std::vector<caf::typed_response_promise<caf::ok_atom>> stops;
};

gateway_control_actor::behavior_type
cluster_gateway(gateway_control_actor::stateful_pointer<cluster_gateway_state> self,
                cluster_settings cluster, shard_host_actor shards,
                wait_limits limits);

// -- shard router -------------------------------------------------------------

/// The reader side: admits the batches of this node's ingest sources,
/// splits them by registry shard and sends each part to the shard's owner
/// (local or remote) through its gateway. Keeps every event until its
/// outcome comes back; when an owner is lost, sends what it had not
/// settled to the successor, before anything newer of that shard.
using shard_router_actor = caf::typed_actor<
  caf::replies_to<ingest_atom, std::vector<event>>::with<caf::ok_atom>,
  caf::reacts_to<settled_atom, std::vector<std::string>>,
  caf::reacts_to<forget_atom, std::vector<std::string>>,
  caf::reacts_to<directory_atom, cluster_directory>,
  // Timer: send again what failed.
  caf::reacts_to<retry_atom>,
  // Answers once nothing is unsettled except events held for their sites
  // (nothing in flight to a shard).
  caf::replies_to<drain_atom>::with<caf::ok_atom>,
  caf::replies_to<status_atom>::with<actor_status>>;

struct shard_router_state {
  static inline const char* name = "shard-router";
  /// A routed batch of one shard, kept until every event has an outcome.
  struct kept {
    std::vector<event> events;
    std::vector<bool> done;
    size_t left = 0;
    /// Where it went (owner node id and lease epoch); empty: not sent
    /// (again) yet.
    std::string node;
    int64_t epoch = 0;
    bool admitted = false;
  };
  struct origin {
    source_actor source;
    kept* batch;
    size_t index;
  };
  cluster_settings cluster;
  cluster_directory directory;
  std::vector<std::deque<std::unique_ptr<kept>>> shards;
  absl::flat_hash_map<std::string, std::vector<origin>> origins;
  /// Admissions waiting for credit.
  std::deque<caf::typed_response_promise<caf::ok_atom>> parked;
  std::vector<caf::typed_response_promise<caf::ok_atom>> drains;
  uint64_t unsettled = 0;
  /// When an outcome came last (a drain ends when nothing comes any more
  /// but events held for their sites).
  std::chrono::steady_clock::time_point last_outcome;
  bool retry_scheduled = false;
  wait_limits limits;
  uint64_t routed = 0;
  uint64_t remote = 0;
  uint64_t resent = 0;
  uint64_t failures = 0;
};

shard_router_actor::behavior_type
shard_router(shard_router_actor::stateful_pointer<shard_router_state> self,
             cluster_settings cluster, wait_limits limits);

} // namespace flowmatch
