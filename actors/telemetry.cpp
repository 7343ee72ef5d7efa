#include "actors/telemetry.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

namespace flowmatch {

namespace {

using telemetry_ptr = telemetry_actor::stateful_pointer<telemetry_state>;

/// Asks one attached actor; its answer replaces its entry. An actor that
/// does not answer within the interval keeps its last entry (with its age)
/// and counts as missed.
void ask(telemetry_ptr self, caf::actor_id id) {
  auto i = self->state.entries.find(id);
  if (i == self->state.entries.end())
    return;
  auto asked = std::chrono::steady_clock::now();
  self->request(i->second.source, self->state.settings.interval,
                status_atom::value)
    .then(
      [self, id, asked](actor_status& s) {
        auto j = self->state.entries.find(id);
        if (j == self->state.entries.end())
          return;
        // The question waited behind every message queued before it: the
        // round trip is how long a message waits in this mailbox now.
        s.mailbox_wait_seconds = std::chrono::duration<double>(
                                   std::chrono::steady_clock::now() - asked)
                                   .count();
        j->second.latest = std::move(s);
        j->second.answered = true;
        j->second.at = std::chrono::steady_clock::now();
      },
      [self, id](caf::error& err) {
        ++self->state.missed;
        auto j = self->state.entries.find(id);
        if (j != self->state.entries.end())
          log()->debug("{}: no status from {}: {}", self->name(),
                       j->second.latest.actor, self->system().render(err));
      });
}

} // namespace

telemetry_actor::behavior_type
telemetry(telemetry_actor::stateful_pointer<telemetry_state> self,
          telemetry_settings settings) {
  self->state.settings = settings;
  self->set_down_handler([self](caf::down_msg& msg) {
    self->state.entries.erase(msg.source.id());
  });
  self->delayed_send(self, settings.interval, tick_atom::value);
  return {
    [self](attach_atom, status_source_actor& source) {
      if (!source)
        return;
      self->monitor(source);
      auto id = source.id();
      self->state.entries[id].source = std::move(source);
      ask(self, id); // at once: a reader right after start sees every stage
    },
    [self](tick_atom) {
      ++self->state.rounds;
      for (auto& entry : self->state.entries)
        ask(self, entry.first);
      self->delayed_send(self, self->state.settings.interval,
                         tick_atom::value);
    },
    [self](metrics_atom) {
      auto& st = self->state;
      std::vector<actor_status> out;
      auto now = std::chrono::steady_clock::now();
      for (auto& [id, e] : st.entries) {
        if (!e.answered)
          continue;
        out.push_back(e.latest);
        out.back().gauge("status_age_seconds",
                         std::chrono::duration<double>(now - e.at).count());
      }
      actor_status own;
      own.actor = self->name();
      own.counter("rounds", static_cast<double>(st.rounds))
        .counter("missed_answers", static_cast<double>(st.missed))
        .gauge("attached", static_cast<double>(st.entries.size()));
      out.push_back(std::move(own));
      return out;
    },
  };
}

} // namespace flowmatch
