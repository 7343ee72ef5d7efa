#include "actors/dead_letter_file_sink.hpp"

#include "messages/encoder.hpp"
#include "base/logging.hpp"

#include <caf/all.hpp>


namespace flowmatch {

namespace {

using sink_ptr
  = dead_letter_sink_actor::stateful_pointer<dead_letter_file_sink_state>;

caf::error write_failed(sink_ptr self) {
  auto& why = self->state.file.error();
  log()->critical("{} cannot write dead letters: {}", self->name(), why);
  return caf::make_error(caf::sec::runtime_error,
                         "dead-letter file " + why);
}

} // namespace

dead_letter_sink_actor::behavior_type dead_letter_file_sink(
  dead_letter_sink_actor::stateful_pointer<dead_letter_file_sink_state> self,
  std::string path) {
  auto& init = self->state;
  init.path = std::move(path);
  if (!init.path.empty() && !init.file.open(init.path, output_file::stream))
    // Configuration validation checks the path is writable; this is a race
    // with the filesystem, so say so and stop the node.
    self->quit(write_failed(self));
  return {
    [self](status_atom) {
      auto s = actor_status::of(self->name());
      s.counter("dead_letters_written",
                static_cast<double>(self->state.written));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
    [self](std::vector<dead_letter>& letters) {
      auto& st = self->state;
      for (auto& dl : letters) {
        // The first few go to the log in full; the rest only to the file.
        if (st.written < 10 || !st.file.is_open())
          log()->warn("{} {} at {}:{} (event {}): {}", self->name(),
                      to_string(dl.reason), dl.origin.source, dl.origin.position(),
                      dl.event_id.empty() ? "-" : dl.event_id, dl.detail);
        if (st.file.is_open()) {
          auto line = dead_letter_line(dl);
          line.push_back('\n');
          if (!st.file.write(line)) {
            self->quit(write_failed(self));
            return;
          }
        }
        ++st.written;
      }
    },
    [self](caf::flush_atom) -> caf::result<uint64_t> {
      auto& st = self->state;
      if (st.file.is_open() && !st.file.flush()) {
        auto err = write_failed(self);
        self->quit(err);
        return err;
      }
      return st.written;
    },
  };
}

} // namespace flowmatch
