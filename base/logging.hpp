#pragma once

// Logging through spdlog. Every line starts with the name of the actor (or
// component) that wrote it: `log()->info("{} admitted {} events", self->name(), n)`.

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace flowmatch {

/// The process-wide logger (stderr). Thread-safe, as spdlog's `_mt` sinks are.
std::shared_ptr<spdlog::logger>& log();

/// Sets level (`trace`, `debug`, `info`, `warn`, `error`, `critical`, `off`)
/// and pattern (spdlog syntax). Returns false on an unknown level.
bool configure_logging(const std::string& level, const std::string& pattern);

} // namespace flowmatch
