// The NDJSON source on real files: line ends, blank lines, an over-long
// line in the middle, a last line without line end, and bad lines mixed in.

#include "actors/ndjson_source.hpp"

#include "actors/dispatcher.hpp"
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
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dead = sys.spawn(dead_letter_collector);
  group_settings g;
  g.name = "registry";
  g.workers = 2;
  g.handles = contract_event_types();
  g.factory = registry_worker_factory(
    {}, caf::actor_cast<dead_letter_sink_actor>(dead), {});
  auto d = sys.spawn(dispatcher, std::vector<group_settings>{std::move(g)});
  ndjson_source_settings s;
  s.path = path;
  s.batch_size = 2; // several batches even for this small file
  s.read_size = 4096; // the long line spans many reads
  sys.spawn<caf::detached>(ndjson_source, s, d,
                           caf::actor_cast<source_listener_actor>(self),
                           caf::actor_cast<dead_letter_sink_actor>(dead),
                           processed_ids{});
  source_stats stats;
  self->receive([&](eof_atom, source_stats& st) { stats = std::move(st); },
                caf::after(test_timeout) >> [&] { FAIL("no eof"); });
  CHECK(stats.lines == 7);
  CHECK(stats.events == 3);
  drain(self, d);
  auto snap = ask<registry_snapshot>(self, d, snapshot_atom::value);
  REQUIRE(snap.sites.size() == 3);
  CHECK(snap.sites[0].site_id == "a");
  CHECK(snap.sites[2].site_id == "c");
  auto letters = ask<std::vector<dead_letter>>(self, dead,
                                               caf::get_atom::value);
  REQUIRE(letters.size() == 2);
  CHECK(letters[0].reason == reject_reason::line_too_long);
  CHECK(letters[0].origin.line == 4);
  CHECK(letters[0].payload.size() == over_long_payload_prefix);
  CHECK(letters[1].reason == reject_reason::malformed_json);
  CHECK(letters[1].origin.line == 5);
  CHECK(letters[1].origin.source == path);
  std::remove(path.c_str());
  self->send_exit(d, caf::exit_reason::user_shutdown);
  self->send_exit(dead, caf::exit_reason::user_shutdown);
}
