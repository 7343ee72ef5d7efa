#include "actors/match_stream.hpp"

#include "base/logging.hpp"
#include "messages/match.hpp"

#include <caf/all.hpp>

namespace flowmatch {

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
    [self](status_atom) {
      auto s = actor_status::of(self->name());
      s.counter("match_changes_written",
                static_cast<double>(self->state.written));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
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
