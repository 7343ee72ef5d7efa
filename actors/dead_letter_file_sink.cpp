#include "actors/dead_letter_file_sink.hpp"

#include "messages/encoder.hpp"
#include "system/logging.hpp"

#include <caf/all.hpp>

#include <cerrno>
#include <cstring>

namespace flowmatch {

dead_letter_file_sink_state::~dead_letter_file_sink_state() {
  if (file != nullptr)
    std::fclose(file);
}

dead_letter_sink_actor::behavior_type dead_letter_file_sink(
  dead_letter_sink_actor::stateful_pointer<dead_letter_file_sink_state> self,
  std::string path) {
  auto& init = self->state;
  init.path = std::move(path);
  if (!init.path.empty()) {
    init.file = std::fopen(init.path.c_str(), "w");
    if (init.file == nullptr) {
      // Configuration validation checks the path is writable; this is a
      // race with the filesystem, so say so and stop the node.
      log()->critical("{} cannot open {}: {}", self->name(), init.path,
                      std::strerror(errno));
      self->quit(caf::make_error(caf::sec::runtime_error,
                                 "cannot open dead-letter file"));
    }
  }
  return {
    [self](std::vector<dead_letter>& letters) {
      auto& st = self->state;
      for (auto& dl : letters) {
        // The first few go to the log in full; the rest only to the file.
        if (st.written < 10 || st.file == nullptr)
          log()->warn("{} {} at {}:{} (event {}): {}", self->name(),
                      to_string(dl.reason), dl.origin.source, dl.origin.line,
                      dl.event_id.empty() ? "-" : dl.event_id, dl.detail);
        if (st.file != nullptr) {
          auto line = dead_letter_line(dl);
          line.push_back('\n');
          std::fwrite(line.data(), 1, line.size(), st.file);
        }
        ++st.written;
      }
    },
    [self](caf::flush_atom) -> uint64_t {
      auto& st = self->state;
      if (st.file != nullptr)
        std::fflush(st.file);
      return st.written;
    },
  };
}

} // namespace flowmatch
