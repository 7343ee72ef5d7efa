#include "actors/match_partition.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"
#include "core/cluster_plan.hpp"

#include <absl/container/flat_hash_set.h>

#include <caf/all.hpp>

#include <map>
#include <utility>

namespace flowmatch {

namespace {

using partition_ptr
  = match_partition_actor::stateful_pointer<match_partition_state>;

/// Sends match changes to every sink; delivers `rp` when all stored them.
void store(partition_ptr self, std::vector<match_change> changes,
           caf::typed_response_promise<caf::ok_atom> rp) {
  auto& st = self->state;
  if (changes.empty() || st.sinks.empty()) {
    rp.deliver(caf::ok_atom::value);
    return;
  }
  gather<caf::ok_atom>(
    st.sinks.size(),
    [self, &changes](size_t i) {
      // A sink waiting out a database outage is backpressure: the stall
      // limit, not the reply limit.
      return self->request(self->state.sinks[i], self->state.limits.stall,
                           changes);
    },
    [](caf::ok_atom) {}, [rp]() mutable { rp.deliver(caf::ok_atom::value); },
    [self, rp](caf::error& err) mutable {
      log()->error("{} {}: a match sink failed: {}", self->name(),
                   self->state.label, self->system().render(err));
      rp.deliver(err);
    });
}

} // namespace

std::string partition_label(const match_tiling& tiling, uint32_t p) {
  std::string label{to_string(tiling.class_of(p))};
  if (tiling.per_class() > 1)
    label += "/" + std::to_string(tiling.number_in_class(p));
  return label;
}

match_partition_actor::behavior_type
match_partition(match_partition_actor::stateful_pointer<match_partition_state> self,
                resource_class cls, std::string label, match_settings settings,
                std::vector<match_sink_actor> sinks, wait_limits limits) {
  self->state.cls = cls;
  self->state.label = std::move(label);
  self->state.index = std::make_unique<match_index>(std::move(settings), cls);
  self->state.sinks = std::move(sinks);
  self->state.limits = limits;
  return {
    [self](status_atom) {
      auto& st = self->state;
      actor_status s;
      s.actor = std::string{self->name()} + " " + st.label;
      auto class_name = std::string{to_string(st.cls)};
      s.gauge("flows", static_cast<double>(st.index->flow_count()))
        .gauge("matches", static_cast<double>(st.index->match_count()))
        // The families operators chart: matches now and changes so far
        // (a rate in PromQL), by class.
        .gauge("matches_current{class=" + class_name + "}",
               static_cast<double>(st.index->match_count()))
        .counter("match_changes{class=" + class_name + "}",
                 static_cast<double>(st.match_changes));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
    [self](std::vector<change>& changes) -> caf::result<caf::ok_atom> {
      std::vector<match_change> out;
      self->state.index->apply(changes, out);
      self->state.match_changes += out.size();
      auto rp = self->make_response_promise<caf::ok_atom>();
      store(self, std::move(out), rp);
      return rp;
    },
    [self](restore_atom, registry_snapshot& stored,
           std::vector<match>& stored_matches) -> caf::result<caf::ok_atom> {
      auto& idx = *self->state.index;
      std::vector<match_change> ignored;
      for (auto& s : stored.sites) {
        change c;
        c.kind = change::site_upserted;
        c.site_data = std::move(s);
        idx.apply(c, ignored);
      }
      for (auto& f : stored.flows) {
        if (f.resource != self->state.cls)
          continue;
        change c;
        c.kind = change::flow_upserted;
        c.flow_data = std::move(f);
        idx.apply(c, ignored);
      }
      // Repair the stored matches of this class to equal the rules' result
      // (a crash between an entity commit and its match commit, a change
      // of the match settings): the difference is written as changes.
      std::map<std::pair<std::string, std::string>, match> want;
      for (auto& m : idx.matches())
        want.emplace(std::make_pair(m.supply_flow_id, m.demand_flow_id), m);
      std::vector<match_change> repair;
      size_t removed = 0, written = 0;
      for (auto& m : stored_matches) {
        auto key = std::make_pair(m.supply_flow_id, m.demand_flow_id);
        auto i = want.find(key);
        if (i == want.end()) {
          repair.push_back(match_change{true, m});
          ++removed;
        } else {
          if (!(i->second == m)) {
            repair.push_back(match_change{false, i->second});
            ++written;
          }
          want.erase(i);
        }
      }
      for (auto& [key, m] : want) {
        repair.push_back(match_change{false, m});
        ++written;
      }
      log()->info("{} {}: {} flows indexed, {} matches; repaired {} stored "
                  "matches and removed {}",
                  self->name(), self->state.label, idx.flow_count(),
                  idx.match_count(), written, removed);
      auto rp = self->make_response_promise<caf::ok_atom>();
      store(self, std::move(repair), rp);
      return rp;
    },
    [self](resync_atom, uint32_t shard, uint32_t shards,
           registry_snapshot& entities) -> caf::result<caf::ok_atom> {
      // Deletes of what the shard's new owner does not have, then all it
      // has: the index ends up holding exactly the owner's entities.
      auto& idx = *self->state.index;
      std::vector<std::string> site_ids, flow_ids;
      idx.collect(
        [&](const std::string& id) { return shard_of(id, shards) == shard; },
        site_ids, flow_ids);
      absl::flat_hash_set<std::string> keep_sites, keep_flows;
      for (auto& s : entities.sites)
        keep_sites.insert(s.site_id);
      for (auto& f : entities.flows)
        keep_flows.insert(f.flow_id);
      std::vector<change> changes;
      for (auto& id : flow_ids)
        if (!keep_flows.contains(id)) {
          change c;
          c.kind = change::flow_deleted;
          c.id = id;
          changes.push_back(std::move(c));
        }
      for (auto& id : site_ids)
        if (!keep_sites.contains(id)) {
          change c;
          c.kind = change::site_deleted;
          c.id = id;
          changes.push_back(std::move(c));
        }
      for (auto& s : entities.sites) {
        change c;
        c.kind = change::site_upserted;
        c.site_data = std::move(s);
        changes.push_back(std::move(c));
      }
      for (auto& f : entities.flows) {
        change c;
        c.kind = change::flow_upserted;
        c.flow_data = std::move(f);
        changes.push_back(std::move(c));
      }
      std::vector<match_change> out;
      idx.apply(changes, out);
      log()->info("{} {}: registry shard {} resynced ({} sites, {} flows "
                  "held before), {} match changes",
                  self->name(), self->state.label, shard, site_ids.size(),
                  flow_ids.size(), out.size());
      self->state.match_changes += out.size();
      auto rp = self->make_response_promise<caf::ok_atom>();
      store(self, std::move(out), rp);
      return rp;
    },
    [self](matches_atom) {
      return static_cast<uint64_t>(self->state.index->match_count());
    },
  };
}

} // namespace flowmatch
