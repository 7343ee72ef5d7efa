#pragma once

// The EventPublisher (streams/publisher.hpp) that hands events straight to
// a running node's dispatcher: for tests and for programs that embed
// flowmatch. It does what the ingest driver does for a line (decode,
// validate, deduplicate by event id, dead-letter what it rejects) and
// sends batches to the dispatcher, waiting for their admission: the
// caller is slowed by backpressure like any source. Call it from one
// thread that is not an actor's (it blocks).

#include "actors/actors.hpp"
#include "core/event_id_window.hpp"
#include "messages/decoder.hpp"
#include "streams/publisher.hpp"

#include <caf/actor_system.hpp>

namespace flowmatch {

class in_process_publisher final : public event_publisher {
public:
  /// Rejected events go to `dead_letters` (may be invalid: then they are
  /// only counted).
  in_process_publisher(caf::actor_system& sys, dispatcher_actor dispatcher,
                       dead_letter_sink_actor dead_letters,
                       size_t batch_size = 1024,
                       std::chrono::milliseconds admission_timeout
                       = std::chrono::minutes{15});

  using event_publisher::publish; // the batch form
  bool publish(std::string_view event) override;
  bool flush() override;
  uint64_t confirmed() const override {
    return confirmed_;
  }
  const std::string& error() const override {
    return error_;
  }

  /// Events rejected (dead-lettered) and duplicates skipped so far.
  uint64_t rejected() const {
    return rejected_;
  }
  uint64_t duplicates() const {
    return duplicates_;
  }

private:
  caf::actor_system& sys_;
  dispatcher_actor dispatcher_;
  dead_letter_sink_actor dead_letters_;
  size_t batch_size_;
  std::chrono::milliseconds timeout_;
  event_decoder decoder_;
  event_id_window seen_{default_dedup_retention.count()};
  std::string line_;
  std::vector<event> batch_;
  std::vector<dead_letter> rejects_;
  uint64_t lines_ = 0;
  uint64_t confirmed_ = 0;
  uint64_t rejected_ = 0;
  uint64_t duplicates_ = 0;
  std::string error_;
};

} // namespace flowmatch
