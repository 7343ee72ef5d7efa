#pragma once

// When a database writer writes: the one policy of the three batching
// writers (the PostGIS sync, the match writer, the dead-letter sink).
//
// Group commit: work is written as soon as the writer has nothing more
// queued, so a transaction takes whatever gathered while the one before it
// ran. At low load each request is written at once (its latency is one
// commit); under load transactions grow by themselves, up to `batch_size`
// items, and `max_age` bounds how long work waits while more keeps
// arriving. A write that fails for a
// reason that can recover (connection lost, server restarting) is tried
// again after a backoff (doubling from `retry_initial` up to `retry_max`)
// as a delayed message to the writer itself, never by sleeping: between
// attempts the writer keeps taking in work (which the next attempt writes
// too) and hears an exit message at once.
//
// Both the age timer and the retry are `tick` messages carrying the
// schedule's generation; every flush starts a new generation, so a tick
// that arrives after a flush it was meant to cause is ignored.

#include "base/logging.hpp"
#include "messages/type_ids.hpp"
#include "storage/session.hpp"

#include <caf/result.hpp>
#include <caf/typed_response_promise.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flowmatch {

struct write_policy {
  size_t batch_size = 16384;
  std::chrono::milliseconds max_age{20};
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
};

/// The policy of the PostGIS settings (`postgis.batch-size`,
/// `postgis.max-batch-age`, `postgis.retry-*`).
inline write_policy write_policy_of(const postgis_settings& s) {
  return write_policy{s.batch_size, s.max_age, s.retry_initial, s.retry_max};
}

class write_schedule {
public:
  explicit write_schedule(write_policy policy = {}) : policy_(policy) {
  }

  const write_policy& policy() const {
    return policy_;
  }

  /// After taking in work, `pending` items now wait: flushes at once when
  /// the batch is full or nothing more is queued for the writer, otherwise
  /// makes sure the age timer runs. While a retry is scheduled it does
  /// nothing: the retry writes everything.
  template <class Self, class Flush>
  void added(Self* self, size_t pending, Flush&& flush) {
    if (!waiting_since_)
      waiting_since_ = std::chrono::steady_clock::now();
    if (backing_off_)
      return;
    if (pending >= policy_.batch_size || self->mailbox().size() == 0) {
      flush();
      return;
    }
    if (!timer_armed_) {
      timer_armed_ = true;
      self->delayed_send(self, policy_.max_age, tick_atom::value,
                         generation_);
    }
  }

  /// Whether a tick is for the current generation (else it is ignored).
  bool current(uint64_t generation) const {
    return generation == generation_;
  }

  /// Call first in every flush: pending ticks become stale.
  void flushing() {
    timer_armed_ = false;
    backing_off_ = false;
    ++generation_;
  }

  /// The write failed but can recover: flush again after the backoff.
  /// Returns the delay, for the log.
  template <class Self>
  std::chrono::milliseconds retry_later(Self* self) {
    delay_ = delay_.count() == 0 ? policy_.retry_initial
                                 : std::min(delay_ * 2, policy_.retry_max);
    backing_off_ = true;
    self->delayed_send(self, delay_, tick_atom::value, generation_);
    return delay_;
  }

  /// The write succeeded: the next failure starts the backoff afresh.
  void succeeded() {
    delay_ = std::chrono::milliseconds{0};
    waiting_since_.reset();
  }

  /// How long the oldest unwritten work has waited (status protocol).
  double oldest_wait_seconds() const {
    if (!waiting_since_)
      return 0;
    return std::chrono::duration<double>(std::chrono::steady_clock::now()
                                         - *waiting_since_)
      .count();
  }

  bool backing_off() const {
    return backing_off_;
  }

  /// A transaction that reached the server took `seconds` for `items`.
  void wrote(double seconds, size_t items) {
    tx_seconds_.observe(seconds);
    if (items > 0)
      tx_items_.observe(static_cast<double>(items));
  }

  const histogram_data& transaction_seconds() const {
    return tx_seconds_;
  }

  const histogram_data& transaction_items() const {
    return tx_items_;
  }

private:
  write_policy policy_;
  histogram_data tx_seconds_ = histogram_data::seconds();
  histogram_data tx_items_ = histogram_data::sizes();
  uint64_t generation_ = 0;
  bool timer_armed_ = false;
  bool backing_off_ = false;
  std::chrono::milliseconds delay_{0};
  std::optional<std::chrono::steady_clock::time_point> waiting_since_;
};

/// The part of a status every batching writer reports alike: whether it
/// holds a connection, how many items wait (`waiting`) and for how long.
inline actor_status writer_status(std::string actor,
                                  const write_schedule& schedule,
                                  const pg::connection& conn, size_t waiting) {
  auto s = actor_status::of(std::move(actor));
  s.gauge("connected", conn.is_open() ? 1.0 : 0.0);
  s.histogram("transaction_seconds", schedule.transaction_seconds())
    .histogram("transaction_items", schedule.transaction_items());
  s.queue_depth = waiting;
  s.oldest_wait_seconds = schedule.oldest_wait_seconds();
  return s;
}

/// A batching writer's answer to `flush`: the count at once when nothing
/// waits (`idle`); otherwise a promise kept in `flushes` (the writer
/// answers them once everything so far is stored, after retries too), and
/// a write now unless a retry is already scheduled.
template <class Self, class Flush>
caf::result<uint64_t>
answer_flush(Self* self, write_schedule& schedule,
             std::vector<caf::typed_response_promise<uint64_t>>& flushes,
             bool idle, uint64_t written, Flush&& flush) {
  if (idle)
    return written;
  auto rp = self->template make_response_promise<uint64_t>();
  flushes.push_back(rp);
  if (!schedule.backing_off())
    flush();
  return rp;
}

/// What one write attempt gave.
struct write_attempt {
  /// The server could not be reached or the connection was lost: a retry
  /// is scheduled; nothing was written.
  bool retrying = false;
  /// A permanent error of the write itself (the caller decides).
  std::optional<pg::db_error> refused;
};

/// One attempt of a writer's transaction: opens the session when needed
/// (not reaching the server is always worth another try: the node checked
/// the settings at start), then runs `write(conn)`. A lost connection
/// closes `conn` and schedules the retry, logged with `who`.
template <class Self, class Write>
write_attempt attempt_write(Self* self, write_schedule& schedule,
                            pg::connection& conn,
                            const postgis_settings& settings,
                            const std::string& application_name,
                            const std::string& who, Write&& write,
                            size_t items = 0) {
  write_attempt result;
  auto err = ensure_session(conn, settings, application_name);
  bool lost = err.has_value();
  if (!err) {
    auto start = std::chrono::steady_clock::now();
    err = write(conn);
    lost = err && err->retryable();
    if (!lost)
      schedule.wrote(std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count(),
                     items);
  }
  if (lost) {
    conn = pg::connection{};
    auto delay = schedule.retry_later(self);
    log()->warn("{} lost the database ({}); reconnecting in {} ms", who,
                err->describe(), delay.count());
    result.retrying = true;
    return result;
  }
  schedule.succeeded();
  result.refused = std::move(err);
  return result;
}

} // namespace flowmatch
