// The ingest driver with the file reader on real files and pipes: line
// ends, blank lines, an over-long line in the middle, a last line without
// line end, bad lines mixed in, and a stop that takes what a pipe holds.

#include "actors/ingest_source.hpp"

#include "actors/dispatcher.hpp"
#include "actors/in_process_publisher.hpp"
#include "actors/registry_worker.hpp"

#include "../test_helpers.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

std::string temp_path(const char* tag) {
  return "/tmp/flowmatch-test-" + std::string{tag} + "-"
         + std::to_string(::getpid()) + ".ndjson";
}

std::string site_line(const std::string& id, const std::string& site) {
  return R"({"id":")" + id + R"(","type":"site_created","data":{"site_id":")"
         + site + R"(","lat":1,"lon":2}})";
}

/// A dispatcher with two registry workers and a dead-letter collector, fed
/// by an ingest driver.
struct driver_setup {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  dead_letter_collector_actor dead = sys.spawn(dead_letter_collector);
  dispatcher_actor d;

  driver_setup() {
    group_settings g;
    g.name = "registry";
    g.workers = 2;
    g.handles = contract_event_types();
    g.factory = registry_worker_factory(
      {}, caf::actor_cast<dead_letter_sink_actor>(dead), {});
    d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  }

  /// Runs a driver with `s` to its end of input; what it counted.
  source_stats run(const ingest_settings& s) {
    sys.spawn<caf::detached>(ingest_source, s, d,
                             caf::actor_cast<source_listener_actor>(self),
                             caf::actor_cast<dead_letter_sink_actor>(dead),
                             commit_coordinator_actor{},
                             processed_ids{});
    source_stats stats;
    self->receive([&](eof_atom, source_stats& st) { stats = std::move(st); },
                  caf::after(test_timeout) >> [&] { FAIL("no eof"); });
    return stats;
  }

  ~driver_setup() {
    self->send_exit(d, caf::exit_reason::user_shutdown);
    self->send_exit(dead, caf::exit_reason::user_shutdown);
  }
};

} // namespace

TEST_CASE("the source splits and decodes lines and dead-letters bad ones") {
  auto path = temp_path("source");
  {
    std::ofstream out{path, std::ios::binary};
    out << site_line("e1", "a") << "\r\n";               // CRLF
    out << "\n   \n";                                    // blank lines
    out << "{\"id\":\"e2\"," << std::string(2 << 20, ' ') // 2 MiB line
        << "}\n";
    out << "{not json\n";
    out << site_line("e3", "b") << "\n";
    out << site_line("e4", "c");                         // no line end
  }
  driver_setup r;
  auto& self = r.self;
  ingest_settings s;
  s.reader.path = path;
  s.batch_size = 2; // several batches even for this small file
  s.reader.read_size = 4096; // the long line spans many reads
  auto stats = r.run(s);
  CHECK(stats.lines == 7);
  CHECK(stats.events == 3);
  drain(self, r.d);
  auto snap = ask<registry_snapshot>(self, r.d, snapshot_atom::value);
  REQUIRE(snap.sites.size() == 3);
  CHECK(snap.sites[0].site_id == "a");
  CHECK(snap.sites[2].site_id == "c");
  auto letters = ask<std::vector<dead_letter>>(self, r.dead,
                                               caf::get_atom::value);
  REQUIRE(letters.size() == 2);
  CHECK(letters[0].reason == reject_reason::line_too_long);
  CHECK(letters[0].origin.line == 4);
  CHECK(letters[0].payload.size() == over_long_payload_prefix);
  CHECK(letters[1].reason == reject_reason::malformed_json);
  CHECK(letters[1].origin.line == 5);
  CHECK(letters[1].origin.source == path);
  std::remove(path.c_str());
}

namespace {

/// Every item a reader yields until `end` (nothing_yet is not expected
/// from a file).
std::vector<input_item> read_all(line_reader& r,
                                 std::vector<std::string>& texts) {
  std::vector<input_item> items;
  for (;;) {
    auto item = r.next(true);
    texts.emplace_back(item.text);
    items.push_back(item);
    if (item.kind == input_item::end)
      return items;
    REQUIRE(items.size() < 100); // a reader that never ends
  }
}

} // namespace

TEST_CASE("the file reader yields lines with positions and nothing else") {
  auto path = temp_path("reader");
  {
    std::ofstream out{path, std::ios::binary};
    out << "one\r\n\ntwo\n" << std::string(2 * max_line_bytes, 'x')
        << "\nlast";
  }
  reader_settings s;
  s.path = path;
  s.read_size = 4096;
  auto r = open_reader(s);
  CHECK(r->name() == path);
  std::vector<std::string> texts;
  auto items = read_all(*r, texts);
  REQUIRE(items.size() == 6);
  CHECK(texts[0] == "one"); // \r\n framing
  CHECK(items[0].origin.line == 1);
  CHECK(items[0].origin.source == path);
  CHECK(texts[1].empty()); // blank lines are the driver's to count
  CHECK(texts[2] == "two");
  CHECK(items[3].kind == input_item::too_long);
  CHECK(items[3].bytes == 2 * max_line_bytes);
  CHECK(texts[3].size() == over_long_payload_prefix);
  CHECK(items[3].origin.line == 4);
  CHECK(texts[4] == "last"); // no line end at the end of a file
  CHECK_FALSE(items[4].cut);
  CHECK(items[5].kind == input_item::end);
  CHECK(r->error().empty());
  std::remove(path.c_str());
}

