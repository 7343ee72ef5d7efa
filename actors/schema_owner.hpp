#pragma once

// The node's own database session, apart from the root actor so that the
// node stays responsive (a signal is heard) while the database is slow or
// down at start. Detached (libpq blocks). Asked once with `connect`, it
// reaches the database (a retryable failure is tried again after a growing
// delay, as a delayed message), migrates the schema, takes the schema's
// owner lock (one writer per schema, storage.md v1.1) and answers with the
// stored state. It holds the lock on its connection for as long as it
// lives: the node stops it last.

#include "actors/actors.hpp"
#include "storage/pg.hpp"
#include "storage/session.hpp"

#include <chrono>

namespace flowmatch {

using schema_owner_actor = caf::typed_actor<
  // Answers with the stored state once the schema is migrated and owned;
  // an error (a wrong password, an unknown database, another owner) when
  // trying again cannot help.
  caf::replies_to<connect_atom>::with<stored_state>,
  // Timer: try again.
  caf::reacts_to<tick_atom>,
  // Cluster mode: the stored state now (sites, flows, matches, processed
  // ids), read in one snapshot, for the resources this node just took.
  caf::replies_to<snapshot_atom>::with<stored_state>>;

struct schema_owner_state {
  static inline const char* name = "schema-owner";
  postgis_settings settings;
  std::chrono::milliseconds dedup_retention{0};
  /// Cluster mode: the schema is shared by the cluster's nodes (a shared
  /// lock that keeps single nodes out), and nothing is loaded at start.
  bool cluster = false;
  std::chrono::milliseconds delay{0};
  caf::typed_response_promise<stored_state> answer;
  /// Holds the owner lock while the actor lives.
  pg::connection conn;
};

schema_owner_actor::behavior_type
schema_owner(schema_owner_actor::stateful_pointer<schema_owner_state> self,
             postgis_settings settings,
             std::chrono::milliseconds dedup_retention, bool cluster);

} // namespace flowmatch
