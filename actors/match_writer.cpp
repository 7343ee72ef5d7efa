#include "actors/match_writer.hpp"

#include "base/logging.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>


namespace flowmatch {

namespace {

using writer_ptr = match_writer_actor::stateful_pointer<match_writer_state>;

void flush(writer_ptr self) {
  auto& st = self->state;
  st.schedule.flushing();
  if (st.pending.empty() && st.waiting.empty())
    return;
  auto who = std::string{self->name()} + " " + st.label;
  auto started = std::chrono::steady_clock::now();
  auto rows = st.pending.size();
  if (!st.pending.empty()) {
    auto attempt = attempt_write(
      self, st.schedule, st.conn, st.settings, "flowmatch-matches-" + st.label,
      who,
      [&](pg::connection& c) {
        return store::write_matches(c, st.pending, st.fence);
      },
      rows);
    if (attempt.retrying)
      return;
    if (attempt.refused && attempt.refused->fenced()) {
      // This node lost the partition's lease: a successor owns it. Stop.
      log()->critical("{} {}", who, attempt.refused->describe());
      self->quit(caf::make_error(caf::sec::runtime_error,
                                 lease_lost_prefix
                                   + attempt.refused->message));
      return;
    }
    if (attempt.refused) {
      // Match rows come from validated flows; the database refusing one
      // is a bug or a schema change. Say so loudly and go on: the next
      // start repairs the stored matches from the rules.
      log()->critical("{} cannot store {} match changes: {}", who,
                      st.pending.size(), attempt.refused->describe());
    }
  }
  log()->debug("{} stored {} match changes in {:.1f} ms", who, rows,
               std::chrono::duration<double, std::milli>(
                 std::chrono::steady_clock::now() - started)
                 .count());
  st.written += st.pending.size();
  st.pending.clear();
  for (auto& rp : st.waiting)
    rp.deliver(caf::ok_atom::value);
  st.waiting.clear();
  for (auto& rp : st.flushes)
    rp.deliver(st.written);
  st.flushes.clear();
}

} // namespace

match_writer_actor::behavior_type
match_writer(match_writer_actor::stateful_pointer<match_writer_state> self,
             std::string label, postgis_settings settings,
             store::fence fence) {
  self->state.label = std::move(label);
  self->state.fence = std::move(fence);
  self->state.settings = std::move(settings);
  self->state.schedule = write_schedule{write_policy_of(self->state.settings)};
  return {
    [self](status_atom) {
      auto& st = self->state;
      auto s = writer_status(std::string{self->name()} + " " + st.label,
                             st.schedule, st.conn, st.pending.size());
      s.counter("match_changes_written", static_cast<double>(st.written));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
    [self](std::vector<match_change>& changes) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      for (auto& c : changes)
        st.pending.push_back(std::move(c));
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.waiting.push_back(rp);
      st.schedule.added(self, st.pending.size(), [self] { flush(self); });
      return rp;
    },
    [self](tick_atom, uint64_t generation) {
      if (self->state.schedule.current(generation))
        flush(self);
    },
    [self](caf::flush_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      return answer_flush(self, st.schedule, st.flushes,
                          st.pending.empty() && st.waiting.empty(), st.written,
                          [self] { flush(self); });
    },
  };
}

} // namespace flowmatch
