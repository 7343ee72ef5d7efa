// The commit barrier: a batch goes to the match router and to the worker's
// PostGIS sync at once (both committing subscribers of the coordinator),
// and the pool hears that it is done only when both answered, batch after
// batch in each worker's order. Watchers see batches and hold nothing back.

#include "actors/commit_coordinator.hpp"
#include "actors/match_partition.hpp"
#include "actors/match_router.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <vector>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

/// A match sink that holds every store request until told to flush: the
/// test decides when the matches are "stored".
struct held_sink_state {
  static inline const char* name = "held-match-sink";
  std::vector<caf::typed_response_promise<caf::ok_atom>> held;
  uint64_t changes = 0;
};

match_sink_actor::behavior_type
held_sink(match_sink_actor::stateful_pointer<held_sink_state> self) {
  return {
    [self](std::vector<match_change>& cs) -> caf::result<caf::ok_atom> {
      self->state.changes += cs.size();
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->state.held.push_back(rp);
      return rp;
    },
    [self](caf::flush_atom) -> uint64_t {
      for (auto& rp : self->state.held)
        rp.deliver(caf::ok_atom::value);
      self->state.held.clear();
      return self->state.changes;
    },
    [self](status_atom) {
      actor_status s;
      s.actor = self->name();
      s.queue_depth = self->state.held.size();
      return s;
    },
  };
}

/// A committing subscriber standing in for a PostGIS sync: tells the
/// observer the first event id of each batch it gets and answers (commits)
/// only when told with `tick`; `refuse` makes the next commit refuse the
/// batch's first change.
using held_sync_actor = commit_sink_actor::extend<
  caf::reacts_to<tick_atom>, caf::reacts_to<repair_atom>>;

struct held_sync_state {
  static inline const char* name = "held-sync";
  std::vector<caf::typed_response_promise<commit_result>> held;
  std::vector<change> firsts;
  bool refuse = false;
};

held_sync_actor::behavior_type
held_sync(held_sync_actor::stateful_pointer<held_sync_state> self,
          caf::actor observer) {
  return {
    [=](change_batch& b) -> caf::result<commit_result> {
      caf::anon_send(observer, b.event_ids.empty() ? std::string{}
                                               : b.event_ids.front());
      self->state.firsts.push_back(b.changes.empty() ? change{}
                                                     : b.changes.front());
      auto rp = self->make_response_promise<commit_result>();
      self->state.held.push_back(rp);
      return rp;
    },
    [=](tick_atom) {
      auto& st = self->state;
      for (size_t i = 0; i < st.held.size(); ++i) {
        commit_result r;
        if (st.refuse && i == 0) {
          r.refusals.count_dead_letter(reject_reason::permanent_db_error);
          r.refusals.rejected_ids.push_back(st.firsts[i].event_id);
          r.refused.push_back(st.firsts[i]);
        }
        st.held[i].deliver(std::move(r));
      }
      st.held.clear();
      st.firsts.clear();
      st.refuse = false;
    },
    [=](repair_atom) { self->state.refuse = true; },
  };
}

/// A batch of `worker` with pool sequence `seq`; its event ids are
/// "<worker>:<seq>".
std::pair<commit_ticket, change_batch>
batch_of(worker_pool_actor pool, uint32_t worker, uint64_t seq,
         std::vector<change> changes) {
  change_batch b;
  b.changes = std::move(changes);
  auto id = std::to_string(worker) + ":" + std::to_string(seq);
  for (auto& c : b.changes)
    c.event_id = id;
  b.event_ids.assign(b.changes.size(), id);
  commit_ticket t;
  t.pool = std::move(pool);
  t.worker = worker;
  t.seq = seq;
  t.count = b.changes.size();
  t.complete = true;
  return {std::move(t), std::move(b)};
}

change site_change(std::string id, double lat, double lon) {
  change c;
  c.kind = change::site_upserted;
  c.site_data.site_id = std::move(id);
  c.site_data.lat = lat;
  c.site_data.lon = lon;
  return c;
}

