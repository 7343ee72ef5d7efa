// The Redis stream reader against a real Redis (tools/redis.sh; CI starts
// it): the order of pending, claimed and new entries, acknowledgements,
// refusals, and an unreachable server. The node-level behaviour (acks only
// once durable, kill -9, Redis restarts) is in the stream scenarios.

#include "actors/line_reader.hpp"
#include "streams/publisher.hpp"
#include "streams/redis.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

using namespace flowmatch;
using namespace std::chrono_literals;

namespace {

std::string redis_url() {
  auto* env = std::getenv("FLOWMATCH_TEST_REDIS_URL");
  return env && *env ? env : "redis://127.0.0.1:63790/0";
}

redis::connection connect_or_fail() {
  std::string why;
  auto where = redis::parse_url(redis_url(), why);
  REQUIRE(where);
  auto c = redis::connection::open(*where, 2s, 5s);
  INFO("Redis at " << redis_url() << " (start it: tools/redis.sh start): "
                   << c.error());
  REQUIRE_FALSE(c.broken());
  return c;
}

/// A fresh stream key for one test.
std::string fresh_stream(redis::connection& c, const std::string& name) {
  auto key = "test:" + name + ":" + std::to_string(::getpid());
  c.command({"DEL", key});
  return key;
}

std::string add(redis::connection& c, const std::string& key,
                const std::string& field, const std::string& value) {
  auto r = c.command({"XADD", key, "*", field, value});
  REQUIRE(r);
  REQUIRE(r.view().is_string());
  return std::string{r.view().text()};
}

std::string event_line(const std::string& id) {
  return R"({"id":")" + id
         + R"(","type":"site_created","data":{"site_id":"S","lat":1,"lon":2}})";
}

stream_settings settings_for(const std::string& key,
                             const std::string& consumer) {
  stream_settings s;
  s.url = redis_url();
  s.stream = key;
  s.consumer = consumer;
  return s;
}

/// The next item that is not `nothing_yet`, waiting up to `limit`.
input_item next_item(line_reader& r, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto item = r.next(true);
    if (item.kind != input_item::nothing_yet
        || std::chrono::steady_clock::now() > deadline)
      return item;
  }
}

long long pending_count(redis::connection& c, const std::string& key) {
  auto r = c.command({"XPENDING", key, "flowmatch"});
  REQUIRE(r);
  return r.view()[0].integer();
}

} // namespace

TEST_CASE("a stream reader takes its own pending entries before new ones, "
          "and an acknowledged entry leaves the pending list") {
  auto c = connect_or_fail();
  auto key = fresh_stream(c, "own-pending");
  std::vector<std::string> ids;
  for (auto id : {"e1", "e2", "e3"})
    ids.push_back(add(c, key, "event", event_line(id)));
  std::vector<uint64_t> first_positions;
  {
    auto reader = open_stream_reader(settings_for(key, "c1"), 50ms);
    REQUIRE(reader->acknowledges());
    for (size_t i = 0; i < 3; ++i) {
      auto item = next_item(*reader);
      REQUIRE(item.kind == input_item::line);
      CHECK(item.origin.entry == ids[i]);
      CHECK(item.origin.source == "redis:" + key);
      CHECK(item.text == event_line("e" + std::to_string(i + 1)));
      first_positions.push_back(item.origin.line);
    }
    CHECK(reader->unacknowledged() == 3);
    // Only e1 is durable; e2 and e3 stay pending (a crash, say).
    CHECK(reader->acknowledge({first_positions[0]}) == 1);
    CHECK(reader->unacknowledged() == 2);
  }
  CHECK(pending_count(c, key) == 2);
  ids.push_back(add(c, key, "event", event_line("e4")));
  auto reader = open_stream_reader(settings_for(key, "c1"), 50ms);
  std::vector<std::string> order;
  std::vector<uint64_t> positions;
  for (size_t i = 0; i < 3; ++i) {
    auto item = next_item(*reader);
    REQUIRE(item.kind == input_item::line);
    order.push_back(item.origin.entry);
    positions.push_back(item.origin.line);
  }
  // Stream order across the restart: pending e2, e3, then the new e4.
  CHECK(order == std::vector<std::string>{ids[1], ids[2], ids[3]});
  CHECK(next_item(*reader, 200ms).kind == input_item::nothing_yet);
  CHECK(reader->acknowledge(positions) == 3);
  CHECK(pending_count(c, key) == 0);
  group_progress p;
  std::string why;
  REQUIRE(read_group_progress(redis_url(), key, "flowmatch", p, why));
  CHECK(p.done());
  c.command({"DEL", key});
}

