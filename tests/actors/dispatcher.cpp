// The dispatcher with real registry workers: per-key ordering under
// concurrency, flow deletes and moves across workers, drain.

#include "actors/dispatcher.hpp"

#include "actors/registry_worker.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <random>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

struct fixture {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  change_collector_actor changes = sys.spawn(change_collector);
  dead_letter_collector_actor dead = sys.spawn(dead_letter_collector);

  dispatcher_actor start(uint32_t workers, uint64_t max_in_flight = 4096) {
    group_settings g;
    g.name = "registry";
    g.workers = workers;
    g.policy = routing_policy::key_hash;
    g.max_in_flight = max_in_flight;
    g.handles = {event_type::site_created,          event_type::site_updated,
                 event_type::site_deleted,          event_type::resource_flow_created,
                 event_type::resource_flow_updated, event_type::resource_flow_deleted};
    g.factory = registry_worker_factory(
      {caf::actor_cast<change_sink_actor>(changes)},
      caf::actor_cast<dead_letter_sink_actor>(dead), {});
    return sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  }

  ~fixture() {
    self->send_exit(changes, caf::exit_reason::user_shutdown);
    self->send_exit(dead, caf::exit_reason::user_shutdown);
  }
};

/// Two site ids that key-hash routing puts on different workers of 2.
std::pair<std::string, std::string> sites_on_two_workers() {
  std::hash<std::string_view> h;
  std::string a = "site-0";
  for (int i = 1; i < 100; ++i) {
    auto b = "site-" + std::to_string(i);
    if (h(a) % 2 != h(b) % 2)
      return {a, b};
  }
  FAIL("no two site ids on different workers");
  return {};
}

} // namespace

TEST_CASE_METHOD(fixture, "events of one site are applied in input order") {
  // 200 sites, each with a site and a flow updated 30 times (versions
  // 1..30), interleaved at random across sites but in order per site. Any
  // reordering within a site would show up as a stale version, a held flow
  // or an out-of-order change.
  constexpr int sites = 200;
  constexpr int versions = 30;
  std::vector<std::vector<event>> per_site(sites);
  for (int s = 0; s < sites; ++s) {
    auto sid = "s" + std::to_string(s);
    for (int v = 1; v <= versions; ++v) {
      per_site[s].push_back(make_site_event(sid + "-v" + std::to_string(v),
                                            sid, v));
      per_site[s].push_back(make_flow_event(sid + "-f" + std::to_string(v),
                                            sid + "-flow", sid, v));
    }
  }
  std::mt19937 rng{42};
  std::vector<size_t> next(sites, 0);
  std::vector<event> input;
  while (input.size() < size_t{sites} * versions * 2) {
    auto s = std::uniform_int_distribution<int>{0, sites - 1}(rng);
    if (next[s] < per_site[s].size())
      input.push_back(per_site[s][next[s]++]);
  }
  auto d = start(4, 512);
  ingest_all(self, d, std::move(input), 100);
  drain(self, d);
  auto status = ask<dispatch_status>(self, d, status_atom::value);
  CHECK(status.totals.applied == size_t{sites} * versions * 2);
  CHECK(status.totals.stale == 0);
  CHECK(status.totals.held == 0);
  CHECK(status.totals.duplicates == 0);
  auto seen = ask<std::vector<change>>(self, changes, caf::get_atom::value);
  std::map<std::string, std::vector<int64_t>> site_versions, flow_versions;
  for (auto& c : seen) {
    if (c.kind == change::site_upserted)
      site_versions[c.site_data.site_id].push_back(*c.site_data.version);
    else if (c.kind == change::flow_upserted)
      flow_versions[c.flow_data.flow_id].push_back(*c.flow_data.version);
  }
  REQUIRE(site_versions.size() == sites);
  REQUIRE(flow_versions.size() == sites);
  std::vector<int64_t> expected(versions);
  std::iota(expected.begin(), expected.end(), 1);
  for (auto& [id, vs] : site_versions)
    CHECK(vs == expected);
  for (auto& [id, vs] : flow_versions)
    CHECK(vs == expected);
  self->send_exit(d, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(fixture, "flow deletes reach the worker that holds the flow") {
  auto d = start(4);
  std::vector<event> input;
  for (int i = 0; i < 50; ++i) {
    auto sid = "s" + std::to_string(i);
    input.push_back(make_site_event("e" + sid, sid));
    input.push_back(make_flow_event("f" + sid, "flow-" + sid, sid));
  }
  for (int i = 0; i < 50; i += 2)
    input.push_back(make_delete_event("d" + std::to_string(i),
                                      event_type::resource_flow_deleted,
                                      "flow-s" + std::to_string(i)));
  ingest_all(self, d, std::move(input), 16);
  drain(self, d);
  auto snap = ask<registry_snapshot>(self, d, snapshot_atom::value);
  CHECK(snap.sites.size() == 50);
  REQUIRE(snap.flows.size() == 25);
  for (auto& f : snap.flows) {
    auto n = std::stoi(f.site_id.substr(1));
    CHECK(n % 2 == 1);
  }
  self->send_exit(d, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(fixture, "a flow that moves to a site on another worker lives only there") {
  auto [a, b] = sites_on_two_workers();
  auto d = start(2);
  ingest_all(self, d,
             {make_site_event("e1", a), make_site_event("e2", b),
              make_flow_event("f1", "mover", a),
              make_flow_event("f2", "mover", b)});
  drain(self, d);
  auto snap = ask<registry_snapshot>(self, d, snapshot_atom::value);
  REQUIRE(snap.flows.size() == 1);
  CHECK(snap.flows[0].site_id == b);
  // And its delete finds it on the new worker.
  ingest_all(self, d,
             {make_delete_event("d1", event_type::resource_flow_deleted,
                                "mover")});
  drain(self, d);
  snap = ask<registry_snapshot>(self, d, snapshot_atom::value);
  CHECK(snap.flows.empty());
  self->send_exit(d, caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(fixture, "release dead-letters flows whose site never came") {
  auto d = start(2);
  ingest_all(self, d,
             {make_site_event("e1", "here"),
              make_flow_event("f1", "ok", "here"),
              make_flow_event("f2", "lost", "nowhere")});
  drain(self, d);
  auto totals = ask<registry_stats>(self, d, release_atom::value);
  CHECK(totals.applied == 2);
  CHECK(totals.held == 1);
  CHECK(totals.flows == 1);
  REQUIRE(totals.dead_letters.size() == reject_reason_count);
  CHECK(totals.dead_letters[static_cast<size_t>(reject_reason::orphan_flow)]
        == 1);
  auto letters = ask<std::vector<dead_letter>>(self, dead,
                                               caf::get_atom::value);
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].event_id == "f2");
  self->send_exit(d, caf::exit_reason::user_shutdown);
}
