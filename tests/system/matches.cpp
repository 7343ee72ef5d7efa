// The match service end to end in stream mode, on real data: replaying the
// match stream from the start gives exactly what the rules give from
// scratch over the final sites and flows.

#include "process.hpp"
#include "site_moves.hpp"

#include "core/match_index.hpp"
#include "messages/decoder.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <simdjson.h>

using namespace flowmatch;
using namespace flowmatch::test;

namespace {

const std::string data_dir = FLOWMATCH_TEST_DATA;

/// The final entities of a state file, fed to a fresh index.
std::vector<match> from_scratch(const std::string& state_path) {
  match_index idx;
  event_decoder dec;
  std::vector<match_change> ignored;
  for (auto& line : read_lines(state_path)) {
    auto r = dec.decode(line, event_origin{"state", 0});
    REQUIRE(std::holds_alternative<event>(r));
    auto& ev = std::get<event>(r);
    change c;
    if (ev.type == event_type::site_created) {
      c.kind = change::site_upserted;
      c.site_data = ev.site_data;
    } else {
      c.kind = change::flow_upserted;
      c.flow_data = ev.flow_data;
    }
    idx.apply(c, ignored);
  }
  return idx.from_scratch();
}

/// Replays a match stream: the set it describes at its end.
std::map<std::pair<std::string, std::string>, std::string>
replay(const std::string& stream_path, size_t& removals) {
  std::map<std::pair<std::string, std::string>, std::string> set;
  simdjson::dom::parser p;
  removals = 0;
  for (auto& line : read_lines(stream_path)) {
    simdjson::dom::element doc;
    REQUIRE(p.parse(line).get(doc) == simdjson::SUCCESS);
    std::string type{std::string_view{doc["type"].get_string().value()}};
    auto key = std::make_pair(
      std::string{std::string_view{doc["supply_flow_id"].get_string().value()}},
      std::string{std::string_view{doc["demand_flow_id"].get_string().value()}});
    if (type == "match_removed") {
      ++removals;
      set.erase(key);
    } else {
      REQUIRE(type == "match_upserted");
      set[key] = line;
    }
  }
  return set;
}

/// The replayed stream holds exactly the from-scratch matches, each line
/// with the same numbers.
void check_stream_is_rules(
  const std::map<std::pair<std::string, std::string>, std::string>& streamed,
  const std::vector<match>& expected) {
  CHECK(expected.size() > 500);
  REQUIRE(streamed.size() == expected.size());
  for (auto& m : expected) {
    auto i = streamed.find({m.supply_flow_id, m.demand_flow_id});
    REQUIRE(i != streamed.end());
    CHECK(i->second == match_change_line(match_change{false, m}));
  }
}

} // namespace

TEST_CASE("replaying the match stream gives the rules' result from scratch") {
  auto state = scratch("match-state.ndjson");
  auto stream = scratch("match-stream.ndjson");
  std::string out, err;
  int code = run({"--ingest.ndjson=" + data_dir + "/hotmaps-sample.ndjson",
                  "--output.state=" + state, "--output.matches=" + stream},
                 &out, &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  size_t removals = 0;
  auto streamed = replay(stream, removals);
  auto expected = from_scratch(state);
  // Real data with updates, moves and deletes: matches come and go.
  CHECK(removals > 0);
  check_stream_is_rules(streamed, expected);
  std::map<std::string, size_t> per_class;
  for (auto& m : expected)
    ++per_class[std::string{to_string(m.resource)}];
  CHECK(per_class.size() == 4); // heat, water, material and co2 all match
  CHECK_THAT(out, Catch::Contains("matches                 "
                                  + std::to_string(expected.size())));
  std::remove(state.c_str());
  std::remove(stream.c_str());
}

TEST_CASE("partitions by tile give the matches of one partition on real "
          "data with sites moving across tiles") {
  auto input = scratch("moves-input.ndjson");
  auto moves = write_with_site_moves(data_dir + "/hotmaps-sample.ndjson",
                                     input);
  REQUIRE(moves > 100);
  std::map<std::pair<std::string, std::string>, std::string> first;
  for (int partitions : {1, 3, 16}) {
    INFO(partitions << " partitions per class");
    auto state = scratch("moves-state.ndjson");
    auto stream = scratch("moves-stream.ndjson");
    std::string out, err;
    int code = run({"--ingest.ndjson=" + input, "--output.state=" + state,
                    "--output.matches=" + stream,
                    "--match.partitions-per-class="
                      + std::to_string(partitions)},
                   &out, &err);
    INFO("stderr:\n" << err);
    REQUIRE(code == 0);
    size_t removals = 0;
    auto streamed = replay(stream, removals);
    check_stream_is_rules(streamed, from_scratch(state));
    if (first.empty())
      first = streamed;
    else
      CHECK(streamed == first); // line for line the one-partition set
    std::remove(state.c_str());
    std::remove(stream.c_str());
  }
  std::remove(input.c_str());
}

TEST_CASE("the match stream can go to stdout") {
  std::string out, err;
  int code = run({"--ingest.ndjson=" + data_dir + "/edge_cases.ndjson",
                  "--output.matches=-"},
                 &out, &err);
  INFO("stderr:\n" << err);
  REQUIRE(code == 0);
  // edge_cases has one heat supply (F1 at B, 140 C) and no heat demand:
  // no match, and the summary says so.
  CHECK_THAT(out, Catch::Contains("matches                 0"));
}