TEST_CASE("entries idle with another consumer are claimed, and entries in "
          "flight here are not delivered twice") {
  auto c = connect_or_fail();
  auto key = fresh_stream(c, "claim");
  auto a = add(c, key, "event", event_line("e1"));
  auto b = add(c, key, "event", event_line("e2"));
  {
    // A consumer that reads both and dies without acknowledging.
    auto dead = open_stream_reader(settings_for(key, "dead"), 50ms);
    CHECK(next_item(*dead).origin.entry == a);
    CHECK(next_item(*dead).origin.entry == b);
  }
  auto s = settings_for(key, "heir");
  s.claim_idle = 100ms;
  auto heir = open_stream_reader(s, 50ms);
  std::vector<std::string> got;
  for (size_t i = 0; i < 2; ++i) {
    auto item = next_item(*heir);
    REQUIRE(item.kind == input_item::line); // delivered twice: under limit 5
    got.push_back(item.origin.entry);
  }
  CHECK(got == std::vector<std::string>{a, b});
  // Idle again past claim_idle while in flight here: not handed out again.
  auto third = add(c, key, "event", event_line("e3"));
  auto item = next_item(*heir);
  REQUIRE(item.kind == input_item::line);
  CHECK(item.origin.entry == third);
  CHECK(next_item(*heir, 400ms).kind == input_item::nothing_yet);
  auto owner = c.command({"XPENDING", key, "flowmatch", "-", "+", "10"});
  REQUIRE(owner.view().size() == 3);
  for (size_t i = 0; i < 3; ++i)
    CHECK(owner.view()[i][1].text() == "heir");
  c.command({"DEL", key});
}

TEST_CASE("an entry without an event field, and one delivered past the "
          "limit, are refused with their reasons") {
  auto c = connect_or_fail();
  auto key = fresh_stream(c, "refused");
  auto bare = add(c, key, "producer", "billing");
  auto poison = add(c, key, "event", event_line("e1"));
  auto s = settings_for(key, "c1");
  s.delivery_limit = 1;
  {
    auto reader = open_stream_reader(s, 50ms);
    auto item = next_item(*reader);
    REQUIRE(item.kind == input_item::refused);
    CHECK(item.reason == reject_reason::missing_field);
    CHECK(item.origin.entry == bare);
    CHECK_THAT(std::string{item.detail},
               Catch::Contains("has no field named event"));
    CHECK(reader->acknowledge({item.origin.line}) == 1);
    CHECK(next_item(*reader).origin.entry == poison); // delivery 1: fine
  }
  auto reader = open_stream_reader(s, 50ms);
  auto item = next_item(*reader);
  REQUIRE(item.kind == input_item::refused);
  CHECK(item.reason == reject_reason::poison_event);
  CHECK(item.origin.entry == poison);
  CHECK(item.text == event_line("e1")); // the payload for the dead letter
  CHECK_THAT(std::string{item.detail}, Catch::Contains("delivered 2 times"));
  c.command({"DEL", key});
}

TEST_CASE("a stream reader waits for a Redis that is down and reads once "
          "it is up") {
  // A server of its own, so the shared one is not disturbed.
  const std::string port = "63792";
  const std::string tool = std::string{"FLOWMATCH_REDIS_PORT="} + port + " "
                           + FLOWMATCH_SOURCE_DIR + "/tools/redis.sh ";
  REQUIRE(std::system((tool + "stop").c_str()) == 0);
  stream_settings s;
  s.url = "redis://127.0.0.1:" + port;
  s.stream = "test:down";
  s.max_backoff = 200ms;
  auto reader = open_stream_reader(s, 50ms);
  for (int i = 0; i < 3; ++i)
    CHECK(reader->next(true).kind == input_item::nothing_yet);
  CHECK(reader->error().empty()); // waiting, not failed
  REQUIRE(std::system((tool + "start").c_str()) == 0);
  std::string why;
  auto where = redis::parse_url(s.url, why);
  auto c = redis::connection::open(*where, 2s, 2s);
  REQUIRE_FALSE(c.broken());
  c.command({"DEL", s.stream});
  auto id = add(c, s.stream, "event", event_line("e1"));
  auto item = next_item(*reader);
  REQUIRE(item.kind == input_item::line);
  CHECK(item.origin.entry == id);
  CHECK(reader->acknowledge({item.origin.line}) == 1);
  CHECK(std::system((tool + "stop").c_str()) == 0);
}

