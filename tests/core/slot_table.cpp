// The slot table: after any sequence of inserts and erases every id still
// in it is found with its slot and no other is, also when many ids share
// hash bits (long probe runs, runs that wrap past the table's end, erases
// in their middle) and across growth.

#include "core/slot_table.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <vector>

using namespace flowmatch;

namespace {

/// Ids and slots as the match index keeps them: the slot's id confirms a
/// candidate. The hash is given per id, so tests can make ids collide.
struct model {
  slot_table table;
  std::vector<std::string> ids_of_slots;
  std::map<std::string, uint32_t> expected;
  std::map<std::string, uint64_t> hashes;

  uint32_t find(const std::string& id) const {
    return table.find(hashes.at(id), [&](uint32_t slot) {
      return ids_of_slots[slot] == id;
    });
  }

  void insert(const std::string& id, uint64_t hash) {
    auto slot = static_cast<uint32_t>(ids_of_slots.size());
    ids_of_slots.push_back(id);
    hashes[id] = hash;
    expected[id] = slot;
    table.insert(hash, slot);
  }

  void erase(const std::string& id) {
    table.erase(hashes.at(id), expected.at(id));
    expected.erase(id);
  }

  void check_all() const {
    REQUIRE(table.size() == expected.size());
    for (auto& [id, hash] : hashes) {
      auto i = expected.find(id);
      auto want = i == expected.end() ? slot_table::none : i->second;
      INFO("id " << id << " with hash " << hash);
      REQUIRE(find(id) == want);
    }
  }
};

} // namespace

TEST_CASE("ids are found with their slots after inserts and erases") {
  for (unsigned seed : {1u, 2u, 3u}) {
    INFO("seed " << seed);
    std::mt19937 rng{seed};
    model m;
    // Few distinct hashes among many ids: long runs of equal homes, and
    // equal hashes only the slot's id tells apart. Hashes near the top of
    // a small table make runs wrap past its end.
    std::uniform_int_distribution<uint64_t> few{0, 40};
    std::uniform_int_distribution<int> action{0, 9};
    size_t next = 0;
    for (int step = 0; step < 3000; ++step) {
      bool erase = action(rng) < 4 && !m.expected.empty();
      if (erase) {
        auto i = m.expected.begin();
        std::advance(i, std::uniform_int_distribution<size_t>{
                          0, m.expected.size() - 1}(rng));
        m.erase(i->first);
      } else {
        auto h = few(rng);
        m.insert("flow-" + std::to_string(next++),
                 h % 2 == 0 ? h : UINT32_MAX - h);
      }
      if (step % 50 == 0)
        m.check_all();
    }
    m.check_all();
  }
}

TEST_CASE("the table grows past many ids with real hashes") {
  model m;
  for (int i = 0; i < 100000; ++i) {
    auto id = "f" + std::to_string(i);
    m.insert(id, slot_table::hash(id));
  }
  for (int i = 0; i < 100000; i += 3)
    m.erase("f" + std::to_string(i));
  m.check_all();
  CHECK(m.table.size() == 66666);
}

TEST_CASE("probe gives the first slot with the hash, unconfirmed") {
  model m;
  CHECK(m.table.probe(7) == slot_table::none); // empty table
  m.insert("a", 7);
  m.insert("b", 7);
  CHECK(m.table.probe(7) == m.expected.at("a"));
  CHECK(m.find("b") == m.expected.at("b"));
  m.erase("a");
  CHECK(m.table.probe(7) == m.expected.at("b"));
  CHECK(m.table.probe(8) == slot_table::none);
  // Erasing what is not there changes nothing.
  m.table.erase(7, 12345);
  m.check_all();
}
