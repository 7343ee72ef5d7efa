#include "actors/schema_owner.hpp"

#include "base/logging.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <optional>

namespace flowmatch {

namespace {

using owner_ptr = schema_owner_actor::stateful_pointer<schema_owner_state>;

/// The advisory lock that makes a node the one writer of its schema
/// (storage.md v1.1): two int4 keys, a constant and the schema's FNV-1a.
std::string owner_lock_keys(const std::string& schema) {
  uint32_t h = 2166136261u;
  for (unsigned char c : schema) {
    h ^= c;
    h *= 16777619u;
  }
  return fmt::format("7274311, {}", static_cast<int32_t>(h));
}

/// Takes the schema's owner lock on the node's own connection, held while
/// the node runs. Answers a message naming the running owner when another
/// node holds it, nothing when the lock is ours.
std::optional<std::string> take_owner_lock(pg::connection& conn,
                                           const std::string& schema,
                                           bool shared,
                                           std::optional<pg::db_error>& err) {
  // A single node takes the lock alone; the nodes of a cluster share it
  // (their leases coordinate them), so neither kind runs beside the other.
  auto keys = owner_lock_keys(schema);
  auto r = conn.exec(std::string{"SELECT pg_try_advisory_lock"}
                     + (shared ? "_shared(" : "(") + keys + ")");
  if (r.error) {
    err = r.error;
    return std::nullopt;
  }
  if (r.value->as_bool(0, 0))
    return std::nullopt;
  // Name the owner for the operator.
  auto who = conn.exec(
    "SELECT a.pid, coalesce(a.client_addr::text, 'local'), "
    "a.application_name, a.backend_start FROM pg_locks l JOIN "
    "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
    "l.granted AND (l.classid::bigint, l.objid::bigint) = (" + keys
    + ") LIMIT 1");
  std::string owner = "another node";
  if (!who.error && who.value->rows() > 0)
    owner = fmt::format("a node (backend pid {}, {}, {}, since {})",
                        who.value->text(0, 0), who.value->text(0, 1),
                        who.value->text(0, 2), who.value->text(0, 3));
  if (shared)
    return fmt::format("schema {} is owned by a single node, {}: a cluster "
                       "and a single node never share a schema; stop it or "
                       "use another postgis.schema",
                       schema, owner);
  return fmt::format("schema {} is owned by {}: one writer per schema "
                     "(storage.md v1.1) unless every writer is a node of "
                     "one cluster (cluster.node-id); stop that node or use "
                     "another postgis.schema",
                     schema, owner);
}

/// One attempt to reach the database, migrate it, own it and load its
/// state; on a retryable failure, tries again after a growing delay.
void attempt(owner_ptr self) {
  auto& st = self->state;
  auto& pgs = st.settings;
  // With least privilege the owner migrates (and grants the node's role
  // its rights) on a connection of its own, closed at once; the node then
  // works as postgis.dsn, which finds the schema up to date.
  const char* which = "postgis.dsn";
  std::optional<pg::db_error> err;
  if (!pgs.owner_dsn.empty()) {
    which = "postgis.owner-dsn";
    auto owner = pg::connection::open(pgs.owner_dsn, "flowmatch-migrate");
    err = owner.error;
    if (!err)
      err = migrate(*owner.value, pgs.schema, pgs.app_role).error;
  }
  pg::outcome<pg::connection> conn;
  if (!err) {
    which = "postgis.dsn";
    conn = pg::connection::open(pgs.dsn, "flowmatch-node");
    err = conn.error;
  }
  if (!err) {
    auto m = migrate(*conn.value, pgs.schema,
                     pgs.owner_dsn.empty() ? pgs.app_role : std::string{});
    if (m.error) {
      err = m.error;
    } else if (auto taken = take_owner_lock(*conn.value, pgs.schema,
                                            st.cluster, err)) {
      st.answer.deliver(caf::make_error(caf::sec::runtime_error, *taken));
      return;
    } else if (!err && st.cluster) {
      // A cluster node loads what it takes, when it takes it.
      st.conn = std::move(*conn.value);
      st.answer.deliver(stored_state{});
      return;
    } else if (!err) {
      auto loaded = store::load(*conn.value, st.dedup_retention);
      if (!loaded.error) {
        // The connection keeps the owner lock for the actor's lifetime.
        st.conn = std::move(*conn.value);
        st.answer.deliver(std::move(*loaded.value));
        return;
      }
      err = loaded.error;
    }
  }
  if (!err->retryable()) {
    // Wrong password, unknown database or role, a malformed conninfo, no
    // rights: retrying cannot help, so say so at once.
    st.answer.deliver(caf::make_error(
      caf::sec::runtime_error,
      fmt::format("cannot use the database ({}, postgis.schema): {}", which,
                  err->describe())));
    return;
  }
  log()->warn("{} database unreachable at start: {}; retrying in {} ms",
              self->name(), err->describe(), st.delay.count());
  self->delayed_send(self, st.delay, tick_atom::value);
  st.delay = std::min(st.delay * 2, pgs.retry_max);
}

} // namespace

schema_owner_actor::behavior_type
schema_owner(schema_owner_actor::stateful_pointer<schema_owner_state> self,
             postgis_settings settings,
             std::chrono::milliseconds dedup_retention, bool cluster) {
  self->state.settings = std::move(settings);
  self->state.cluster = cluster;
  self->state.dedup_retention = dedup_retention;
  self->state.delay = self->state.settings.retry_initial;
  return {
    [self](connect_atom) -> caf::result<stored_state> {
      self->state.answer = self->make_response_promise<stored_state>();
      attempt(self);
      return self->state.answer;
    },
    [self](tick_atom) {
      if (self->state.answer.pending())
        attempt(self);
    },
    [self](snapshot_atom) -> caf::result<stored_state> {
      auto& st = self->state;
      if (!st.conn.is_open()) {
        // The database restarted since: a new session, and the shared
        // owner lock on it again.
        if (auto e = ensure_session(st.conn, st.settings, "flowmatch-node"))
          return caf::make_error(caf::sec::runtime_error,
                                 "reconnecting: " + e->describe());
        std::optional<pg::db_error> err;
        if (auto taken = take_owner_lock(st.conn, st.settings.schema, true,
                                         err))
          return caf::make_error(caf::sec::runtime_error, *taken);
        if (err) {
          st.conn = pg::connection{};
          return caf::make_error(caf::sec::runtime_error, err->describe());
        }
      }
      // Retention pruning stays with the load at start (and single
      // nodes): here every processed id counts.
      auto loaded = store::load(st.conn);
      if (loaded.error && loaded.error->retryable())
        st.conn = pg::connection{};
      if (loaded.error)
        return caf::make_error(caf::sec::runtime_error,
                               "loading the stored state: "
                                 + loaded.error->describe());
      return std::move(*loaded.value);
    },
  };
}

} // namespace flowmatch
