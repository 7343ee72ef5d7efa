#include "actors/match_writer.hpp"

#include "base/logging.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <cerrno>
#include <cstring>
#include <thread>

namespace flowmatch {

namespace {

using writer_ptr = match_writer_actor::stateful_pointer<match_writer_state>;

void flush(writer_ptr self) {
  auto& st = self->state;
  st.timer_armed = false;
  ++st.timer_generation;
  if (st.pending.empty() && st.waiting.empty())
    return;
  auto who = std::string{self->name()} + " " + st.label;
  auto delay = st.settings.retry_initial;
  auto started = std::chrono::steady_clock::now();
  auto rows = st.pending.size();
  while (!st.pending.empty()) {
    if (!st.conn.is_open())
      st.conn = connect_with_retry(who, st.settings,
                                   "flowmatch-matches-" + st.label);
    auto err = store::write_matches(st.conn, st.pending);
    if (!err)
      break;
    if (!err->retryable()) {
      // Match rows come from validated flows; the database refusing one
      // is a bug or a schema change. Say so loudly and go on: the next
      // start repairs the stored matches from the rules.
      log()->critical("{} cannot store {} match changes: {}", who,
                      st.pending.size(), err->describe());
      break;
    }
    log()->warn("{} lost the database ({}); retrying in {} ms", who,
                err->describe(), delay.count());
    st.conn = pg::connection{};
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, st.settings.retry_max);
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
}

} // namespace

match_writer_actor::behavior_type
match_writer(match_writer_actor::stateful_pointer<match_writer_state> self,
             std::string label, postgis_settings settings) {
  self->state.label = std::move(label);
  self->state.settings = std::move(settings);
  return {
    [self](std::vector<match_change>& changes) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      for (auto& c : changes)
        st.pending.push_back(std::move(c));
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.waiting.push_back(rp);
      if (st.pending.size() >= st.settings.batch_size) {
        flush(self);
      } else if (!st.timer_armed) {
        st.timer_armed = true;
        self->delayed_send(self, st.settings.max_age, tick_atom::value,
                           st.timer_generation);
      }
      return rp;
    },
    [self](tick_atom, uint64_t generation) {
      if (generation == self->state.timer_generation)
        flush(self);
    },
    [self](caf::flush_atom) -> uint64_t {
      flush(self);
      return self->state.written;
    },
  };
}

namespace {

using stream_ptr = match_sink_actor::stateful_pointer<match_stream_state>;

caf::error stream_failed(stream_ptr self) {
  auto& why = self->state.file.error();
  log()->critical("{} cannot write the match stream: {}", self->name(), why);
  return caf::make_error(caf::sec::runtime_error, "match stream " + why);
}

} // namespace

match_sink_actor::behavior_type
match_stream(match_sink_actor::stateful_pointer<match_stream_state> self,
             std::string path) {
  auto& init = self->state;
  init.path = std::move(path);
  if (!init.file.open(init.path, output_file::stream))
    self->quit(stream_failed(self));
  return {
    [self](std::vector<match_change>& changes) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      std::string line;
      for (auto& c : changes) {
        line = match_change_line(c);
        line.push_back('\n');
        if (!st.file.write(line)) {
          auto err = stream_failed(self);
          self->quit(err);
          return err;
        }
      }
      st.written += changes.size();
      return caf::ok_atom::value;
    },
    [self](caf::flush_atom) -> caf::result<uint64_t> {
      if (!self->state.file.flush()) {
        auto err = stream_failed(self);
        self->quit(err);
        return err;
      }
      return self->state.written;
    },
  };
}

} // namespace flowmatch
