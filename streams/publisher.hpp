#pragma once

// The EventPublisher (the seed's interface, with its "later: Redis Streams"
// backend): what the platform's services use to hand events to flowmatch.
// One interface, three destinations:
//
//   - a Redis stream (ingest.md): pipelined XADD, optional MAXLEN ~ N;
//   - an NDJSON file (or stdout): one event per line;
//   - in process: straight to a running node's dispatcher
//     (actors/in_process_publisher.hpp), for tests and embedding.
//
// An event is its JSON object as one line of text (no line end), exactly
// what events.md defines; the publisher does not rewrite it. Publishing is
// at least once: after an error, publishing the same events again is
// harmless (flowmatch deduplicates by event id).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flowmatch {

class event_publisher {
public:
  virtual ~event_publisher() = default;

  /// Queues one event. False on an error (see `error()`); the publisher is
  /// unusable after one.
  virtual bool publish(std::string_view event) = 0;

  /// Queues several events, in order.
  virtual bool publish(const std::vector<std::string>& events) {
    for (auto& e : events)
      if (!publish(e))
        return false;
    return true;
  }

  /// Waits until everything queued has reached its destination (Redis
  /// answered every XADD; the file is written and synced; the node admitted
  /// every batch).
  virtual bool flush() = 0;

  /// Events the destination confirmed so far.
  virtual uint64_t confirmed() const = 0;

  /// What went wrong; empty without an error.
  virtual const std::string& error() const = 0;
};

/// Where and how the Redis publisher writes.
struct redis_publisher_settings {
  std::string url = "redis://127.0.0.1:6379";
  std::string stream = "flowmatch:events";
  /// XADD ... MAXLEN ~ N (0: no trimming). Trimming is the producers'
  /// business (ingest.md): keep N well above the consumers' lag.
  uint64_t max_len = 0;
  /// XADDs sent before their answers are read.
  size_t pipeline = 512;
  /// Stream partitions (ingest.md): above 1, an event goes to
  /// `stream:N` with N = fnv1a64(data.site_id) mod partitions.
  uint32_t partitions = 1;
  std::chrono::milliseconds timeout{std::chrono::seconds{10}};
};

/// A publisher to a Redis stream; on failure it is null and `error` says
/// why.
std::unique_ptr<event_publisher>
make_redis_publisher(const redis_publisher_settings& settings,
                     std::string& error);

/// A publisher to an NDJSON file (appended to; `-` for stdout).
std::unique_ptr<event_publisher> make_ndjson_publisher(const std::string& path,
                                                       std::string& error);

/// A consumer group's progress on a stream (XINFO GROUPS).
struct group_progress {
  bool exists = false;
  uint64_t pending = 0;
  /// Entries not yet delivered to the group; -1 when Redis cannot say.
  int64_t lag = -1;
  uint64_t consumers = 0;

  /// Every entry was delivered and acknowledged.
  bool done() const {
    return exists && pending == 0 && lag == 0;
  }
};

/// Asks Redis for `group`'s progress on `stream`; false with `error` when
/// Redis cannot be asked.
/// The stream key an event goes to (ingest.md): the stream itself, or
/// with partitions its partition by the event's routing key (data.site_id;
/// an event without one goes to partition 0, where the consumer
/// dead-letters it).
std::string partition_key(const std::string& stream, uint32_t partitions,
                          std::string_view event);

bool read_group_progress(const std::string& url, const std::string& stream,
                         const std::string& group, group_progress& out,
                         std::string& error);

} // namespace flowmatch
