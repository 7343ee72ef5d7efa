#pragma once

// Test input with sites moving across match-partition tiles: a real-data
// log followed by moves of every third site about 28 km north (further
// than the tiles of heat and water, 20 km), then half of them back, so
// flows change partition both ways.

#include "process.hpp"

#include "messages/decoder.hpp"
#include "messages/encoder.hpp"

#include <fstream>
#include <map>
#include <string>
#include <variant>

namespace flowmatch::test {

/// Writes `input` and the moves to `output`; returns the number of moves.
inline size_t write_with_site_moves(const std::string& input,
                                    const std::string& output) {
  std::ofstream out{output};
  std::map<std::string, site> sites;
  event_decoder dec;
  for (auto& line : read_lines(input)) {
    out << line << '\n';
    auto r = dec.decode(line, event_origin{"input", 0});
    if (auto* ev = std::get_if<event>(&r)) {
      if (ev->type == event_type::site_created
          || ev->type == event_type::site_updated)
        sites[ev->site_data.site_id] = ev->site_data;
      else if (ev->type == event_type::site_deleted)
        sites.erase(ev->target_id);
    }
  }
  size_t moves = 0, k = 0;
  auto move = [&](site s, double dlat) {
    s.lat += dlat;
    s.version = caf::none;
    out << R"({"id":"move-)" << ++moves
        << R"(","type":"site_updated","data":)" << site_data_json(s)
        << "}\n";
    return s;
  };
  std::vector<site> moved;
  for (auto& [id, s] : sites)
    if (k++ % 3 == 0 && s.lat < 80)
      moved.push_back(move(s, 0.25));
  for (size_t i = 0; i < moved.size(); i += 2)
    move(moved[i], -0.25);
  return moves;
}

} // namespace flowmatch::test
