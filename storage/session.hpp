#pragma once

// How a flowmatch actor reaches the database: the connection settings and
// one way to open a session (connect, search_path, prepared statements).

#include "storage/pg.hpp"

#include <chrono>
#include <string>

namespace flowmatch {

struct postgis_settings {
  std::string dsn;
  std::string schema = "public";
  /// Changes per transaction before a flush.
  size_t batch_size = 16384;
  /// Longest time a change waits for its transaction.
  std::chrono::milliseconds max_age{20};
  /// Reconnect backoff: first delay, doubling up to the max.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
};

/// Opens a connection for a flowmatch actor: connect, set the schema's
/// search_path, prepare the store's statements. Retries with backoff until
/// it succeeds, logging each failure with `who` first.
pg::connection connect_with_retry(const std::string& who,
                                  const postgis_settings& settings,
                                  const std::string& application_name);

} // namespace flowmatch