TEST_CASE("redis URLs: what is accepted and what is refused") {
  std::string why;
  auto e = redis::parse_url("redis://10.0.0.5:7000/3", why);
  REQUIRE(e);
  CHECK(e->host == "10.0.0.5");
  CHECK(e->port == 7000);
  CHECK(e->db == 3);
  auto d = redis::parse_url("redis://localhost", why);
  REQUIRE(d);
  CHECK(d->port == 6379);
  CHECK(d->db == 0);
  CHECK_FALSE(redis::parse_url("localhost:6379", why));
  CHECK_THAT(why, Catch::Contains("must start with redis://"));
  CHECK_FALSE(redis::parse_url("redis://:6379", why));
  CHECK_THAT(why, Catch::Contains("no host"));
  CHECK_FALSE(redis::parse_url("redis://user:pw@host:6379", why));
  CHECK_THAT(why, Catch::Contains("credentials"));
  CHECK(redis::id_less("9-5", "10-0"));
  CHECK(redis::id_less("10-2", "10-11"));
  CHECK_FALSE(redis::id_less("10-11", "10-2"));
}

TEST_CASE("a group's lag is checked against the stream's last id: Redis "
          "overstates it after an AOF rewrite and a restart") {
  // A server of its own: it is rewritten and killed.
  const std::string port = "63793";
  const std::string tool = std::string{"FLOWMATCH_REDIS_PORT="} + port + " "
                           + FLOWMATCH_SOURCE_DIR + "/tools/redis.sh ";
  REQUIRE(std::system((tool + "start").c_str()) == 0);
  redis::endpoint where;
  where.host = "127.0.0.1";
  where.port = std::stoi(port);
  auto c = redis::connection::open(where, 2s, 5s);
  REQUIRE_FALSE(c.broken());
  const std::string key = "test:lag";
  c.command({"DEL", key});
  REQUIRE(c.command({"XGROUP", "CREATE", key, "g", "0", "MKSTREAM"}));
  for (int i = 0; i < 10; ++i)
    add(c, key, "event", event_line("e" + std::to_string(i)));
  auto read = [&](int n) {
    auto r = c.command({"XREADGROUP", "GROUP", "g", "c", "COUNT",
                        std::to_string(n), "STREAMS", key, ">"});
    REQUIRE(r);
    REQUIRE_FALSE(r.view().is_error());
  };
  read(4);
  // The rewrite records the group as it is now: 4 entries read.
  REQUIRE(c.command({"BGREWRITEAOF"}));
  for (int i = 0;; ++i) {
    auto info = c.command({"INFO", "persistence"});
    REQUIRE(info);
    auto text = std::string{info.view().text()};
    if (text.find("aof_rewrite_in_progress:0") != std::string::npos
        && text.find("aof_rewrite_scheduled:0") != std::string::npos)
      break;
    REQUIRE(i < 500); // 5 s
    usleep(10'000);
  }
  read(6); // all 10 delivered
  auto group = [&](redis::connection& conn) {
    for (int i = 0;; ++i) {
      auto r = conn.command({"XINFO", "GROUPS", key});
      REQUIRE(r);
      if (!r.view().is_error()) {
        auto row = redis::find_group(r.view(), "g");
        REQUIRE(row);
        return *row;
      }
      INFO(r.view().text()); // LOADING while the AOF is read back
      REQUIRE(i < 500);
      usleep(10'000);
    }
  };
  CHECK(group(c).lag == 0);
  REQUIRE(std::system((tool + "restart").c_str()) == 0);
  auto after = redis::connection::open(where, 2s, 5s);
  REQUIRE_FALSE(after.broken());
  auto row = group(after);
  INFO("Redis says lag " << row.lag << " after the restart");
  if (row.lag == 0)
    WARN("this Redis no longer overstates the lag after a restart");
  CHECK(row.pending == 10);
  // Every entry was delivered: the checked lag says so.
  CHECK(redis::checked_lag(after, key, row) == 0);
  // Three new entries: the lag is positive again (Redis's own figure,
  // possibly overstated; never 0).
  for (int i = 0; i < 3; ++i)
    add(after, key, "event", event_line("n" + std::to_string(i)));
  CHECK(redis::checked_lag(after, key, group(after)) >= 3);
  CHECK(std::system((tool + "stop").c_str()) == 0);
}
