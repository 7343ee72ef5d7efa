#pragma once

// Readers of the ingest driver (see ingest_source.hpp). A reader knows one
// transport and nothing else: it yields lines and where they came from;
// batching, decoding, deduplication, credits, stops and dead letters are
// the driver's. Readers block (a pipe, a socket), so the driver that owns
// one runs detached.
//
// Adding a transport: implement `line_reader`, and teach `open_reader` to
// pick it from the settings (a checklist is in docs/architecture.md).

#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"
#include "messages/status.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flowmatch {

/// A Redis stream to consume with a consumer group (ingest.md).
struct stream_settings {
  /// `redis://host:port[/db]`; empty: no stream (read `path`).
  std::string url;
  std::string stream = "flowmatch:events";
  std::string group = "flowmatch";
  /// This node's name in the group; stable across restarts, so a restarted
  /// node re-reads its own pending entries first.
  std::string consumer = "flowmatch";
  /// Entries pending this long with another consumer are claimed (the
  /// consumer is taken for dead).
  std::chrono::milliseconds claim_idle{std::chrono::seconds{30}};
  /// Cluster mode: this reader holds the partition's lease, so no other
  /// consumer may still work on its entries. Before the first new entry it
  /// claims every pending entry of every consumer, however briefly idle:
  /// the entries a lost holder read and never acknowledged are older than
  /// any new one and must be applied first (waiting claim_idle for them
  /// would apply a later update of the same site before them).
  bool claim_all_at_start = false;
  /// An entry delivered more often than this is dead-lettered as poison
  /// and acknowledged.
  uint32_t delivery_limit = 5;
  /// Entries asked for per read.
  size_t read_count = 1024;
  /// End the input once every entry was delivered (the group's lag is 0)
  /// instead of waiting for more: a catch-up run, or a benchmark.
  bool until_caught_up = false;
  /// How long one connection attempt may take.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds{2}};
  /// Longest wait between reconnection attempts (the backoff doubles from
  /// 100 ms up to this).
  std::chrono::milliseconds max_backoff{std::chrono::seconds{5}};
};

/// Where a driver's reader reads from, and how.
struct reader_settings {
  /// A file path, or `-` for stdin (when no stream is set).
  std::string path = "-";
  /// A Redis stream instead of a file, when its url is set.
  stream_settings stream;
  /// Bytes per read call.
  size_t read_size = 256 * 1024;
  /// How long one wait for input lasts before the driver looks at its
  /// mailbox again (a stop request, say).
  std::chrono::milliseconds poll_interval{100};
};

/// One thing a reader yields.
struct input_item {
  enum kind_t {
    /// `text` is one line without its line end (\n or \r\n); at least
    /// `decoder_padding` bytes after it are readable (for simdjson).
    line,
    /// A line longer than `max_line_bytes`: `text` is its first
    /// `over_long_payload_prefix` bytes, `bytes` its length. The rest was
    /// never held in memory.
    too_long,
    /// Nothing arrived within the wait; ask again later.
    nothing_yet,
    /// The input is over (its end, a stop, or an error: see `error()`).
    end,
    /// An entry the transport itself rejects (a stream entry without an
    /// `event` field, or delivered too often): dead-letter it with
    /// `reason` and `detail`; `text` is whatever payload it had.
    refused,
  };
  kind_t kind = end;
  std::string_view text;
  uint64_t bytes = 0;
  /// The source's name and the item's position in it (a line number).
  event_origin origin;
  /// The last line of a stopped input whose line end had not arrived: the
  /// producer was likely still writing it.
  bool cut = false;
  /// For `refused`.
  reject_reason reason = reject_reason::missing_field;
  std::string_view detail;
};

class line_reader {
public:
  virtual ~line_reader() = default;

  /// The source's name for logs and dead letters ("stdin", a path).
  virtual const std::string& name() const = 0;

  /// The next item. With `wait`, waits for input up to the poll interval;
  /// without, answers at once. `text` stays valid until the next call.
  virtual input_item next(bool wait) = 0;

  /// Intake stops: from now on the reader yields only what the input
  /// already holds (what a producer wrote before the stop), then `end`.
  virtual void stop() = 0;

  /// Why the input could not be read to its end; empty when it could.
  virtual const std::string& error() const = 0;

  /// Whether the transport keeps each item until told its outcome is
  /// durable (a stream with a consumer group); a file does not.
  virtual bool acknowledges() const {
    return false;
  }

  /// The items at these positions (`origin.line`) are settled: applied and
  /// committed, or durably dead-lettered. Returns how many the transport
  /// took; the rest are kept and retried at the next call (the transport
  /// was unreachable).
  virtual size_t acknowledge(std::vector<uint64_t> positions) {
    return positions.size();
  }

  /// Items handed out and not yet acknowledged.
  virtual size_t unacknowledged() const {
    return 0;
  }

  /// Transport metrics for the status protocol, e.g. the stream group's
  /// pending and lag.
  virtual std::vector<status_metric> counters() {
    return {};
  }
};

/// The reader the settings select: a Redis stream when its url is set,
/// else a file, or stdin for `-`. An input that cannot be opened gives a
/// reader whose first item is `end`, with the cause in `error()` (a
/// stream that is down is waited for instead: it may come back).
std::unique_ptr<line_reader> open_reader(const reader_settings& settings);

/// The file or stdin reader (file_reader.cpp).
std::unique_ptr<line_reader> open_file_reader(const reader_settings& settings);

/// The Redis stream reader (redis_reader.cpp).
std::unique_ptr<line_reader>
open_stream_reader(const stream_settings& settings,
                   std::chrono::milliseconds poll_interval);

} // namespace flowmatch
