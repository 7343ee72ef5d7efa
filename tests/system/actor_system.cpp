// The real executable end to end: a file of every contract edge against a
// hand-checked expected state, the snapshot read back in, stdin input, and
// a graceful drain on SIGTERM mid-stream.

#include "process.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <set>

using namespace flowmatch::test;

namespace {

const std::string data_dir = FLOWMATCH_TEST_DATA;

std::string site_line(int i) {
  return R"({"id":"e)" + std::to_string(i)
         + R"(","type":"site_created","data":{"site_id":"s)"
         + std::to_string(i) + R"(","lat":45.5,"lon":9.25}})" + "\n";
}

} // namespace

TEST_CASE("a file of every contract edge gives the hand-checked state") {
  // tests/data/edge_cases.ndjson covers: stale version, flow held for a
  // late site, duplicate id, orphan flow, cascade delete, unknown delete,
  // bad lines of four kinds, site move, create then delete, second create,
  // full replacement on update. The expected state was checked by hand
  // against the contract; see the comments in the scenario list of README.
  auto state = scratch("edge-state.ndjson");
  auto dead = scratch("edge-dead.ndjson");
  std::string out, err;
  int code = run({"--ingest.ndjson=" + data_dir + "/edge_cases.ndjson",
                  "--output.state=" + state, "--output.dead-letters=" + dead},
                 &out, &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  CHECK(read_lines(state)
        == read_lines(data_dir + "/edge_cases.expected-state.ndjson"));
  auto letters = read_lines(dead);
  REQUIRE(letters.size() == 5);
  std::multiset<std::string> reasons;
  for (auto& l : letters)
    reasons.insert(l.substr(0, l.find("\",\"detail")));
  CHECK(reasons
        == std::multiset<std::string>{
          R"({"reason":"malformed_json)", R"({"reason":"out_of_range)",
          R"({"reason":"unit_class_mismatch)",
          R"({"reason":"unknown_event_type)", R"({"reason":"orphan_flow)"});
  // The summary tells the same story.
  CHECK_THAT(out, Catch::Contains("events decoded          17"));
  CHECK_THAT(out, Catch::Contains("applied                 14"));
  CHECK_THAT(out, Catch::Contains("duplicates skipped      1"));
  CHECK_THAT(out, Catch::Contains("stale versions ignored  1"));
  CHECK_THAT(out, Catch::Contains("of which held first   1"));
  CHECK_THAT(out, Catch::Contains("dead-lettered           5"));
  std::remove(state.c_str());
  std::remove(dead.c_str());
}

TEST_CASE("a state snapshot read back in gives the same state") {
  auto first = scratch("snap-1.ndjson");
  auto second = scratch("snap-2.ndjson");
  REQUIRE(run({"--ingest.ndjson=" + data_dir + "/edge_cases.ndjson",
               "--output.state=" + first})
          == 0);
  REQUIRE(run({"--ingest.ndjson=" + first, "--output.state=" + second}) == 0);
  auto a = read_lines(first);
  CHECK(a.size() == 5);
  CHECK(a == read_lines(second));
  std::remove(first.c_str());
  std::remove(second.c_str());
}

TEST_CASE("stdin input gives the same state as the file") {
  auto state = scratch("stdin-state.ndjson");
  auto c = child_process::start({"--ingest.ndjson=-",
                                 "--output.state=" + state},
                                true);
  c.write_input(read_file(data_dir + "/edge_cases.ndjson"));
  c.close_input();
  INFO("stderr:\n" << c.stderr_text);
  REQUIRE(c.wait() == 0);
  CHECK(read_lines(state)
        == read_lines(data_dir + "/edge_cases.expected-state.ndjson"));
  std::remove(state.c_str());
  std::remove(c.stdout_path.c_str());
}

TEST_CASE("SIGTERM mid-stream drains every event read before it and exits 0") {
  auto state = scratch("sigterm-state.ndjson");
  auto c = child_process::start({"--ingest.ndjson=-",
                                 "--output.state=" + state,
                                 "--ingest.batch-size=64"},
                                true);
  // Wait until the source reads (signals are routed to the node by then).
  REQUIRE(c.wait_for_log("reading stdin"));
  // 20,000 events; write() returning means each is read or in the pipe.
  constexpr int events = 20000;
  std::string input;
  for (int i = 0; i < events; ++i)
    input += site_line(i);
  c.write_input(input);
  // The stream stays open: it is the signal, not end of input, that stops.
  REQUIRE(::kill(c.pid, SIGTERM) == 0);
  int code = c.wait();
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 0);
  CHECK_THAT(c.stderr_text, Catch::Contains("stopping intake"));
  auto lines = read_lines(state);
  CHECK(lines.size() == size_t{events});
  std::set<std::string> ids;
  for (auto& l : lines) {
    auto start = l.find("\"site_id\":\"") + 11;
    ids.insert(l.substr(start, l.find('"', start) - start));
  }
  CHECK(ids.size() == size_t{events});
  CHECK(ids.count("s0") == 1);
  CHECK(ids.count("s" + std::to_string(events - 1)) == 1);
  std::remove(state.c_str());
  std::remove(c.stdout_path.c_str());
}

TEST_CASE("a second signal ends the drain at once with its own exit code") {
  // The source waits up to 30 s in one poll of the idle pipe, so the drain
  // cannot finish before the second signal: the node must stop at once.
  auto c = child_process::start({"--ingest.ndjson=-",
                                 "--ingest.poll-interval=30s"},
                                true);
  REQUIRE(c.wait_for_log("reading stdin"));
  // Two different signals: two of the same kind may merge into one.
  REQUIRE(::kill(c.pid, SIGTERM) == 0);
  REQUIRE(c.wait_for_log("stopping intake and draining"));
  REQUIRE(::kill(c.pid, SIGINT) == 0);
  int code = c.wait();
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 5);
  CHECK_THAT(c.stderr_text, Catch::Contains("second signal"));
  CHECK_THAT(c.stderr_text, Catch::Contains("unfinished"));
  std::remove(c.stdout_path.c_str());
}

TEST_CASE("the grace period bounds the drain") {
  auto c = child_process::start({"--ingest.ndjson=-",
                                 "--ingest.poll-interval=30s",
                                 "--shutdown.grace-period=50ms"},
                                true);
  // From this line on the source is in its read loop, waiting on the pipe.
  REQUIRE(c.wait_for_log("reading stdin"));
  REQUIRE(::kill(c.pid, SIGTERM) == 0);
  int code = c.wait();
  INFO("stderr:\n" << c.stderr_text);
  CHECK(code == 3);
  CHECK_THAT(c.stderr_text, Catch::Contains("grace period of 50 ms is over"));
  std::remove(c.stdout_path.c_str());
}
