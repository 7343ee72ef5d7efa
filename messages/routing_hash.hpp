#pragma once

// The routing hash of the ingest contract (docs/contracts/ingest.md, from
// the platform's shared spec): FNV-1a, 64 bits, over the UTF-8 bytes of
// the routing key (the site id). Every routing decision uses it: workers
// in a node, stream partitions, registry shards of a cluster. Unlike
// std::hash it is specified, so every build and every node (and every
// producer, in any language) computes the same value.

#include <cstdint>
#include <string_view>

namespace flowmatch {

constexpr uint64_t fnv1a64_offset_basis = 14695981039346656037ull;
constexpr uint64_t fnv1a64_prime = 1099511628211ull;

constexpr uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = fnv1a64_offset_basis;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= fnv1a64_prime;
  }
  return h;
}

/// The slot of `key` among `n` (workers, partitions, shards).
constexpr uint32_t routing_slot(std::string_view key, uint64_t n) {
  return static_cast<uint32_t>(fnv1a64(key) % n);
}

} // namespace flowmatch
