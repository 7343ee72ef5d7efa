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
    auto parts = std::make_shared<match_placement::split>(
      std::move(seg.changes.parts));
    auto left = seg.left;
    auto rp = seg.rp;
    gather<caf::ok_atom>(
      touched.size(),
      [self, parts, touched](size_t i) {
        auto p = touched[i];
        return self->request(self->state.partitions[p],
                             self->state.limits.stall,
                             std::move((*parts)[p]));
      },
      [](caf::ok_atom) {},
      [self, left, rp]() mutable {
        --self->state.outstanding;
        if (--*left == 0) {
          --self->state.in_progress;
          rp.deliver(commit_result{});
        }
        pump(self);
      },
      [self, rp](caf::error& err) mutable { fail(self, err, rp); });
  }
}

} // namespace

match_router_actor::behavior_type
match_router(match_router_actor::stateful_pointer<match_router_state> self,
             std::vector<match_partition_actor> partitions,
             match_tiling tiling, wait_limits limits) {
  self->state.partitions = std::move(partitions);
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
      s.queue_depth = st.in_progress;
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
