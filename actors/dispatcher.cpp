#include "actors/dispatcher.hpp"

#include "actors/gather.hpp"
#include "core/registry.hpp"
#include "messages/routing_hash.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

#include <string_view>

namespace flowmatch {

std::string_view to_string(routing_policy p) {
  switch (p) {
    case routing_policy::key_hash:
      return "key-hash";
    case routing_policy::round_robin:
      return "round-robin";
    case routing_policy::least_loaded:
      return "least-loaded";
  }
  return "unknown";
}

caf::optional<routing_policy> parse_routing_policy(std::string_view s) {
  if (s == "key-hash")
    return routing_policy::key_hash;
  if (s == "round-robin")
    return routing_policy::round_robin;
  if (s == "least-loaded")
    return routing_policy::least_loaded;
  return caf::none;
}

namespace {

using dispatcher_ptr = dispatcher_actor::stateful_pointer<dispatcher_state>;
using group_t = dispatcher_state::group;

/// Takes a worker report's counters into the totals; the ids of events
/// dead-lettered after admission go to the sources, which forget them.
void take_stats(dispatcher_ptr self, registry_stats& stats) {
  auto& st = self->state;
  if (!stats.rejected_ids.empty()) {
    for (auto& feeder : st.feeders)
      self->send(caf::actor_cast<source_actor>(feeder), forget_atom::value,
                 stats.rejected_ids);
    stats.rejected_ids.clear();
  }
  st.totals += stats;
}

/// Remembers the sender of an ingest request as a source to tell.
void note_feeder(dispatcher_ptr self) {
  auto sender = caf::actor_cast<caf::actor>(self->current_sender());
  if (!sender)
    return;
  auto& fs = self->state.feeders;
  if (std::find(fs.begin(), fs.end(), sender) == fs.end())
    fs.push_back(std::move(sender));
}

/// The worker of a site: its hash's, unless a hand-over moved it.
uint32_t worker_of_site(const group_t& g, const std::string& site_id) {
  if (!g.site_home.empty())
    if (auto i = g.site_home.find(site_id); i != g.site_home.end())
      return i->second;
  return routing_slot(site_id, g.settings.workers);
}

/// Returned by pick_worker for an event that must wait for a hand-over.
constexpr uint32_t wait_for_handover = UINT32_MAX;

/// Chooses the worker of `g` for `ev`; for key-hash groups also maintains
/// the flow routing table. A flow upsert naming a site on another worker
/// than the flow's gives `wait_for_handover` and fills in `wanted`.
uint32_t pick_worker(group_t& g, const event& ev,
                     dispatcher_state::handover& wanted) {
  auto n = g.settings.workers;
  switch (g.settings.policy) {
    case routing_policy::round_robin:
      return static_cast<uint32_t>(g.next_round_robin++ % n);
    case routing_policy::least_loaded: {
      uint32_t best = 0;
      uint64_t best_load = UINT64_MAX;
      for (uint32_t w = 0; w < n; ++w) {
        auto load = g.worker_load[w] + g.picks[w].size();
        if (load < best_load) {
          best = w;
          best_load = load;
        }
      }
      return best;
    }
    case routing_policy::key_hash:
      break;
  }
  switch (ev.type) {
    case event_type::resource_flow_created:
    case event_type::resource_flow_updated: {
      auto w = worker_of_site(g, ev.flow_data.site_id);
      auto [i, added] = g.flow_owner.try_emplace(ev.flow_data.flow_id, w);
      if (!added && i->second != w) {
        wanted.from = w;
        wanted.to = i->second;
        wanted.site = ev.flow_data.site_id;
        return wait_for_handover;
      }
      return w;
    }
    case event_type::resource_flow_deleted: {
      // The worker that holds the flow; for a flow never routed, the site
      // the delete names (v1.1), where a held upsert of it may wait, or
      // else anywhere: deleting an unknown flow is a no-op.
      auto i = g.flow_owner.find(ev.target_id);
      if (i != g.flow_owner.end())
        return i->second;
      if (ev.flow_data.site_id.empty())
        return routing_slot(ev.target_id, n);
      return worker_of_site(g, ev.flow_data.site_id);
    }
    default:
      return worker_of_site(g, ev.site_key());
  }
}

bool has_credit(dispatcher_ptr self) {
  for (auto& g : self->state.groups)
    if (g.in_flight >= g.settings.max_in_flight)
      return false;
  return true;
}

/// Routes the events of `events` from `from` on; returns where it stopped:
/// the end, or an event that waits for the hand-over now pending.
size_t route(dispatcher_ptr self,
             const std::shared_ptr<const std::vector<event>>& events,
             size_t from) {
  auto& st = self->state;
  auto end = events->size();
  size_t i = from;
  dispatcher_state::handover wanted;
  // Room for an even share and some skew up front: growing the pick lists
  // one doubling at a time cost about a tenth of the routing time.
  for (auto& g : st.groups)
    for (auto& picks : g.picks)
      picks.reserve((end - from) / g.picks.size() + (end - from) / 8 + 8);
  for (; i < end; ++i) {
    const auto& ev = (*events)[i];
    auto gi = st.route[static_cast<size_t>(ev.type)];
    auto& g = st.groups[static_cast<size_t>(gi)];
    auto w = pick_worker(g, ev, wanted);
    if (w == wait_for_handover) {
      wanted.group = static_cast<uint32_t>(gi);
      st.pending_handover = std::move(wanted);
      break;
    }
    g.picks[w].push_back(static_cast<uint32_t>(i));
  }
  st.admitted += i - from;
  auto admitted_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  for (uint32_t gi = 0; gi < st.groups.size(); ++gi) {
    auto& g = st.groups[gi];
    for (uint32_t w = 0; w < g.picks.size(); ++w) {
      auto& picks = g.picks[w];
      if (picks.empty())
        continue;
      auto n = picks.size();
      g.in_flight += n;
      g.worker_load[w] += n;
      event_batch batch;
      batch.admitted_ns = admitted_ns;
      batch.events = events;
      batch.picks = std::make_shared<const std::vector<uint32_t>>(
        std::move(picks));
      self->send(g.pool, deliver_atom::value, w, std::move(batch));
      picks = std::vector<uint32_t>{};
    }
    if (g.in_flight > g.peak)
      g.peak = g.in_flight;
  }
  return i;
}

void admit_parked(dispatcher_ptr self);

std::chrono::milliseconds reply_timeout(dispatcher_ptr self);

/// Entries of a key-hash group's routing table.
size_t routing_entries(const group_t& g) {
  return g.flow_owner.size() + g.site_home.size();
}

/// Where the next compaction of `g` starts: twice what is live now, at
/// least the floor.
void plan_next_compaction(group_t& g) {
  g.compact_at = std::max(g.settings.routing_table_floor,
                          2 * routing_entries(g));
}

/// Routing waits for a hand-over or a compaction.
bool paused(const dispatcher_state& st) {
  return st.pending_handover || st.pending_compaction;
}

/// Asks for the pending hand-over once its group has nothing in flight:
/// everything routed before the waiting event is applied and committed.
void ask_for_handover(dispatcher_ptr self) {
  auto& pending = self->state.pending_handover;
  if (!pending || pending->asked)
    return;
  auto& group = self->state.groups[pending->group];
  if (group.in_flight > 0)
    return;
  pending->asked = true;
  self
    ->request(group.pool, group.settings.supervision.limits.reply,
              handover_atom::value, pending->from, pending->to,
              pending->site)
    .then(
      [self](registry_part& moved) {
        auto& st = self->state;
        auto& h = *st.pending_handover;
        auto& g = st.groups[h.group];
        auto n = g.settings.workers;
        for (auto& s : moved.site_ids) {
          if (routing_slot(s, n) == h.to)
            g.site_home.erase(s);
          else
            g.site_home[s] = h.to;
        }
        for (auto& f : moved.flow_ids)
          g.flow_owner[f] = h.to;
        ++g.handovers;
        log()->debug("{} group {}: site {} and {} linked sites, {} flows "
                     "moved from worker {} to {}",
                     self->name(), g.settings.name, h.site,
                     moved.site_ids.size() - 1, moved.flow_ids.size(), h.from,
                     h.to);
        st.pending_handover = caf::none;
        admit_parked(self);
      },
      [self](caf::error& err) {
        auto& h = *self->state.pending_handover;
        // Asked again after a pause: a worker may be restarting.
        log()->warn("{} hand-over of site {} from worker {} to {} failed, "
                    "asking again: {}",
                    self->name(), h.site, h.from, h.to,
                    self->system().render(err));
        h.asked = false;
        self->delayed_send(self, std::chrono::milliseconds{50},
                           handover_atom::value);
      });
}

// Routing-table compaction. flow_owner keeps every flow routed, and only
// the workers know which flows a site's delete removed; so, once the table
// reaches its size (compact_at), routing waits until the group has nothing
// in flight, as for a hand-over, and the table is rebuilt from what the
// workers hold then: the flows they know or hold, and the moved sites they
// still know. With nothing in flight the workers' state is exactly what
// routing must follow, so no entry a later event needs can go missing.

void finish_compaction(dispatcher_ptr self) {
  auto& st = self->state;
  auto& c = *st.pending_compaction;
  auto& g = st.groups[c.group];
  auto before = routing_entries(g);
  size_t flows = 0;
  for (auto& part : c.parts)
    flows += part.flow_ids.size();
  std::unordered_map<std::string, uint32_t> owners;
  owners.reserve(flows);
  std::unordered_map<std::string, uint32_t> homes;
  for (uint32_t w = 0; w < c.parts.size(); ++w) {
    for (auto& f : c.parts[w].flow_ids)
      owners.emplace(std::move(f), w);
    if (!g.site_home.empty())
      for (auto& s : c.parts[w].site_ids)
        if (auto i = g.site_home.find(s); i != g.site_home.end())
          homes.insert(*i);
  }
  g.flow_owner = std::move(owners);
  g.site_home = std::move(homes);
  plan_next_compaction(g);
  ++g.compactions;
  log()->info("{} group {}: routing table rebuilt from its workers: {} "
              "entries, {} before; next at {}",
              self->name(), g.settings.name, routing_entries(g), before,
              g.compact_at);
  st.pending_compaction = caf::none;
  admit_parked(self);
}

/// Asks worker `w` of the compacting group for its keys, then the next.
void collect_keys(dispatcher_ptr self, uint32_t w) {
  auto& c = *self->state.pending_compaction;
  auto& g = self->state.groups[c.group];
  if (w == g.settings.workers) {
    finish_compaction(self);
    return;
  }
  self->request(g.pool, reply_timeout(self), keys_atom::value, w)
    .then(
      [self, w](registry_part& keys) {
        self->state.pending_compaction->parts.push_back(std::move(keys));
        collect_keys(self, w + 1);
      },
      [self, w](caf::error& err) {
        // A worker restarting, say. The table stays as it is (larger than
        // need be, never wrong) and routing goes on; the next try comes
        // after a quarter of the floor more entries.
        auto& st = self->state;
        auto& grp = st.groups[st.pending_compaction->group];
        grp.compact_at = routing_entries(grp) + std::max<size_t>(
                                  grp.settings.routing_table_floor / 4, 1);
        log()->warn("{} group {}: routing-table compaction given up at "
                    "worker {} ({}); next try at {} entries",
                    self->name(), grp.settings.name, w,
                    self->system().render(err), grp.compact_at);
        st.pending_compaction = caf::none;
        admit_parked(self);
      });
}

/// Starts the pending compaction once its group has nothing in flight.
void ask_for_compaction(dispatcher_ptr self) {
  auto& c = self->state.pending_compaction;
  if (!c || c->asked || self->state.groups[c->group].in_flight > 0)
    return;
  c->asked = true;
  c->parts.clear();
  collect_keys(self, 0);
}

/// After routing: a compaction of the first key-hash group whose table
/// reached its size (one pause at a time: not during a hand-over).
void maybe_compact(dispatcher_ptr self) {
  auto& st = self->state;
  if (paused(st))
    return;
  for (uint32_t gi = 0; gi < st.groups.size(); ++gi) {
    auto& g = st.groups[gi];
    if (g.settings.policy != routing_policy::key_hash
        || routing_entries(g) < g.compact_at)
      continue;
    st.pending_compaction = dispatcher_state::compaction{};
    st.pending_compaction->group = gi;
    ask_for_compaction(self);
    return;
  }
}

bool idle(dispatcher_ptr self) {
  if (!self->state.parked.empty())
    return false;
  for (auto& g : self->state.groups)
    if (g.in_flight > 0)
      return false;
  return true;
}

void admit_parked(dispatcher_ptr self) {
  auto& st = self->state;
  while (!st.parked.empty() && !paused(st) && has_credit(self)) {
    auto& p = st.parked.front();
    p.next = route(self, p.events, p.next);
    if (st.pending_handover) {
      ask_for_handover(self);
      return;
    }
    p.promise.deliver(caf::ok_atom::value);
    st.parked.pop_front();
    maybe_compact(self);
  }
  if (idle(self)) {
    for (auto& rp : st.drain_waiters)
      rp.deliver(caf::ok_atom::value);
    st.drain_waiters.clear();
  }
}

std::chrono::milliseconds reply_timeout(dispatcher_ptr self) {
  return self->state.groups.front().settings.supervision.limits.reply;
}

} // namespace

dispatcher_actor::behavior_type
dispatcher(dispatcher_actor::stateful_pointer<dispatcher_state> self,
           std::vector<group_settings> groups) {
  auto& init = self->state;
  init.route.fill(-1);
  for (uint32_t gi = 0; gi < groups.size(); ++gi) {
    dispatcher_state::group g;
    g.settings = std::move(groups[gi]);
    g.worker_load.resize(g.settings.workers);
    g.picks.resize(g.settings.workers);
    g.compact_at = g.settings.routing_table_floor;
    for (auto t : g.settings.handles)
      init.route[static_cast<size_t>(t)] = static_cast<int>(gi);
    g.pool = self->spawn<caf::linked>(worker_pool, g.settings.name, gi,
                                      g.settings.workers,
                                      caf::actor_cast<dispatcher_actor>(self),
                                      g.settings.factory,
                                      g.settings.supervision);
    if (g.settings.on_pool_started)
      g.settings.on_pool_started(g.pool);
    log()->info("{} group {}: {} workers, policy {}, at most {} events in "
                "flight",
                self->name(), g.settings.name, g.settings.workers,
                to_string(g.settings.policy), g.settings.max_in_flight);
    init.groups.push_back(std::move(g));
  }
  return {
    [self](ingest_atom, std::vector<event>& events) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      note_feeder(self);
      // The input batch becomes immutable and shared by every worker.
      auto shared = std::make_shared<const std::vector<event>>(
        std::move(events));
      size_t next = 0;
      if (st.parked.empty() && !paused(st) && has_credit(self)) {
        next = route(self, shared, 0);
        maybe_compact(self);
        if (next == shared->size())
          return caf::ok_atom::value;
      }
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.parked.push_back(
        {std::move(shared), next, rp, std::chrono::steady_clock::now()});
      ask_for_handover(self);
      return rp;
    },
    [self](done_atom, uint32_t gi, uint32_t worker, uint64_t count,
           registry_stats& stats) {
      auto& g = self->state.groups[gi];
      if (count > g.in_flight || count > g.worker_load[worker]) {
        // More credit back than was taken: a bug; do not let the count
        // wrap around (that would stop admission for good).
        log()->error("{} group {} worker {}: {} events reported done, only "
                     "{} in flight",
                     self->name(), g.settings.name, worker, count,
                     g.worker_load[worker]);
        count = std::min(g.in_flight, g.worker_load[worker]);
      }
      g.in_flight -= count;
      g.worker_load[worker] -= count;
      take_stats(self, stats);
      ask_for_handover(self);
      ask_for_compaction(self);
      admit_parked(self);
    },
    [self](handover_atom) { ask_for_handover(self); },
    [self](drain_atom) -> caf::result<caf::ok_atom> {
      if (idle(self))
        return caf::ok_atom::value;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->state.drain_waiters.push_back(rp);
      return rp;
    },
    [self](release_atom) -> caf::result<registry_stats> {
      auto rp = self->make_response_promise<registry_stats>();
      gather_into<registry_stats>(
        rp, self->state.groups.size(),
        [self](size_t i) {
          return self->request(self->state.groups[i].pool,
                               reply_timeout(self), release_atom::value);
        },
        [self](registry_stats& s) { take_stats(self, s); },
        [self] { return self->state.totals; });
      return rp;
    },
    [self](count_atom) -> caf::result<registry_stats> {
      auto rp = self->make_response_promise<registry_stats>();
      sum_into<registry_stats>(rp, self->state.groups.size(), [self](size_t i) {
        return self->request(self->state.groups[i].pool, reply_timeout(self),
                             count_atom::value);
      });
      return rp;
    },
    [self](snapshot_atom) -> caf::result<registry_snapshot> {
      auto rp = self->make_response_promise<registry_snapshot>();
      auto all = std::make_shared<registry_snapshot>();
      gather_into<registry_snapshot>(
        rp, self->state.groups.size(),
        [self](size_t i) {
          return self->request(self->state.groups[i].pool,
                               reply_timeout(self), snapshot_atom::value);
        },
        [all](registry_snapshot& part) { all->append(std::move(part)); },
        [all] {
          all->sort_by_id();
          return std::move(*all);
        });
      return rp;
    },
    [self](restore_atom,
           registry_snapshot& state) -> caf::result<caf::ok_atom> {
      // Spread the stored state the way events are routed: by site.
      auto gi = self->state.route[static_cast<size_t>(
        event_type::resource_flow_created)];
      auto& g = self->state.groups[static_cast<size_t>(gi)];
      auto n = g.settings.workers;
      std::vector<registry_snapshot> parts(n);
      for (auto& s : state.sites)
        parts[routing_slot(s.site_id, n)].sites.push_back(std::move(s));
      for (auto& f : state.flows) {
        auto w = routing_slot(f.site_id, n);
        g.flow_owner[f.flow_id] = w;
        parts[w].flows.push_back(std::move(f));
      }
      plan_next_compaction(g);
      auto rp = self->make_response_promise<caf::ok_atom>();
      gather_into<caf::ok_atom>(
        rp, n,
        [self, pool = g.pool, &parts](size_t w) {
          return self->request(pool, reply_timeout(self),
                               restore_atom::value, static_cast<uint32_t>(w),
                               std::move(parts[w]));
        },
        [](caf::ok_atom) {}, [] { return caf::ok_atom::value; });
      return rp;
    },
    [self](flight_atom) -> dispatch_status {
      auto& st = self->state;
      dispatch_status s;
      for (auto& g : st.groups) {
        s.in_flight.push_back(g.in_flight);
        s.peak_in_flight.push_back(g.peak);
        s.handovers += g.handovers;
        s.routing_entries += routing_entries(g);
        s.compactions += g.compactions;
      }
      s.admitted = st.admitted;
      s.parked_batches = st.parked.size();
      s.totals = st.totals;
      return s;
    },
    [self](status_atom) {
      auto& st = self->state;
      actor_status s;
      s.actor = self->name();
      s.counter("events_admitted", static_cast<double>(st.admitted))
        .counter("events_applied", static_cast<double>(st.totals.applied))
        .counter("events_stale", static_cast<double>(st.totals.stale))
        .counter("events_dead_lettered",
                 static_cast<double>(st.totals.dead_lettered()));
      // Outcomes as one family (the source adds duplicates and its own
      // dead letters): flowmatch_events_total{outcome=...}.
      s.counter("events{outcome=applied}",
                static_cast<double>(st.totals.applied))
        .counter("events{outcome=stale}", static_cast<double>(st.totals.stale))
        .counter("events{outcome=held}", static_cast<double>(st.totals.held))
        .counter("events{outcome=dead_lettered}",
                 static_cast<double>(st.totals.dead_lettered()));
      for (size_t r = 0; r < st.totals.dead_letters.size(); ++r)
        if (st.totals.dead_letters[r] > 0)
          s.counter(fmt::format("dead_letters{{reason={}}}",
                                to_string(static_cast<reject_reason>(r))),
                    static_cast<double>(st.totals.dead_letters[r]));
      uint64_t handovers = 0;
      for (auto& g : st.groups) {
        s.gauge("in_flight_" + g.settings.name,
                static_cast<double>(g.in_flight));
        s.gauge("in_flight_budget_" + g.settings.name,
                static_cast<double>(g.settings.max_in_flight));
        s.gauge("events_in_flight{group=" + g.settings.name + "}",
                static_cast<double>(g.in_flight));
        s.gauge("in_flight_budget{group=" + g.settings.name + "}",
                static_cast<double>(g.settings.max_in_flight));
        s.gauge("routing_table_entries{group=" + g.settings.name + "}",
                static_cast<double>(routing_entries(g)));
        s.counter("routing_table_compactions{group=" + g.settings.name + "}",
                  static_cast<double>(g.compactions));
        handovers += g.handovers;
      }
      s.counter("handovers", static_cast<double>(handovers));
      s.queue_depth = st.parked.size();
      if (!st.parked.empty())
        s.oldest_wait_seconds = std::chrono::duration<double>(
                                  std::chrono::steady_clock::now()
                                  - st.parked.front().since)
                                  .count();
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
