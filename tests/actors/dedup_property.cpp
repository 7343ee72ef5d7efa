// Property: the outcome of any input is the same whatever the number of
// workers and wherever a restart falls (events.md v1.1: deduplication by
// event id alone).
//
// Random logs with reused ids (another site, another type), re-sent
// deletes of flows before and after they exist, flow deletes with and
// without their site, creates around them, flows that wait for their
// site, and flows that move to another site (stale or not, held or not),
// which at 2+ workers makes the dispatcher hand sites over between
// workers. Each log runs through the real dispatcher and registry workers at
// 1..4 workers, once clean and once split by a restart: the first node
// takes a prefix of the log and stops; a second node is restored the way a
// restarted node is (the entities, and the ids its committer recorded as
// processed) and is fed the whole log again, as an operator re-feeds a
// file after kill -9. Every run must end with the same sites, flows and
// orphaned events.
//
// FLOWMATCH_PROPERTY_SEEDS=N runs N logs (default 25, a few seconds).

#include "actors/dispatcher.hpp"
#include "actors/ingest_source.hpp"
#include "actors/registry_worker.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

/// Records what a committer would store as processed: the event ids of
/// every change batch.
using processed_recorder_actor = change_sink_actor::extend<
  caf::replies_to<caf::get_atom>::with<std::vector<std::string>>>;

struct processed_recorder_state {
  static inline const char* name = "processed-recorder";
  std::vector<std::string> ids;
};

processed_recorder_actor::behavior_type processed_recorder(
  processed_recorder_actor::stateful_pointer<processed_recorder_state> self) {
  return {
    [self](change_batch& b) {
      for (auto& id : b.event_ids)
        self->state.ids.push_back(std::move(id));
    },
    [self](caf::get_atom) { return self->state.ids; },
  };
}

