#pragma once

// Who should own what in a cluster (docs/contracts/cluster.md): the
// resources a cluster leases out (registry shards, match partitions,
// stream partitions), their names in the lease table, and rendezvous
// hashing over the live members, so that a change of membership moves
// only the resources of the member that came or went. Pure logic: the
// leases themselves live in PostgreSQL (storage/cluster_store).

#include "messages/routing_hash.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flowmatch {

/// The kinds of leased resources.
enum class resource_kind : uint8_t { shard, match, stream };

/// A leased resource: its kind and number.
struct resource_id {
  resource_kind kind = resource_kind::shard;
  uint32_t index = 0;

  friend bool operator==(resource_id a, resource_id b) {
    return a.kind == b.kind && a.index == b.index;
  }
};

/// "shard/12", "match/3", "stream/0": the lease table's key.
std::string resource_name(resource_id r);

/// The resource named so, if the name is one of ours.
std::optional<resource_id> parse_resource(std::string_view name);

/// How many of each kind a cluster has (the same on every node: a node
/// with other numbers would route elsewhere).
struct cluster_shape {
  uint32_t shards = 64;
  uint32_t match_partitions = 4;
  uint32_t stream_partitions = 1;

  uint32_t count(resource_kind k) const;
  /// Every resource, shards first.
  std::vector<resource_id> all() const;
};

/// The registry shard of a routing key (the site id): FNV-1a 64 mod S, the
/// hash of ingest.md, so every node and every producer agree.
inline uint32_t shard_of(std::string_view routing_key, uint32_t shards) {
  return routing_slot(routing_key, shards);
}

/// Rendezvous (highest random weight) hashing: the member with the highest
/// weight for a resource owns it. Weights mix the member id and the
/// resource name through FNV-1a and a finalizer, so they are the same on
/// every node and build. Empty `members`: nobody.
const std::string* rendezvous_owner(const std::string& resource,
                                    const std::vector<std::string>& members);

} // namespace flowmatch
