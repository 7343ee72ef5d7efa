#include "actors/match_router.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>

namespace flowmatch {

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions, wait_limits limits) {
  self->state.partitions = std::move(partitions);
  self->state.limits = limits;
  return {
    [self](change_batch& batch) -> caf::result<commit_result> {
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
      ++st.batches;
      std::vector<size_t> touched;
      for (size_t p = 0; p < n; ++p)
        if (!parts[p].empty())
          touched.push_back(p);
      if (touched.empty())
        return commit_result{};
      auto shared = std::make_shared<std::vector<std::vector<change>>>(
        std::move(parts));
      auto rp = self->make_response_promise<commit_result>();
      ++st.in_progress;
      gather<caf::ok_atom>(
        touched.size(),
        [self, shared, touched](size_t i) {
          auto p = touched[i];
          return self->request(self->state.partitions[p],
                               self->state.limits.stall,
                               std::move((*shared)[p]));
        },
        [](caf::ok_atom) {},
        [self, rp]() mutable {
          --self->state.in_progress;
          rp.deliver(commit_result{});
        },
        [self, rp](caf::error& err) mutable {
          --self->state.in_progress;
          log()->critical("{} a match partition failed: {}", self->name(),
                          self->system().render(err));
          rp.deliver(err);
          self->quit(err);
        });
      return rp;
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
    [self](status_atom) {
      actor_status s;
      s.actor = self->name();
      s.counter("batches", static_cast<double>(self->state.batches))
        .gauge("flows_known",
               static_cast<double>(self->state.flow_class.size()));
      s.queue_depth = self->state.in_progress;
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
