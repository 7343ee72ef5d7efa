// The match router's commit rule: a batch goes to the partitions and to the
// worker's PostGIS sync at once, and the pool hears that it is done only
// when both its matches are stored and the sync has committed it, batch
// after batch in arrival order.

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
  };
}

/// A sync that records each batch it gets and commits (reports to the
/// ticket's address) only when told with `tick`.
caf::behavior held_sync(caf::event_based_actor* self,
                        caf::actor observer) {
  auto tickets = std::make_shared<std::vector<commit_ticket>>();
  return {
    [=](change_batch& b) {
      if (b.ticket)
        tickets->push_back(*b.ticket);
      self->send(observer, b.ticket ? b.ticket->seq : uint64_t{0});
    },
    [=](tick_atom) {
      for (auto& t : *tickets)
        self->send(caf::actor_cast<worker_pool_actor>(t.pool),
                   done_atom::value, t.worker, t.seq, t.count, t.stats,
                   t.complete);
      tickets->clear();
    },
  };
}

change_batch batch_with_ticket(caf::actor pool, uint64_t seq,
                               std::vector<change> changes) {
  change_batch b;
  b.changes = std::move(changes);
  commit_ticket t;
  t.pool = std::move(pool);
  t.worker = 0;
  t.seq = seq;
  t.count = b.changes.size();
  t.complete = true;
  b.ticket = t;
  return b;
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

/// A router with the four real partitions, all storing into one held
/// sink, and one held sync; the test actor plays the pool.
struct router_setup {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  match_sink_actor sink = sys.spawn(held_sink);
  std::vector<match_partition_actor> partitions;
  caf::actor sync = sys.spawn(held_sync, caf::actor{self});
  match_router_actor router;

  router_setup() {
    for (auto cls : {resource_class::heat, resource_class::water,
                     resource_class::material, resource_class::co2})
      partitions.push_back(sys.spawn(match_partition, cls, match_settings{},
                                     std::vector<match_sink_actor>{sink},
                                     wait_limits{}));
    router = sys.spawn(match_router, partitions,
                       std::vector<change_sink_actor>{
                         caf::actor_cast<change_sink_actor>(sync)},
                       wait_limits{});
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

  ~router_setup() {
    for (auto& p : partitions)
      caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sync, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  }
};

} // namespace

TEST_CASE("the router reports a batch only after its matches are stored "
          "and the sync committed it, in order") {
  router_setup r;
  auto& self = r.self;
  auto& sink = r.sink;
  auto& sync = r.sync;
  auto& router = r.router;
  auto pool = caf::actor{self};
  // Batch 1 makes a match (a sink write the test holds back); batch 2 has
  // no flow, so its partitions answer at once.
  self->send(router, batch_with_ticket(
                       pool, 1,
                       {site_change("A", 48.0, 14.0),
                        site_change("B", 48.01, 14.0),
                        heat_flow("S", "A", flow_direction::supply, 120),
                        heat_flow("D", "B", flow_direction::demand, 70)}));
  self->send(router,
             batch_with_ticket(pool, 2, {site_change("C", 47.0, 15.0)}));
  // Both reach the sync at once, before any match is stored.
  std::vector<uint64_t> at_sync;
  for (int i = 0; i < 2; ++i)
    self->receive([&](uint64_t seq) { at_sync.push_back(seq); },
                  caf::after(std::chrono::seconds{10}) >> [] {
                    FAIL("a batch did not reach the sync while its matches "
                         "were still being stored");
                  });
  CHECK(at_sync == std::vector<uint64_t>{1, 2});
  // The sync commits both; the matches of batch 1 are still held back, so
  // the pool hears nothing: not batch 1, and not batch 2 either (order).
  self->send(sync, tick_atom::value);
  CHECK_FALSE(r.pool_told_early());
  // The matches are stored: now both are done, batch 1 first.
  self->request(sink, std::chrono::seconds{10}, caf::flush_atom::value)
    .receive([](uint64_t n) { CHECK(n == 1); },
             [](caf::error&) { FAIL("the sink did not answer"); });
  std::vector<uint64_t> done;
  for (int i = 0; i < 2; ++i)
    self->receive(
      [&](done_atom, uint32_t worker, uint64_t seq, uint64_t, registry_stats&,
          bool complete) {
        CHECK(worker == 0);
        CHECK(complete);
        done.push_back(seq);
      },
      caf::after(std::chrono::seconds{10}) >> [] {
        FAIL("the pool was not told a batch is done after both writes");
      });
  CHECK(done == std::vector<uint64_t>{1, 2});
}

TEST_CASE("the router waits for the sync even when the matches are stored "
          "first") {
  router_setup r;
  auto& self = r.self;
  auto& sync = r.sync;
  auto& router = r.router;
  self->send(router, batch_with_ticket(caf::actor{self}, 7,
                                       {site_change("A", 48.0, 14.0)}));
  self->receive([](uint64_t seq) { CHECK(seq == 7); },
                caf::after(std::chrono::seconds{10}) >> [] {
                  FAIL("the batch did not reach the sync");
                });
  // Site changes store nothing; the partitions are done at once.
  CHECK_FALSE(r.pool_told_early());
  self->send(sync, tick_atom::value);
  self->receive(
    [](done_atom, uint32_t, uint64_t seq, uint64_t count, registry_stats&,
       bool) {
      CHECK(seq == 7);
      CHECK(count == 1);
    },
    caf::after(std::chrono::seconds{10}) >> [] {
      FAIL("the pool was not told after the sync committed");
    });
}
