#include "actors/postgis_sync.hpp"

#include "base/logging.hpp"
#include "storage/migrations.hpp"
#include "messages/encoder.hpp"

#include <caf/all.hpp>


namespace flowmatch {

using sync_ptr = postgis_sync_actor::stateful_pointer<postgis_sync_state>;

namespace {

std::string who(sync_ptr self) {
  return std::string{self->name()} + " " + std::to_string(self->state.index);
}

dead_letter refusal_letter(const store::refused& r) {
  dead_letter dl;
  dl.event_id = r.what.event_id;
  dl.origin = event_origin{"postgis", 0};
  dl.reason = reject_reason::permanent_db_error;
  dl.detail = r.error.describe();
  switch (r.what.kind) {
    case change::site_upserted:
      dl.payload = site_data_json(r.what.site_data);
      break;
    case change::flow_upserted:
      dl.payload = flow_data_json(r.what.flow_data);
      break;
    default:
      dl.payload = r.what.id;
  }
  return dl;
}

/// Memory must not keep what the table refused: the worker gets the refused
/// changes and the stored rows of their entities (in the answer, passed on
/// as a repair by the coordinator), and goes back to them where no later
/// change of the entity was applied since.
void add_repair(sync_ptr self, const std::vector<store::refused>& refusals,
                commit_result& answer) {
  auto& st = self->state;
  std::vector<std::string> sites, flows;
  std::vector<change> refused;
  for (auto& r : refusals) {
    switch (r.what.kind) {
      case change::site_upserted:
        sites.push_back(r.what.site_data.site_id);
        break;
      case change::site_deleted:
        sites.push_back(r.what.id);
        break;
      case change::flow_upserted:
        flows.push_back(r.what.flow_data.flow_id);
        break;
      case change::flow_deleted:
        flows.push_back(r.what.id);
        break;
    }
    refused.push_back(r.what);
  }
  auto stored = store::load_entities(st.conn, sites, flows);
  if (stored.error) {
    // The connection broke right after COMMIT: the worker keeps what it
    // has; the next start loads the tables again. Say so.
    log()->error("{} cannot read back the {} refused entities ({}); memory "
                 "may differ from the tables until the next start",
                 who(self), refused.size(), stored.error->describe());
    return;
  }
  answer.refused = std::move(refused);
  answer.stored = std::move(*stored.value);
}

void flush(sync_ptr self) {
  auto& st = self->state;
  st.schedule.flushing();
  if (st.pending.empty() && st.answers.empty())
    return;
  st.pending.collapse();
  auto started = std::chrono::steady_clock::now();
  auto changes = st.pending.changes();
  std::vector<store::refused> refusals;
  // Nothing is committed unless all is, and every write is idempotent:
  // after a lost connection the whole transaction is tried again later,
  // with what arrived meanwhile.
  auto attempt = attempt_write(
    self, st.schedule, st.conn, st.settings,
    "flowmatch-sync-" + std::to_string(st.index), who(self),
    [&](pg::connection& c) -> std::optional<pg::db_error> {
      if (!st.isolating) {
        auto err = store::write(c, st.pending, st.fence);
        if (!err || err->retryable() || err->fenced())
          return err;
        log()->warn("{} the database refused a batch of {} changes ({}); "
                    "writing them one by one to find the culprit",
                    who(self), st.pending.changes(), err->describe());
        st.isolating = true;
      }
      auto r = store::write_isolating(c, st.batches, st.fence);
      if (r.error)
        return r.error;
      refusals = std::move(*r.value);
      return std::nullopt;
    },
    changes);
  if (attempt.retrying)
    return;
  if (attempt.refused && attempt.refused->fenced()) {
    // This node lost a shard lease: a successor owns the shard. Stop.
    log()->critical("{} {}", who(self), attempt.refused->describe());
    self->quit(caf::make_error(caf::sec::runtime_error,
                               lease_lost_prefix
                                 + attempt.refused->message));
    return;
  }
  if (attempt.refused) {
    // Each change has its own savepoint here: a failure of the whole is
    // the connection's, whatever its code says. Try again.
    auto delay = st.schedule.retry_later(self);
    log()->warn("{} change-by-change write failed ({}); retrying in {} ms",
                who(self), attempt.refused->describe(), delay.count());
    return;
  }
  st.isolating = false;
  ++st.transactions;
  log()->debug("{} committed {} changes of {} batches in {:.1f} ms", who(self),
               changes, st.answers.size(),
               std::chrono::duration<double, std::milli>(
                 std::chrono::steady_clock::now() - started)
                 .count());
  commit_result first; // refusals are reported with the first batch
  if (!refusals.empty()) {
    std::vector<dead_letter> letters;
    for (auto& r : refusals) {
      log()->error("{} dead-lettering event {}: {}", who(self),
                   r.what.event_id, r.error.describe());
      first.refusals.count_dead_letter(reject_reason::permanent_db_error);
      first.refusals.rejected_ids.push_back(r.what.event_id);
      letters.push_back(refusal_letter(r));
    }
    if (st.dead_letters)
      self->send(st.dead_letters, std::move(letters));
    add_repair(self, refusals, first);
  }
  // Durable now: answer every batch, in order.
  for (auto& rp : st.answers) {
    rp.deliver(std::move(first));
    first = commit_result{};
  }
  st.answers.clear();
  st.batches.clear();
  st.pending.clear();
}

} // namespace

postgis_sync_actor::behavior_type
postgis_sync(sync_ptr self, uint32_t index, postgis_settings settings,
             dead_letter_sink_actor dead_letters, std::string fence_writer) {
  self->state.index = index;
  self->state.fence.writer = std::move(fence_writer);
  self->state.settings = std::move(settings);
  self->state.dead_letters = std::move(dead_letters);
  self->state.schedule = write_schedule{write_policy_of(self->state.settings)};
  return {
    [self](change_batch& batch) -> caf::result<commit_result> {
      auto& st = self->state;
      bool carries_data = !batch.changes.empty() || !batch.event_ids.empty();
      if (!carries_data && st.pending.empty() && st.answers.empty())
        return commit_result{}; // nothing to write and nothing before it
      st.pending.add(batch);
      auto rp = self->make_response_promise<commit_result>();
      st.answers.push_back(rp);
      if (carries_data)
        st.batches.push_back(std::move(batch));
      st.schedule.added(self,
                        st.pending.changes() + st.pending.processed.size(),
                        [self] { flush(self); });
      return rp;
    },
    [self](tick_atom, uint64_t generation) {
      if (self->state.schedule.current(generation))
        flush(self);
    },
    [self](fence_atom, std::vector<std::string>& resources,
           std::vector<int64_t>& epochs) {
      self->state.fence.resources = std::move(resources);
      self->state.fence.epochs = std::move(epochs);
    },
    [self](status_atom) {
      auto& st = self->state;
      auto s = writer_status(who(self), st.schedule, st.conn,
                             st.answers.size());
      s.counter("transactions", static_cast<double>(st.transactions))
        .gauge("pending_changes", static_cast<double>(st.pending.changes()));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
