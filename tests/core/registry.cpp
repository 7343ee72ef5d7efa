// The registry's semantics without actors: upserts, the version rule,
// deletes with cascade, and the hold for flows whose site is not known
// yet; and the dedup window by event id (which the dispatcher owns).

#include "core/event_id_window.hpp"
#include "core/registry.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

struct fixture {
  registry reg{100};
  registry_output out;
  registry::clock::time_point now = registry::clock::now();

  void apply(const event& ev) {
    reg.apply(ev, now, out);
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "created and updated are both upserts") {
  apply(make_site_event("e1", "s", caf::none, 1, 1));
  apply(make_site_event("e2", "s", caf::none, 2, 2)); // update
  auto first = make_site_event("e3", "t");
  first.type = event_type::site_created;
  apply(first);
  first.id = "e4"; // a second create still converges
  first.site_data.lat = 5;
  apply(first);
  REQUIRE(reg.find_site("s"));
  CHECK(reg.find_site("s")->lat == 2);
  CHECK(reg.find_site("t")->lat == 5);
  CHECK(out.stats.applied == 4);
  CHECK(out.changes.size() == 4);
}

TEST_CASE("the dedup window knows every id it admitted, by id alone") {
  event_id_window w{1000};
  CHECK(w.admit("e1", 0));
  CHECK_FALSE(w.admit("e1", 10)); // a duplicate, whatever it carries
  // Many ids (kept in 64 shards by hash; they grow one by one): every one
  // is known after, none before.
  for (int i = 0; i < 20000; ++i)
    REQUIRE(w.admit("id-" + std::to_string(i), 5));
  for (int i = 0; i < 20000; ++i)
    REQUIRE_FALSE(w.admit("id-" + std::to_string(i), 6));
  CHECK(w.size() == 20001);
}

TEST_CASE("a forgotten id (dead-lettered after admission) applies again") {
  event_id_window w{1000};
  CHECK(w.admit("e1", 0));
  w.forget("e1");
  CHECK(w.admit("e1", 1));
  CHECK_FALSE(w.admit("e1", 2));
}

TEST_CASE("ids older than the retention leave the window") {
  event_id_window w{1000};
  CHECK(w.admit("old", 0));
  CHECK(w.admit("new", 900));
  // Within the retention a duplicate, past it an id may apply again.
  CHECK_FALSE(w.admit("old", 1000));
  CHECK(w.admit("old", 1001));
  // The sweep drops what is past the retention, shard by shard.
  w.remember("stored", 100); // from the database, applied at 100
  size_t dropped = 0;
  for (size_t i = 0; i < event_id_window::shard_count; ++i)
    dropped += w.expire_next_shard(1500);
  CHECK(dropped == 1); // "stored"; "old" (1001) and "new" (900) stay
  CHECK(w.size() == 2);
  CHECK(w.admit("stored", 1500));
  // A restored id keeps its own time: a newer one wins.
  w.remember("new", 1400);
  for (size_t i = 0; i < event_id_window::shard_count; ++i)
    w.expire_next_shard(2200);
  CHECK_FALSE(w.admit("new", 2300));
}

TEST_CASE_METHOD(fixture, "a lower version is stale but an equal or missing one is not") {
  apply(make_site_event("e1", "s", 5, 1, 1));
  apply(make_site_event("e2", "s", 4, 2, 2));
  CHECK(reg.find_site("s")->lat == 1);
  CHECK(out.stats.stale == 1);
  apply(make_site_event("e3", "s", 5, 3, 3));
  CHECK(reg.find_site("s")->lat == 3);
  apply(make_site_event("e4", "s", caf::none, 4, 4));
  CHECK(reg.find_site("s")->lat == 4);
  CHECK_FALSE(reg.find_site("s")->version);
  apply(make_site_event("e5", "s", 1, 5, 5)); // nothing stored to compare
  CHECK(reg.find_site("s")->lat == 5);
  // Flows follow the same rule.
  apply(make_flow_event("f1", "fl", "s", 3));
  apply(make_flow_event("f2", "fl", "s", 2));
  CHECK(*reg.find_flow("fl")->version == 3);
  CHECK(out.stats.stale == 2);
}

TEST_CASE_METHOD(fixture, "a site delete cascades to its flows") {
  apply(make_site_event("e1", "s"));
  apply(make_site_event("e2", "t"));
  apply(make_flow_event("f1", "a", "s"));
  apply(make_flow_event("f2", "b", "s"));
  apply(make_flow_event("f3", "c", "t"));
  out.changes.clear();
  apply(make_delete_event("d1", event_type::site_deleted, "s"));
  CHECK_FALSE(reg.find_site("s"));
  CHECK_FALSE(reg.find_flow("a"));
  CHECK_FALSE(reg.find_flow("b"));
  CHECK(reg.find_flow("c"));
  // Flows first (in id order), then the site.
  REQUIRE(out.changes.size() == 3);
  CHECK(out.changes[0].kind == change::flow_deleted);
  CHECK(out.changes[0].id == "a");
  CHECK(out.changes[1].id == "b");
  CHECK(out.changes[2].kind == change::site_deleted);
  CHECK(out.changes[2].event_id == "d1");
}

TEST_CASE_METHOD(fixture, "deleting something unknown is a no-op") {
  apply(make_delete_event("d1", event_type::site_deleted, "nothing"));
  apply(make_delete_event("d2", event_type::resource_flow_deleted, "none"));
  CHECK(out.stats.applied == 2);
  CHECK(out.changes.empty());
  CHECK(out.dead_letters.empty());
}

TEST_CASE_METHOD(fixture, "a flow for an unknown site is held and then applied in order") {
  apply(make_flow_event("f1", "a", "late", 1));
  apply(make_flow_event("f2", "a", "late", 2));
  apply(make_flow_event("f3", "b", "late"));
  CHECK(reg.held_count() == 3);
  CHECK_FALSE(reg.find_flow("a"));
  CHECK(out.stats.held == 3);
  apply(make_site_event("e1", "late"));
  CHECK(reg.held_count() == 0);
  REQUIRE(reg.find_flow("a"));
  CHECK(*reg.find_flow("a")->version == 2); // arrival order kept
  CHECK(reg.find_flow("b"));
  CHECK(out.stats.held_applied == 3);
}

TEST_CASE_METHOD(fixture, "held flows expire into dead letters") {
  apply(make_flow_event("f1", "a", "never"));
  now += std::chrono::seconds{10};
  apply(make_flow_event("f2", "b", "never"));
  reg.expire_held(now - std::chrono::seconds{5}, out);
  REQUIRE(out.dead_letters.size() == 1);
  CHECK(out.dead_letters[0].event_id == "f1");
  CHECK(out.dead_letters[0].reason == reject_reason::orphan_flow);
  // The dispatcher is told to forget the id: a corrected resend applies.
  REQUIRE(out.stats.rejected_ids.size() == 1);
  CHECK(out.stats.rejected_ids[0] == "f1");
  CHECK(reg.held_count() == 1);
  reg.release_all_held(out);
  REQUIRE(out.dead_letters.size() == 2);
  CHECK(out.dead_letters[1].event_id == "f2");
  CHECK(reg.held_count() == 0);
  // A dead-lettered orphan was never applied: sending it again is allowed.
  apply(make_site_event("e1", "never"));
  apply(make_flow_event("f1", "a", "never"));
  CHECK(reg.find_flow("a"));
}

TEST_CASE_METHOD(fixture, "the hold is bounded: the oldest gives way") {
  registry small{2};
  small.apply(make_flow_event("f1", "a", "x"), now, out);
  small.apply(make_flow_event("f2", "b", "x"), now, out);
  small.apply(make_flow_event("f3", "c", "x"), now, out);
  CHECK(small.held_count() == 2);
  REQUIRE(out.dead_letters.size() == 1);
  CHECK(out.dead_letters[0].event_id == "f1");
}

TEST_CASE_METHOD(fixture, "a delete of a held flow cancels it") {
  apply(make_flow_event("f1", "a", "late"));
  apply(make_delete_event("d1", event_type::resource_flow_deleted, "a"));
  apply(make_site_event("e1", "late"));
  CHECK_FALSE(reg.find_flow("a"));
  CHECK(out.stats.superseded == 1);
}

TEST_CASE_METHOD(fixture, "a flow can move between sites") {
  apply(make_site_event("e1", "s"));
  apply(make_site_event("e2", "t"));
  apply(make_flow_event("f1", "a", "s"));
  apply(make_flow_event("f2", "a", "t"));
  CHECK(reg.find_flow("a")->site_id == "t");
  apply(make_delete_event("d1", event_type::site_deleted, "s"));
  CHECK(reg.find_flow("a")); // no longer s's flow
  apply(make_delete_event("d2", event_type::site_deleted, "t"));
  CHECK_FALSE(reg.find_flow("a"));
}

TEST_CASE_METHOD(fixture, "a hand-over takes a site with everything linked to it through flows") {
  // s1 and s2 are linked by f2 (at s2, held for the unknown site x), s3 by
  // nothing: handing over s1 takes s1, its flow, s2 (f2 waits there too),
  // f2's held upsert and x; s3 stays.
  apply(make_site_event("e1", "s1"));
  apply(make_site_event("e2", "s2"));
  apply(make_site_event("e3", "s3"));
  apply(make_flow_event("e4", "f1", "s1"));
  apply(make_flow_event("e5", "f2", "s1"));
  apply(make_flow_event("e6", "f2", "x")); // held: x unknown
  apply(make_flow_event("e7", "f3", "s3"));
  apply(make_flow_event("e8", "f4", "x")); // held, linked through x
  REQUIRE(reg.held_count() == 2);
  auto changes_before = out.changes.size();
  auto part = reg.hand_over("s1");
  CHECK(out.changes.size() == changes_before); // nothing published
  CHECK(part.site_ids == std::vector<std::string>{"s1", "x"});
  CHECK(part.flow_ids == std::vector<std::string>{"f1", "f2", "f4"});
  CHECK(part.sites.size() == 1);
  CHECK(part.flows.size() == 2);
  REQUIRE(part.held.size() == 2);
  CHECK(part.held[0].id == "e6");
  CHECK(part.held_since.size() == 2);
  CHECK(reg.find_site("s1") == nullptr);
  CHECK(reg.find_flow("f1") == nullptr);
  CHECK(reg.held_count() == 0);
  CHECK(reg.find_site("s2") != nullptr); // s2 itself is not linked
  CHECK(reg.find_flow("f3") != nullptr);
  // Another registry takes it over and goes on as the first would have.
  registry other;
  other.take_over(std::move(part));
  CHECK(other.find_flow("f2")->site_id == "s1");
  CHECK(other.held_count() == 2);
  registry_output later;
  auto site_x = make_site_event("e9", "x");
  other.apply(site_x, registry::clock::now(), later);
  CHECK(later.stats.held_applied == 2);
  CHECK(other.find_flow("f2")->site_id == "x");
  CHECK(other.find_flow("f4")->site_id == "x");
}

TEST_CASE_METHOD(fixture, "a hand-over of a site nobody knows covers only its id") {
  apply(make_site_event("e1", "s1"));
  auto part = reg.hand_over("ghost");
  CHECK(part.site_ids == std::vector<std::string>{"ghost"});
  CHECK(part.flow_ids.empty());
  CHECK(part.sites.empty());
  CHECK(reg.find_site("s1") != nullptr);
}

TEST_CASE_METHOD(fixture, "snapshots are sorted by id") {
  apply(make_site_event("e1", "b"));
  apply(make_site_event("e2", "a"));
  apply(make_flow_event("f1", "z", "a"));
  apply(make_flow_event("f2", "y", "b"));
  auto snap = reg.snapshot();
  REQUIRE(snap.sites.size() == 2);
  CHECK(snap.sites[0].site_id == "a");
  REQUIRE(snap.flows.size() == 2);
  CHECK(snap.flows[0].flow_id == "y");
}
