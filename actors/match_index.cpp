#include "actors/match_index.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>

#include <boost/iterator/function_output_iterator.hpp>

namespace flowmatch {

namespace bg = boost::geometry;
namespace bgi = boost::geometry::index;

namespace {

void drop_partner(std::vector<uint32_t>& partners, uint32_t p) {
  auto i = std::find(partners.begin(), partners.end(), p);
  if (i != partners.end()) {
    *i = partners.back();
    partners.pop_back();
  }
}

} // namespace

void match_index::apply(const change& c, std::vector<match_change>& out) {
  switch (c.kind) {
    case change::site_upserted:
      upsert_site(c.site_data, out);
      break;
    case change::site_deleted: {
      auto i = sites_.find(c.id);
      if (i == sites_.end())
        break;
      // Its flows were deleted before it (cascade); drop any left anyway.
      auto left = std::vector<std::string>(i->second.flows.begin(),
                                           i->second.flows.end());
      for (auto& id : left)
        remove_flow(id, out);
      sites_.erase(c.id);
      break;
    }
    case change::flow_upserted:
      if (only_ && c.flow_data.resource != *only_) {
        // Not this partition's class (any more): forget it if known.
        remove_flow(c.flow_data.flow_id, out);
        break;
      }
      upsert_flow(c.flow_data, out);
      break;
    case change::flow_deleted: {
      // A delete names the site the flow was at. An eviction from a worker
      // the flow has left may come after the upsert at its new site (the
      // two workers are not ordered): then it is stale and ignored.
      auto known = flows_.find(c.id);
      if (known != flows_.end() && !c.flow_data.site_id.empty()
          && slots_[known->second].flow.site_id != c.flow_data.site_id)
        break;
      remove_flow(c.id, out);
      break;
    }
  }
}

void match_index::upsert_site(const site& s, std::vector<match_change>& out) {
  auto [i, added] = sites_.try_emplace(s.site_id);
  auto& info = i->second;
  bool moved = added || info.lat != s.lat || info.lon != s.lon;
  info.lat = s.lat;
  info.lon = s.lon;
  if (!moved)
    return;
  // A moved site moves its flows: every pair of each is recomputed.
  for (auto& id : info.flows) {
    auto slot = flows_.at(id);
    unindex(slot);
    slots_[slot].lat = s.lat;
    slots_[slot].lon = s.lon;
    index(slot);
  }
  for (auto& id : info.flows)
    recompute(flows_.at(id), false, out);
}

void match_index::upsert_flow(const resource_flow& f,
                              std::vector<match_change>& out) {
  uint32_t slot;
  auto known = flows_.find(f.flow_id);
  if (known != flows_.end()
      && (slots_[known->second].flow.direction != f.direction
          || slots_[known->second].flow.resource != f.resource)) {
    // A flow that changes side or class starts over: its pairs are keyed
    // by its side.
    remove_flow(f.flow_id, out);
    known = flows_.end();
  }
  if (known != flows_.end()) {
    slot = known->second;
    auto& fs = slots_[slot];
    if (fs.flow.site_id == f.site_id && fs.indexed) {
      // Same site, same side, same class: the position in the R-tree
      // stands; only the numbers change.
      fs.flow = f;
      recompute(slot, true, out);
      return;
    }
    unindex(slot);
    if (fs.flow.site_id != f.site_id) {
      auto s = sites_.find(fs.flow.site_id);
      if (s != sites_.end())
        s->second.flows.erase(f.flow_id);
    }
  } else {
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    flows_.emplace(f.flow_id, slot);
  }
  auto& fs = slots_[slot];
  fs.flow = f;
  auto site = sites_.find(f.site_id);
  if (site != sites_.end()) {
    site->second.flows.insert(f.flow_id);
    fs.lat = site->second.lat;
    fs.lon = site->second.lon;
    index(slot);
  }
  recompute(slot, false, out);
}

void match_index::remove_flow(const std::string& id,
                              std::vector<match_change>& out) {
  auto known = flows_.find(id);
  if (known == flows_.end())
    return;
  auto slot = known->second;
  auto& fs = slots_[slot];
  std::vector<uint32_t> partners(fs.partners.begin(), fs.partners.end());
  std::sort(partners.begin(), partners.end());
  bool supply = fs.flow.direction == flow_direction::supply;
  for (auto p : partners)
    if (supply)
      set_match(slot, p, caf::none, out);
    else
      set_match(p, slot, caf::none, out);
  unindex(slot);
  auto site = sites_.find(fs.flow.site_id);
  if (site != sites_.end())
    site->second.flows.erase(id);
  fs = flow_slot{};
  free_slots_.push_back(slot);
  flows_.erase(known);
}

void match_index::index(uint32_t slot) {
  auto& fs = slots_[slot];
  entry e{point{fs.lon, fs.lat}, slot};
  if (fs.flow.direction == flow_direction::supply)
    supplies_.insert(e);
  else
    demands_.insert(e);
  fs.indexed = true;
}

void match_index::unindex(uint32_t slot) {
  auto& fs = slots_[slot];
  if (!fs.indexed)
    return;
  entry e{point{fs.lon, fs.lat}, slot};
  if (fs.flow.direction == flow_direction::supply)
    supplies_.remove(e);
  else
    demands_.remove(e);
  fs.indexed = false;
}

void match_index::find_candidates(const flow_slot& f, double radius_m) {
  // A box in degrees that surely holds the circle: a degree of latitude
  // is at least 110574 m, a degree of longitude at least 111319 m times
  // the cosine of the latitude (WGS84), so 110000 and 111000 overshoot.
  double dlat = radius_m / 110000.0;
  double lat_lo = std::max(-90.0, f.lat - dlat);
  double lat_hi = std::min(90.0, f.lat + dlat);
  double far = std::max(std::fabs(lat_lo), std::fabs(lat_hi));
  double dlon = far >= 89.0
                  ? 360.0
                  : radius_m / (111000.0 * std::cos(far * M_PI / 180.0));
  const tree& other = f.flow.direction == flow_direction::supply ? demands_
                                                                 : supplies_;
  candidates_.clear();
  auto query = [&](double lon_lo, double lon_hi) {
    box b{point{lon_lo, lat_lo}, point{lon_hi, lat_hi}};
    other.query(bgi::intersects(b),
                boost::make_function_output_iterator(
                  [this](const entry& e) { candidates_.push_back(e.second); }));
  };
  if (dlon >= 180.0) {
    query(-180.0, 180.0);
  } else {
    double lo = f.lon - dlon;
    double hi = f.lon + dlon;
    if (lo < -180.0) {
      query(lo + 360.0, 180.0);
      query(-180.0, hi);
    } else if (hi > 180.0) {
      query(lo, 180.0);
      query(-180.0, hi - 360.0);
    } else {
      query(lo, hi);
    }
  }
}

void match_index::recompute(uint32_t slot, bool same_positions,
                            std::vector<match_change>& out) {
  bool supply = slots_[slot].flow.direction == flow_direction::supply;
  now_.clear();
  if (slots_[slot].indexed) {
    find_candidates(slots_[slot], search_radius_m(slots_[slot].flow, settings_));
    for (auto other : candidates_) {
      const auto& fs = slots_[slot];
      const auto& os = slots_[other];
      ++evaluations_;
      // A pair matched now, at unchanged positions, keeps its distance:
      // the exact geodesic is the costliest step of the rules.
      const double* known = nullptr;
      if (same_positions) {
        auto i = matches_.find(supply ? pair_key(slot, other)
                                      : pair_key(other, slot));
        if (i != matches_.end())
          known = &i->second.distance_m;
      }
      auto m = supply ? evaluate(fs.flow, fs.lat, fs.lon, os.flow, os.lat,
                                 os.lon, settings_, known)
                      : evaluate(os.flow, os.lat, os.lon, fs.flow, fs.lat,
                                 fs.lon, settings_, known);
      if (m)
        now_.emplace_back(other, std::move(*m));
    }
  }
  std::sort(now_.begin(), now_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  auto in_now = [&](uint32_t p) {
    auto i = std::lower_bound(
      now_.begin(), now_.end(), p,
      [](const auto& x, uint32_t key) { return x.first < key; });
    return i != now_.end() && i->first == p;
  };
  // Pairs that no longer pass go first, then the new and changed ones.
  gone_.clear();
  for (auto p : slots_[slot].partners)
    if (!in_now(p))
      gone_.push_back(p);
  std::sort(gone_.begin(), gone_.end());
  for (auto p : gone_)
    if (supply)
      set_match(slot, p, caf::none, out);
    else
      set_match(p, slot, caf::none, out);
  for (auto& [p, m] : now_)
    if (supply)
      set_match(slot, p, std::move(m), out);
    else
      set_match(p, slot, std::move(m), out);
}

void match_index::set_match(uint32_t supply, uint32_t demand,
                            caf::optional<match> m,
                            std::vector<match_change>& out) {
  auto key = pair_key(supply, demand);
  auto i = matches_.find(key);
  if (!m) {
    if (i == matches_.end())
      return;
    match_change c;
    c.removed = true;
    c.value.supply_flow_id = std::move(i->second.supply_flow_id);
    c.value.demand_flow_id = std::move(i->second.demand_flow_id);
    c.value.supply_site_id = std::move(i->second.supply_site_id);
    c.value.demand_site_id = std::move(i->second.demand_site_id);
    c.value.resource = i->second.resource;
    matches_.erase(i);
    drop_partner(slots_[supply].partners, demand);
    drop_partner(slots_[demand].partners, supply);
    out.push_back(std::move(c));
    return;
  }
  if (i != matches_.end() && i->second == *m)
    return; // unchanged: no churn
  if (i == matches_.end()) {
    matches_.emplace(key, *m);
    slots_[supply].partners.push_back(demand);
    slots_[demand].partners.push_back(supply);
  } else {
    i->second = *m;
  }
  out.push_back(match_change{false, std::move(*m)});
}

std::vector<match> match_index::from_scratch() const {
  std::vector<match> out;
  for (auto& s : slots_) {
    if (!s.indexed || s.flow.direction != flow_direction::supply)
      continue;
    for (auto& d : slots_) {
      if (!d.indexed || d.flow.direction != flow_direction::demand)
        continue;
      if (auto m = evaluate(s.flow, s.lat, s.lon, d.flow, d.lat, d.lon,
                            settings_))
        out.push_back(std::move(*m));
    }
  }
  std::sort(out.begin(), out.end(), [](const match& a, const match& b) {
    return std::tie(a.supply_flow_id, a.demand_flow_id)
           < std::tie(b.supply_flow_id, b.demand_flow_id);
  });
  return out;
}

std::vector<match> match_index::matches() const {
  std::vector<match> out;
  out.reserve(matches_.size());
  for (auto& kv : matches_)
    out.push_back(kv.second);
  std::sort(out.begin(), out.end(), [](const match& a, const match& b) {
    return std::tie(a.supply_flow_id, a.demand_flow_id)
           < std::tie(b.supply_flow_id, b.demand_flow_id);
  });
  return out;
}

} // namespace flowmatch