/// A random log over a few sites and flows, so ids, sites and flows
/// collide often.
std::vector<event> random_log(uint32_t seed) {
  std::mt19937 rng{seed};
  auto pick = [&](int n) { return std::uniform_int_distribution<int>{0, n - 1}(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<>{}(rng) < p; };
  std::vector<event> log;
  int next_id = 0;
  auto fresh_id = [&] { return "e" + std::to_string(next_id++); };
  auto length = 40 + pick(80);
  while (static_cast<int>(log.size()) < length) {
    auto site = "s" + std::to_string(pick(6));
    // A flow usually stays at its home site, and sometimes moves to
    // another one (often a site on another worker, held there or not).
    auto flow_number = pick(8);
    auto flow = "f" + std::to_string(flow_number);
    auto flow_site = chance(0.3) ? site
                                 : "s" + std::to_string(flow_number % 6);
    int64_t version = pick(5);
    event ev;
    switch (pick(10)) {
      case 0:
      case 1:
      case 2:
        ev = make_site_event(fresh_id(), site, version, pick(80) - 40,
                             pick(300) - 150);
        break;
      case 3:
        ev = make_delete_event(fresh_id(), event_type::site_deleted, site);
        break;
      case 4:
      case 5:
      case 6:
        ev = make_flow_event(fresh_id(), flow, flow_site, version);
        ev.flow_data.quantity = 1 + pick(100);
        break;
      case 7:
      case 8: {
        ev = make_delete_event(fresh_id(), event_type::resource_flow_deleted,
                               flow);
        if (chance(0.5))
          ev.flow_data.site_id = flow_site; // v1.1: the delete names it
        break;
      }
      default:
        if (log.empty())
          continue;
        // A resend: an earlier event again, unchanged (a re-sent delete, a
        // retried create).
        log.push_back(log[static_cast<size_t>(pick(static_cast<int>(log.size())))]);
        continue;
    }
    // A reused id: another event (other site, other type) under an id seen
    // before. It must be skipped wherever it is routed.
    if (!log.empty() && chance(0.15))
      ev.id = log[static_cast<size_t>(pick(static_cast<int>(log.size())))].id;
    log.push_back(std::move(ev));
  }
  return log;
}

/// The event as an NDJSON line (the fields the test's events carry).
std::string line_of(const event& ev) {
  auto q = [](const std::string& x) { return "\"" + x + "\""; };
  std::ostringstream o;
  o << "{\"id\":" << q(ev.id) << ",\"type\":";
  switch (ev.type) {
    case event_type::site_created:
    case event_type::site_updated:
      o << q("site_updated") << ",\"data\":{\"site_id\":"
        << q(ev.site_data.site_id) << ",\"lat\":" << ev.site_data.lat
        << ",\"lon\":" << ev.site_data.lon;
      if (ev.site_data.version)
        o << ",\"version\":" << *ev.site_data.version;
      break;
    case event_type::site_deleted:
      o << q("site_deleted") << ",\"data\":{\"site_id\":" << q(ev.target_id);
      break;
    case event_type::resource_flow_created:
    case event_type::resource_flow_updated:
      o << q("resource_flow_updated") << ",\"data\":{\"flow_id\":"
        << q(ev.flow_data.flow_id) << ",\"site_id\":"
        << q(ev.flow_data.site_id)
        << ",\"direction\":\"supply\",\"resource\":\"water\",\"quantity\":"
        << ev.flow_data.quantity << ",\"unit\":\"m3/h\"";
      if (ev.flow_data.version)
        o << ",\"version\":" << *ev.flow_data.version;
      break;
    case event_type::resource_flow_deleted:
      o << q("resource_flow_deleted") << ",\"data\":{\"flow_id\":"
        << q(ev.target_id);
      if (!ev.flow_data.site_id.empty())
        o << ",\"site_id\":" << q(ev.flow_data.site_id);
      break;
  }
  o << "}}";
  return o.str();
}

/// Writes the first `n` events of `log` as an NDJSON file.
std::string write_log(const std::vector<event>& log, size_t n,
                      const std::string& name) {
  auto path = "/tmp/flowmatch-dedup-" + std::to_string(::getpid()) + "-"
              + name + ".ndjson";
  std::ofstream out{path};
  for (size_t i = 0; i < n; ++i)
    out << line_of(log[i]) << "\n";
  return path;
}

struct outcome {
  registry_snapshot state;
  std::set<std::string> orphaned;
};

std::string describe(const outcome& o) {
  std::ostringstream out;
  for (auto& s : o.state.sites)
    out << "site " << s.site_id << " v" << (s.version ? *s.version : -1)
        << " at " << s.lat << "," << s.lon << "\n";
  for (auto& f : o.state.flows)
    out << "flow " << f.flow_id << " at " << f.site_id << " v"
        << (f.version ? *f.version : -1) << " q" << f.quantity << "\n";
  for (auto& id : o.orphaned)
    out << "orphaned " << id << "\n";
  return out.str();
}

bool same(const outcome& a, const outcome& b) {
  return describe(a) == describe(b);
}

struct node_under_test {
  caf::actor_system& sys;
  processed_recorder_actor processed = sys.spawn(processed_recorder);
  dead_letter_collector_actor dead = sys.spawn(dead_letter_collector);
  commit_coordinator_actor coordinator = watching_coordinator(
    sys, caf::actor_cast<change_sink_actor>(processed));
  dispatcher_actor d;
  uint64_t handovers = 0;

  node_under_test(caf::actor_system& system, uint32_t workers)
    : sys(system) {
    group_settings g;
    g.name = "registry";
    g.workers = workers;
    g.policy = routing_policy::key_hash;
    g.max_in_flight = 64;
    g.handles = contract_event_types();
    registry_worker_settings ws;
    ws.hold_timeout = std::chrono::hours{1}; // only the end releases
    g.factory = registry_worker_factory(
      coordinator, caf::actor_cast<dead_letter_sink_actor>(dead), ws);
    d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  }

  ~node_under_test() {
    caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(coordinator, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(processed, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(dead, caf::exit_reason::user_shutdown);
  }

  /// Reads `path` through a real source (batches of `batch`), the ids in
  /// `applied` already in its window; returns what it counted.
  source_stats feed(caf::scoped_actor& self, const std::string& path,
                    size_t batch, processed_ids applied = {}) {
    ingest_settings s;
    s.reader.path = path;
    s.batch_size = batch;
    sys.spawn<caf::detached>(ingest_source, s, d,
                             caf::actor_cast<source_listener_actor>(self),
                             caf::actor_cast<dead_letter_sink_actor>(dead),
                             commit_coordinator_actor{},
                             std::move(applied));
    source_stats stats;
    self->receive([&](eof_atom, source_stats& st) { stats = std::move(st); },
                  caf::after(test_timeout) >> [&] { FAIL("no eof"); });
    drain(self, d);
    return stats;
  }

  outcome finish(caf::scoped_actor& self) {
    handovers = ask<dispatch_status>(self, d, flight_atom::value).handovers;
    ask<registry_stats>(self, d, release_atom::value);
    outcome o;
    o.state = ask<registry_snapshot>(self, d, snapshot_atom::value);
    for (auto& dl : ask<std::vector<dead_letter>>(self, dead,
                                                  caf::get_atom::value))
      o.orphaned.insert(dl.event_id);
    return o;
  }
};

} // namespace

TEST_CASE("the outcome does not depend on workers or on where a restart "
          "falls") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  uint32_t seeds = 25;
  if (auto* n = std::getenv("FLOWMATCH_PROPERTY_SEEDS"))
    seeds = static_cast<uint32_t>(std::strtoul(n, nullptr, 10));
  size_t runs = 0;
  uint64_t handovers = 0;
  for (uint32_t seed = 1; seed <= seeds; ++seed) {
    auto log = random_log(seed);
    auto whole = write_log(log, log.size(), "whole");
    std::mt19937 rng{seed * 7919};
    // The reference: one worker, no restart, the whole log in one batch.
    outcome reference;
    {
      node_under_test n{sys, 1};
      n.feed(self, whole, log.size());
      reference = n.finish(self);
    }
    for (uint32_t workers = 1; workers <= 4; ++workers) {
      auto batch = std::uniform_int_distribution<size_t>{1, 16}(rng);
      // Clean run.
      {
        node_under_test n{sys, workers};
        n.feed(self, whole, batch);
        auto got = n.finish(self);
        INFO("seed " << seed << ", " << workers << " workers, batches of "
                     << batch << ", no restart\nexpected:\n"
                     << describe(reference) << "got:\n"
                     << describe(got));
        CHECK(same(got, reference));
        ++runs;
        handovers += n.handovers;
      }
      // Split by a restart at a random point.
      auto split = std::uniform_int_distribution<size_t>{0, log.size()}(rng);
      auto prefix = write_log(log, split, "prefix");
      registry_snapshot stored;
      processed_ids processed;
      {
        node_under_test first{sys, workers};
        first.feed(self, prefix, batch);
        stored = ask<registry_snapshot>(self, first.d, snapshot_atom::value);
        processed.ids = ask<std::vector<std::string>>(self, first.processed,
                                                      caf::get_atom::value);
        // Stopped here: what it still held is lost with its memory.
      }
      std::remove(prefix.c_str());
      node_under_test second{sys, workers};
      ask<caf::ok_atom>(self, second.d, restore_atom::value, stored);
      second.feed(self, whole, batch, std::move(processed));
      auto got = second.finish(self);
      INFO("seed " << seed << ", " << workers << " workers, batches of "
                   << batch << ", restart after " << split << " of "
                   << log.size() << " events\nexpected:\n"
                   << describe(reference) << "got:\n"
                   << describe(got));
      CHECK(same(got, reference));
      ++runs;
    }
    std::remove(whole.c_str());
  }
  CHECK(runs == size_t{seeds} * 8);
  // The logs moved flows between sites on different workers, so the
  // hand-overs were exercised, not skipped.
  INFO(handovers << " hand-overs in the clean runs");
  CHECK(handovers > 0);
}

TEST_CASE("a reused id is a duplicate whatever its routing key") {
  // The adversarial repro: 20 sites under ids X0..X19, then 20 other
  // sites under the same ids. At any number of workers: 20 applied, 20
  // duplicates.
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::vector<event> log;
  for (auto prefix : {"a", "b"})
    for (int i = 0; i < 20; ++i)
      log.push_back(make_site_event("X" + std::to_string(i),
                                    prefix + std::to_string(i)));
  auto path = write_log(log, log.size(), "reused");
  for (uint32_t workers : {1u, 2u, 4u}) {
    node_under_test n{sys, workers};
    auto in = n.feed(self, path, 7);
    auto status = ask<dispatch_status>(self, n.d, flight_atom::value);
    INFO(workers << " workers");
    CHECK(status.totals.applied == 20);
    CHECK(in.duplicates == 20);
    auto snap = ask<registry_snapshot>(self, n.d, snapshot_atom::value);
    REQUIRE(snap.sites.size() == 20);
    CHECK(snap.sites.front().site_id.front() == 'a');
  }
  std::remove(path.c_str());
}

TEST_CASE("a re-sent flow delete whose first copy came before the flow is a "
          "duplicate") {
  // The first delete is a no-op (the flow does not exist yet) and routed by
  // the flow id; after the create, the same delete would route by site.
  // By id alone it is a duplicate: the flow stays.
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto del = make_delete_event("d1", event_type::resource_flow_deleted,
                               "flow");
  std::vector<event> log{del, make_site_event("e1", "site"),
                         make_flow_event("e2", "flow", "site"), del};
  auto path = write_log(log, log.size(), "resent");
  for (uint32_t workers : {1u, 2u, 3u, 4u}) {
    node_under_test n{sys, workers};
    n.feed(self, path, 1);
    auto snap = ask<registry_snapshot>(self, n.d, snapshot_atom::value);
    INFO(workers << " workers");
    CHECK(snap.flows.size() == 1);
  }
  std::remove(path.c_str());
}

TEST_CASE("the dispatcher tells its sources to forget an orphaned flow's "
          "id") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  node_under_test n{sys, 2};
  // Held for a site that never comes, then released (as at a hold timeout).
  ingest_all(self, n.d, {make_flow_event("f1", "flow", "nowhere")});
  drain(self, n.d);
  ask<registry_stats>(self, n.d, release_atom::value);
  // This test sent the batch, so it is the source told to forget.
  std::vector<std::string> forgotten;
  self->receive(
    [&](forget_atom, std::vector<std::string>& ids) { forgotten = ids; },
    caf::after(test_timeout) >> [&] { FAIL("no forget"); });
  CHECK(forgotten == std::vector<std::string>{"f1"});
}
