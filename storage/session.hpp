#pragma once

// How a flowmatch actor reaches the database: the connection settings and
// one way to open a session (connect, search_path, prepared statements).

#include "storage/pg.hpp"

#include <chrono>
#include <string>

namespace flowmatch {

struct postgis_settings {
  /// The node's own conninfo: with least privilege, a role that may only
  /// read and write the schema's tables.
  std::string dsn;
  /// The schema owner's conninfo, used only to migrate; empty: `dsn`.
  std::string owner_dsn;
  /// Granted DML on the schema after migrating (empty: no grant).
  std::string app_role;
  std::string schema = "public";
  /// Changes per transaction before a flush.
  size_t batch_size = 16384;
  /// Longest time a change waits for its transaction.
  std::chrono::milliseconds max_age{20};
  /// Reconnect backoff: first delay, doubling up to the max.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
  /// Cluster mode: the server ends a transaction left open this long (a
  /// writer frozen between two round trips of one transaction would hold
  /// its fence locks, and with them every takeover of its leases); 0: off.
  std::chrono::milliseconds idle_transaction_timeout{0};
  /// Cluster mode: a statement waits at most this long for a row lock
  /// (the lease keeper's beat must never hang behind another node); 0: off.
  std::chrono::milliseconds lock_timeout{0};
};

/// Makes sure `conn` is an open session of a flowmatch actor: when it is
/// not, one attempt to connect, set the schema's search_path and prepare
/// the store's statements. Returns the error of a failed attempt; whoever
/// calls decides when to try again (never by sleeping in an actor).
std::optional<pg::db_error> ensure_session(pg::connection& conn,
                                           const postgis_settings& settings,
                                           const std::string& application_name);

} // namespace flowmatch
