#include "system/summary.hpp"

#include <fmt/format.h>

#include <iterator>
#include <optional>
#include <string_view>
#include <vector>

namespace flowmatch {

std::string format_summary(const std::string& input, const source_stats& in,
                           const registry_stats& t,
                           uint64_t dead_letters_written, double seconds,
                           uint64_t matches,
                           std::optional<uint64_t> stream_pending) {
  std::string out;
  auto row = [&](std::string_view label, auto value) {
    fmt::format_to(std::back_inserter(out), "  {:<24}{}\n", label, value);
  };
  out += "flowmatch run summary\n";
  row("input", input == "-" ? std::string{"stdin"} : input);
  row(stream_pending ? "entries read" : "lines read", in.lines);
  if (in.blank_lines > 0)
    row("  of which blank", in.blank_lines);
  row("events decoded", in.events);
  row("applied", t.applied);
  row("  of which held first", t.held_applied);
  row("duplicates skipped", in.duplicates);
  row("stale versions ignored", t.stale);
  if (t.superseded > 0)
    row("held, then deleted", t.superseded);
  uint64_t rejected = 0;
  std::vector<uint64_t> by_reason(reject_reason_count, 0);
  for (size_t i = 0; i < in.rejected.size(); ++i)
    by_reason[i] += in.rejected[i];
  for (size_t i = 0; i < t.dead_letters.size(); ++i)
    by_reason[i] += t.dead_letters[i];
  for (auto n : by_reason)
    rejected += n;
  row("dead-lettered", rejected);
  for (size_t i = 0; i < by_reason.size(); ++i)
    if (by_reason[i] > 0)
      row(fmt::format("  {}", to_string(static_cast<reject_reason>(i))),
          by_reason[i]);
  if (dead_letters_written != rejected)
    row("dead letters written", dead_letters_written);
  row("sites", t.sites);
  row("flows", t.flows);
  row("matches", matches);
  row("elapsed", fmt::format("{:.3f} s", seconds));
  if (stream_pending)
    row("left pending in stream", *stream_pending);
  if (!in.read_error.empty())
    row("input error", in.read_error);
  row("rate", fmt::format("{:.0f} events/s",
                          seconds > 0 ? static_cast<double>(in.events) / seconds
                                      : 0.0));
  return out;
}

} // namespace flowmatch
