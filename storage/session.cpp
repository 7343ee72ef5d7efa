#include "storage/session.hpp"

#include "base/logging.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

#include <thread>

namespace flowmatch {

pg::connection connect_with_retry(const std::string& who,
                                  const postgis_settings& settings,
                                  const std::string& application_name) {
  auto delay = settings.retry_initial;
  for (;;) {
    auto c = pg::connection::open(settings.dsn, application_name);
    std::optional<pg::db_error> err = c.error;
    if (!err)
      err = use_schema(*c.value, settings.schema);
    if (!err)
      err = store::prepare(*c.value);
    if (!err)
      return std::move(*c.value);
    log()->warn("{} database unreachable: {}; retrying in {} ms", who,
                err->describe(), delay.count());
    // Blocking is fine here: every caller is a detached actor.
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, settings.retry_max);
  }
}

} // namespace flowmatch
