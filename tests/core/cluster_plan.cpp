// Who owns what in a cluster: resource names and rendezvous hashing
// (core/cluster_plan.hpp).

#include "core/cluster_plan.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

using namespace flowmatch;

namespace {

std::map<std::string, std::string>
owners(const cluster_shape& shape, const std::vector<std::string>& members) {
  std::map<std::string, std::string> out;
  for (auto r : shape.all())
    out[resource_name(r)] = *rendezvous_owner(resource_name(r), members);
  return out;
}

} // namespace

TEST_CASE("resource names round-trip and reject what is not ours") {
  cluster_shape shape{64, 8, 4};
  auto all = shape.all();
  REQUIRE(all.size() == 76);
  for (auto r : all) {
    auto parsed = parse_resource(resource_name(r));
    REQUIRE(parsed);
    CHECK(*parsed == r);
  }
  CHECK(resource_name({resource_kind::match, 3}) == "match/3");
  for (auto bad : {"", "shard", "shard/", "shard/x", "shard/1x", "lease/1",
                   "/3", "shard/-1"})
    CHECK_FALSE(parse_resource(bad));
}

TEST_CASE("the shard of a site is the ingest contract's FNV-1a mod S") {
  // FNV-1a 64 of "a", computed from the spec in Python.
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  for (uint32_t s : {1u, 7u, 64u})
    CHECK(shard_of("linz-steel", s) == fnv1a64("linz-steel") % s);
}

TEST_CASE("rendezvous hashing spreads resources and moves few on a change") {
  cluster_shape shape{64, 16, 8};
  std::vector<std::string> three{"n1", "n2", "n3"};
  auto before = owners(shape, three);
  // Every member gets a fair share (88 resources: 29 each on average).
  std::map<std::string, int> load;
  for (auto& [r, o] : before)
    ++load[o];
  for (auto& m : three) {
    INFO(m << " owns " << load[m]);
    CHECK(load[m] >= 18);
    CHECK(load[m] <= 42);
  }
  // The order of the member list does not matter.
  CHECK(owners(shape, {"n3", "n1", "n2"}) == before);
  // A member leaves: only its resources move.
  auto after = owners(shape, {"n1", "n3"});
  for (auto& [r, o] : before) {
    if (o != "n2") {
      INFO(r);
      CHECK(after[r] == o);
    } else {
      CHECK(after[r] != "n2");
    }
  }
  // A member joins: resources only move to it.
  auto grown = owners(shape, {"n1", "n2", "n3", "n4"});
  int moved = 0;
  for (auto& [r, o] : before)
    if (grown[r] != o) {
      CHECK(grown[r] == "n4");
      ++moved;
    }
  CHECK(moved > 0);
  CHECK(moved < 40);
  CHECK(rendezvous_owner("shard/1", {}) == nullptr);
}
