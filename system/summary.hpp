#pragma once

// The one-screen summary a run prints at its end (the README shows one).

#include "messages/batch.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace flowmatch {

/// The summary of a run: what was read, applied, skipped and rejected (by
/// reason), what is held at the end, and how fast it went.
std::string format_summary(const std::string& input, const source_stats& in,
                           const registry_stats& totals,
                           uint64_t dead_letters_written, double seconds,
                           uint64_t matches,
                           std::optional<uint64_t> stream_pending
                           = std::nullopt);

} // namespace flowmatch
