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

/// A distribution (latencies, batch sizes) in fixed buckets, as Prometheus
/// histograms count it: `counts[i]` observations at most `bounds[i]`
/// (not cumulative here), the last one above every bound.
struct histogram_data {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t count = 0;

  /// Latencies in seconds, from 0.5 ms to 10 s.
  static histogram_data seconds() {
    return with({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1, 2.5, 5, 10});
  }

  /// Sizes, powers of 4 from 1 to 65536.
  static histogram_data sizes() {
    return with({1, 4, 16, 64, 256, 1024, 4096, 16384, 65536});
  }

  static histogram_data with(std::vector<double> bounds) {
    histogram_data h;
    h.counts.assign(bounds.size() + 1, 0);
    h.bounds = std::move(bounds);
    return h;
  }

  /// `n` observations of `value`.
  void observe(double value, uint64_t n = 1) {
    size_t i = 0;
    while (i < bounds.size() && value > bounds[i])
      ++i;
    if (i < counts.size())
      counts[i] += n;
    sum += value * static_cast<double>(n);
    count += n;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, histogram_data& x) {
  return f(caf::meta::type_name("histogram_data"), x.bounds, x.counts, x.sum,
           x.count);
}

/// A named histogram of an actor.
struct status_histogram {
  std::string name;
  histogram_data data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, status_histogram& x) {
  return f(caf::meta::type_name("status_histogram"), x.name, x.data);
}

/// What one actor says about itself.
struct actor_status {
  /// The actor's name and, where there are several, its index
  /// ("postgis-sync 1").
  std::string actor;
  std::vector<status_metric> metrics;
  std::vector<status_histogram> histograms;
  /// Items waiting inside the actor (not its mailbox): unwritten changes,
  /// unacknowledged batches, batches waiting for credit.
  uint64_t queue_depth = 0;
  /// How long the oldest of them has waited, in seconds (0 when none).
  double oldest_wait_seconds = 0;
  /// Messages in the actor's mailbox when it answered (not yet handled).
  uint64_t mailbox_depth = 0;
  /// How long the status request waited before its answer came (set by
  /// the telemetry actor): the age of the oldest message in the mailbox
  /// when the request arrived, as near as one can tell from outside.
  double mailbox_wait_seconds = 0;

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

  actor_status& histogram(std::string name, const histogram_data& data) {
    histograms.push_back(status_histogram{std::move(name), data});
    return *this;
  }

  /// A metric by name, or null when the actor has no such metric.
  const status_metric* find(const std::string& name) const {
    for (auto& m : metrics)
      if (m.name == name)
        return &m;
    return nullptr;
  }

  /// The value of a metric by name; 0 when the actor has no such metric.
  double value(const std::string& name) const {
    auto m = find(name);
    return m ? m->value : 0;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_status& x) {
  return f(caf::meta::type_name("actor_status"), x.actor, x.metrics,
           x.histograms, x.queue_depth, x.oldest_wait_seconds,
           x.mailbox_depth, x.mailbox_wait_seconds);
}

} // namespace flowmatch