change heat_flow(std::string id, std::string site, flow_direction dir,
                 double temp) {
  change c;
  c.kind = change::flow_upserted;
  c.flow_data.flow_id = std::move(id);
  c.flow_data.site_id = std::move(site);
  c.flow_data.direction = dir;
  c.flow_data.resource = resource_class::heat;
  c.flow_data.quantity = c.flow_data.annual_quantity = 1000;
  c.flow_data.unit = "MWh/yr";
  c.flow_data.temperature_c = temp;
  return c;
}

/// A coordinator with two committing subscribers: a router with the four
/// real partitions, all storing into one held sink, and one held sync per
/// worker (2 workers). The test actor plays the pool.
struct barrier_setup {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  worker_pool_actor pool = caf::actor_cast<worker_pool_actor>(self);
  match_sink_actor sink = sys.spawn(held_sink);
  std::vector<match_partition_actor> partitions;
  std::vector<held_sync_actor> syncs;
  match_router_actor router;
  commit_coordinator_actor coordinator = sys.spawn(commit_coordinator,
                                                   wait_limits{});

  barrier_setup() {
    match_tiling tiling{match_settings{}, 1};
    for (uint32_t p = 0; p < tiling.partitions(); ++p)
      partitions.push_back(sys.spawn(match_partition, tiling.class_of(p),
                                     partition_label(tiling, p),
                                     match_settings{},
                                     std::vector<match_sink_actor>{sink},
                                     wait_limits{}));
    router = sys.spawn(match_router, partitions, tiling, wait_limits{}, 0u);
    self->send(coordinator, subscribe_atom::value, commit_sink_actor{router},
               all_workers);
    for (uint32_t w = 0; w < 2; ++w) {
      syncs.push_back(sys.spawn(held_sync, caf::actor{self}));
      self->send(coordinator, subscribe_atom::value,
                 commit_sink_actor{syncs.back()}, w);
    }
  }

  void commit(uint32_t worker, uint64_t seq, std::vector<change> changes) {
    auto [t, b] = batch_of(pool, worker, seq, std::move(changes));
    self->send(coordinator, commit_atom::value, std::move(t), std::move(b));
  }

  /// The first event id of the next batch a sync got.
  std::string at_sync() {
    std::string id;
    self->receive([&](std::string& x) { id = std::move(x); },
                  caf::after(std::chrono::seconds{10}) >> [] {
                    FAIL("a batch did not reach its sync");
                  });
    return id;
  }

  /// The next report to the pool, as "<worker>:<seq>".
  std::string reported() {
    std::string out;
    self->receive(
      [&](done_atom, uint32_t worker, uint64_t seq, uint64_t,
          registry_stats&, bool complete) {
        CHECK(complete);
        out = std::to_string(worker) + ":" + std::to_string(seq);
      },
      caf::after(std::chrono::seconds{10}) >> [] {
        FAIL("the pool was not told a batch is done");
      });
    return out;
  }

  /// Whether the pool (the test) hears of a finished batch within 300 ms:
  /// it must not while a write is still outstanding. (Showing that nothing
  /// comes needs a bound.)
  bool pool_told_early() {
    bool told = false;
    self->receive(
      [&](done_atom, uint32_t, uint64_t, uint64_t, registry_stats&, bool) {
        told = true;
      },
      caf::after(std::chrono::milliseconds{300}) >> [] {});
    return told;
  }

  ~barrier_setup() {
    for (auto& p : partitions)
      caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
    for (auto& s : syncs)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(coordinator, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  }
};

} // namespace

TEST_CASE("a batch is reported only after its matches are stored and the "
          "sync committed it, in order") {
  barrier_setup r;
  // Batch 1 makes a match (a sink write the test holds back); batch 2 has
  // no flow, so its partitions answer at once.
  r.commit(0, 1,
           {site_change("A", 48.0, 14.0), site_change("B", 48.01, 14.0),
            heat_flow("S", "A", flow_direction::supply, 120),
            heat_flow("D", "B", flow_direction::demand, 70)});
  r.commit(0, 2, {site_change("C", 47.0, 15.0)});
  // Both reach the sync at once, before any match is stored.
  CHECK(r.at_sync() == "0:1");
  CHECK(r.at_sync() == "0:2");
  // The sync commits both; the matches of batch 1 are still held back, so
  // the pool hears nothing: not batch 1, and not batch 2 either (order).
  r.self->send(r.syncs[0], tick_atom::value);
  CHECK_FALSE(r.pool_told_early());
  // The matches are stored: now both are done, batch 1 first.
  r.self->request(r.sink, std::chrono::seconds{10}, caf::flush_atom::value)
    .receive([](uint64_t n) { CHECK(n == 1); },
             [](caf::error&) { FAIL("the sink did not answer"); });
  CHECK(r.reported() == "0:1");
  CHECK(r.reported() == "0:2");
}

