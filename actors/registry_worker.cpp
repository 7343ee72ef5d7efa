#include "actors/registry_worker.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

#include <exception>

namespace flowmatch {

namespace {

using worker_ptr = worker_actor::stateful_pointer<registry_worker_state>;

/// Sends what the registry produced and reports progress: with a commit
/// coordinator, the changes and the report go to it (it tells the pool once
/// the subscribers stored them); without one the worker reports to the
/// pool itself. Dead letters go to the sink.
void publish(worker_ptr self, uint64_t seq, uint64_t count, bool complete) {
  auto& st = self->state;
  auto& out = st.out;
  if (!out.dead_letters.empty()) {
    if (st.dead_letters)
      self->send(st.dead_letters, std::move(out.dead_letters));
    out.dead_letters.clear();
  }
  commit_ticket ticket{st.pool,   st.index, seq, count, std::move(out.stats),
                       complete, st.admitted_ns};
  out.stats = registry_stats{};
  if (st.coordinator) {
    change_batch batch{std::move(out.changes), std::move(out.event_ids),
                       std::move(out.event_keys)};
    self->send(st.coordinator, commit_atom::value, std::move(ticket),
               std::move(batch));
  } else {
    self->send(st.pool, done_atom::value, ticket.worker, ticket.seq,
               ticket.count, std::move(ticket.stats), ticket.complete);
  }
  out.changes.clear();
  out.event_ids.clear();
  out.event_keys.clear();
}

dead_letter poison_dead_letter(const event& ev, const event_batch& batch) {
  dead_letter dl;
  dl.event_id = ev.id;
  dl.origin = ev.origin;
  dl.reason = reject_reason::poison_event;
  dl.detail = "the handler failed on this event " + std::to_string(
                batch.poison_attempts) + " times: " + batch.poison_error;
  dl.payload = ev.raw;
  dl.attempts = batch.poison_attempts;
  return dl;
}

} // namespace

worker_actor::behavior_type
registry_worker(worker_actor::stateful_pointer<registry_worker_state> self,
                uint32_t index, worker_pool_actor pool,
                std::shared_ptr<registry_memory> memory,
                commit_coordinator_actor coordinator,
                dead_letter_sink_actor dead_letters,
                registry_worker_settings settings) {
  auto& init = self->state;
  init.coordinator = std::move(coordinator);
  init.index = index;
  init.pool = std::move(pool);
  init.memory = std::move(memory);
  init.dead_letters = std::move(dead_letters);
  init.settings = std::move(settings);
  // Before dying, hand the memory and the cursor (which event failed) to
  // the pool, and keep the exception's message in the exit reason: the pool
  // logs it and puts it into the poison dead letter.
  self->set_exception_handler(
    [self](caf::scheduled_actor*, std::exception_ptr& ptr) -> caf::error {
      auto& st = self->state;
      if (st.memory) {
        auto& cursor = st.memory->reg.progress;
        self->send(st.pool, worker_crash{st.index, cursor.seq,
                                         cursor.next_index,
                                         std::move(st.memory)});
        st.memory = nullptr;
      }
      try {
        std::rethrow_exception(ptr);
      } catch (const std::exception& e) {
        return caf::make_error(caf::sec::runtime_error, e.what());
      } catch (...) {
        return caf::make_error(caf::sec::runtime_error, "unknown exception");
      }
    });
  self->delayed_send(self, init.settings.hold_check_interval,
                     expire_atom::value);
  return {
    [self](deliver_atom, const event_batch& batch) {
      auto& st = self->state;
      st.admitted_ns = batch.admitted_ns;
      auto& reg = st.memory->reg;
      if (batch.seq <= reg.progress.applied_through)
        return; // applied before a crash; its own report is on its way
      if (reg.progress.seq != batch.seq) {
        reg.progress.seq = batch.seq;
        reg.progress.next_index = 0;
      }
      size_t begin = reg.progress.next_index;
      auto now = registry::clock::now();
      try {
        for (size_t i = begin; i < batch.size(); ++i) {
          const auto& ev = batch.at(i);
          if (static_cast<int64_t>(i) == batch.poison_index) {
            auto dl = poison_dead_letter(ev, batch);
            log()->error("{} {}: dead-lettering poison event {}: {}",
                         self->name(), st.index, ev.id, dl.detail);
            st.out.stats.count_dead_letter(dl.reason);
            st.out.stats.rejected_ids.push_back(ev.id);
            st.out.dead_letters.push_back(std::move(dl));
          } else {
            if (st.settings.before_apply)
              st.settings.before_apply(ev);
            reg.apply(ev, now, st.out);
          }
          reg.progress.next_index = i + 1;
        }
      } catch (...) {
        // Hand over what was done before the failing event, then die: the
        // pool restarts this worker and redelivers from the cursor.
        publish(self, batch.seq, reg.progress.next_index - begin, false);
        throw;
      }
      reg.progress.applied_through = batch.seq;
      publish(self, batch.seq, batch.size() - begin, true);
    },
    [self](expire_atom) {
      auto& st = self->state;
      auto& reg = st.memory->reg;
      if (reg.held_count() > 0) {
        reg.expire_held(registry::clock::now() - st.settings.hold_timeout,
                        st.out);
        if (!st.out.dead_letters.empty()) {
          st.admitted_ns = 0; // held flows expired: no batch's latency
          publish(self, 0, 0, false);
        }
      }
      self->delayed_send(self, st.settings.hold_check_interval,
                         expire_atom::value);
    },
    [self](release_atom) -> registry_stats {
      auto& st = self->state;
      st.memory->reg.release_all_held(st.out);
      if (!st.out.dead_letters.empty() && st.dead_letters)
        self->send(st.dead_letters, std::move(st.out.dead_letters));
      st.out.dead_letters.clear();
      auto stats = std::move(st.out.stats);
      st.out.stats = registry_stats{};
      stats.sites = st.memory->reg.site_count();
      stats.flows = st.memory->reg.flow_count();
      return stats;
    },
    [self](snapshot_atom) -> registry_snapshot {
      return self->state.memory->reg.snapshot();
    },
    [self](count_atom) -> registry_stats {
      registry_stats counts;
      counts.sites = self->state.memory->reg.site_count();
      counts.flows = self->state.memory->reg.flow_count();
      return counts;
    },
    [self](repair_atom, const std::vector<change>& refused,
           const registry_snapshot& stored) {
      auto& st = self->state;
      for (auto& c : refused)
        st.memory->reg.repair(c, stored, st.out);
      if (!st.out.changes.empty()) {
        log()->warn("{} {}: {} changes bring memory back to the table after "
                    "the database refused {}",
                    self->name(), st.index, st.out.changes.size(),
                    refused.size());
        st.admitted_ns = 0;
        publish(self, 0, 0, false);
      }
    },
    [self](restore_atom, registry_snapshot& stored) -> caf::ok_atom {
      self->state.memory->reg.restore(std::move(stored));
      return caf::ok_atom::value;
    },
    [self](handover_atom, const std::string& site) -> registry_part {
      return self->state.memory->reg.hand_over(site);
    },
    [self](takeover_atom, registry_part& part) -> caf::ok_atom {
      self->state.memory->reg.take_over(std::move(part));
      return caf::ok_atom::value;
    },
    [self](keys_atom) -> registry_part {
      return self->state.memory->reg.routing_keys();
    },
  };
}

worker_factory
registry_worker_factory(commit_coordinator_actor coordinator,
                        dead_letter_sink_actor dead_letters,
                        registry_worker_settings settings) {
  worker_factory f;
  f.make_memory = [limit = settings.hold_limit] {
    return std::make_shared<registry_memory>(limit);
  };
  f.spawn = [=](worker_pool_actor::pointer pool, uint32_t index,
                std::shared_ptr<worker_memory> memory) {
    return pool->spawn<caf::linked>(
      registry_worker, index, caf::actor_cast<worker_pool_actor>(pool),
      std::static_pointer_cast<registry_memory>(std::move(memory)),
      coordinator, dead_letters, settings);
  };
  return f;
}

} // namespace flowmatch
