#include "storage/session.hpp"

#include "storage/migrations.hpp"
#include "storage/store.hpp"


namespace flowmatch {

std::optional<pg::db_error> ensure_session(pg::connection& conn,
                                           const postgis_settings& settings,
                                           const std::string& application_name) {
  if (conn.is_open())
    return std::nullopt;
  auto c = pg::connection::open(settings.dsn, application_name);
  if (c.error)
    return c.error;
  if (auto err = use_schema(*c.value, settings.schema))
    return err;
  for (auto [name, value] :
       {std::pair{"idle_in_transaction_session_timeout",
                  settings.idle_transaction_timeout},
        std::pair{"lock_timeout", settings.lock_timeout}})
    if (value.count() > 0)
      if (auto r = c.value->exec("SET " + std::string{name} + " = "
                                 + std::to_string(value.count()));
          r.error)
        return r.error;
  if (auto err = store::prepare(*c.value))
    return err;
  conn = std::move(*c.value);
  return std::nullopt;
}

} // namespace flowmatch
