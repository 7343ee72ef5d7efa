#include "actors/commit_coordinator.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace flowmatch {

namespace {

using coordinator_ptr
  = commit_coordinator_actor::stateful_pointer<commit_coordinator_state>;

/// Reports the finished batches at the front of a worker's queue to the
/// pool, in order.
void report_finished(coordinator_ptr self, uint32_t worker) {
  auto& q = self->state.queues[worker];
  while (!q.empty() && !q.front().waiting) {
    auto& t = q.front().ticket;
    if (t.admitted_ns > 0 && t.count > 0) {
      // From admission to durable: every committing subscriber answered.
      auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
                   .count();
      self->state.latency.observe(static_cast<double>(now - t.admitted_ns)
                                    / 1e9,
                                  t.count);
    }
    self->send(t.pool, done_atom::value, t.worker, t.seq, t.count,
               std::move(t.stats), t.complete);
    auto& ids = q.front().event_ids;
    if (!ids.empty())
      for (size_t i = 0; i < self->state.settlers.size(); ++i) {
        auto& s = self->state.settlers[i].sink;
        if (i + 1 == self->state.settlers.size())
          self->send(s, settled_atom::value, std::move(ids));
        else
          self->send(s, settled_atom::value, ids);
      }
    ++self->state.reported;
    q.pop_front();
  }
}

commit_coordinator_state::pending* find(coordinator_ptr self, uint32_t worker,
                                        uint64_t id) {
  auto& q = self->state.queues[worker];
  // Ids grow along the queue.
  auto i = std::lower_bound(q.begin(), q.end(), id,
                            [](const auto& p, uint64_t x) { return p.id < x; });
  return i != q.end() && i->id == id ? &*i : nullptr;
}

/// Drops subscriptions of an actor that is gone.
template <class List>
void forget(List& list, const caf::actor_addr& who) {
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const auto& s) {
                              return s.sink.address() == who;
                            }),
             list.end());
}

} // namespace

commit_coordinator_actor::behavior_type commit_coordinator(
  commit_coordinator_actor::stateful_pointer<commit_coordinator_state> self,
  wait_limits limits) {
  self->state.limits = limits;
  self->set_down_handler([self](caf::down_msg& msg) {
    forget(self->state.committers, msg.source);
    forget(self->state.watchers, msg.source);
    forget(self->state.settlers, msg.source);
  });
  return {
    [self](commit_atom, commit_ticket& ticket, change_batch& batch) {
      auto& st = self->state;
      ++st.batches;
      auto worker = ticket.worker;
      auto id = st.next_id++;
      auto& q = st.queues[worker];
      q.push_back(
        {id, std::move(ticket), false, std::chrono::steady_clock::now(), {}});
      bool carries_data = !batch.changes.empty() || !batch.event_ids.empty();
      if (!carries_data) {
        // Only counters (dead letters of an expiry): nothing to store, but
        // the report keeps its place behind earlier batches.
        report_finished(self, worker);
        return;
      }
      for (auto& w : st.watchers)
        if (w.covers(worker))
          self->send(w.sink, batch);
      if (!st.settlers.empty())
        q.back().event_ids = batch.event_ids;
      std::vector<commit_sink_actor> asked;
      for (auto& c : st.committers)
        if (c.covers(worker))
          asked.push_back(c.sink);
      if (asked.empty()) {
        report_finished(self, worker);
        return;
      }
      q.back().waiting = true;
      auto shared = std::make_shared<change_batch>(std::move(batch));
      gather<commit_result>(
        asked.size(),
        [self, shared, asked](size_t i) {
          // Each subscriber gets its own copy; the last one takes the
          // batch itself (gather asks in order, at once).
          if (i + 1 == asked.size())
            return self->request(asked[i], self->state.limits.stall,
                                 std::move(*shared));
          return self->request(asked[i], self->state.limits.stall, *shared);
        },
        [self, worker, id](commit_result& r) {
          auto p = find(self, worker, id);
          if (!p)
            return;
          if (!r.refused.empty()) {
            // Memory goes back to the stored rows before the report
            // frees the credit.
            self->state.refusals += r.refused.size();
            self->send(p->ticket.pool, repair_atom::value, worker,
                       std::move(r.refused), std::move(r.stored));
          }
          p->ticket.stats += r.refusals;
        },
        [self, worker, id] {
          if (auto p = find(self, worker, id))
            p->waiting = false;
          report_finished(self, worker);
        },
        [self](caf::error& err) {
          log()->critical("{}: a committing subscriber failed: {}",
                          self->name(), self->system().render(err));
          self->quit(err);
        });
    },
    [self](subscribe_atom, commit_sink_actor& sink, uint32_t scope) {
      self->monitor(sink);
      self->state.committers.push_back({std::move(sink), scope});
    },
    [self](subscribe_atom, change_sink_actor& sink, uint32_t scope) {
      self->monitor(sink);
      self->state.watchers.push_back({std::move(sink), scope});
    },
    [self](subscribe_atom, settled_sink_actor& sink) {
      self->monitor(sink);
      self->state.settlers.push_back({std::move(sink), all_workers});
    },
    [self](status_atom) -> actor_status {
      auto& st = self->state;
      actor_status s;
      s.actor = self->name();
      s.counter("batches", static_cast<double>(st.batches))
        .counter("reported", static_cast<double>(st.reported))
        .counter("refused_changes", static_cast<double>(st.refusals))
        .gauge("committing_subscribers",
               static_cast<double>(st.committers.size()))
        .gauge("watching_subscribers", static_cast<double>(st.watchers.size()))
        .histogram("event_latency_seconds", st.latency);
      auto now = std::chrono::steady_clock::now();
      for (auto& [worker, q] : st.queues) {
        s.queue_depth += q.size();
        if (!q.empty())
          s.oldest_wait_seconds = std::max(
            s.oldest_wait_seconds,
            std::chrono::duration<double>(now - q.front().since).count());
      }
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
