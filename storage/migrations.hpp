#pragma once

// Versioned schema migrations, applied by the system at start-up: each in
// its own transaction, recorded in `schema_migrations`, under an advisory
// lock so that two nodes starting at once do not race.

#include "storage/pg.hpp"

#include <optional>
#include <string>

namespace flowmatch {

/// Creates `schema` if needed, sets the connection's search_path to it (and
/// public, where PostGIS lives) and applies every migration not applied yet;
/// then, when `app_role` is not empty, grants that role the use of the
/// schema's tables (and nothing more). Returns the number applied, or the
/// error. A schema already up to date needs no rights beyond reading
/// `schema_migrations` (when `app_role` is empty): a least-privilege role
/// passes; one behind is an error that says to migrate as the owner.
pg::outcome<int> migrate(pg::connection& conn, const std::string& schema,
                         const std::string& app_role = "");

/// Sets the search_path of a connection to `schema`, public.
std::optional<pg::db_error> use_schema(pg::connection& conn,
                                       const std::string& schema);

/// The newest migration version this build knows.
int latest_migration();

} // namespace flowmatch
