#include "actors/postgis_dead_letter_sink.hpp"

#include "base/logging.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>


namespace flowmatch {

namespace {

using sink_ptr = postgis_dead_letter_sink_actor::stateful_pointer<
  postgis_dead_letter_sink_state>;

void write_pending(sink_ptr self) {
  auto& st = self->state;
  st.schedule.flushing();
  if (!st.pending.empty()) {
    auto attempt = attempt_write(
      self, st.schedule, st.conn, st.settings, "flowmatch-dead-letters",
      self->name(), [&](pg::connection& c) {
        return store::insert_dead_letters(c, st.pending);
      },
      st.pending.size());
    if (attempt.retrying)
      return;
    if (attempt.refused) {
      // Never lose a dead letter silently: say what could not be stored.
      log()->error("{} cannot store {} dead letters ({}); they follow here",
                   self->name(), st.pending.size(),
                   attempt.refused->describe());
      for (auto& dl : st.pending)
        log()->error("{} {} at {}:{} (event {}): {}", self->name(),
                     to_string(dl.reason), dl.origin.source, dl.origin.position(),
                     dl.event_id, dl.detail);
    }
    st.written += st.pending.size();
    st.pending.clear();
  }
  for (auto& rp : st.flushes)
    rp.deliver(st.written);
  st.flushes.clear();
}

} // namespace

postgis_dead_letter_sink_actor::behavior_type postgis_dead_letter_sink(
  postgis_dead_letter_sink_actor::stateful_pointer<
    postgis_dead_letter_sink_state>
    self,
  postgis_settings settings) {
  self->state.settings = std::move(settings);
  // Dead letters are off the credit path: larger, older batches than the
  // entity writers' keep a flood of bad input to few transactions.
  auto policy = write_policy_of(self->state.settings);
  policy.batch_size = dead_letter_batch_size;
  policy.max_age = dead_letter_max_age;
  self->state.schedule = write_schedule{policy};
  return {
    [self](status_atom) {
      auto& st = self->state;
      auto s = writer_status(self->name(), st.schedule, st.conn,
                             st.pending.size());
      s.counter("dead_letters_written", static_cast<double>(st.written));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
    [self](std::vector<dead_letter>& letters) {
      auto& st = self->state;
      for (auto& dl : letters) {
        if (st.written + st.pending.size() < dead_letters_logged)
          log()->warn("{} {} at {}:{} (event {}): {}", self->name(),
                      to_string(dl.reason), dl.origin.source, dl.origin.position(),
                      dl.event_id.empty() ? "-" : dl.event_id, dl.detail);
        st.pending.push_back(std::move(dl));
      }
      st.schedule.added(self, st.pending.size(),
                        [self] { write_pending(self); });
    },
    [self](tick_atom, uint64_t generation) {
      if (self->state.schedule.current(generation))
        write_pending(self);
    },
    [self](caf::flush_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      return answer_flush(self, st.schedule, st.flushes, st.pending.empty(),
                          st.written, [self] { write_pending(self); });
    },
  };
}

} // namespace flowmatch
