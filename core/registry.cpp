#include "core/registry.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace flowmatch {

namespace {

/// The version rule: an upsert whose version is lower than the stored one is
/// stale. Without a version on either side there is nothing to compare.
template <class T>
bool is_stale(const T& stored, const T& incoming) {
  return stored.version && incoming.version
         && *incoming.version < *stored.version;
}

} // namespace

void registry::apply(const event& ev, clock::time_point now,
                     registry_output& out) {
  switch (ev.type) {
    case event_type::site_created:
    case event_type::site_updated:
      upsert_site(ev, out);
      break;
    case event_type::site_deleted:
      delete_site(ev, out);
      break;
    case event_type::resource_flow_created:
    case event_type::resource_flow_updated:
      if (sites_.count(ev.flow_data.site_id) == 0) {
        hold(ev, now, out);
        return;
      }
      upsert_flow(ev, out);
      break;
    case event_type::resource_flow_deleted:
      delete_flow(ev, out);
      break;
  }
}

void registry::upsert_site(const event& ev, registry_output& out) {
  const auto& incoming = ev.site_data;
  out.took_in(ev.id, incoming.site_id);
  auto i = sites_.find(incoming.site_id);
  if (i != sites_.end() && is_stale(i->second, incoming)) {
    ++out.stats.stale;
    return;
  }
  bool moved = i != sites_.end()
               && (i->second.lat != incoming.lat
                   || i->second.lon != incoming.lon);
  if (i == sites_.end())
    sites_.emplace(incoming.site_id, incoming);
  else
    i->second = incoming;
  ++out.stats.applied;
  change c;
  c.kind = change::site_upserted;
  c.event_id = ev.id;
  c.site_data = incoming;
  out.changes.push_back(std::move(c));
  if (moved)
    replace_flows(incoming.site_id, ev.id, out);
  // Flows that waited for this site now apply, in arrival order.
  auto h = held_.find(incoming.site_id);
  if (h == held_.end())
    return;
  auto waiting = std::move(h->second);
  held_.erase(h);
  for (auto& w : waiting) {
    held_ids_.erase(w.ev.id);
    --held_total_;
    ++out.stats.held_applied;
    upsert_flow(w.ev, out);
  }
}

std::vector<std::string>
registry::flows_at(const std::string& site_id) const {
  std::vector<std::string> ids;
  auto owned = flows_by_site_.find(site_id);
  if (owned == flows_by_site_.end())
    return ids;
  // Sorted, so what follows from them comes in a reproducible order.
  ids.assign(owned->second.begin(), owned->second.end());
  std::sort(ids.begin(), ids.end());
  return ids;
}

void registry::replace_flows(const std::string& site_id,
                             const std::string& event_id,
                             registry_output& out) {
  for (auto& id : flows_at(site_id)) {
    auto f = flows_.find(id);
    if (f == flows_.end())
      continue;
    change c;
    c.kind = change::flow_upserted;
    c.event_id = event_id;
    c.flow_data = f->second;
    c.stored = true; // the row is unchanged: the store skips it
    out.changes.push_back(std::move(c));
  }
}

void registry::delete_site(const event& ev, registry_output& out) {
  out.took_in(ev.id, ev.target_id);
  ++out.stats.applied;
  auto i = sites_.find(ev.target_id);
  if (i == sites_.end())
    return; // deleting something unknown is a no-op
  for (const auto& id : flows_at(ev.target_id))
    remove_flow(id, ev.id, out);
  flows_by_site_.erase(ev.target_id);
  sites_.erase(i);
  change c;
  c.kind = change::site_deleted;
  c.event_id = ev.id;
  c.id = ev.target_id;
  out.changes.push_back(std::move(c));
}

void registry::upsert_flow(const event& ev, registry_output& out) {
  const auto& incoming = ev.flow_data;
  out.took_in(ev.id, incoming.site_id);
  auto i = flows_.find(incoming.flow_id);
  if (i != flows_.end() && is_stale(i->second, incoming)) {
    ++out.stats.stale;
    return;
  }
  if (i == flows_.end()) {
    flows_.emplace(incoming.flow_id, incoming);
  } else {
    if (i->second.site_id != incoming.site_id) {
      auto old = flows_by_site_.find(i->second.site_id);
      if (old != flows_by_site_.end()) {
        old->second.erase(incoming.flow_id);
        if (old->second.empty())
          flows_by_site_.erase(old);
      }
    }
    i->second = incoming;
  }
  flows_by_site_[incoming.site_id].insert(incoming.flow_id);
  ++out.stats.applied;
  change c;
  c.kind = change::flow_upserted;
  c.event_id = ev.id;
  c.flow_data = incoming;
  out.changes.push_back(std::move(c));
}

