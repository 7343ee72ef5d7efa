#pragma once

// Rate limiting of an input (`ingest.max-rate`, `ingest.burst`), the seed
// guide's pattern: a token bucket refilled at `rate` tokens per second up
// to `burst`; taking n events takes n tokens. When the bucket is short,
// the ingest driver reads nothing until `wait_for` has passed: the backlog
// waits where it is (the pipe, the file, the stream), never in memory.
//
// Pure logic on a caller's clock, so tests need no sleeps.

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace flowmatch {

class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  /// `rate` 0 means no limit. A burst below 1 is taken as 1.
  token_bucket(double rate = 0, double burst = 1,
               clock::time_point now = clock::now())
    : rate_(rate), burst_(std::max(burst, 1.0)), tokens_(burst_), at_(now) {
  }

  bool limited() const {
    return rate_ > 0;
  }

  /// Tokens available now (at most the burst).
  double available(clock::time_point now) {
    refill(now);
    return tokens_;
  }

  /// Takes `n` tokens (the events just read). The balance may go below
  /// zero by less than one batch: the next read waits it off.
  void take(double n, clock::time_point now) {
    if (!limited())
      return;
    refill(now);
    tokens_ -= n;
  }

  /// How long until at least `n` tokens (capped at the burst) are there;
  /// zero when they are now.
  std::chrono::microseconds wait_for(double n, clock::time_point now) {
    if (!limited())
      return std::chrono::microseconds{0};
    refill(now);
    auto need = std::min(n, burst_) - tokens_;
    if (need <= 0)
      return std::chrono::microseconds{0};
    return std::chrono::microseconds{
      static_cast<int64_t>(need / rate_ * 1e6) + 1};
  }

private:
  void refill(clock::time_point now) {
    if (now <= at_)
      return;
    double secs = std::chrono::duration<double>(now - at_).count();
    tokens_ = std::min(burst_, tokens_ + secs * rate_);
    at_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  clock::time_point at_;
};

} // namespace flowmatch
