#pragma once

// The SQL of the PostGIS store: writing batches of accepted changes,
// isolating a change the database refuses, loading the state back at
// start-up, and storing dead letters. Works on a pg::connection whose
// search_path is the configured schema. Used by the detached sync actors;
// tested against a real server.

#include "messages/batch.hpp"
#include "messages/match.hpp"
#include "storage/pg.hpp"

#include <chrono>
#include <optional>
#include <unordered_map>
#include <string>
#include <utility>
#include <vector>

namespace flowmatch::store {

/// Prepares the write statements on a connection (once per connection).
std::optional<pg::db_error> prepare(pg::connection& conn);

/// Cluster mode's fence (docs/contracts/cluster.md, migration 4): the
/// leases a writing transaction must still hold, checked and locked inside
/// it. Empty (no writer): a single node, no check.
struct fence {
  std::string writer; ///< the node id
  std::vector<std::string> resources;
  std::vector<int64_t> epochs;

  bool empty() const {
    return writer.empty();
  }
};

/// The net effect of a run of changes: the last change per entity wins, so
/// each row is written once and bulk statements never touch a row twice.
struct write_set {
  std::vector<site> site_upserts;
  std::vector<std::string> site_deletes;
  std::vector<resource_flow> flow_upserts;
  /// (flow id, site id it belonged to): a delete only removes the row if
  /// the flow is still at that site (a guard: a flow's changes come from
  /// one worker at a time, in order).
  std::vector<std::pair<std::string, std::string>> flow_deletes;
  /// (event id, routing key) of every event taken in.
  std::vector<std::pair<std::string, std::string>> processed;

  /// Folds a batch in, in order.
  void add(const change_batch& batch);
  /// Changes folded in so far (before collapsing).
  size_t changes() const {
    return changes_;
  }
  bool empty() const {
    return changes_ == 0 && processed.empty();
  }
  void clear();

private:
  // Final word per id: the index into the upsert vector, or a delete.
  struct final_word {
    bool deleted;
    size_t index;
  };
  std::unordered_map<std::string, final_word> site_word_, flow_word_;
  size_t changes_ = 0;

public:
  /// The collapsed statements' inputs, built from the final words.
  void collapse();
};

/// Writes a write set in one transaction, sent as one pipeline: BEGIN, the
/// deletes, the upserts, processed_events, COMMIT; one round trip.
std::optional<pg::db_error> write(pg::connection& conn,
                                  const write_set& ws,
                                  const fence& held = {});

/// A change the database refused for good.
struct refused {
  change what;
  pg::db_error error;
};

/// The slow path after a permanent error: every change in order, each in
/// its own savepoint, one transaction. Returns what was refused; commits
/// the rest. A retryable error aborts and is returned as the error.
pg::outcome<std::vector<refused>>
write_isolating(pg::connection& conn, const std::vector<change_batch>& batches,
                const fence& held = {});

/// Everything a restarted node needs (messages/batch.hpp).
using stored_state = flowmatch::stored_state;

/// Every stored site and flow, sorted by id.
pg::outcome<registry_snapshot> load_entities(pg::connection& conn);

/// The stored rows of these sites and flows, and the flows of these sites
/// (to bring memory back to the table after a refused change).
pg::outcome<registry_snapshot>
load_entities(pg::connection& conn, const std::vector<std::string>& site_ids,
              const std::vector<std::string>& flow_ids);

/// Loads the stored state. With a `dedup_retention`, processed event ids
/// older than it are deleted first (storage.md v1.1), so the table and the
/// dedup window hold the same ids; without one (a read-only check) nothing
/// is deleted.
pg::outcome<stored_state>
load(pg::connection& conn,
     std::optional<std::chrono::milliseconds> dedup_retention = std::nullopt);

/// Deletes processed event ids older than the retention; returns how many.
pg::outcome<int64_t> prune_processed(pg::connection& conn,
                                     std::chrono::milliseconds retention);

/// Writes match changes in one transaction: the last change per pair wins;
/// removals delete, upserts insert or update (idempotent).
std::optional<pg::db_error>
write_matches(pg::connection& conn, const std::vector<match_change>& changes,
              const fence& held = {});

/// The stored matches (all classes, or one).
pg::outcome<std::vector<match>>
load_matches(pg::connection& conn,
             caf::optional<resource_class> only = caf::none);

/// Stores dead letters; the same rejection again increments `attempts`.
std::optional<pg::db_error>
insert_dead_letters(pg::connection& conn,
                    const std::vector<dead_letter>& letters);

} // namespace flowmatch::store
