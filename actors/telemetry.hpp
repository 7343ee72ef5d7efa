#pragma once

// The telemetry actor: the one place that knows how every stage is doing.
// Stages are attached to it once (the node does it as it starts them); on
// a timer it asks each for its status (messages/status.hpp) and keeps the
// latest answer of each. Readers (the progress log, next an HTTP metrics
// endpoint) ask it with `metrics` and never the stages themselves, so a
// slow stage slows nobody but its own entry, which then shows its age.

#include "actors/actors.hpp"

#include <chrono>
#include <map>
#include <vector>

namespace flowmatch {

using telemetry_actor = caf::typed_actor<
  // Collect this actor's status from now on (until it is gone).
  caf::reacts_to<attach_atom, status_source_actor>,
  // Timer: ask every attached actor.
  caf::reacts_to<tick_atom>,
  // The latest status of every attached actor, and the telemetry's own.
  caf::replies_to<metrics_atom>::with<std::vector<actor_status>>>;

struct telemetry_settings {
  /// How often the stages are asked.
  std::chrono::milliseconds interval{std::chrono::seconds{5}};
};

struct telemetry_state {
  static inline const char* name = "telemetry";
  struct entry {
    status_source_actor source;
    actor_status latest;
    bool answered = false;
    std::chrono::steady_clock::time_point at;
  };
  /// By the actor's id, so the order is the order of attachment.
  std::map<caf::actor_id, entry> entries;
  telemetry_settings settings;
  uint64_t rounds = 0;
  uint64_t missed = 0;
};

telemetry_actor::behavior_type
telemetry(telemetry_actor::stateful_pointer<telemetry_state> self,
          telemetry_settings settings);

} // namespace flowmatch
