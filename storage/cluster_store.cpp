#include "storage/cluster_store.hpp"

#include <fmt/format.h>

namespace flowmatch::cluster_store {

namespace {

std::string millis(std::chrono::milliseconds d) {
  return std::to_string(d.count());
}

std::vector<pg::param> text_params(const std::vector<std::string>& xs) {
  return {xs.begin(), xs.end()};
}

pg::db_error refusal(std::string message) {
  return pg::db_error{pg::error_kind::permanent, {}, std::move(message)};
}

} // namespace

std::optional<pg::db_error> prepare(pg::connection& conn) {
  for (auto [name, sql] : {
         std::pair{"cluster_member_of",
                   "SELECT incarnation, heartbeat_at > now() - $2::bigint * "
                   "interval '1 millisecond' AND left_at IS NULL "
                   "FROM cluster_members WHERE node_id = $1"},
         std::pair{"cluster_join",
                   "INSERT INTO cluster_members (node_id, address, "
                   "incarnation) VALUES ($1, $2, $3) ON CONFLICT (node_id) DO "
                   "UPDATE SET address = EXCLUDED.address, incarnation = "
                   "EXCLUDED.incarnation, started_at = now(), heartbeat_at = "
                   "now(), left_at = NULL"},
         std::pair{"cluster_heartbeat",
                   "UPDATE cluster_members SET heartbeat_at = now(), left_at "
                   "= NULL WHERE node_id = $1 AND incarnation = $2"},
         std::pair{"cluster_leave",
                   "UPDATE cluster_members SET left_at = now() WHERE node_id "
                   "= $1 AND incarnation = $2"},
         std::pair{"cluster_live_members",
                   "SELECT node_id, address FROM cluster_members WHERE "
                   "left_at IS NULL AND heartbeat_at > now() - $1::bigint * "
                   "interval '1 millisecond' ORDER BY node_id"},
         std::pair{"cluster_leases",
                   "SELECT resource, coalesce(owner, ''), epoch, expires_at > "
                   "now() FROM cluster_leases ORDER BY resource"},
         // Free, expired, or left by an earlier run of this id (whose state
         // died with it): taken with the next epoch. `clean` is judged on
         // the row before the update.
         // Row locks FOR UPDATE first: the upsert alone would not wait for
         // a writer's fence (FOR KEY SHARE), and the successor must read
         // after the predecessor's last COMMIT.
         std::pair{"cluster_lock_leases",
                   "SELECT resource FROM cluster_leases WHERE resource = "
                   "ANY($1::text[]) FOR UPDATE"},
         std::pair{"cluster_acquire",
                   "INSERT INTO cluster_leases AS l (resource, owner, epoch, "
                   "expires_at, clean) SELECT r, $1, 1, now() + $3::bigint * "
                   "interval '1 millisecond', true FROM unnest($2::text[]) AS "
                   "r ON CONFLICT (resource) DO UPDATE SET owner = "
                   "EXCLUDED.owner, epoch = l.epoch + 1, expires_at = "
                   "EXCLUDED.expires_at, clean = l.owner IS NULL WHERE "
                   "l.owner IS NULL OR l.expires_at < now() OR l.owner = $1 "
                   "RETURNING resource, epoch, clean"},
         std::pair{"cluster_renew",
                   "UPDATE cluster_leases AS l SET expires_at = now() + "
                   "$4::bigint * interval '1 millisecond' FROM "
                   "unnest($2::text[], $3::bigint[]) AS t(resource, epoch) "
                   "WHERE l.resource = t.resource AND l.epoch = t.epoch AND "
                   "l.owner = $1 RETURNING l.resource"},
         std::pair{"cluster_release",
                   "UPDATE cluster_leases SET owner = NULL, expires_at = "
                   "'-infinity' WHERE owner = $1 AND resource = "
                   "ANY($2::text[])"},
       })
    if (auto e = conn.prepare(name, sql))
      return e;
  return std::nullopt;
}

std::optional<pg::db_error> join(pg::connection& conn,
                                 const std::string& node_id,
                                 const std::string& address,
                                 const std::string& incarnation,
                                 std::chrono::milliseconds lease) {
  auto r = conn.run("cluster_member_of", {node_id, millis(lease)});
  if (r.error)
    return r.error;
  if (r.value->rows() > 0 && r.value->as_bool(0, 1)
      && r.value->text(0, 0) != incarnation)
    return refusal(fmt::format(
      "cluster.node-id '{}' is in use: another process with that id sent a "
      "heartbeat less than {} ms ago (stop it, or wait for its lease to "
      "expire)",
      node_id, lease.count()));
  return conn.run("cluster_join", {node_id, address, incarnation}).error;
}

pg::outcome<bool> heartbeat(pg::connection& conn, const std::string& node_id,
                            const std::string& incarnation) {
  pg::outcome<bool> out;
  auto r = conn.run("cluster_heartbeat", {node_id, incarnation});
  if (r.error)
    out.error = r.error;
  else
    out.value = r.value->affected() == 1;
  return out;
}

std::optional<pg::db_error> leave(pg::connection& conn,
                                  const std::string& node_id,
                                  const std::string& incarnation) {
  return conn.run("cluster_leave", {node_id, incarnation}).error;
}

pg::outcome<std::vector<member_row>>
live_members(pg::connection& conn, std::chrono::milliseconds lease) {
  pg::outcome<std::vector<member_row>> out;
  auto r = conn.run("cluster_live_members", {millis(lease)});
  if (r.error) {
    out.error = r.error;
    return out;
  }
  out.value.emplace();
  for (int i = 0; i < r.value->rows(); ++i)
    out.value->push_back(member_row{std::string{r.value->text(i, 0)},
                                    std::string{r.value->text(i, 1)}});
  return out;
}

pg::outcome<std::vector<lease_row>> leases(pg::connection& conn) {
  pg::outcome<std::vector<lease_row>> out;
  auto r = conn.run("cluster_leases", {});
  if (r.error) {
    out.error = r.error;
    return out;
  }
  out.value.emplace();
  for (int i = 0; i < r.value->rows(); ++i)
    out.value->push_back(lease_row{std::string{r.value->text(i, 0)},
                                   std::string{r.value->text(i, 1)},
                                   r.value->as_int64(i, 2),
                                   r.value->as_bool(i, 3)});
  return out;
}

pg::outcome<std::vector<taken_lease>>
acquire(pg::connection& conn, const std::string& node_id,
        const std::vector<std::string>& resources,
        std::chrono::milliseconds lease) {
  pg::outcome<std::vector<taken_lease>> out;
  out.value.emplace();
  if (resources.empty())
    return out;
  auto names = pg::text_array(text_params(resources));
  pg::transaction tx{conn};
  auto r = tx.begin_error() ? pg::outcome<pg::result>{}
                            : conn.run("cluster_lock_leases", {names});
  if (tx.begin_error())
    r.error = tx.begin_error();
  if (!r.error)
    r = conn.run("cluster_acquire", {node_id, names, millis(lease)});
  if (!r.error)
    if (auto e = tx.commit())
      r.error = e;
  if (r.error) {
    out.value.reset();
    out.error = r.error;
    return out;
  }
  for (int i = 0; i < r.value->rows(); ++i)
    out.value->push_back(taken_lease{std::string{r.value->text(i, 0)},
                                     r.value->as_int64(i, 1),
                                     r.value->as_bool(i, 2)});
  return out;
}

pg::outcome<std::vector<std::string>>
renew(pg::connection& conn, const std::string& node_id,
      const std::vector<std::string>& resources,
      const std::vector<int64_t>& epochs, std::chrono::milliseconds lease) {
  pg::outcome<std::vector<std::string>> out;
  out.value.emplace();
  if (resources.empty())
    return out;
  std::vector<std::optional<int64_t>> e(epochs.begin(), epochs.end());
  auto r = conn.run("cluster_renew",
                    {node_id, pg::text_array(text_params(resources)),
                     pg::int_array(e), millis(lease)});
  if (r.error) {
    out.value.reset();
    out.error = r.error;
    return out;
  }
  for (int i = 0; i < r.value->rows(); ++i)
    out.value->emplace_back(r.value->text(i, 0));
  return out;
}

std::optional<pg::db_error> release(pg::connection& conn,
                                    const std::string& node_id,
                                    const std::vector<std::string>& resources) {
  if (resources.empty())
    return std::nullopt;
  return conn
    .run("cluster_release", {node_id, pg::text_array(text_params(resources))})
    .error;
}

} // namespace flowmatch::cluster_store
