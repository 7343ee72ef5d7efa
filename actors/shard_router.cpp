// The reader side of cluster routing (actors/cluster.hpp).

#include "actors/cluster.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <map>

namespace flowmatch {

namespace {

using router_ptr = shard_router_actor::stateful_pointer<shard_router_state>;
using kept = shard_router_state::kept;

/// What an event costs on the wire, roughly: its payload and ids (the
/// decoded fields repeat the payload's content).
size_t wire_bytes(const event& e) {
  return 2 * e.raw.size() + e.id.size() + 128;
}

void schedule_retry(router_ptr self) {
  auto& st = self->state;
  if (st.retry_scheduled)
    return;
  st.retry_scheduled = true;
  self->delayed_send(self, st.cluster.beat, retry_atom::value);
}

/// A request to `node` at `epoch` failed: what went there is sent again
/// (to whoever owns the shard by then) on the next try.
void on_failure(router_ptr self, uint32_t shard, const std::string& node,
                int64_t epoch, const caf::error& err) {
  auto& st = self->state;
  ++st.failures;
  bool marked = false;
  for (auto& k : st.shards[shard])
    if (k->node == node && k->epoch == epoch) {
      k->node.clear();
      marked = true;
    }
  if (marked)
    log()->info("{} registry shard {} at {} (epoch {}) did not take "
                "events: {}; sending them again",
                self->name(), shard, node, epoch, self->system().render(err));
  schedule_retry(self);
}

/// Sends every kept batch of `shard` that its current owner has not had,
/// in order, each in parts of at most `max_batch_bytes`.
void pump(router_ptr self, uint32_t shard) {
  auto& st = self->state;
  if (shard >= st.directory.shards.size())
    return;
  auto& owner = st.directory.shards[shard];
  auto gw = st.directory.gateway_of(owner);
  if (!gw)
    return;
  auto& node = st.directory.nodes[static_cast<size_t>(owner.node)];
  auto epoch = owner.epoch;
  bool remote = owner.node != st.directory.self;
  for (auto& k : st.shards[shard]) {
    if (k->left == 0 || (k->node == node && k->epoch == epoch))
      continue;
    bool again = !k->node.empty() || k->admitted;
    k->node = node;
    k->epoch = epoch;
    std::vector<event> part;
    size_t bytes = 0;
    auto send = [&] {
      if (part.empty())
        return;
      auto n = part.size();
      if (again)
        st.resent += n;
      if (remote)
        st.remote += n;
      self
        ->request(*gw, st.limits.stall, route_atom::value, shard, epoch,
                  std::move(part), shard_client_actor{self})
        .then([](caf::ok_atom) {},
              [self, shard, node, epoch](caf::error& err) {
                on_failure(self, shard, node, epoch, err);
              });
      part = {};
      bytes = 0;
    };
    for (size_t i = 0; i < k->events.size(); ++i) {
      if (k->done[i])
        continue;
      bytes += wire_bytes(k->events[i]);
      part.push_back(k->events[i]);
      if (bytes >= st.cluster.max_batch_bytes)
        send();
    }
    send();
    k->admitted = true;
  }
}

void pump_all(router_ptr self) {
  for (uint32_t s = 0; s < self->state.shards.size(); ++s)
    pump(self, s);
}

/// Ends drains when nothing is unsettled, or when every batch went out
/// (or has no reachable owner to go to) and outcomes stopped coming. What
/// is left stays pending in the stream for the partition's next reader:
/// events that wait for their sites, and events of a shard whose owner
/// died while no one took its lease yet (every node may be leaving).
void check_drains(router_ptr self) {
  auto& st = self->state;
  if (st.drains.empty())
    return;
  bool all_sent = true;
  for (uint32_t s = 0; s < st.shards.size(); ++s) {
    bool reachable = s < st.directory.shards.size()
                     && st.directory.gateway_of(st.directory.shards[s]);
    for (auto& k : st.shards[s])
      if (k->left > 0 && k->node.empty() && reachable)
        all_sent = false;
  }
  auto quiet = std::chrono::steady_clock::now() - st.last_outcome
               > 2 * st.cluster.beat;
  if (st.unsettled == 0 || (all_sent && quiet)) {
    if (st.unsettled > 0)
      log()->info("{} {} events were not settled (they wait for their "
                  "sites, or for an owner of their shard); they stay "
                  "pending in the stream",
                  self->name(), st.unsettled);
    for (auto& rp : st.drains)
      rp.deliver(caf::ok_atom::value);
    st.drains.clear();
  }
}

/// Marks events done, tells their sources, drops finished batches and
/// lets waiting admissions in.
template <class Atom>
void outcome(router_ptr self, Atom what, const std::vector<std::string>& ids) {
  auto& st = self->state;
  st.last_outcome = std::chrono::steady_clock::now();
  std::map<caf::actor_addr, std::pair<source_actor, std::vector<std::string>>>
    tell;
  for (auto& id : ids) {
    auto i = st.origins.find(id);
    if (i == st.origins.end())
      continue;
    for (auto& o : i->second) {
      if (!o.batch->done[o.index]) {
        o.batch->done[o.index] = true;
        --o.batch->left;
        --st.unsettled;
      }
      auto& slot = tell[o.source.address()];
      slot.first = o.source;
      slot.second.push_back(id);
    }
    st.origins.erase(i);
  }
  for (auto& [addr, entry] : tell)
    self->send(entry.first, what, std::move(entry.second));
  for (auto& q : st.shards)
    while (!q.empty() && q.front()->left == 0)
      q.pop_front();
  while (!st.parked.empty() && st.unsettled < st.cluster.max_unsettled) {
    st.parked.front().deliver(caf::ok_atom::value);
    st.parked.pop_front();
  }
  check_drains(self);
}

} // namespace

shard_router_actor::behavior_type
shard_router(shard_router_actor::stateful_pointer<shard_router_state> self,
             cluster_settings cluster, wait_limits limits) {
  auto& init = self->state;
  init.cluster = std::move(cluster);
  init.limits = limits;
  init.shards.resize(init.cluster.shape.shards);
  init.last_outcome = std::chrono::steady_clock::now();
  return {
    [self](ingest_atom,
           std::vector<event>& events) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto source = caf::actor_cast<source_actor>(self->current_sender());
      std::map<uint32_t, std::unique_ptr<kept>> parts;
      for (auto& ev : events) {
        // Every event of a partitioned stream names its site (ingest.md);
        // the decoder keeps a flow delete's site in flow_data.
        auto& key = ev.type == event_type::resource_flow_deleted
                      ? ev.flow_data.site_id
                      : ev.site_key();
        auto s = shard_of(key, st.cluster.shape.shards);
        auto& k = parts[s];
        if (!k)
          k = std::make_unique<kept>();
        k->events.push_back(std::move(ev));
      }
      st.routed += events.size();
      for (auto& [s, k] : parts) {
        k->done.assign(k->events.size(), false);
        k->left = k->events.size();
        st.unsettled += k->left;
        for (size_t i = 0; i < k->events.size(); ++i)
          st.origins[k->events[i].id].push_back(
            shard_router_state::origin{source, k.get(), i});
        st.shards[s].push_back(std::move(k));
        pump(self, s);
      }
      if (st.unsettled < st.cluster.max_unsettled)
        return caf::ok_atom::value;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.parked.push_back(rp);
      return rp;
    },
    [self](settled_atom, const std::vector<std::string>& ids) {
      outcome(self, settled_atom::value, ids);
    },
    [self](forget_atom, const std::vector<std::string>& ids) {
      outcome(self, forget_atom::value, ids);
    },
    [self](directory_atom, cluster_directory& d) {
      auto& st = self->state;
      // What went to a node that is unreachable now is lost with its
      // requests (a message to a dead proxy is dropped): send it again.
      for (size_t n = 0; n < d.nodes.size(); ++n)
        if (!d.gateways[n])
          for (auto& q : st.shards)
            for (auto& k : q)
              if (k->node == d.nodes[n])
                k->node.clear();
      st.directory = std::move(d);
      pump_all(self);
    },
    [self](retry_atom) {
      self->state.retry_scheduled = false;
      pump_all(self);
      check_drains(self);
      if (!self->state.drains.empty())
        schedule_retry(self);
    },
    [self](drain_atom) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->state.drains.push_back(rp);
      check_drains(self);
      if (!self->state.drains.empty())
        schedule_retry(self);
      return rp;
    },
    [self](status_atom) {
      auto& st = self->state;
      actor_status s;
      s.actor = self->name();
      s.counter("events_routed", static_cast<double>(st.routed))
        .counter("events_sent_remote", static_cast<double>(st.remote))
        .counter("events_resent", static_cast<double>(st.resent))
        .counter("route_failures", static_cast<double>(st.failures))
        .gauge("events_unsettled", static_cast<double>(st.unsettled))
        .gauge("admissions_parked", static_cast<double>(st.parked.size()));
      s.queue_depth = st.unsettled;
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