TEST_CASE("a batch waits for the sync even when its matches are stored "
          "first") {
  barrier_setup r;
  r.commit(0, 7, {site_change("A", 48.0, 14.0)});
  CHECK(r.at_sync() == "0:7");
  // Site changes store nothing; the partitions are done at once.
  CHECK_FALSE(r.pool_told_early());
  r.self->send(r.syncs[0], tick_atom::value);
  CHECK(r.reported() == "0:7");
}

TEST_CASE("one worker's batches do not wait for another worker's commit") {
  barrier_setup r;
  r.commit(0, 1, {site_change("A", 48.0, 14.0)});
  r.commit(1, 1, {site_change("B", 47.0, 15.0)});
  // Each goes to its own worker's sync only.
  std::vector<std::string> got{r.at_sync(), r.at_sync()};
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"0:1", "1:1"});
  // Worker 1's sync commits: worker 1's batch is reported although worker
  // 0's earlier batch still waits.
  r.self->send(r.syncs[1], tick_atom::value);
  CHECK(r.reported() == "1:1");
  CHECK_FALSE(r.pool_told_early());
  r.self->send(r.syncs[0], tick_atom::value);
  CHECK(r.reported() == "0:1");
}

TEST_CASE("a refused change goes to the pool as a repair before the report, "
          "and the report counts it") {
  barrier_setup r;
  r.self->send(r.syncs[0], repair_atom::value); // refuse the next commit
  r.commit(0, 3, {site_change("A", 48.0, 14.0)});
  CHECK(r.at_sync() == "0:3");
  r.self->send(r.syncs[0], tick_atom::value);
  bool repaired = false;
  r.self->receive(
    [&](repair_atom, uint32_t worker, std::vector<change>& refused,
        registry_snapshot&) {
      repaired = true;
      CHECK(worker == 0);
      REQUIRE(refused.size() == 1);
      CHECK(refused[0].site_data.site_id == "A");
    },
    caf::after(std::chrono::seconds{10}) >> [] {
      FAIL("the pool got no repair for the refused change");
    });
  CHECK(repaired);
  r.self->receive(
    [&](done_atom, uint32_t, uint64_t seq, uint64_t, registry_stats& stats,
        bool) {
      CHECK(seq == 3);
      CHECK(stats.dead_lettered() == 1);
      CHECK(stats.rejected_ids == std::vector<std::string>{"0:3"});
    },
    caf::after(std::chrono::seconds{10}) >> [] {
      FAIL("the pool was not told after the refusal");
    });
}

TEST_CASE("a watcher sees every batch and holds none back") {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto watcher = sys.spawn(change_collector);
  auto coordinator = watching_coordinator(
    sys, caf::actor_cast<change_sink_actor>(watcher));
  auto pool = caf::actor_cast<worker_pool_actor>(self);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    auto [t, b] = batch_of(pool, 0, seq,
                           {site_change("S" + std::to_string(seq), 48, 14)});
    self->send(coordinator, commit_atom::value, std::move(t), std::move(b));
  }
  for (uint64_t seq = 1; seq <= 3; ++seq)
    self->receive(
      [&](done_atom, uint32_t, uint64_t got, uint64_t, registry_stats&,
          bool) { CHECK(got == seq); },
      caf::after(std::chrono::seconds{10}) >> [] {
        FAIL("a batch with only a watcher was not reported");
      });
  auto seen = ask<std::vector<change>>(self, watcher, caf::get_atom::value);
  CHECK(seen.size() == 3);
  auto status = ask<actor_status>(self, coordinator, status_atom::value);
  CHECK(status.value("batches") == 3);
  CHECK(status.value("reported") == 3);
  CHECK(status.queue_depth == 0);
  self->send_exit(coordinator, caf::exit_reason::user_shutdown);
  self->send_exit(watcher, caf::exit_reason::user_shutdown);
}
