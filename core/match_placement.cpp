#include "core/match_placement.hpp"

#include <utility>

namespace flowmatch {

match_placement::match_placement(match_tiling tiling)
  : tiling_(std::move(tiling)) {
}

partition_mask match_placement::holders_of(resource_class cls,
                                           flow_direction side,
                                           const std::string& site_id) const {
  auto s = sites_.find(site_id);
  if (s == sites_.end())
    return match_tiling::bit(tiling_.first(cls));
  return tiling_.holders(cls, side, s->second.lat, s->second.lon);
}

void match_placement::send(partition_mask mask, change&& c) {
  if (mask == 0)
    return;
  auto& parts = out_.back().parts;
  auto last = static_cast<uint32_t>(63 - __builtin_clzll(mask));
  for_each_partition(mask, [&](uint32_t p) {
    if (p == last) {
      parts[p].push_back(std::move(c));
    } else {
      parts[p].push_back(c);
      ++copies_;
    }
  });
}

void match_placement::break_segment() {
  bool empty = true;
  for (auto& p : out_.back().parts)
    if (!p.empty())
      empty = false;
  left_.clear();
  if (empty)
    return;
  segment next;
  next.parts.resize(partitions());
  next.needs_quiet = true;
  out_.push_back(std::move(next));
  ++extra_segments_;
}

void match_placement::note_leave(const std::string& flow_id,
                                 partition_mask from) {
  left_[flow_id] |= from;
}

void match_placement::before_enter(const std::string& flow_id,
                                   partition_mask to) {
  if (left_.empty())
    return;
  auto i = left_.find(flow_id);
  if (i != left_.end() && i->second != to)
    break_segment();
}

std::vector<match_placement::segment>
match_placement::route(std::vector<change>&& changes) {
  out_.clear();
  left_.clear();
  segment first;
  first.parts.resize(partitions());
  out_.push_back(std::move(first));
  for (auto& c : changes) {
    switch (c.kind) {
      case change::site_upserted:
        route_site_upsert(std::move(c));
        break;
      case change::site_deleted:
        route_site_delete(std::move(c));
        break;
      case change::flow_upserted:
        route_flow_upsert(std::move(c));
        break;
      case change::flow_deleted:
        route_flow_delete(std::move(c));
        break;
    }
  }
  left_.clear();
  return std::move(out_);
}

void match_placement::route_site_upsert(change&& c) {
  const auto& s = c.site_data;
  auto [i, added] = sites_.try_emplace(s.site_id, placed_site{s.lat, s.lon});
  partition_mask before = 0;
  if (!added) {
    if (i->second.lat == s.lat && i->second.lon == s.lon)
      return; // the partitions read only the position
    before = tiling_.site_holders(i->second.lat, i->second.lon);
    i->second = placed_site{s.lat, s.lon};
  }
  auto now = tiling_.site_holders(s.lat, s.lon);
  if (auto gone = before & ~now) {
    // Partitions the site leaves drop it with its flows there; the copies
    // of the flows that follow the move place them anew.
    change drop;
    drop.kind = change::site_deleted;
    drop.event_id = c.event_id;
    drop.id = s.site_id;
    drop.stored = c.stored;
    send(gone, std::move(drop));
  }
  send(now, std::move(c));
}

void match_placement::route_site_delete(change&& c) {
  auto i = sites_.find(c.id);
  if (i == sites_.end())
    return; // never placed: no partition knows it
  auto mask = tiling_.site_holders(i->second.lat, i->second.lon);
  sites_.erase(i);
  send(mask, std::move(c));
}

void match_placement::route_flow_upsert(change&& c) {
  const auto& f = c.flow_data;
  auto now = holders_of(f.resource, f.direction, f.site_id);
  auto [i, added] = flows_.try_emplace(f.flow_id);
  auto& placed = i->second;
  if (!added) {
    if (auto gone = placed.holders & ~now) {
      // It changed class or place: the partitions it leaves forget it.
      change drop;
      drop.kind = change::flow_deleted;
      drop.event_id = c.event_id;
      drop.id = f.flow_id;
      drop.stored = c.stored;
      if (placed.side == flow_direction::supply)
        note_leave(f.flow_id, gone);
      if (placed.side == flow_direction::supply
          || f.direction == flow_direction::supply)
        ++handovers_;
      send(gone, std::move(drop));
    }
  }
  placed.holders = now;
  placed.cls = f.resource;
  placed.side = f.direction;
  if (f.direction == flow_direction::supply)
    before_enter(f.flow_id, now);
  send(now, std::move(c));
}

void match_placement::route_flow_delete(change&& c) {
  auto i = flows_.find(c.id);
  if (i == flows_.end())
    return; // never placed: no partition holds it
  auto mask = i->second.holders;
  if (i->second.side == flow_direction::supply)
    note_leave(c.id, mask);
  flows_.erase(i);
  send(mask, std::move(c));
}

void match_placement::place(registry_snapshot&& stored,
                            std::vector<match>&& matches,
                            std::vector<registry_snapshot>& entities,
                            std::vector<std::vector<match>>& stored_matches) {
  auto n = partitions();
  entities.assign(n, {});
  stored_matches.assign(n, {});
  for (auto& s : stored.sites) {
    sites_[s.site_id] = placed_site{s.lat, s.lon};
    for_each_partition(tiling_.site_holders(s.lat, s.lon),
                       [&](uint32_t p) { entities[p].sites.push_back(s); });
  }
  for (auto& f : stored.flows) {
    auto mask = holders_of(f.resource, f.direction, f.site_id);
    flows_[f.flow_id] = placed_flow{mask, f.resource, f.direction};
    for_each_partition(mask,
                       [&](uint32_t p) { entities[p].flows.push_back(f); });
  }
  for (auto& m : matches) {
    // The supply's partition evaluates the pair; a match of a supply not
    // stored (any more) goes to its class's first, which removes it.
    auto p = tiling_.first(m.resource);
    auto s = flows_.find(m.supply_flow_id);
    if (s != flows_.end() && s->second.side == flow_direction::supply
        && s->second.cls == m.resource)
      p = static_cast<uint32_t>(__builtin_ctzll(s->second.holders));
    stored_matches[p].push_back(std::move(m));
  }
}

} // namespace flowmatch
