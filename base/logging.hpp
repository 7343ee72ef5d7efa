#pragma once

// Logging through spdlog. Every line starts with the name of the actor (or
// component) that wrote it: `log()->info("{} admitted {} events", self->name(), n)`.

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace flowmatch {

/// The process-wide logger (stderr). Thread-safe, as spdlog's `_mt` sinks are.
std::shared_ptr<spdlog::logger>& log();

/// Sets level (`trace`, `debug`, `info`, `warn`, `error`, `critical`, `off`)
/// and pattern (spdlog syntax). Returns false on an unknown level.
bool configure_logging(const std::string& level, const std::string& pattern);

/// One JSON object per line instead of the pattern: `time` (UTC, ms),
/// `level`, `actor` (the line's first word, by the convention above),
/// `message` (the rest) and `event_id` where the line names one
/// (`(event ID)`), for log pipelines (Loki, Elasticsearch, journald).
void use_json_logs();

/// The JSON line for one log record (what `use_json_logs` writes), for
/// tests.
std::string json_log_line(std::chrono::system_clock::time_point time,
                          std::string_view level, std::string_view text);

} // namespace flowmatch
