#pragma once

// The status of every stage (messages/status.hpp, collected by the
// telemetry actor) in the Prometheus text format, for `/metrics`.
//
// Every metric of an actor becomes a series labelled with the actor:
// `flowmatch_<name>{actor="..."}`, counters with `_total`. A metric name
// may carry labels of its own, `events{outcome=applied}`, so one family
// holds a breakdown (`flowmatch_events_total{outcome="applied",...}`).
// Each actor's queue depth and the age of its oldest waiting item are
// `flowmatch_actor_queue_depth` and `flowmatch_actor_oldest_wait_seconds`.

#include "messages/status.hpp"

#include <string>
#include <vector>

namespace flowmatch {

struct build_info {
  std::string version;
  std::string commit;
};

/// The text of `/metrics` (Prometheus exposition format 0.0.4).
std::string render_prometheus(const std::vector<actor_status>& stages,
                              const build_info& build);

} // namespace flowmatch
