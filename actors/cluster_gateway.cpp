// A node's door for the other nodes (actors/cluster.hpp): events for the
// registry shards go to the shard host; changes and resyncs for match
// partitions go to the partitions this node holds, in arrival order, held
// back while a partition it just took is being restored.

#include "actors/cluster.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

namespace flowmatch {

namespace {

using gateway_ptr
  = gateway_control_actor::stateful_pointer<cluster_gateway_state>;

caf::error refusal(std::string why) {
  return caf::make_error(caf::sec::runtime_error, std::move(why));
}

/// Control messages come from this node's own actors only: a peer (even
/// one with a certificate of the cluster) cannot open, close or attach.
bool from_here(gateway_ptr self) {
  auto& sender = self->current_sender();
  return sender && sender->node() == self->node();
}

/// Answers the stops once nothing handed to a partition is outstanding.
void check_stops(gateway_ptr self) {
  auto& st = self->state;
  if (st.forwarded > 0)
    return;
  for (auto& rp : st.stops)
    rp.deliver(caf::ok_atom::value);
  st.stops.clear();
}

/// Hands one request to its partition; answers when the partition did.
void forward(gateway_ptr self, cluster_gateway_state::held& h) {
  auto& part = self->state.partitions[h.partition];
  auto rp = h.rp;
  ++self->state.forwarded;
  auto done = [self, rp](caf::ok_atom) mutable {
    rp.deliver(caf::ok_atom::value);
    --self->state.forwarded;
    check_stops(self);
  };
  auto failed = [self, rp](caf::error& err) mutable {
    rp.deliver(std::move(err));
    --self->state.forwarded;
    check_stops(self);
  };
  if (h.resync)
    self->request(part, self->state.limits.stall, resync_atom::value,
                  h.shard, self->state.cluster.shape.shards,
                  std::move(h.entities))
      .then(done, failed);
  else
    self->request(part, self->state.limits.stall, std::move(h.changes))
      .then(done, failed);
}

/// Serves held requests in order: those of a partition open at their
/// epoch go on, those for an older epoch (or that waited a lease time for
/// a partition never opened) are refused; the rest keep waiting. A request
/// waits behind an earlier one of the same partition, and once one timed
/// out, every later one of that partition is refused with it: its sender
/// sends them all again in order, and a copy left waiting here would reach
/// the partition ahead of the resent earlier part.
void serve(gateway_ptr self, bool expire) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  std::deque<cluster_gateway_state::held> keep;
  std::vector<bool> blocked(st.partitions.size(), false);
  std::vector<bool> timed_out(st.partitions.size(), false);
  while (!st.waiting.empty()) {
    auto h = std::move(st.waiting.front());
    st.waiting.pop_front();
    auto p = h.partition;
    auto held = st.partition_epochs[p];
    bool open = held == h.epoch && st.partitions[p];
    if (!open && expire && !blocked[p] && now - h.since > st.cluster.lease)
      timed_out[p] = true;
    if (!blocked[p] && open) {
      forward(self, h);
    } else if (held > h.epoch || timed_out[p]) {
      h.rp.deliver(refusal(fmt::format(
        "node {} does not hold match partition {} at epoch {}",
        st.cluster.node_id, p, h.epoch)));
    } else {
      blocked[p] = true;
      keep.push_back(std::move(h));
    }
  }
  st.waiting = std::move(keep);
}

caf::result<caf::ok_atom> take(gateway_ptr self,
                               cluster_gateway_state::held h) {
  auto& st = self->state;
  if (h.partition >= st.partitions.size())
    return refusal(fmt::format("no match partition {}", h.partition));
  if (st.closed)
    return refusal(fmt::format("node {} is leaving the cluster",
                               st.cluster.node_id));
  auto rp = self->make_response_promise<caf::ok_atom>();
  h.rp = rp;
  h.since = std::chrono::steady_clock::now();
  st.waiting.push_back(std::move(h));
  serve(self, false);
  return rp;
}

} // namespace

gateway_control_actor::behavior_type
cluster_gateway(gateway_control_actor::stateful_pointer<cluster_gateway_state> self,
                cluster_settings cluster, shard_host_actor shards,
                wait_limits limits) {
  auto& init = self->state;
  init.cluster = std::move(cluster);
  init.shards = std::move(shards);
  init.limits = limits;
  init.partition_epochs.assign(init.cluster.shape.match_partitions, 0);
  init.partitions.resize(init.cluster.shape.match_partitions);
  self->delayed_send(self, init.cluster.beat, expire_atom::value);
  return {
    [self](hello_atom, std::string& id, caf::actor& peer) -> std::string {
      auto& st = self->state;
      if (st.membership && peer)
        self->send(st.membership, hello_atom::value, std::move(id),
                   caf::actor_cast<cluster_gateway_actor>(peer));
      return st.cluster.node_id;
    },
    [self](attach_atom, cluster_membership_actor& membership) {
      if (from_here(self))
        self->state.membership = std::move(membership);
    },
    [self](route_atom, uint32_t shard, int64_t epoch,
           std::vector<event>& events, shard_client_actor& client) {
      return self->delegate(self->state.shards, route_atom::value, shard,
                            epoch, std::move(events), std::move(client));
    },
    [self](partition_atom, uint32_t p, int64_t epoch,
           std::vector<change>& changes) {
      cluster_gateway_state::held h;
      h.partition = p;
      h.epoch = epoch;
      h.resync = false;
      h.changes = std::move(changes);
      return take(self, std::move(h));
    },
    [self](resync_atom, uint32_t p, int64_t epoch, uint32_t shard,
           registry_snapshot& entities) {
      cluster_gateway_state::held h;
      h.partition = p;
      h.epoch = epoch;
      h.resync = true;
      h.shard = shard;
      h.entities = std::move(entities);
      return take(self, std::move(h));
    },
    [self](matches_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      std::vector<match_partition_actor> open;
      for (auto& p : st.partitions)
        if (p)
          open.push_back(p);
      auto rp = self->make_response_promise<uint64_t>();
      auto sum = std::make_shared<uint64_t>(0);
      gather_into<uint64_t>(
        rp, open.size(),
        [self, open](size_t i) {
          return self->request(open[i], self->state.limits.reply,
                               matches_atom::value);
        },
        [sum](uint64_t n) { *sum += n; }, [sum] { return *sum; });
      return rp;
    },
    [self](open_atom, uint32_t p, int64_t epoch,
           match_partition_actor& partition) {
      auto& st = self->state;
      if (p >= st.partitions.size() || !from_here(self))
        return;
      st.partition_epochs[p] = epoch;
      st.partitions[p] = std::move(partition);
      serve(self, false);
    },
    [self](stop_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (!from_here(self))
        return refusal("only the node itself stops its gateway");
      st.closed = true;
      for (auto& h : st.waiting)
        h.rp.deliver(refusal(fmt::format("node {} is leaving the cluster",
                                         st.cluster.node_id)));
      st.waiting.clear();
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.stops.push_back(rp);
      check_stops(self);
      return rp;
    },
    [self](expire_atom) {
      serve(self, true);
      self->delayed_send(self, self->state.cluster.beat, expire_atom::value);
    },
  };
}

} // namespace flowmatch
