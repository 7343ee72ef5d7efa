#pragma once

// The event ids that took effect, for deduplication by id alone
// (docs/contracts/events.md, v1.1): one window per input, owned by the
// input's source, so the decision never depends on routing, on the number
// of workers or on where a restart fell. An id is remembered from when it was
// admitted and forgotten when its event is dead-lettered after admission
// (a corrected resend must apply) or when it is older than the retention.
//
// Memory: an id is kept as a 128-bit fingerprint (two independently
// seeded 64-bit hashes) with its time, 24 bytes in a flat slot, whatever
// the id's length, and no allocation per id. A false duplicate needs both
// halves to collide: below 1e-20 for a billion ids within the retention.
//
// Why the source and not the workers: a reused id may carry another
// routing key, and a flow delete's key changes once its flow is known, so
// no per-worker (or, later, per-shard) set sees every copy of an id. The
// source of an input (a file, a stream partition) sees every copy in input
// order. Why not the dispatcher: it is the one serial point of routing for
// every input and must stay thin; a window's first fill costs a page fault
// per 170 ids (11 us each on this kind of machine), which the source, on a
// thread of its own, absorbs beside decoding.

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace flowmatch {

/// How long an applied event id is remembered (events.md v1.1: 7 days).
constexpr std::chrono::milliseconds default_dedup_retention
  = std::chrono::hours{24 * 7};

class event_id_window {
public:
  /// Milliseconds since the Unix epoch (wall clock: the retention counts
  /// across restarts, and `processed_events.processed_at` is wall time).
  using millis = int64_t;

  explicit event_id_window(millis retention_ms) : retention_(retention_ms) {
  }

  /// True when `id` was not in the window: it is remembered from `now`.
  /// False for a duplicate (seen within the retention).
  bool admit(std::string_view id, millis now) {
    auto fp = fingerprint_of(id);
    auto& s = shard(fp);
    auto [i, added] = s.try_emplace(fp, now);
    if (added)
      return true;
    if (i->second + retention_ >= now)
      return false;
    i->second = now; // older than the retention: it may apply again
    return true;
  }

  /// Whether `id` is in the window (seen within the retention), without
  /// admitting it.
  bool contains(std::string_view id, millis now) const {
    auto fp = fingerprint_of(id);
    auto& s = shards_[fp.hash >> 58];
    auto i = s.find(fp);
    return i != s.end() && i->second + retention_ >= now;
  }

  /// An admitted id whose event was dead-lettered: a resend applies.
  void forget(std::string_view id) {
    auto fp = fingerprint_of(id);
    shard(fp).erase(fp);
  }

  /// Takes in an id stored with the time it was applied (restart).
  void remember(std::string_view id, millis applied) {
    auto fp = fingerprint_of(id);
    auto& s = shard(fp);
    auto [i, added] = s.try_emplace(fp, applied);
    if (!added && i->second < applied)
      i->second = applied;
  }

  /// Drops the ids of one shard (the next in turn) that are older than
  /// the retention; returns how many. Called on a timer, so the work is
  /// spread: no pause of the whole set at once.
  size_t expire_next_shard(millis now) {
    auto& s = shards_[next_shard_];
    next_shard_ = (next_shard_ + 1) % shard_count;
    auto cutoff = now - retention_;
    size_t before = s.size();
    absl::erase_if(s, [cutoff](const auto& kv) { return kv.second < cutoff; });
    return before - s.size();
  }

  size_t size() const {
    size_t n = 0;
    for (auto& s : shards_)
      n += s.size();
    return n;
  }

  static constexpr size_t shard_count = 64;

private:
  struct fingerprint {
    uint64_t hash; ///< places the id in its shard and map
    uint64_t check; ///< a second, independently seeded hash
    bool operator==(const fingerprint& o) const {
      return hash == o.hash && check == o.check;
    }
  };
  /// Already a good hash: the map uses it as is.
  struct fingerprint_hash {
    size_t operator()(const fingerprint& f) const {
      return f.hash;
    }
  };
  static fingerprint fingerprint_of(std::string_view id) {
    using h = absl::Hash<std::pair<uint64_t, std::string_view>>;
    return {h{}(std::pair<uint64_t, std::string_view>{0x9e3779b97f4a7c15ull,
                                                       id}),
            h{}(std::pair<uint64_t, std::string_view>{0xc2b2ae3d27d4eb4full,
                                                       id})};
  }
  // Many flat maps rather than one: growing one rehashes a 64th of the
  // ids (one set of a million ids pauses its owner for 100 ms and more
  // when it grows, and the pipeline's latency with it).
  using map = absl::flat_hash_map<fingerprint, millis, fingerprint_hash>;
  map& shard(const fingerprint& f) {
    // The top bits: the maps use the low ones to place an id.
    return shards_[f.hash >> 58];
  }

  millis retention_;
  std::array<map, shard_count> shards_;
  size_t next_shard_ = 0;
};

} // namespace flowmatch
