#pragma once

// The status and metrics protocol: every long-lived actor answers
// `status_atom` with one `actor_status`; the telemetry actor collects them
// on a timer (see actors/telemetry.hpp). Exporting them (Prometheus, health)
// builds on this; nothing here knows about HTTP.

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace flowmatch {

/// One named number of an actor. Counters only grow over the actor's life
/// (events applied, transactions); gauges go up and down (flows held).
struct status_metric {
  std::string name;
  bool counter = true;
  double value = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, status_metric& x) {
  return f(caf::meta::type_name("status_metric"), x.name, x.counter, x.value);
}

/// What one actor says about itself.
struct actor_status {
  /// The actor's name and, where there are several, its index
  /// ("postgis-sync 1").
  std::string actor;
  std::vector<status_metric> metrics;
  /// Items waiting inside the actor (not its mailbox): unwritten changes,
  /// unacknowledged batches, batches waiting for credit.
  uint64_t queue_depth = 0;
  /// How long the oldest of them has waited, in seconds (0 when none).
  double oldest_wait_seconds = 0;

  /// A status of `actor` with nothing in it yet.
  static actor_status of(std::string actor) {
    actor_status s;
    s.actor = std::move(actor);
    return s;
  }

  actor_status& counter(std::string name, double value) {
    metrics.push_back(status_metric{std::move(name), true, value});
    return *this;
  }

  actor_status& gauge(std::string name, double value) {
    metrics.push_back(status_metric{std::move(name), false, value});
    return *this;
  }

  /// The value of a metric by name; 0 when the actor has no such metric.
  double value(const std::string& name) const {
    for (auto& m : metrics)
      if (m.name == name)
        return m.value;
    return 0;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_status& x) {
  return f(caf::meta::type_name("actor_status"), x.actor, x.metrics,
           x.queue_depth, x.oldest_wait_seconds);
}

} // namespace flowmatch
