#pragma once

// The SQL of cluster mode (docs/contracts/cluster.md): membership and
// leases in PostgreSQL, which is the truth of who owns what. Every time
// is the database's clock (now()), never a node's, so nodes with skewed
// clocks agree on what expired. Tables and the fence are migration 4.

#include "storage/pg.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flowmatch::cluster_store {

/// A live member: its heartbeat is younger than the lease time.
struct member_row {
  std::string node_id;
  std::string address;
};

/// A lease as the table holds it.
struct lease_row {
  std::string resource;
  std::string owner; ///< empty: released or never taken
  int64_t epoch = 0;
  bool live = false; ///< not expired
};

/// A lease this node just took.
struct taken_lease {
  std::string resource;
  int64_t epoch = 0;
  /// The previous owner released it (or nobody had it): nothing of it was
  /// lost, so the new owner needs no repair from other nodes.
  bool clean = true;
};

/// Prepares the statements below on a connection (once per connection).
std::optional<pg::db_error> prepare(pg::connection& conn);

/// Registers this process as node `node_id` at `address`. Fails with a
/// message (as a permanent error) when another process runs with that id
/// (its heartbeat is younger than `lease`).
std::optional<pg::db_error> join(pg::connection& conn,
                                 const std::string& node_id,
                                 const std::string& address,
                                 const std::string& incarnation,
                                 std::chrono::milliseconds lease);

/// One heartbeat: the member row's time moves on. False when another
/// incarnation took the id over (this process must stop).
pg::outcome<bool> heartbeat(pg::connection& conn, const std::string& node_id,
                            const std::string& incarnation);

/// Marks the member gone (a graceful leave).
std::optional<pg::db_error> leave(pg::connection& conn,
                                  const std::string& node_id,
                                  const std::string& incarnation);

/// Members whose heartbeat is younger than `lease`, by id.
pg::outcome<std::vector<member_row>> live_members(
  pg::connection& conn, std::chrono::milliseconds lease);

/// Every lease row.
pg::outcome<std::vector<lease_row>> leases(pg::connection& conn);

/// Takes each resource that is free, expired, or left by an earlier run of
/// this node id, with a new epoch; returns those taken.
pg::outcome<std::vector<taken_lease>>
acquire(pg::connection& conn, const std::string& node_id,
        const std::vector<std::string>& resources,
        std::chrono::milliseconds lease);

/// Extends the leases held (resource and epoch); returns the resources
/// still held. One missing from the answer is lost.
pg::outcome<std::vector<std::string>>
renew(pg::connection& conn, const std::string& node_id,
      const std::vector<std::string>& resources,
      const std::vector<int64_t>& epochs, std::chrono::milliseconds lease);

/// Gives leases up (a graceful stop): a successor takes them at once and
/// as clean.
std::optional<pg::db_error> release(pg::connection& conn,
                                    const std::string& node_id,
                                    const std::vector<std::string>& resources);

} // namespace flowmatch::cluster_store