void registry::remove_flow(const std::string& flow_id,
                           const std::string& event_id,
                           registry_output& out) {
  auto i = flows_.find(flow_id);
  if (i == flows_.end())
    return;
  auto owned = flows_by_site_.find(i->second.site_id);
  if (owned != flows_by_site_.end()) {
    owned->second.erase(flow_id);
    if (owned->second.empty())
      flows_by_site_.erase(owned);
  }
  change c;
  c.kind = change::flow_deleted;
  c.event_id = event_id;
  c.id = flow_id;
  // The site it was at: a store deletes the row only if it is still there.
  c.flow_data.site_id = i->second.site_id;
  flows_.erase(i);
  out.changes.push_back(std::move(c));
}

void registry::delete_flow(const event& ev, registry_output& out) {
  // Recorded with the id in processed_events: the flow's site when known.
  auto known = flows_.find(ev.target_id);
  out.took_in(ev.id,
              known != flows_.end() ? known->second.site_id : ev.target_id);
  ++out.stats.applied;
  // A delete is the newest word on the flow: held upserts of it are void.
  // They are done (superseded) and recorded as processed like the delete:
  // a re-fed input after a restart must not hold them again.
  out.stats.superseded += drop_held_of_flow(ev.target_id, &out);
  remove_flow(ev.target_id, ev.id, out);
}

size_t registry::drop_held_of_flow(const std::string& flow_id,
                                   registry_output* superseded) {
  size_t dropped = 0;
  if (held_total_ == 0)
    return 0;
  for (auto i = held_.begin(); i != held_.end();) {
    auto& queue = i->second;
    for (auto j = queue.begin(); j != queue.end();) {
      if (j->ev.flow_data.flow_id == flow_id) {
        if (superseded != nullptr)
          superseded->took_in(j->ev.id, j->ev.flow_data.site_id);
        held_ids_.erase(j->ev.id);
        --held_total_;
        ++dropped;
        j = queue.erase(j);
      } else {
        ++j;
      }
    }
    if (queue.empty())
      i = held_.erase(i);
    else
      ++i;
  }
  return dropped;
}

void registry::hold(const event& ev, clock::time_point now,
                    registry_output& out) {
  while (held_total_ >= hold_limit_ && !hold_order_.empty()) {
    // Full: the oldest held flow gives way, as a dead letter.
    auto ticket = std::move(hold_order_.front());
    hold_order_.pop_front();
    if (auto h = take_held(ticket))
      dead_letter_held(*h,
                       fmt::format("site {} unknown and the hold is full ({} "
                                   "flows)",
                                   ticket.site_id, hold_limit_),
                       out);
  }
  ++out.stats.held;
  ++held_total_;
  held_ids_.insert(ev.id);
  held_[ev.flow_data.site_id].push_back(held_flow{ev, now});
  hold_order_.push_back(hold_ticket{now, ev.flow_data.site_id, ev.id});
}

void registry::dead_letter_held(held_flow& h, std::string detail,
                                registry_output& out) {
  held_ids_.erase(h.ev.id);
  --held_total_;
  dead_letter dl;
  dl.event_id = h.ev.id;
  dl.origin = h.ev.origin;
  dl.reason = reject_reason::orphan_flow;
  dl.detail = std::move(detail);
  dl.payload = h.ev.raw;
  out.stats.count_dead_letter(dl.reason);
  out.stats.rejected_ids.push_back(h.ev.id);
  out.dead_letters.push_back(std::move(dl));
}

caf::optional<registry::held_flow>
registry::take_held(const hold_ticket& ticket) {
  if (held_ids_.count(ticket.event_id) == 0)
    return caf::none; // applied or cancelled meanwhile
  auto q = held_.find(ticket.site_id);
  if (q == held_.end() || q->second.empty())
    return caf::none;
  // Tickets and per-site queues share arrival order, and tickets of events
  // no longer held were skipped above: the front is this ticket's event.
  auto h = std::move(q->second.front());
  q->second.pop_front();
  if (q->second.empty())
    held_.erase(q);
  return h;
}

void registry::expire_held(clock::time_point cutoff, registry_output& out) {
  while (!hold_order_.empty() && hold_order_.front().arrived < cutoff) {
    auto ticket = std::move(hold_order_.front());
    hold_order_.pop_front();
    if (auto h = take_held(ticket))
      dead_letter_held(*h,
                       fmt::format("site {} did not arrive within the hold "
                                   "time",
                                   ticket.site_id),
                       out);
  }
}

