// The routing hash is part of the ingest contract: producers in any
// language compute it, so it must match FNV-1a 64 bit for bit.

#include "messages/routing_hash.hpp"

#include <catch2/catch.hpp>

using namespace flowmatch;

TEST_CASE("the routing hash is FNV-1a 64 as published") {
  // Vectors of the FNV reference (Noll's test suite).
  CHECK(fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ull);
}

TEST_CASE("the routing hash reads bytes as unsigned") {
  // UTF-8 beyond ASCII: a signed char would give another value.
  // FNV-1a of the two bytes 0xC3 0xA9 ("é"), computed by hand.
  uint64_t h = 14695981039346656037ull;
  for (uint8_t b : {0xC3, 0xA9}) {
    h ^= b;
    h *= 1099511628211ull;
  }
  CHECK(fnv1a64("\xC3\xA9") == h);
  static_assert(fnv1a64("a") == 0xaf63dc4c8601ec8cull, "usable at compile time");
}

TEST_CASE("a slot is the hash modulo the count") {
  CHECK(routing_slot("foobar", 7) == 0x85944171f73967e8ull % 7);
  CHECK(routing_slot("anything", 1) == 0);
}
