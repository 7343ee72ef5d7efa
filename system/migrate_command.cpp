#include "system/migrate_command.hpp"

#include "storage/migrations.hpp"

#include <cstdio>

namespace flowmatch {

int run_migrations(const settings& cfg) {
  auto& pgs = cfg.postgis;
  bool as_owner = !pgs.owner_dsn.empty();
  const char* which = as_owner ? "postgis.owner-dsn" : "postgis.dsn";
  auto conn = pg::connection::open(as_owner ? pgs.owner_dsn : pgs.dsn,
                                   "flowmatch-migrate");
  pg::outcome<int> applied;
  if (conn.error)
    applied.error = conn.error;
  else
    applied = migrate(*conn.value, pgs.schema, pgs.app_role);
  if (applied.error) {
    std::fprintf(stderr, "actor-system: cannot migrate schema %s (%s): %s\n",
                 pgs.schema.c_str(), which, applied.error->describe().c_str());
    return exit_failure;
  }
  std::printf("schema %s is at migration %d (%d applied now)%s%s\n",
              pgs.schema.c_str(), latest_migration(), *applied.value,
              pgs.app_role.empty() ? "" : "; granted to role ",
              pgs.app_role.c_str());
  return exit_ok;
}

} // namespace flowmatch
