#include "actors/match_router.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>

namespace flowmatch {

namespace {

using router_ptr = match_router_actor::stateful_pointer<match_router_state>;

void fail(router_ptr self, caf::error& err,
          caf::typed_response_promise<commit_result> rp) {
  log()->critical("{} a match partition failed: {}", self->name(),
                  self->system().render(err));
  rp.deliver(err);
  self->quit(err);
}

// -- cluster mode: parts through the owners' gateways -------------------------

void schedule_retry(router_ptr self) {
  auto& st = self->state;
  if (st.retry_scheduled)
    return;
  st.retry_scheduled = true;
  // A beat of the membership: by then the leases may name a new owner.
  self->delayed_send(self, std::chrono::milliseconds{500}, retry_atom::value);
}

/// Sends partition `p` every kept part its current owner has not had, in
/// order.
void send_parts(router_ptr self, uint32_t p) {
  auto& st = self->state;
  if (p >= st.directory.partitions.size())
    return;
  auto& owner = st.directory.partitions[p];
  auto gw = st.directory.gateway_of(owner);
  if (!gw)
    return;
  auto node = st.directory.nodes[static_cast<size_t>(owner.node)];
  auto epoch = owner.epoch;
  for (auto& part : st.remote[p]) {
    if (part->answered || (part->node == node && part->epoch == epoch))
      continue;
    if (!part->node.empty())
      ++st.resent_parts;
    part->node = node;
    part->epoch = epoch;
    auto answered = [self, p, part](caf::ok_atom) {
      if (part->answered)
        return;
      part->answered = true;
      auto& q = self->state.remote[p];
      while (!q.empty() && q.front()->answered)
        q.pop_front();
      part->done();
    };
    auto failed = [self, p, node, epoch](caf::error& err) {
      auto& now = self->state;
      ++now.part_failures;
      for (auto& x : now.remote[p])
        if (!x->answered && x->node == node && x->epoch == epoch)
          x->node.clear();
      log()->info("{} match partition {} at {} (epoch {}) did not take a "
                  "part: {}; sending it again",
                  self->name(), p, node, epoch, self->system().render(err));
      schedule_retry(self);
    };
    if (part->resync)
      self
        ->request(*gw, st.limits.stall, resync_atom::value, p, epoch,
                  part->shard, part->entities)
        .then(answered, failed);
    else
      self
        ->request(*gw, st.limits.stall, partition_atom::value, p, epoch,
                  part->changes)
        .then(answered, failed);
  }
}

/// Keeps a part for partition `p` and sends it if its owner is known.
void add_part(router_ptr self, uint32_t p,
              std::shared_ptr<match_router_state::remote_part> part) {
  self->state.remote[p].push_back(std::move(part));
  send_parts(self, p);
}

/// Sends what may go now: segments in order, each that needs quiet only
/// once every segment before it is answered.
void pump(router_ptr self) {
  auto& st = self->state;
  while (!st.waiting.empty()) {
    auto& front = st.waiting.front();
    if (front.changes.needs_quiet && st.outstanding > 0)
      return;
    auto seg = std::move(front);
    st.waiting.pop_front();
    std::vector<uint32_t> touched;
    for (uint32_t p = 0; p < seg.changes.parts.size(); ++p)
      if (!seg.changes.parts[p].empty())
        touched.push_back(p);
    ++st.outstanding;
    auto left = seg.left;
    auto rp = seg.rp;
    auto segment_done = [self, left, rp]() mutable {
      --self->state.outstanding;
      if (--*left == 0) {
        --self->state.in_progress;
        rp.deliver(commit_result{});
      }
      pump(self);
    };
    if (st.cluster) {
      if (touched.empty()) {
        segment_done();
        continue;
      }
      auto parts_left = std::make_shared<size_t>(touched.size());
      for (auto p : touched) {
        auto part = std::make_shared<match_router_state::remote_part>();
        part->changes = std::move(seg.changes.parts[p]);
        part->done = [parts_left, segment_done]() mutable {
          if (--*parts_left == 0)
            segment_done();
        };
        add_part(self, p, std::move(part));
      }
      continue;
    }
    auto parts = std::make_shared<match_placement::split>(
      std::move(seg.changes.parts));
    gather<caf::ok_atom>(
      touched.size(),
      [self, parts, touched](size_t i) {
        auto p = touched[i];
        return self->request(self->state.partitions[p],
                             self->state.limits.stall,
                             std::move((*parts)[p]));
      },
      [](caf::ok_atom) {}, segment_done,
      [self, rp](caf::error& err) mutable { fail(self, err, rp); });
  }
}

} // namespace

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions,
             match_tiling tiling, wait_limits limits,
             uint32_t cluster_shards) {
  self->state.partitions = std::move(partitions);
  self->state.cluster = cluster_shards > 0;
  self->state.shards = cluster_shards;
  self->state.remote.resize(tiling.partitions());
  self->state.placement = std::make_unique<match_placement>(
    std::move(tiling));
  self->state.limits = limits;
  return {
    [self](change_batch& batch) -> caf::result<commit_result> {
      auto& st = self->state;
      ++st.batches;
      auto segments = st.placement->route(std::move(batch.changes));
      auto rp = self->make_response_promise<commit_result>();
      auto left = std::make_shared<size_t>(segments.size());
      ++st.in_progress;
      for (auto& seg : segments)
        st.waiting.push_back(
          match_router_state::pending_segment{std::move(seg), left, rp});
      pump(self);
      return rp;
    },
    [self](restore_atom, registry_snapshot& stored,
           std::vector<match>& stored_matches) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      std::vector<registry_snapshot> entities;
      std::vector<std::vector<match>> matches;
      st.placement->place(std::move(stored), std::move(stored_matches),
                          entities, matches);
      auto rp = self->make_response_promise<caf::ok_atom>();
      gather_into<caf::ok_atom>(
        rp, st.partitions.size(),
        [self, &entities, &matches](size_t p) {
          return self->request(self->state.partitions[p],
                               self->state.limits.reply, restore_atom::value,
                               std::move(entities[p]), std::move(matches[p]));
        },
        [](caf::ok_atom) {}, [] { return caf::ok_atom::value; });
      return rp;
    },
    [self](resync_atom, uint32_t shard, bool clean,
           registry_snapshot& entities) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      std::vector<registry_snapshot> placed;
      std::vector<std::vector<match>> no_matches;
      st.placement->place(std::move(entities), {}, placed, no_matches);
      if (clean)
        return caf::ok_atom::value;
      // Every partition gets the shard's part, empty or not: it replaces
      // whatever the partition held of the shard. Queued is enough: a
      // partition's parts go in queue order, so the shard's later changes
      // reach it after the resync, and no event of the shard settles
      // before its changes were taken. Waiting for the answers here could
      // deadlock the node's lease rounds: the partition may have lost its
      // owner too and be this node's in the round after this one.
      for (uint32_t p = 0; p < placed.size(); ++p) {
        auto part = std::make_shared<match_router_state::remote_part>();
        part->resync = true;
        part->shard = shard;
        part->entities = std::move(placed[p]);
        part->done = [] {};
        add_part(self, p, std::move(part));
      }
      return caf::ok_atom::value;
    },
    [self](directory_atom, cluster_directory& d) {
      auto& st = self->state;
      // Parts sent to a node that is unreachable now are lost with their
      // requests: send them again (to whoever owns the partition).
      for (size_t n = 0; n < d.nodes.size(); ++n)
        if (!d.gateways[n])
          for (auto& q : st.remote)
            for (auto& part : q)
              if (!part->answered && part->node == d.nodes[n])
                part->node.clear();
      st.directory = std::move(d);
      for (uint32_t p = 0; p < st.remote.size(); ++p)
        send_parts(self, p);
    },
    [self](retry_atom) {
      auto& st = self->state;
      st.retry_scheduled = false;
      for (uint32_t p = 0; p < st.remote.size(); ++p)
        send_parts(self, p);
    },
    [self](matches_atom) -> caf::result<uint64_t> {
      auto rp = self->make_response_promise<uint64_t>();
      auto sum = std::make_shared<uint64_t>(0);
      gather_into<uint64_t>(
        rp, self->state.partitions.size(),
        [self](size_t p) {
          return self->request(self->state.partitions[p],
                               self->state.limits.reply, matches_atom::value);
        },
        [sum](uint64_t count) { *sum += count; }, [sum] { return *sum; });
      return rp;
    },
    [self](status_atom) {
      auto& st = self->state;
      auto& placed = *st.placement;
      actor_status s;
      s.actor = self->name();
      s.counter("batches", static_cast<double>(st.batches))
        .gauge("flows_known", static_cast<double>(placed.flows()))
        .gauge("sites_known", static_cast<double>(placed.sites()))
        .gauge("partitions", static_cast<double>(placed.partitions()))
        .counter("handovers", static_cast<double>(placed.handovers()))
        .counter("extra_segments",
                 static_cast<double>(placed.extra_segments()))
        .counter("copies", static_cast<double>(placed.copies()));
      if (st.cluster) {
        uint64_t kept = 0;
        for (auto& q : st.remote)
          kept += q.size();
        s.counter("parts_resent", static_cast<double>(st.resent_parts))
          .counter("part_failures", static_cast<double>(st.part_failures))
          .gauge("parts_unanswered", static_cast<double>(kept));
      }
      s.queue_depth = st.in_progress;
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
