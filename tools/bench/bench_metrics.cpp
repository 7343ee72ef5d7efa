// The cost of one /metrics scrape at 10,000 series: rendering every
// stage's status in the Prometheus text format (system/prometheus_text),
// against writing the same series as bare lines (no families, HELP, TYPE
// or escaping): the floor of any exposition.
//
//   bench-metrics [--reps N] [--json PATH]

#include "system/prometheus_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace flowmatch;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int reps = 21;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--reps=", 0) == 0)
      reps = std::stoi(a.substr(7));
    else if (a.rfind("--json=", 0) == 0)
      json = a.substr(7);
    else if (a == "--quick")
      reps = 5;
  }
  // 100 stages x 96 metrics, plus each stage's queue depth, oldest wait,
  // mailbox depth and mailbox wait: 10,000 series.
  std::vector<actor_status> stages;
  for (int a = 0; a < 100; ++a) {
    auto s = actor_status::of(fmt::format("stage-{} worker", a));
    for (int m = 0; m < 96; ++m)
      if (m % 2)
        s.counter(fmt::format("metric_{}{{kind=k{}}}", m / 2, m % 7),
                  m * 1000.5 + a);
      else
        s.gauge(fmt::format("gauge_{}", m), m + a * 0.25);
    s.queue_depth = static_cast<uint64_t>(a);
    stages.push_back(std::move(s));
  }
  size_t series = 0;
  for (auto& s : stages)
    series += s.metrics.size() + 4;
  build_info build{"0.1.0", "bench"};
  std::vector<double> ours, floor;
  size_t bytes = 0;
  for (int r = 0; r <= reps; ++r) {
    auto t0 = clock_type::now();
    auto text = render_prometheus(stages, build);
    auto t1 = clock_type::now();
    std::string bare;
    for (auto& s : stages) {
      for (auto& m : s.metrics)
        fmt::format_to(std::back_inserter(bare), "flowmatch_{}{{actor=\"{}\"}} {}\n",
                       m.name, s.actor, m.value);
      for (int k = 0; k < 4; ++k)
        fmt::format_to(std::back_inserter(bare),
                       "flowmatch_actor_{}{{actor=\"{}\"}} {}\n", k, s.actor,
                       s.queue_depth);
    }
    auto t2 = clock_type::now();
    bytes = text.size() + (bare.size() & 0); // keep both alive
    if (r == 0)
      continue;
    ours.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    floor.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::sort(ours.begin(), ours.end());
  std::sort(floor.begin(), floor.end());
  auto out = fmt::format(
    "{{\"series\": {}, \"bytes\": {}, \"render_ms\": {:.2f}, "
    "\"bare_lines_ms\": {:.2f}, \"ratio\": {:.2f}}}\n",
    series, bytes, ours[ours.size() / 2], floor[floor.size() / 2],
    ours[ours.size() / 2] / floor[floor.size() / 2]);
  std::fputs(out.c_str(), stdout);
  if (!json.empty())
    std::ofstream{json} << out;
  return 0;
}