void registry::release_all_held(registry_output& out) {
  for (auto& ticket : hold_order_)
    if (auto h = take_held(ticket))
      dead_letter_held(*h,
                       fmt::format("site {} never arrived before the end of "
                                   "input",
                                   ticket.site_id),
                       out);
  hold_order_.clear();
}

void registry::put_site(const site& s) {
  sites_[s.site_id] = s;
}

void registry::put_flow(const resource_flow& f) {
  auto i = flows_.find(f.flow_id);
  if (i != flows_.end() && i->second.site_id != f.site_id) {
    auto old = flows_by_site_.find(i->second.site_id);
    if (old != flows_by_site_.end()) {
      old->second.erase(f.flow_id);
      if (old->second.empty())
        flows_by_site_.erase(old);
    }
  }
  flows_[f.flow_id] = f;
  flows_by_site_[f.site_id].insert(f.flow_id);
}

void registry::repair(const change& refused, const registry_snapshot& stored,
                      registry_output& out) {
  auto stored_site = [&](const std::string& id) -> const site* {
    for (auto& s : stored.sites)
      if (s.site_id == id)
        return &s;
    return nullptr;
  };
  auto stored_flow = [&](const std::string& id) -> const resource_flow* {
    for (auto& f : stored.flows)
      if (f.flow_id == id)
        return &f;
    return nullptr;
  };
  auto emit_site = [&](const site& s) {
    change c;
    c.kind = change::site_upserted;
    c.site_data = s;
    c.stored = true;
    out.changes.push_back(std::move(c));
  };
  auto emit_flow = [&](const resource_flow& f) {
    change c;
    c.kind = change::flow_upserted;
    c.flow_data = f;
    c.stored = true;
    out.changes.push_back(std::move(c));
  };
  auto mark_stored = [&](size_t from) {
    for (size_t i = from; i < out.changes.size(); ++i)
      out.changes[i].stored = true;
  };
  switch (refused.kind) {
    case change::site_upserted: {
      auto& id = refused.site_data.site_id;
      auto* now = find_site(id);
      if (now == nullptr || !(*now == refused.site_data))
        return; // a later change of the site decides
      if (auto* s = stored_site(id)) {
        put_site(*s);
        emit_site(*s);
        return;
      }
      // Never stored: gone, with the flows memory put there (their own
      // inserts failed for want of the site row).
      auto from = out.changes.size();
      for (auto& f : flows_at(id))
        remove_flow(f, {}, out);
      flows_by_site_.erase(id);
      sites_.erase(id);
      change c;
      c.kind = change::site_deleted;
      c.id = id;
      out.changes.push_back(std::move(c));
      mark_stored(from);
      return;
    }
    case change::flow_upserted: {
      auto& id = refused.flow_data.flow_id;
      auto* now = find_flow(id);
      if (now == nullptr || !(*now == refused.flow_data))
        return;
      if (auto* f = stored_flow(id); f != nullptr && sites_.count(f->site_id)) {
        put_flow(*f);
        emit_flow(*f);
        return;
      }
      auto from = out.changes.size();
      remove_flow(id, {}, out);
      mark_stored(from);
      return;
    }
    case change::site_deleted: {
      auto& id = refused.id;
      auto* s = stored_site(id);
      if (find_site(id) != nullptr || s == nullptr)
        return; // back already, or the row is gone after all
      put_site(*s);
      emit_site(*s);
      for (auto& f : stored.flows)
        if (f.site_id == id && find_flow(f.flow_id) == nullptr) {
          put_flow(f);
          emit_flow(f);
        }
      return;
    }
    case change::flow_deleted: {
      auto& id = refused.id;
      auto* f = stored_flow(id);
      if (find_flow(id) != nullptr || f == nullptr || !sites_.count(f->site_id))
        return;
      put_flow(*f);
      emit_flow(*f);
      return;
    }
  }
}

void registry::restore(registry_snapshot state) {
  for (auto& s : state.sites) {
    auto id = s.site_id;
    sites_[id] = std::move(s);
  }
  for (auto& f : state.flows) {
    flows_by_site_[f.site_id].insert(f.flow_id);
    auto id = f.flow_id;
    flows_[id] = std::move(f);
  }
}

