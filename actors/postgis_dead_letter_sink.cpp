#include "actors/postgis_dead_letter_sink.hpp"

#include "base/logging.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <thread>

namespace flowmatch {

namespace {

using sink_ptr = postgis_dead_letter_sink_actor::stateful_pointer<
  postgis_dead_letter_sink_state>;

void write_pending(sink_ptr self) {
  auto& st = self->state;
  st.timer_armed = false;
  ++st.timer_generation;
  if (st.pending.empty())
    return;
  auto delay = st.settings.retry_initial;
  for (;;) {
    if (!st.conn.is_open())
      st.conn = connect_with_retry(self->name(), st.settings,
                                   "flowmatch-dead-letters");
    auto err = store::insert_dead_letters(st.conn, st.pending);
    if (!err)
      break;
    if (!err->retryable()) {
      // Never lose a dead letter silently: say what could not be stored.
      log()->error("{} cannot store {} dead letters ({}); they follow here",
                   self->name(), st.pending.size(), err->describe());
      for (auto& dl : st.pending)
        log()->error("{} {} at {}:{} (event {}): {}", self->name(),
                     to_string(dl.reason), dl.origin.source, dl.origin.line,
                     dl.event_id, dl.detail);
      break;
    }
    log()->warn("{} lost the database ({}); retrying in {} ms", self->name(),
                err->describe(), delay.count());
    st.conn = pg::connection{};
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, st.settings.retry_max);
  }
  st.written += st.pending.size();
  st.pending.clear();
}

} // namespace

postgis_dead_letter_sink_actor::behavior_type postgis_dead_letter_sink(
  postgis_dead_letter_sink_actor::stateful_pointer<
    postgis_dead_letter_sink_state>
    self,
  postgis_settings settings) {
  self->state.settings = std::move(settings);
  return {
    [self](std::vector<dead_letter>& letters) {
      auto& st = self->state;
      for (auto& dl : letters) {
        if (st.written + st.pending.size() < 10)
          log()->warn("{} {} at {}:{} (event {}): {}", self->name(),
                      to_string(dl.reason), dl.origin.source, dl.origin.line,
                      dl.event_id.empty() ? "-" : dl.event_id, dl.detail);
        st.pending.push_back(std::move(dl));
      }
      if (st.pending.size() >= 500) {
        write_pending(self);
      } else if (!st.timer_armed) {
        st.timer_armed = true;
        self->delayed_send(self, std::chrono::milliseconds{200},
                           tick_atom::value, st.timer_generation);
      }
    },
    [self](tick_atom, uint64_t generation) {
      if (generation == self->state.timer_generation)
        write_pending(self);
    },
    [self](caf::flush_atom) -> uint64_t {
      write_pending(self);
      return self->state.written;
    },
  };
}

} // namespace flowmatch
