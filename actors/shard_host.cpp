// The owner side of registry shards (actors/cluster.hpp).

#include "actors/cluster.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace flowmatch {

namespace {

using host_ptr = shard_host_actor::stateful_pointer<shard_host_state>;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

caf::error refusal(std::string why) {
  return caf::make_error(caf::sec::runtime_error, std::move(why));
}

/// Takes in the events of an open shard: what was applied already is
/// reported settled at once, what is in flight gets one more client to
/// tell, the rest goes to the dispatcher (the answer is its admission).
void admit(host_ptr self, std::vector<event>& events,
           shard_client_actor& client,
           caf::typed_response_promise<caf::ok_atom> rp) {
  auto& st = self->state;
  auto now = now_ms();
  std::vector<event> fresh;
  std::vector<std::string> applied;
  fresh.reserve(events.size());
  for (auto& ev : events) {
    if (st.seen.contains(ev.id, now)) {
      ++st.duplicates;
      applied.push_back(std::move(ev.id));
      continue;
    }
    auto [i, added] = st.in_flight.try_emplace(ev.id);
    if (!added) {
      // A resend of an event still in flight here: one more to tell. The
      // same router again means its link broke and came back: the handle
      // from before points to a dead proxy (CAF drops what is sent to
      // it), so the new one replaces it.
      ++st.duplicates;
      auto& clients = i->second;
      clients.erase(std::remove(clients.begin(), clients.end(), client),
                    clients.end());
      clients.push_back(client);
      continue;
    }
    i->second.push_back(client);
    fresh.push_back(std::move(ev));
  }
  if (!applied.empty())
    self->send(client, settled_atom::value, std::move(applied));
  if (fresh.empty()) {
    rp.deliver(caf::ok_atom::value);
    return;
  }
  st.admitted += fresh.size();
  // Admission waits as long as backpressure may last (the stall limit).
  self->request(st.dispatcher, st.limits.stall, ingest_atom::value,
                std::move(fresh))
    .then([rp](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
}

/// Tells each client the outcome of its events.
template <class Atom>
void tell(host_ptr self, Atom what, const std::vector<std::string>& ids,
          bool remember) {
  auto& st = self->state;
  std::map<caf::actor_addr, std::pair<shard_client_actor,
                                      std::vector<std::string>>>
    out;
  auto now = now_ms();
  for (auto& id : ids) {
    if (remember)
      st.seen.remember(id, now);
    auto i = st.in_flight.find(id);
    if (i == st.in_flight.end())
      continue;
    for (auto& c : i->second) {
      auto& slot = out[c.address()];
      slot.first = c;
      slot.second.push_back(id);
    }
    st.in_flight.erase(i);
  }
  for (auto& [addr, entry] : out)
    self->send(entry.first, what, std::move(entry.second));
}

/// Admits what waited for a shard that is open now; refuses what waited
/// too long for a shard this node never opened.
void serve_queue(host_ptr self, bool expire) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  std::deque<shard_host_state::waiting> keep;
  while (!st.queued.empty()) {
    auto w = std::move(st.queued.front());
    st.queued.pop_front();
    auto held = st.open[w.shard];
    if (held == w.epoch) {
      admit(self, w.events, w.client, w.rp);
    } else if ((held > w.epoch)
               || (expire && now - w.since > st.cluster.lease)) {
      ++st.refused;
      w.rp.deliver(refusal(fmt::format(
        "node {} does not hold registry shard {} at epoch {}",
        st.cluster.node_id, w.shard, w.epoch)));
    } else {
      keep.push_back(std::move(w));
    }
  }
  st.queued = std::move(keep);
}

} // namespace

shard_host_actor::behavior_type
shard_host(shard_host_actor::stateful_pointer<shard_host_state> self,
           cluster_settings cluster, admission_actor dispatcher,
           commit_coordinator_actor coordinator,
           std::chrono::milliseconds dedup_retention, wait_limits limits) {
  auto& init = self->state;
  init.limits = limits;
  init.cluster = std::move(cluster);
  init.dispatcher = std::move(dispatcher);
  init.open.assign(init.cluster.shape.shards, 0);
  init.seen = event_id_window{dedup_retention.count()};
  self->send(coordinator, subscribe_atom::value, settled_sink_actor{self});
  auto sweep = std::clamp(
    dedup_retention / static_cast<int>(event_id_window::shard_count),
    std::chrono::milliseconds{1}, std::chrono::milliseconds{1000});
  self->delayed_send(self, sweep, expire_atom::value);
  return {
    [self](route_atom, uint32_t shard, int64_t epoch,
           std::vector<event>& events,
           shard_client_actor& client) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (shard >= st.open.size())
        return refusal(fmt::format("no registry shard {}", shard));
      if (st.closed) {
        ++st.refused;
        return refusal(fmt::format("node {} is leaving the cluster",
                                   st.cluster.node_id));
      }
      auto rp = self->make_response_promise<caf::ok_atom>();
      auto held = st.open[shard];
      if (held == epoch) {
        admit(self, events, client, rp);
      } else if (held > epoch) {
        ++st.refused;
        rp.deliver(refusal(fmt::format(
          "registry shard {} moved on to epoch {} (asked for {})", shard,
          held, epoch)));
      } else {
        // Taken a moment ago and still being restored (or about to be):
        // wait, in order, at most a lease time.
        st.queued.push_back(shard_host_state::waiting{
          rp, shard, epoch, std::move(events), std::move(client),
          std::chrono::steady_clock::now()});
      }
      return rp;
    },
    [self](open_atom, uint32_t shard, int64_t epoch,
           std::vector<std::string>& ids, std::vector<int64_t>& applied) {
      auto& st = self->state;
      for (size_t i = 0; i < ids.size(); ++i)
        st.seen.remember(ids[i], i < applied.size() ? applied[i] : now_ms());
      st.open[shard] = epoch;
      serve_queue(self, false);
    },
    [self](forget_atom, const std::vector<std::string>& ids) {
      tell(self, forget_atom::value, ids, false);
    },
    [self](stop_atom) {
      auto& st = self->state;
      st.closed = true;
      for (auto& w : st.queued)
        w.rp.deliver(refusal(fmt::format("node {} is leaving the cluster",
                                         st.cluster.node_id)));
      st.queued.clear();
    },
    [self](settled_atom, const std::vector<std::string>& ids) {
      tell(self, settled_atom::value, ids, true);
    },
    [self, sweep](expire_atom) {
      self->state.seen.expire_next_shard(now_ms());
      serve_queue(self, true);
      self->delayed_send(self, sweep, expire_atom::value);
    },
    [self](status_atom) {
      auto& st = self->state;
      actor_status s;
      s.actor = self->name();
      uint64_t open = 0;
      for (auto e : st.open)
        if (e > 0)
          ++open;
      s.counter("admitted", static_cast<double>(st.admitted))
        .counter("duplicates", static_cast<double>(st.duplicates))
        .counter("refused", static_cast<double>(st.refused))
        .gauge("shards_open", static_cast<double>(open))
        .gauge("events_in_flight", static_cast<double>(st.in_flight.size()));
      s.queue_depth = st.queued.size();
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
