#include "actors/in_process_publisher.hpp"

#include <caf/all.hpp>

#include <chrono>

namespace flowmatch {

in_process_publisher::in_process_publisher(
  caf::actor_system& sys, dispatcher_actor dispatcher,
  dead_letter_sink_actor dead_letters, size_t batch_size,
  std::chrono::milliseconds admission_timeout)
  : sys_(sys),
    dispatcher_(std::move(dispatcher)),
    dead_letters_(std::move(dead_letters)),
    batch_size_(std::max<size_t>(batch_size, 1)),
    timeout_(admission_timeout) {
}

bool in_process_publisher::publish(std::string_view text) {
  if (!error_.empty())
    return false;
  ++lines_;
  // The decoder reads up to decoder_padding bytes past the line.
  line_.assign(text.begin(), text.end());
  line_.resize(text.size() + decoder_padding, '\0');
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  auto result = decoder_.decode(std::string_view{line_.data(), text.size()},
                                event_origin{"in-process", lines_}, true);
  if (auto* ev = std::get_if<event>(&result)) {
    if (!seen_.admit(ev->id, now_ms)) {
      ++duplicates_;
      return true;
    }
    batch_.push_back(std::move(*ev));
    if (batch_.size() >= batch_size_)
      return flush();
    return true;
  }
  ++rejected_;
  rejects_.push_back(std::move(std::get<dead_letter>(result)));
  return true;
}

bool in_process_publisher::flush() {
  if (!error_.empty())
    return false;
  caf::scoped_actor self{sys_};
  if (!rejects_.empty()) {
    if (dead_letters_)
      self->send(dead_letters_, std::move(rejects_));
    rejects_.clear();
  }
  if (batch_.empty())
    return true;
  auto n = batch_.size();
  std::vector<event> batch;
  batch.swap(batch_);
  self->request(dispatcher_, timeout_, ingest_atom::value, std::move(batch))
    .receive([&](caf::ok_atom) { confirmed_ += n; },
             [&](caf::error& err) {
               error_ = "the dispatcher did not admit a batch: "
                        + sys_.render(err);
             });
  return error_.empty();
}

} // namespace flowmatch
