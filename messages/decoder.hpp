#pragma once

// The one decoder and validator of the event contract (v1). Every ingest path
// (NDJSON file or stdin today; outbox, Redis Streams, remote nodes later)
// turns its bytes into `event`s through this class, so every rule is
// enforced in one place.

#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"

#include <simdjson.h>

#include <cstddef>
#include <string_view>
#include <variant>

namespace flowmatch {

/// Lines longer than this (in bytes, without the line end) are rejected as
/// `line_too_long` without being buffered whole.
constexpr size_t max_line_bytes = 1 << 20;

/// How many bytes of an over-long line the dead letter keeps.
constexpr size_t over_long_payload_prefix = 1024;

/// Bytes that must be readable (not necessarily owned) after a line passed
/// with `padded = true`; lets the decoder skip a copy.
constexpr size_t decoder_padding = simdjson::SIMDJSON_PADDING;

using decode_result = std::variant<event, dead_letter>;

/// Decodes and validates one NDJSON line. Not thread-safe: each ingest source
/// owns one (it keeps the parser's buffers warm across lines).
class event_decoder {
public:
  /// Decodes `line` (without its line end). When `padded` is true, the
  /// caller guarantees `decoder_padding` readable bytes after the line.
  decode_result decode(std::string_view line, event_origin origin,
                       bool padded = false);

private:
  simdjson::dom::parser parser_;
};

/// Validates an RFC 3339 date-time such as `2026-11-27T10:00:00.5+01:00`
/// (a missing offset is accepted and means UTC).
bool is_rfc3339(std::string_view s);

/// Counts Unicode code points of valid UTF-8 text.
size_t utf8_length(std::string_view s);

/// Replaces every byte that is not part of valid UTF-8 with U+FFFD, so that a
/// rejected payload can be stored as text.
std::string sanitize_utf8(std::string_view s);

} // namespace flowmatch
