// Cluster mode's leases and fence against a real PostgreSQL
// (storage/cluster_store, migration 4): taking, renewing, releasing and
// expiring leases, the epoch, the one-process-per-node-id rule, and the
// fence inside a writing transaction, including a takeover that waits for
// the writer's COMMIT.

#include "db_helpers.hpp"

#include "storage/cluster_store.hpp"

#include <chrono>
#include <future>
#include <thread>

using namespace flowmatch;
using namespace flowmatch::test;
using namespace std::chrono_literals;

namespace {

pg::connection session(const std::string& schema) {
  auto c = connect_or_fail();
  auto m = migrate(c, schema);
  if (m.error)
    FAIL("migrate: " << m.error->describe());
  REQUIRE_FALSE(use_schema(c, schema));
  REQUIRE_FALSE(cluster_store::prepare(c));
  REQUIRE_FALSE(store::prepare(c));
  return c;
}

std::vector<std::string> taken_names(
  const pg::outcome<std::vector<cluster_store::taken_lease>>& t) {
  REQUIRE_FALSE(t.error);
  std::vector<std::string> out;
  for (auto& l : *t.value)
    out.push_back(l.resource);
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

TEST_CASE("a lease is taken once, renewed by its owner, and taken over only "
          "when free or expired, with the next epoch") {
  auto schema = fresh_schema("leases");
  auto a = session(schema);
  auto b = session(schema);
  auto first = cluster_store::acquire(a, "n1", {"shard/0", "shard/1"}, 60s);
  REQUIRE(taken_names(first) == std::vector<std::string>{"shard/0", "shard/1"});
  for (auto& l : *first.value) {
    CHECK(l.epoch == 1);
    CHECK(l.clean);
  }
  // Held and live: another node cannot take it.
  CHECK(taken_names(cluster_store::acquire(b, "n2", {"shard/0"}, 60s)).empty());
  auto renewed = cluster_store::renew(a, "n1", {"shard/0", "shard/1"}, {1, 1},
                                      60s);
  REQUIRE_FALSE(renewed.error);
  CHECK(renewed.value->size() == 2);
  // Expired: taken over with epoch 2, not clean (the owner did not let go).
  REQUIRE_FALSE(a.exec("UPDATE cluster_leases SET expires_at = now() - "
                       "interval '1 s' WHERE resource = 'shard/0'")
                  .error);
  auto over = cluster_store::acquire(b, "n2", {"shard/0"}, 60s);
  REQUIRE(taken_names(over) == std::vector<std::string>{"shard/0"});
  CHECK(over.value->front().epoch == 2);
  CHECK_FALSE(over.value->front().clean);
  // The old owner's renewal finds it lost.
  auto lost = cluster_store::renew(a, "n1", {"shard/0", "shard/1"}, {1, 1},
                                   60s);
  REQUIRE_FALSE(lost.error);
  CHECK(*lost.value == std::vector<std::string>{"shard/1"});
  // Released: the next owner takes it at once, and clean.
  REQUIRE_FALSE(cluster_store::release(a, "n1", {"shard/1"}));
  auto clean = cluster_store::acquire(b, "n2", {"shard/1"}, 60s);
  REQUIRE(taken_names(clean) == std::vector<std::string>{"shard/1"});
  CHECK(clean.value->front().epoch == 2);
  CHECK(clean.value->front().clean);
  // A restarted n2 (a new run, same id) takes its own leases back with a
  // new epoch: its state died with the old run.
  auto again = cluster_store::acquire(a, "n2", {"shard/1"}, 60s);
  REQUIRE(taken_names(again) == std::vector<std::string>{"shard/1"});
  CHECK(again.value->front().epoch == 3);
  drop_schema(schema);
}

TEST_CASE("one process per node id, and members are live while they beat") {
  auto schema = fresh_schema("members");
  auto a = session(schema);
  auto b = session(schema);
  REQUIRE_FALSE(cluster_store::join(a, "n1", "127.0.0.1:1", "run-a", 60s));
  auto twice = cluster_store::join(b, "n1", "127.0.0.1:1", "run-b", 60s);
  REQUIRE(twice);
  CHECK_FALSE(twice->retryable());
  CHECK(twice->message.find("in use") != std::string::npos);
  REQUIRE_FALSE(cluster_store::join(b, "n2", "127.0.0.1:2", "run-b", 60s));
  auto live = cluster_store::live_members(a, 60s);
  REQUIRE_FALSE(live.error);
  CHECK(live.value->size() == 2);
  // A silent member is not live; a new run may take its id.
  REQUIRE_FALSE(a.exec("UPDATE cluster_members SET heartbeat_at = now() - "
                       "interval '2 min' WHERE node_id = 'n1'")
                  .error);
  live = cluster_store::live_members(a, 60s);
  CHECK(live.value->size() == 1);
  REQUIRE_FALSE(cluster_store::join(b, "n1", "127.0.0.1:1", "run-c", 60s));
  // The old run's heartbeat now fails: it must stop.
  auto beat = cluster_store::heartbeat(a, "n1", "run-a");
  REQUIRE_FALSE(beat.error);
  CHECK_FALSE(*beat.value);
  REQUIRE_FALSE(cluster_store::leave(b, "n1", "run-c"));
  live = cluster_store::live_members(a, 60s);
  CHECK(live.value->size() == 1);
  drop_schema(schema);
}

TEST_CASE("the fence: a writer that lost its lease cannot commit, and a "
          "takeover waits for a fenced writer's COMMIT") {
  auto schema = fresh_schema("fence");
  auto a = session(schema);
  auto b = session(schema);
  auto t = cluster_store::acquire(a, "n1", {"shard/3"}, 60s);
  REQUIRE(taken_names(t).size() == 1);
  store::fence held{"n1", {"shard/3"}, {1}};
  store::write_set ws;
  change_batch batch;
  change c;
  c.kind = change::site_upserted;
  c.site_data.site_id = "S";
  c.site_data.name = "a site";
  c.site_data.lat = 48;
  c.site_data.lon = 14;
  batch.changes.push_back(c);
  batch.event_ids = {"e1"};
  batch.event_keys = {"S"};
  ws.add(batch);
  ws.collapse();
  REQUIRE_FALSE(store::write(a, ws, held));
  CHECK(query_int(schema, "SELECT count(*) FROM sites") == 1);
  // An expired lease nobody took still fences nothing: its epoch stands.
  REQUIRE_FALSE(b.exec("UPDATE cluster_leases SET expires_at = now() - "
                       "interval '1 s'")
                  .error);
  REQUIRE_FALSE(store::write(a, ws, held));
  // Taken over: the old owner's writes fail with FL001, nothing commits.
  REQUIRE(taken_names(cluster_store::acquire(b, "n2", {"shard/3"}, 60s))
          .size() == 1);
  store::write_set other;
  change_batch b2 = batch;
  b2.changes[0].site_data.name = "written by a fenced node";
  b2.event_ids = {"e2"};
  other.add(b2);
  other.collapse();
  auto fenced = store::write(a, other, held);
  REQUIRE(fenced);
  CHECK(fenced->fenced());
  CHECK(fenced->sqlstate == "FL001");
  CHECK(query_int(schema, "SELECT count(*) FROM sites WHERE name = 'written "
                          "by a fenced node'")
        == 0);
  CHECK(query_int(schema, "SELECT count(*) FROM processed_events WHERE "
                          "event_id = 'e2'")
        == 0);
  auto iso = store::write_isolating(a, {b2}, held);
  REQUIRE(iso.error);
  CHECK(iso.error->fenced());
  std::vector<match_change> mc{match_change{false, match{}}};
  mc[0].value.supply_flow_id = "s";
  mc[0].value.demand_flow_id = "d";
  auto m = store::write_matches(a, mc, held);
  REQUIRE(m);
  CHECK(m->fenced());
  // A writer inside its transaction holds the lease row: a takeover waits
  // for its COMMIT, so the successor reads what it wrote.
  // (Expired first: the writer's row lock would hold this UPDATE too.)
  REQUIRE_FALSE(a.exec("UPDATE cluster_leases SET expires_at = now() - "
                       "interval '1 s'")
                  .error);
  REQUIRE_FALSE(b.exec("BEGIN").error);
  REQUIRE_FALSE(b.run("cluster_fence", {std::string{"n2"},
                                        std::string{"{shard/3}"},
                                        std::string{"{2}"}})
                  .error);
  // The session is opened here: Catch's assertions inside session() are
  // not thread-safe (ThreadSanitizer reported them from the async thread).
  auto c3 = session(schema);
  auto takeover = std::async(std::launch::async, [&] {
    return cluster_store::acquire(c3, "n3", {"shard/3"}, 60s);
  });
  CHECK(takeover.wait_for(300ms) == std::future_status::timeout);
  REQUIRE_FALSE(b.exec("COMMIT").error);
  auto got = takeover.get();
  REQUIRE(taken_names(got) == std::vector<std::string>{"shard/3"});
  CHECK(got.value->front().epoch == 3);
  drop_schema(schema);
}