registry_part registry::hand_over(const std::string& site_id) {
  // Where each flow waits, so that a flow pulls in the sites it is held for.
  std::unordered_map<std::string, std::vector<std::string>> held_at;
  for (auto& [site, queue] : held_)
    for (auto& h : queue)
      held_at[h.ev.flow_data.flow_id].push_back(site);
  // The closure over "a flow is at or held for a site".
  std::unordered_set<std::string> sites_in, flows_in;
  std::vector<std::string> to_visit{site_id};
  auto add_flow = [&](const std::string& flow_id) {
    if (!flows_in.insert(flow_id).second)
      return;
    if (auto f = flows_.find(flow_id); f != flows_.end())
      to_visit.push_back(f->second.site_id);
    if (auto h = held_at.find(flow_id); h != held_at.end())
      for (auto& s : h->second)
        to_visit.push_back(s);
  };
  while (!to_visit.empty()) {
    auto s = std::move(to_visit.back());
    to_visit.pop_back();
    if (!sites_in.insert(s).second)
      continue;
    if (auto owned = flows_by_site_.find(s); owned != flows_by_site_.end())
      for (auto& f : owned->second)
        add_flow(f);
    if (auto q = held_.find(s); q != held_.end())
      for (auto& h : q->second)
        add_flow(h.ev.flow_data.flow_id);
  }
  // Take it all out; sorted, so a part is reproducible.
  registry_part part;
  part.site_ids.assign(sites_in.begin(), sites_in.end());
  std::sort(part.site_ids.begin(), part.site_ids.end());
  part.flow_ids.assign(flows_in.begin(), flows_in.end());
  std::sort(part.flow_ids.begin(), part.flow_ids.end());
  for (auto& s : part.site_ids) {
    if (auto i = sites_.find(s); i != sites_.end()) {
      part.sites.push_back(std::move(i->second));
      sites_.erase(i);
    }
    flows_by_site_.erase(s);
    if (auto q = held_.find(s); q != held_.end()) {
      for (auto& h : q->second) {
        held_ids_.erase(h.ev.id);
        --held_total_;
        part.held_since.push_back(h.arrived.time_since_epoch().count());
        part.held.push_back(std::move(h.ev));
      }
      held_.erase(q);
    }
  }
  if (!part.held.empty())
    hold_order_.erase(std::remove_if(hold_order_.begin(), hold_order_.end(),
                                     [&](const hold_ticket& t) {
                                       return sites_in.count(t.site_id) > 0;
                                     }),
                      hold_order_.end());
  for (auto& f : part.flow_ids)
    if (auto i = flows_.find(f); i != flows_.end()) {
      part.flows.push_back(std::move(i->second));
      flows_.erase(i);
    }
  return part;
}

void registry::take_over(registry_part part) {
  for (auto& s : part.sites)
    put_site(s);
  for (auto& f : part.flows)
    put_flow(f);
  if (part.held.empty())
    return;
  for (size_t i = 0; i < part.held.size(); ++i) {
    auto& ev = part.held[i];
    auto arrived = clock::time_point{clock::duration{part.held_since[i]}};
    hold_order_.push_back(hold_ticket{arrived, ev.flow_data.site_id, ev.id});
    held_ids_.insert(ev.id);
    ++held_total_;
    held_[ev.flow_data.site_id].push_back(held_flow{std::move(ev), arrived});
  }
  // Expiry walks the tickets in arrival order. A site's tickets all come
  // from one side, in its queue's order, so a stable sort keeps both.
  std::stable_sort(hold_order_.begin(), hold_order_.end(),
                   [](const hold_ticket& a, const hold_ticket& b) {
                     return a.arrived < b.arrived;
                   });
}

registry_snapshot registry::snapshot() const {
  registry_snapshot s;
  s.sites.reserve(sites_.size());
  for (const auto& kv : sites_)
    s.sites.push_back(kv.second);
  s.flows.reserve(flows_.size());
  for (const auto& kv : flows_)
    s.flows.push_back(kv.second);
  std::sort(s.sites.begin(), s.sites.end(),
            [](const site& a, const site& b) { return a.site_id < b.site_id; });
  std::sort(s.flows.begin(), s.flows.end(),
            [](const resource_flow& a, const resource_flow& b) {
              return a.flow_id < b.flow_id;
            });
  return s;
}

registry_part registry::routing_keys() const {
  registry_part keys;
  keys.site_ids.reserve(sites_.size() + held_.size());
  keys.flow_ids.reserve(flows_.size() + held_total_);
  for (const auto& kv : sites_)
    keys.site_ids.push_back(kv.first);
  for (const auto& kv : flows_)
    keys.flow_ids.push_back(kv.first);
  for (const auto& [site_id, queue] : held_) {
    keys.site_ids.push_back(site_id);
    for (const auto& h : queue)
      keys.flow_ids.push_back(h.ev.flow_data.flow_id);
  }
  return keys;
}

const site* registry::find_site(const std::string& id) const {
  auto i = sites_.find(id);
  return i == sites_.end() ? nullptr : &i->second;
}

const resource_flow* registry::find_flow(const std::string& id) const {
  auto i = flows_.find(id);
  return i == flows_.end() ? nullptr : &i->second;
}

} // namespace flowmatch
