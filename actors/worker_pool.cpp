#include "actors/worker_pool.hpp"

#include "actors/gather.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace flowmatch {

namespace {

using pool_ptr = worker_pool_actor::stateful_pointer<worker_pool_state>;

void start_worker(pool_ptr self, uint32_t index) {
  auto& slot = self->state.slots[index];
  slot.worker = self->state.factory.spawn(self, index, std::move(slot.memory));
  slot.memory = nullptr;
  slot.restarting = false;
  slot.exit_reason = caf::none;
  slot.crash = caf::none;
  for (auto& batch : slot.unacked)
    self->send(slot.worker, deliver_atom::value, batch);
}

/// Finds the slot of a dead worker by its address.
caf::optional<uint32_t> slot_of(pool_ptr self, const caf::actor_addr& addr) {
  auto& slots = self->state.slots;
  for (uint32_t i = 0; i < slots.size(); ++i)
    if (slots[i].worker && slots[i].worker.address() == addr)
      return i;
  return caf::none;
}

/// Handles a worker's death once its exit and (for a worker that keeps
/// memory) its crash report are both in.
void on_worker_crash(pool_ptr self, uint32_t index) {
  auto& st = self->state;
  auto& slot = st.slots[index];
  if (!slot.exit_reason || (slot.keeps_memory && !slot.crash))
    return;
  auto what = self->system().render(*slot.exit_reason);
  ++st.total_restarts;
  ++slot.consecutive_crashes;
  // Which event was it? The crash report says how far the batch got.
  if (!slot.unacked.empty() && slot.crash
      && slot.crash->seq == slot.unacked.front().seq) {
    auto& front = slot.unacked.front();
    auto next_index = slot.crash->next_index;
    auto key = std::make_pair(front.seq, static_cast<size_t>(next_index));
    auto n = ++slot.attempts[key];
    log()->warn("{} {}: worker {} crashed on event {} of batch {} "
                "(attempt {} of {}): {}",
                self->name(), st.group, index, next_index, front.seq, n,
                st.supervision.max_attempts, what);
    if (n >= st.supervision.max_attempts) {
      front.poison_index = static_cast<int64_t>(next_index);
      front.poison_attempts = n;
      front.poison_error = what;
    }
  } else if (!slot.unacked.empty()) {
    log()->warn("{} {}: worker {} crashed between batches: {}",
                self->name(), st.group, index, what);
  } else {
    log()->warn("{} {}: worker {} crashed while idle: {}", self->name(),
                st.group, index, what);
  }
  if (slot.crash)
    slot.memory = std::move(slot.crash->memory);
  slot.crash = caf::none;
  slot.exit_reason = caf::none;
  // Intensity limit over a sliding window.
  auto now = std::chrono::steady_clock::now();
  slot.restarts.push_back(now);
  while (!slot.restarts.empty()
         && now - slot.restarts.front() > st.supervision.restart_window)
    slot.restarts.pop_front();
  if (slot.restarts.size() > st.supervision.max_restarts) {
    log()->critical("{} {}: worker {} crashed {} times within {} ms; "
                    "giving up",
                    self->name(), st.group, index, slot.restarts.size(),
                    st.supervision.restart_window.count());
    self->quit(caf::make_error(caf::sec::runtime_error,
                               "restart intensity exceeded in pool "
                                 + st.group));
    return;
  }
  auto shift = std::min<uint32_t>(slot.consecutive_crashes - 1, 20);
  auto delay = std::min(st.supervision.backoff_initial * (1u << shift),
                        st.supervision.backoff_max);
  slot.restarting = true;
  self->delayed_send(self, delay, respawn_atom::value, index);
}

/// A request to worker `index` with the supervision's reply timeout.
template <class... Ts>
auto ask_worker(pool_ptr self, size_t index, Ts&&... xs) {
  return self->request(self->state.slots[index].worker,
                       self->state.supervision.limits.reply,
                       std::forward<Ts>(xs)...);
}

} // namespace