TEST_CASE("a file reader that cannot open its input ends at once, saying "
          "why") {
  reader_settings s;
  s.path = "/nonexistent/flowmatch-input.ndjson";
  auto r = open_reader(s);
  CHECK(r->next(true).kind == input_item::end);
  CHECK_THAT(r->error(), Catch::Contains("cannot open"));
}

TEST_CASE("a stopped pipe reader yields what the pipe held, marks a cut "
          "last line, and ends") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string held = "a\nb\npart";
  REQUIRE(::write(fds[1], held.data(), held.size())
          == static_cast<ssize_t>(held.size()));
  // stdin is the pipe for the reader's lifetime.
  int saved = ::dup(STDIN_FILENO);
  REQUIRE(::dup2(fds[0], STDIN_FILENO) >= 0);
  {
    reader_settings s;
    s.path = "-";
    s.poll_interval = std::chrono::milliseconds{10};
    auto r = open_reader(s);
    CHECK(r->name() == "stdin");
    auto first = r->next(true);
    CHECK(first.kind == input_item::line);
    CHECK(first.text == "a");
    // The producer is still connected; the stop takes what it wrote.
    r->stop();
    std::vector<std::string> texts;
    auto items = read_all(*r, texts);
    REQUIRE(items.size() == 3);
    CHECK(texts[0] == "b");
    CHECK(texts[1] == "part");
    CHECK(items[1].cut);
    CHECK(items[2].kind == input_item::end);
  }
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("ingest.max-rate holds the driver to its rate and loses nothing") {
  auto path = temp_path("rate");
  {
    std::ofstream out{path};
    for (int i = 0; i < 600; ++i)
      out << site_line("r" + std::to_string(i), "s" + std::to_string(i))
          << "\n";
  }
  driver_setup r;
  ingest_settings s;
  s.reader.path = path;
  s.batch_size = 50;
  s.max_rate = 2000; // lines per second
  s.burst = 100;
  auto started = std::chrono::steady_clock::now();
  auto stats = r.run(s);
  auto took = std::chrono::steady_clock::now() - started;
  // A limiter cannot be faster than its rate: after the burst of 100, the
  // other 500 lines need at least 250 ms at 2,000 lines/s.
  CHECK(took >= std::chrono::milliseconds{250});
  CHECK(stats.events == 600);
  drain(r.self, r.d);
  auto snap = ask<registry_snapshot>(r.self, r.d, snapshot_atom::value);
  CHECK(snap.sites.size() == 600);
  std::remove(path.c_str());
}

TEST_CASE("the in-process publisher hands events to a node's dispatcher: "
          "validated, deduplicated, bad ones dead-lettered") {
  driver_setup t;
  in_process_publisher p{t.sys, t.d,
                         caf::actor_cast<dead_letter_sink_actor>(t.dead), 2};
  CHECK(p.publish(site_line("p1", "A")));
  CHECK(p.publish(site_line("p2", "B")));
  CHECK(p.publish(site_line("p1", "A"))); // a resend: skipped
  CHECK(p.publish("{\"id\":\"p3\",\"type\":\"site_created\"}")); // no data
  CHECK(p.publish(std::vector<std::string>{site_line("p4", "C")}));
  REQUIRE(p.flush());
  CHECK(p.error().empty());
  CHECK(p.confirmed() == 3);
  CHECK(p.duplicates() == 1);
  CHECK(p.rejected() == 1);
  drain(t.self, t.d);
  auto snap = ask<registry_snapshot>(t.self, t.d, snapshot_atom::value);
  REQUIRE(snap.sites.size() == 3);
  CHECK(snap.sites[0].site_id == "A");
  CHECK(snap.sites[2].site_id == "C");
  auto letters = ask<std::vector<dead_letter>>(t.self, t.dead,
                                               caf::get_atom::value);
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].event_id == "p3");
  CHECK(letters[0].reason == reject_reason::missing_field);
  CHECK(letters[0].origin.source == "in-process");
}

TEST_CASE("the NDJSON publisher appends one event per line and refuses a "
          "line end inside an event") {
  auto path = temp_path("publisher");
  std::remove(path.c_str());
  std::string why;
  auto p = make_ndjson_publisher(path, why);
  REQUIRE(p);
  CHECK(p->publish(site_line("n1", "A")));
  CHECK(p->publish(std::vector<std::string>{site_line("n2", "B")}));
  CHECK(p->confirmed() == 0); // not until flushed
  REQUIRE(p->flush());
  CHECK(p->confirmed() == 2);
  std::ifstream in(path);
  std::string a, b, c;
  REQUIRE(std::getline(in, a));
  REQUIRE(std::getline(in, b));
  CHECK_FALSE(std::getline(in, c));
  CHECK(a == site_line("n1", "A"));
  CHECK(b == site_line("n2", "B"));
  CHECK_FALSE(p->publish("{\"id\":\"x\"}\n{\"id\":\"y\"}"));
  CHECK_THAT(p->error(), Catch::Contains("one line"));
  CHECK_FALSE(make_ndjson_publisher("/no/such/dir/out.ndjson", why));
  CHECK_THAT(why, Catch::Contains("cannot open /no/such/dir/out.ndjson"));
  std::remove(path.c_str());
}
