#include "actors/match_router.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>

namespace flowmatch {

namespace {

using router_ptr = match_router_actor::stateful_pointer<match_router_state>;

/// Reports every finished batch at the front to its pool, in arrival
/// order.
void pass_finished(router_ptr self) {
  auto& q = self->state.in_progress;
  while (!q.empty() && q.begin()->second.waiting == 0) {
    auto& t = q.begin()->second.ticket;
    self->send(caf::actor_cast<worker_pool_actor>(t.pool), done_atom::value,
               t.worker, t.seq, t.count, std::move(t.stats), t.complete);
    q.erase(q.begin());
  }
}

} // namespace

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions,
             std::vector<change_sink_actor> syncs, wait_limits limits) {
  self->state.partitions = std::move(partitions);
  self->state.syncs = std::move(syncs);
  self->state.limits = limits;
  return {
    [self](change_batch& batch) {
      auto& st = self->state;
      auto n = st.partitions.size();
      std::vector<std::vector<change>> parts(n);
      for (auto& c : batch.changes) {
        switch (c.kind) {
          case change::site_upserted:
          case change::site_deleted:
            for (auto& p : parts)
              p.push_back(c);
            break;
          case change::flow_upserted: {
            auto cls = c.flow_data.resource;
            auto [i, added] = st.flow_class.try_emplace(c.flow_data.flow_id,
                                                        cls);
            if (!added && i->second != cls) {
              // The flow changed class: its old partition forgets it.
              change gone;
              gone.kind = change::flow_deleted;
              gone.id = c.flow_data.flow_id;
              parts[static_cast<size_t>(i->second)].push_back(gone);
              i->second = cls;
            }
            parts[static_cast<size_t>(cls)].push_back(c);
            break;
          }
          case change::flow_deleted: {
            // The entry stays: a later upsert of the same flow id is a
            // new flow of (maybe) another class.
            auto i = st.flow_class.find(c.id);
            if (i != st.flow_class.end())
              parts[static_cast<size_t>(i->second)].push_back(c);
            break;
          }
        }
      }
      if (!batch.ticket)
        return; // not the committer's copy: nothing to report
      auto seq = st.next_seq++;
      auto& entry = st.in_progress[seq];
      entry.ticket = *batch.ticket;
      if (!st.pool)
        st.pool = batch.ticket->pool; // the workers' pool, for repairs
      if (!st.syncs.empty()) {
        // The entities go to the sync now, in this worker's order; its
        // commit report comes back here.
        auto& t = *batch.ticket;
        st.at_sync[{t.worker, t.seq}] = seq;
        t.pool = caf::actor_cast<caf::actor>(self);
        ++entry.waiting;
        self->send(st.syncs[t.worker % st.syncs.size()], std::move(batch));
      }
      for (size_t p = 0; p < n; ++p) {
        if (parts[p].empty())
          continue;
        ++entry.waiting;
        self->request(st.partitions[p], st.limits.stall, std::move(parts[p]))
          .then(
            [self, seq](caf::ok_atom) {
              auto i = self->state.in_progress.find(seq);
              if (i != self->state.in_progress.end() && i->second.waiting > 0)
                --i->second.waiting;
              pass_finished(self);
            },
            [self](caf::error& err) {
              log()->critical("{} a match partition failed: {}",
                              self->name(), self->system().render(err));
              self->quit(err);
            });
      }
      pass_finished(self);
    },
    [self](done_atom, uint32_t worker, uint64_t pool_seq, uint64_t,
           registry_stats& stats, bool) {
      auto& st = self->state;
      auto k = st.at_sync.find({worker, pool_seq});
      if (k == st.at_sync.end())
        return;
      auto i = st.in_progress.find(k->second);
      st.at_sync.erase(k);
      if (i == st.in_progress.end())
        return;
      // The sync's stats carry what the database refused.
      i->second.ticket.stats = std::move(stats);
      if (i->second.waiting > 0)
        --i->second.waiting;
      pass_finished(self);
    },
    [self](repair_atom, uint32_t worker, std::vector<change>& refused,
           registry_snapshot& stored) {
      if (self->state.pool)
        self->send(caf::actor_cast<worker_pool_actor>(self->state.pool),
                   repair_atom::value, worker, std::move(refused),
                   std::move(stored));
    },
    [self](restore_atom, registry_snapshot& stored,
           std::vector<match>& stored_matches) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      for (auto& f : stored.flows)
        st.flow_class[f.flow_id] = f.resource;
      auto n = st.partitions.size();
      // Each partition gets every site but only the flows and matches of
      // its class.
      std::vector<registry_snapshot> parts(n);
      for (auto& part : parts)
        part.sites = stored.sites;
      for (auto& f : stored.flows)
        parts[static_cast<size_t>(f.resource)].flows.push_back(std::move(f));
      std::vector<std::vector<match>> by_class(n);
      for (auto& m : stored_matches)
        by_class[static_cast<size_t>(m.resource)].push_back(std::move(m));
      auto rp = self->make_response_promise<caf::ok_atom>();
      gather_into<caf::ok_atom>(
        rp, n,
        [self, &parts, &by_class](size_t p) {
          return self->request(self->state.partitions[p],
                               self->state.limits.reply, restore_atom::value,
                               std::move(parts[p]), std::move(by_class[p]));
        },
        [](caf::ok_atom) {}, [] { return caf::ok_atom::value; });
      return rp;
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
  };
}

} // namespace flowmatch