worker_pool_actor::behavior_type
worker_pool(worker_pool_actor::stateful_pointer<worker_pool_state> self,
            std::string group, uint32_t group_index, uint32_t size,
            dispatcher_actor dispatcher, worker_factory factory,
            supervision_settings supervision) {
  auto& init = self->state;
  init.group = std::move(group);
  init.group_index = group_index;
  init.dispatcher = std::move(dispatcher);
  init.factory = std::move(factory);
  init.supervision = supervision;
  init.slots.resize(size);
  for (uint32_t i = 0; i < size; ++i) {
    auto& slot = init.slots[i];
    if (init.factory.make_memory)
      slot.memory = init.factory.make_memory();
    slot.keeps_memory = slot.memory != nullptr;
    start_worker(self, i);
  }
  // Workers are linked: trap their exits to restart them. An exit from
  // anyone else (the dispatcher) ends the pool too.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (auto index = slot_of(self, msg.source)) {
      auto& slot = self->state.slots[*index];
      slot.worker = nullptr;
      slot.exit_reason = msg.reason;
      slot.exited_at = std::chrono::steady_clock::now();
      if (slot.keeps_memory && !slot.crash) {
        // The crash report is on its way, or the worker died without one
        // (killed): the respawn check below tells the two apart.
        slot.restarting = true;
        self->delayed_send(self, self->state.supervision.limits.reply,
                           respawn_atom::value, *index);
      }
      on_worker_crash(self, *index);
      return;
    }
    if (msg.reason)
      self->quit(msg.reason);
  });
  return {
    [self](status_atom) {
      auto& st = self->state;
      actor_status s;
      s.actor = std::string{self->name()} + " " + st.group;
      uint64_t restarting = 0;
      for (auto& slot : st.slots) {
        s.queue_depth += slot.unacked.size();
        if (slot.restarting)
          ++restarting;
      }
      s.gauge("workers", static_cast<double>(st.slots.size()))
        .gauge("workers_restarting", static_cast<double>(restarting))
        .counter("restarts", static_cast<double>(st.total_restarts));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
    [self](deliver_atom, uint32_t index, event_batch& batch) {
      auto& slot = self->state.slots[index];
      batch.seq = slot.next_seq++;
      slot.unacked.push_back(batch);
      if (!slot.restarting)
        self->send(slot.worker, deliver_atom::value, std::move(batch));
    },
    [self](done_atom, uint32_t index, uint64_t seq, uint64_t count,
           registry_stats& stats, bool complete) {
      auto& st = self->state;
      auto& slot = st.slots[index];
      if (complete) {
        if (!slot.unacked.empty() && slot.unacked.front().seq == seq) {
          slot.unacked.pop_front();
          // Forget crash counts of batches that are finished.
          slot.attempts.erase(slot.attempts.begin(),
                              slot.attempts.lower_bound({seq + 1, 0}));
        }
        slot.consecutive_crashes = 0;
      }
      self->send(st.dispatcher, done_atom::value, st.group_index, index,
                 count, std::move(stats));
    },
    [self](worker_crash& crash) {
      auto index = crash.worker;
      if (index >= self->state.slots.size())
        return;
      self->state.slots[index].crash = std::move(crash);
      on_worker_crash(self, index);
    },
    [self](respawn_atom, uint32_t index) {
      auto& st = self->state;
      auto& slot = st.slots[index];
      if (slot.worker || !slot.restarting)
        return; // restarted already
      if (slot.keeps_memory && !slot.memory) {
        auto waited = std::chrono::steady_clock::now() - slot.exited_at;
        if (slot.exit_reason && !slot.crash
            && waited >= st.supervision.limits.reply) {
          // The worker died without handing back its memory: what it held
          // is gone, and a restart would start empty. Stop; a restart of
          // the node restores from the database.
          log()->critical("{} {}: worker {} exited ({}) without handing "
                          "back its memory",
                          self->name(), st.group, index,
                          self->system().render(*slot.exit_reason));
          self->quit(caf::make_error(caf::sec::runtime_error,
                                     "worker memory lost in pool "
                                       + st.group));
        }
        return; // the crash report is still to come
      }
      log()->info("{} {}: restarting worker {} with {} unfinished batches",
                  self->name(), st.group, index, slot.unacked.size());
      start_worker(self, index);
    },
    [self](release_atom) -> caf::result<registry_stats> {
      auto rp = self->make_response_promise<registry_stats>();
      sum_into<registry_stats>(rp, self->state.slots.size(), [self](size_t i) {
        return ask_worker(self, i, release_atom::value);
      });
      return rp;
    },
    [self](repair_atom, uint32_t index, std::vector<change>& refused,
           registry_snapshot& stored) {
      if (index < self->state.slots.size() && self->state.slots[index].worker)
        self->send(self->state.slots[index].worker, repair_atom::value,
                   std::move(refused), std::move(stored));
    },
    [self](restore_atom, uint32_t index,
           registry_snapshot& state) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->request(self->state.slots[index].worker,
                    self->state.supervision.limits.reply,
                    restore_atom::value, std::move(state))
        .then([=](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
              [=](caf::error& err) mutable { rp.deliver(err); });
      return rp;
    },
    [self](keys_atom, uint32_t index) -> caf::result<registry_part> {
      auto& st = self->state;
      if (index >= st.slots.size())
        return caf::make_error(caf::sec::invalid_argument,
                               "routing keys of an unknown worker");
      if (!st.slots[index].worker)
        // The dispatcher tries again later.
        return caf::make_error(caf::sec::request_receiver_down,
                               "the worker is restarting");
      return self->delegate(st.slots[index].worker, keys_atom::value);
    },
    [self](handover_atom, uint32_t from, uint32_t to,
           std::string& site) -> caf::result<registry_part> {
      auto& st = self->state;
      if (from >= st.slots.size() || to >= st.slots.size())
        return caf::make_error(caf::sec::invalid_argument,
                               "hand-over between unknown workers");
      if (!st.slots[from].worker || !st.slots[to].worker)
        // The dispatcher asks again a little later.
        return caf::make_error(caf::sec::request_receiver_down,
                               "a worker of the hand-over is restarting");
      auto rp = self->make_response_promise<registry_part>();
      auto timeout = st.supervision.limits.reply;
      self->request(st.slots[from].worker, timeout, handover_atom::value,
                    std::move(site))
        .then(
          [=](registry_part& part) mutable {
            registry_part ids;
            ids.site_ids = part.site_ids;
            ids.flow_ids = part.flow_ids;
            self->request(self->state.slots[to].worker, timeout,
                          takeover_atom::value, std::move(part))
              .then(
                [=](caf::ok_atom) mutable { rp.deliver(std::move(ids)); },
                [=](caf::error& err) mutable {
                  // The part left one worker and did not reach the other:
                  // memory no longer matches the tables. Stop; a restart
                  // restores from the database.
                  log()->critical("{} {}: worker {} could not take over "
                                  "what worker {} handed over: {}",
                                  self->name(), self->state.group, to, from,
                                  self->system().render(err));
                  rp.deliver(err);
                  self->quit(err);
                });
          },
          [=](caf::error& err) mutable { rp.deliver(err); });
      return rp;
    },
    [self](snapshot_atom) -> caf::result<registry_snapshot> {
      auto rp = self->make_response_promise<registry_snapshot>();
      auto all = std::make_shared<registry_snapshot>();
      gather_into<registry_snapshot>(
        rp, self->state.slots.size(),
        [self](size_t i) { return ask_worker(self, i, snapshot_atom::value); },
        [all](registry_snapshot& part) { all->append(std::move(part)); },
        [all] { return std::move(*all); });
      return rp;
    },
    [self](count_atom) -> caf::result<registry_stats> {
      auto rp = self->make_response_promise<registry_stats>();
      sum_into<registry_stats>(rp, self->state.slots.size(), [self](size_t i) {
        return ask_worker(self, i, count_atom::value);
      });
      return rp;
    },
  };
}

} // namespace flowmatch
