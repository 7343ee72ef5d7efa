#pragma once

// Readers of the ingest driver (see ingest_source.hpp). A reader knows one
// transport and nothing else: it yields lines and where they came from;
// batching, decoding, deduplication, credits, stops and dead letters are
// the driver's. Readers block (a pipe, a socket), so the driver that owns
// one runs detached.
//
// Adding a transport: implement `line_reader`, and teach `open_reader` to
// pick it from the settings (a checklist is in docs/architecture.md).

#include "messages/domain.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace flowmatch {

/// Where a driver's reader reads from, and how.
struct reader_settings {
  /// A file path, or `-` for stdin.
  std::string path = "-";
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
  };
  kind_t kind = end;
  std::string_view text;
  uint64_t bytes = 0;
  /// The source's name and the item's position in it (a line number).
  event_origin origin;
  /// The last line of a stopped input whose line end had not arrived: the
  /// producer was likely still writing it.
  bool cut = false;
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
};

/// The reader the settings select: today a file, or stdin for `-`. An
/// input that cannot be opened gives a reader whose first item is `end`,
/// with the cause in `error()`.
std::unique_ptr<line_reader> open_reader(const reader_settings& settings);

} // namespace flowmatch
