#include "storage/store.hpp"

#include "base/secrets.hpp"
#include "messages/decoder.hpp"

#include <fmt/format.h>

#include <map>
#include <unordered_set>

namespace flowmatch::store {

namespace {

// Bulk statements: one parameter per column, each an array literal, so a
// whole batch is one statement per table however many rows it has.

constexpr const char* upsert_sites_sql = R"sql(
INSERT INTO sites (site_id, name, geog, lat, lon, country, nace, version,
                   updated_at)
SELECT u.site_id, u.name,
       ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)::geography,
       u.lat, u.lon, u.country, u.nace, u.version, now()
FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::text[],
            $6::text[], $7::int8[])
     AS u(site_id, name, lat, lon, country, nace, version)
ON CONFLICT (site_id) DO UPDATE SET
  name = EXCLUDED.name, geog = EXCLUDED.geog, lat = EXCLUDED.lat,
  lon = EXCLUDED.lon, country = EXCLUDED.country, nace = EXCLUDED.nace,
  version = EXCLUDED.version, updated_at = now()
)sql";

constexpr const char* upsert_flows_sql = R"sql(
INSERT INTO resource_flows (flow_id, site_id, direction, resource, quantity,
  unit, annual_quantity, operating_hours, temperature_c, medium, ewc,
  accepts_ewc, hazardous, accepts_hazardous, max_transport_km, version,
  updated_at)
SELECT u.flow_id, u.site_id, u.direction, u.resource, u.quantity, u.unit,
       u.annual_quantity, u.operating_hours, u.temperature_c, u.medium, u.ewc,
       u.accepts_ewc::text[], u.hazardous, u.accepts_hazardous,
       u.max_transport_km, u.version, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],
            $6::text[], $7::float8[], $8::float8[], $9::float8[], $10::text[],
            $11::text[], $12::text[], $13::bool[], $14::bool[], $15::float8[],
            $16::int8[])
     AS u(flow_id, site_id, direction, resource, quantity, unit,
          annual_quantity, operating_hours, temperature_c, medium, ewc,
          accepts_ewc, hazardous, accepts_hazardous, max_transport_km,
          version)
ON CONFLICT (flow_id) DO UPDATE SET
  site_id = EXCLUDED.site_id, direction = EXCLUDED.direction,
  resource = EXCLUDED.resource, quantity = EXCLUDED.quantity,
  unit = EXCLUDED.unit, annual_quantity = EXCLUDED.annual_quantity,
  operating_hours = EXCLUDED.operating_hours,
  temperature_c = EXCLUDED.temperature_c, medium = EXCLUDED.medium,
  ewc = EXCLUDED.ewc, accepts_ewc = EXCLUDED.accepts_ewc,
  hazardous = EXCLUDED.hazardous,
  accepts_hazardous = EXCLUDED.accepts_hazardous,
  max_transport_km = EXCLUDED.max_transport_km, version = EXCLUDED.version,
  updated_at = now()
)sql";

constexpr const char* delete_sites_sql
  = "DELETE FROM sites WHERE site_id = ANY($1::text[])";

constexpr const char* delete_flows_sql = R"sql(
DELETE FROM resource_flows f
USING unnest($1::text[], $2::text[]) AS d(flow_id, site_id)
WHERE f.flow_id = d.flow_id AND f.site_id = d.site_id
)sql";

constexpr const char* insert_processed_sql = R"sql(
INSERT INTO processed_events (event_id, routing_key)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (event_id) DO NOTHING
)sql";

// Dead letters of events applied after all are resolved, not open
// (events.md v1.1). The partial index holds only open letters, so this
// costs next to nothing when there are none.
constexpr const char* resolve_dead_letters_sql = R"sql(
UPDATE dead_letters d SET resolved_at = now()
FROM unnest($1::text[]) AS u(event_id)
WHERE d.event_id = u.event_id AND d.resolved_at IS NULL
)sql";

constexpr const char* upsert_matches_sql = R"sql(
INSERT INTO matches (supply_flow_id, demand_flow_id, supply_site_id,
  demand_site_id, resource, distance_m, exchange_qty, score, s_size, s_dist,
  s_econ, f_quality, f_taxonomy, flags, computed_at)
SELECT u.sf, u.df, u.ss, u.ds, u.resource, u.distance_m, u.exchange_qty,
       u.score, u.s_size, u.s_dist, u.s_econ, u.f_quality, u.f_taxonomy,
       u.flags::text[], now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::float8[], $7::float8[], $8::float8[], $9::float8[],
            $10::float8[], $11::float8[], $12::float8[], $13::float8[],
            $14::text[])
     AS u(sf, df, ss, ds, resource, distance_m, exchange_qty, score, s_size,
          s_dist, s_econ, f_quality, f_taxonomy, flags)
ON CONFLICT (supply_flow_id, demand_flow_id) DO UPDATE SET
  supply_site_id = EXCLUDED.supply_site_id,
  demand_site_id = EXCLUDED.demand_site_id, resource = EXCLUDED.resource,
  distance_m = EXCLUDED.distance_m, exchange_qty = EXCLUDED.exchange_qty,
  score = EXCLUDED.score, s_size = EXCLUDED.s_size, s_dist = EXCLUDED.s_dist,
  s_econ = EXCLUDED.s_econ, f_quality = EXCLUDED.f_quality,
  f_taxonomy = EXCLUDED.f_taxonomy, flags = EXCLUDED.flags,
  computed_at = now()
)sql";

constexpr const char* delete_matches_sql = R"sql(
DELETE FROM matches m
USING unnest($1::text[], $2::text[]) AS d(sf, df)
WHERE m.supply_flow_id = d.sf AND m.demand_flow_id = d.df
)sql";

// A letter whose event id took effect meanwhile (a corrected resend that
// committed before the letter was written) is stored resolved at once.
constexpr const char* insert_dead_letters_sql = R"sql(
INSERT INTO dead_letters (event_id, source, line, entry_id, reason, detail,
                          payload, attempts, fingerprint, resolved_at)
SELECT u.event_id, u.source, u.line, u.entry_id, u.reason, u.detail,
       u.payload, u.attempts,
       -- concat_ws skips NULLs: a file's letter (no entry id) keeps the
       -- fingerprint it had before stream entries existed.
       md5(concat_ws(E'\x1f', u.source, u.line::text, u.entry_id, u.reason,
                     u.payload)),
       CASE WHEN EXISTS (SELECT 1 FROM processed_events p
                         WHERE p.event_id = u.event_id) THEN now() END
FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::int4[])
     AS u(event_id, source, line, entry_id, reason, detail, payload, attempts)
ON CONFLICT (fingerprint) DO UPDATE SET
  attempts = dead_letters.attempts + EXCLUDED.attempts,
  detail = EXCLUDED.detail, last_seen = now(),
  resolved_at = coalesce(dead_letters.resolved_at, EXCLUDED.resolved_at)
)sql";

/// Text for a text column: valid UTF-8 without NUL bytes.
std::string clean_text(std::string_view s) {
  auto out = sanitize_utf8(s);
  for (auto& ch : out)
    if (ch == '\0')
      ch = '?';
  return out;
}

template <class T>
std::optional<T> opt(const caf::optional<T>& x) {
  if (x)
    return *x;
  return std::nullopt;
}

pg::param text_or_null(const caf::optional<std::string>& s) {
  if (s)
    return *s;
  return std::nullopt;
}

/// The bulk parameters of site upserts.
std::vector<pg::param> site_params(const std::vector<site>& sites) {
  std::vector<pg::param> id, name, country, nace;
  std::vector<std::optional<double>> lat, lon;
  std::vector<std::optional<int64_t>> version;
  for (auto& s : sites) {
    id.emplace_back(s.site_id);
    name.push_back(text_or_null(s.name));
    lat.emplace_back(s.lat);
    lon.emplace_back(s.lon);
    country.push_back(text_or_null(s.country));
    nace.push_back(text_or_null(s.nace));
    version.push_back(opt(s.version));
  }
  return {pg::text_array(id),      pg::text_array(name),
          pg::float_array(lat),    pg::float_array(lon),
          pg::text_array(country), pg::text_array(nace),
          pg::int_array(version)};
}

/// Stored form of optional flow fields: the effective value where the
/// contract gives a default (operating hours 8760 for every flow, medium
/// hot_water for heat, hazardous/accepts_hazardous false on their side),
/// NULL where a field does not apply.
std::vector<pg::param> flow_params(const std::vector<resource_flow>& flows) {
  std::vector<pg::param> id, site_id, direction, resource, unit, medium, ewc,
    accepts;
  std::vector<std::optional<double>> quantity, annual, hours, temperature,
    max_km;
  std::vector<std::optional<bool>> hazardous, accepts_hazardous;
  std::vector<std::optional<int64_t>> version;
  for (auto& f : flows) {
    bool heat = f.resource == resource_class::heat;
    bool supply = f.direction == flow_direction::supply;
    id.emplace_back(f.flow_id);
    site_id.emplace_back(f.site_id);
    direction.emplace_back(std::string{to_string(f.direction)});
    resource.emplace_back(std::string{to_string(f.resource)});
    quantity.emplace_back(f.quantity);
    unit.emplace_back(f.unit);
    annual.emplace_back(f.annual_quantity);
    hours.emplace_back(f.effective_hours());
    temperature.push_back(opt(f.temperature_c));
    if (f.medium)
      medium.emplace_back(*f.medium);
    else if (heat)
      medium.emplace_back("hot_water");
    else
      medium.emplace_back(std::nullopt);
    ewc.push_back(text_or_null(f.ewc));
    if (f.accepts_ewc) {
      std::vector<pg::param> codes(f.accepts_ewc->begin(),
                                   f.accepts_ewc->end());
      accepts.emplace_back(pg::text_array(codes));
    } else {
      accepts.emplace_back(std::nullopt);
    }
    if (f.hazardous)
      hazardous.emplace_back(*f.hazardous);
    else
      hazardous.push_back(supply ? std::optional<bool>{false} : std::nullopt);
    if (f.accepts_hazardous)
      accepts_hazardous.emplace_back(*f.accepts_hazardous);
    else
      accepts_hazardous.push_back(!supply ? std::optional<bool>{false}
                                          : std::nullopt);
    max_km.push_back(opt(f.max_transport_km));
    version.push_back(opt(f.version));
  }
  return {pg::text_array(id),          pg::text_array(site_id),
          pg::text_array(direction),   pg::text_array(resource),
          pg::float_array(quantity),   pg::text_array(unit),
          pg::float_array(annual),     pg::float_array(hours),
          pg::float_array(temperature), pg::text_array(medium),
          pg::text_array(ewc),         pg::text_array(accepts),
          pg::bool_array(hazardous),   pg::bool_array(accepts_hazardous),
          pg::float_array(max_km),     pg::int_array(version)};
}

/// The first of each pair, as one text array.
std::vector<pg::param>
first_params(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::vector<pg::param> a;
  a.reserve(pairs.size());
  for (auto& pr : pairs)
    a.emplace_back(pr.first);
  return {pg::text_array(a)};
}

std::vector<pg::param>
pair_params(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::vector<pg::param> a, b;
  for (auto& [x, y] : pairs) {
    a.emplace_back(x);
    b.emplace_back(y);
  }
  return {pg::text_array(a), pg::text_array(b)};
}

} // namespace

std::optional<pg::db_error> prepare(pg::connection& conn) {
  for (auto [name, sql] :
       {std::pair{"upsert_sites", upsert_sites_sql},
        std::pair{"upsert_flows", upsert_flows_sql},
        std::pair{"delete_sites", delete_sites_sql},
        std::pair{"delete_flows", delete_flows_sql},
        std::pair{"insert_processed", insert_processed_sql},
        std::pair{"resolve_dead_letters", resolve_dead_letters_sql},
        std::pair{"insert_dead_letters", insert_dead_letters_sql},
        std::pair{"upsert_matches", upsert_matches_sql},
        std::pair{"delete_matches", delete_matches_sql},
        std::pair{"cluster_fence",
                  "SELECT cluster_fence($1, $2::text[], $3::bigint[])"}})
    if (auto e = conn.prepare(name, sql))
      return e;
  return std::nullopt;
}

// -- write_set ----------------------------------------------------------------

void write_set::add(const change_batch& batch) {
  for (auto& c : batch.changes) {
    if (c.stored)
      continue; // the table already holds it
    ++changes_;
    switch (c.kind) {
      case change::site_upserted: {
        auto [i, added] = site_word_.try_emplace(
          c.site_data.site_id, final_word{false, site_upserts.size()});
        if (!added && !i->second.deleted) {
          site_upserts[i->second.index] = c.site_data;
        } else {
          i->second = final_word{false, site_upserts.size()};
          site_upserts.push_back(c.site_data);
        }
        break;
      }
      case change::site_deleted:
        site_word_[c.id] = final_word{true, 0};
        break;
      case change::flow_upserted: {
        auto [i, added] = flow_word_.try_emplace(
          c.flow_data.flow_id, final_word{false, flow_upserts.size()});
        if (!added && !i->second.deleted) {
          flow_upserts[i->second.index] = c.flow_data;
        } else {
          i->second = final_word{false, flow_upserts.size()};
          flow_upserts.push_back(c.flow_data);
        }
        break;
      }
      case change::flow_deleted:
        flow_word_[c.id] = final_word{true, 0};
        flow_deletes.emplace_back(c.id, c.flow_data.site_id);
        break;
    }
    if (c.kind == change::site_deleted)
      site_deletes.push_back(c.id);
  }
  for (size_t i = 0; i < batch.event_ids.size(); ++i)
    processed.emplace_back(batch.event_ids[i], i < batch.event_keys.size()
                                                 ? batch.event_keys[i]
                                                 : std::string{});
}

void write_set::collapse() {
  // Keep only the final word per id: upserts overwritten by a later delete
  // go, deletes followed by a later upsert go (the upsert replaces the row;
  // a conditional flow delete of the old site is harmless and kept).
  // Collapsing again is safe: what a collapse kept has no word any more
  // and stays, unless a change added since has the final word.
  std::vector<site> sites;
  for (size_t i = 0; i < site_upserts.size(); ++i) {
    auto w = site_word_.find(site_upserts[i].site_id);
    if (w == site_word_.end() // collapsed before, and no word since
        || (!w->second.deleted && w->second.index == i))
      sites.push_back(std::move(site_upserts[i]));
  }
  site_upserts = std::move(sites);
  std::vector<std::string> deletes;
  std::unordered_set<std::string> seen;
  for (auto& id : site_deletes) {
    auto w = site_word_.find(id);
    if ((w == site_word_.end() || w->second.deleted) && seen.insert(id).second)
      deletes.push_back(id);
  }
  site_deletes = std::move(deletes);
  std::vector<resource_flow> flows;
  for (size_t i = 0; i < flow_upserts.size(); ++i) {
    auto w = flow_word_.find(flow_upserts[i].flow_id);
    if (w == flow_word_.end()
        || (!w->second.deleted && w->second.index == i))
      flows.push_back(std::move(flow_upserts[i]));
  }
  flow_upserts = std::move(flows);
  site_word_.clear();
  flow_word_.clear();
}

void write_set::clear() {
  site_upserts.clear();
  site_deletes.clear();
  flow_upserts.clear();
  flow_deletes.clear();
  processed.clear();
  site_word_.clear();
  flow_word_.clear();
  changes_ = 0;
}

namespace {

/// The parameters of the prepared `cluster_fence`.
std::vector<pg::param> fence_params(const fence& held) {
  std::vector<pg::param> resources(held.resources.begin(),
                                   held.resources.end());
  std::vector<std::optional<int64_t>> epochs(held.epochs.begin(),
                                             held.epochs.end());
  return {held.writer, pg::text_array(resources), pg::int_array(epochs)};
}

/// Queues the fence right after BEGIN (nothing when there is none).
void add_fence(pg::connection::pipeline& p, const fence& held) {
  if (!held.empty())
    p.add_prepared("cluster_fence", fence_params(held));
}

// The fence goes last, in one pipeline with the COMMIT: it takes a share
// lock on the writer's lease rows, and a lock taken first would be held
// while the writer sends its statements and COPY data. A writer frozen
// then (SIGSTOP, a stalled VM) would keep it for as long as its TCP
// connection lives, and no successor could take the lease: the cluster
// fault cases saw takeovers wait forever. Taken last, it is held only from
// the check to the COMMIT that follows at once; a writer woken after its
// lease was taken fails the check and rolls back.
std::optional<pg::db_error> fence_and_commit(pg::connection& conn,
                                             pg::transaction& tx,
                                             const fence& held) {
  if (held.empty())
    return tx.commit();
  pg::connection::pipeline p{conn};
  add_fence(p, held);
  p.add("COMMIT");
  auto r = p.sync();
  if (r.error)
    return r.error; // the transaction rolls back
  tx.committed_in_pipeline();
  return std::nullopt;
}

/// Sends BEGIN and the entity statements as one pipeline, leaving the
/// transaction open. With `processed_in_pipeline`, processed_events goes
/// into the pipeline too (as INSERT ... ON CONFLICT DO NOTHING).
std::optional<pg::db_error> begin_and_write(pg::connection& conn,
                                            const write_set& ws,
                                            bool processed_in_pipeline) {
  pg::connection::pipeline p{conn};
  p.add("BEGIN");
  // Deletes first: a flow delete is conditional on its old site, so it can
  // never remove a row an upsert below writes.
  if (!ws.flow_deletes.empty())
    p.add_prepared("delete_flows", pair_params(ws.flow_deletes));
  if (!ws.site_deletes.empty()) {
    std::vector<pg::param> ids(ws.site_deletes.begin(), ws.site_deletes.end());
    p.add_prepared("delete_sites", {pg::text_array(ids)});
  }
  if (!ws.site_upserts.empty())
    p.add_prepared("upsert_sites", site_params(ws.site_upserts));
  if (!ws.flow_upserts.empty())
    p.add_prepared("upsert_flows", flow_params(ws.flow_upserts));
  if (processed_in_pipeline && !ws.processed.empty())
    p.add_prepared("insert_processed", pair_params(ws.processed));
  if (!ws.processed.empty())
    p.add_prepared("resolve_dead_letters", first_params(ws.processed));
  return p.sync().error;
}

} // namespace

std::optional<pg::db_error> write(pg::connection& conn, const write_set& ws,
                                  const fence& held) {
  // Fast path: processed_events by COPY (half the cost of INSERT for these
  // many small rows). COPY cannot skip ids already there, which happens
  // only when a COMMIT went through but its answer was lost; then the
  // whole transaction is redone with INSERT ... ON CONFLICT DO NOTHING.
  {
    pg::transaction tx{conn, pg::transaction::already_begun};
    if (auto e = begin_and_write(conn, ws, false))
      return e;
    if (ws.processed.empty())
      return fence_and_commit(conn, tx, held);
    std::string data;
    data.reserve(ws.processed.size() * 32);
    for (auto& [id, key] : ws.processed) {
      pg::append_copy_field(data, id);
      data.push_back('\t');
      pg::append_copy_field(data, key);
      data.push_back('\n');
    }
    auto e = conn.copy_in("COPY processed_events (event_id, routing_key) "
                          "FROM STDIN",
                          data);
    if (!e)
      return fence_and_commit(conn, tx, held);
    if (e->sqlstate != "23505")
      return e;
  } // rolled back: some ids were stored already
  pg::transaction again{conn, pg::transaction::already_begun};
  if (auto e = begin_and_write(conn, ws, true))
    return e;
  return fence_and_commit(conn, again, held);
}

pg::outcome<std::vector<refused>>
write_isolating(pg::connection& conn,
                const std::vector<change_batch>& batches, const fence& held) {
  pg::outcome<std::vector<refused>> out;
  std::vector<refused> failures;
  std::unordered_set<std::string> failed_events;
  pg::transaction tx{conn};
  auto abort = [&](pg::db_error e) {
    tx.rollback();
    out.error = std::move(e);
    return out;
  };
  if (tx.begin_error())
    return abort(*tx.begin_error());
  for (auto& batch : batches) {
    for (auto& c : batch.changes) {
      if (c.stored)
        continue;
      if (auto r = conn.exec("SAVEPOINT one_change"); r.error)
        return abort(*r.error);
      pg::outcome<pg::result> r;
      switch (c.kind) {
        case change::site_upserted:
          r = conn.run("upsert_sites", site_params({c.site_data}));
          break;
        case change::site_deleted:
          r = conn.run("delete_sites", {pg::text_array({c.id})});
          break;
        case change::flow_upserted:
          r = conn.run("upsert_flows", flow_params({c.flow_data}));
          break;
        case change::flow_deleted:
          r = conn.run("delete_flows",
                       pair_params({{c.id, c.flow_data.site_id}}));
          break;
      }
      if (r.error) {
        if (r.error->retryable())
          return abort(*r.error);
        if (auto rb = conn.exec("ROLLBACK TO SAVEPOINT one_change");
            rb.error)
          return abort(*rb.error);
        failed_events.insert(c.event_id);
        failures.push_back(refused{c, *r.error});
      } else if (auto rel = conn.exec("RELEASE SAVEPOINT one_change");
                 rel.error) {
        return abort(*rel.error);
      }
    }
  }
  std::vector<std::pair<std::string, std::string>> processed;
  for (auto& batch : batches)
    for (size_t i = 0; i < batch.event_ids.size(); ++i)
      if (failed_events.count(batch.event_ids[i]) == 0)
        processed.emplace_back(batch.event_ids[i],
                               i < batch.event_keys.size()
                                 ? batch.event_keys[i]
                                 : std::string{});
  if (!processed.empty()) {
    if (auto r = conn.run("insert_processed", pair_params(processed));
        r.error)
      return abort(*r.error);
    if (auto r = conn.run("resolve_dead_letters", first_params(processed));
        r.error)
      return abort(*r.error);
  }
  if (auto e = fence_and_commit(conn, tx, held))
    return abort(*e);
  out.value = std::move(failures);
  return out;
}

pg::outcome<int64_t> prune_processed(pg::connection& conn,
                                     std::chrono::milliseconds retention) {
  pg::outcome<int64_t> out;
  auto r = conn.exec(fmt::format("DELETE FROM processed_events WHERE "
                                 "processed_at < now() - interval '{} "
                                 "milliseconds'",
                                 retention.count()));
  if (r.error)
    out.error = r.error;
  else
    out.value = r.value->affected();
  return out;
}

namespace {

constexpr const char* site_columns
  = "SELECT site_id, name, lat, lon, country, nace, version FROM sites";

// float8 as text: PostgreSQL 12+ prints the shortest exact form, so the
// doubles read back are the doubles written.
constexpr const char* flow_columns
  = "SELECT flow_id, site_id, direction, resource, quantity, unit, "
    "annual_quantity, operating_hours, temperature_c, medium, ewc, "
    "accepts_ewc, hazardous, accepts_hazardous, max_transport_km, version "
    "FROM resource_flows";

void read_sites(const pg::result& rs, std::vector<site>& out) {
  for (int i = 0; i < rs.rows(); ++i) {
    site s;
    s.site_id = std::string{rs.text(i, 0)};
    if (!rs.is_null(i, 1))
      s.name = std::string{rs.text(i, 1)};
    s.lat = rs.as_double(i, 2);
    s.lon = rs.as_double(i, 3);
    if (!rs.is_null(i, 4))
      s.country = std::string{rs.text(i, 4)};
    if (!rs.is_null(i, 5))
      s.nace = std::string{rs.text(i, 5)};
    if (!rs.is_null(i, 6))
      s.version = rs.as_int64(i, 6);
    out.push_back(std::move(s));
  }
}

void read_flows(const pg::result& rf, std::vector<resource_flow>& out) {
  for (int i = 0; i < rf.rows(); ++i) {
    resource_flow f;
    f.flow_id = std::string{rf.text(i, 0)};
    f.site_id = std::string{rf.text(i, 1)};
    f.direction = rf.text(i, 2) == "supply" ? flow_direction::supply
                                            : flow_direction::demand;
    auto res = rf.text(i, 3);
    f.resource = res == "heat"       ? resource_class::heat
                 : res == "water"    ? resource_class::water
                 : res == "material" ? resource_class::material
                                     : resource_class::co2;
    f.quantity = rf.as_double(i, 4);
    f.unit = std::string{rf.text(i, 5)};
    f.annual_quantity = rf.as_double(i, 6);
    f.operating_hours = rf.as_double(i, 7);
    if (!rf.is_null(i, 8))
      f.temperature_c = rf.as_double(i, 8);
    if (!rf.is_null(i, 9))
      f.medium = std::string{rf.text(i, 9)};
    if (!rf.is_null(i, 10))
      f.ewc = std::string{rf.text(i, 10)};
    if (!rf.is_null(i, 11))
      f.accepts_ewc = pg::parse_text_array(rf.text(i, 11));
    if (!rf.is_null(i, 12))
      f.hazardous = rf.as_bool(i, 12);
    if (!rf.is_null(i, 13))
      f.accepts_hazardous = rf.as_bool(i, 13);
    if (!rf.is_null(i, 14))
      f.max_transport_km = rf.as_double(i, 14);
    if (!rf.is_null(i, 15))
      f.version = rf.as_int64(i, 15);
    out.push_back(std::move(f));
  }
}

} // namespace

pg::outcome<registry_snapshot> load_entities(pg::connection& conn) {
  pg::outcome<registry_snapshot> out;
  registry_snapshot snap;
  auto sites = conn.exec(std::string{site_columns} + " ORDER BY site_id");
  if (sites.error) {
    out.error = sites.error;
    return out;
  }
  read_sites(*sites.value, snap.sites);
  auto flows = conn.exec(std::string{flow_columns} + " ORDER BY flow_id");
  if (flows.error) {
    out.error = flows.error;
    return out;
  }
  read_flows(*flows.value, snap.flows);
  out.value = std::move(snap);
  return out;
}

namespace {

/// Runs a statement prepared on its first use (rare statements need not
/// be prepared on every connection).
pg::outcome<pg::result> run_prepared_on_demand(pg::connection& conn,
                                               const std::string& name,
                                               const std::string& sql,
                                               const std::vector<pg::param>& params) {
  auto r = conn.run(name, params);
  if (r.error && r.error->sqlstate == "26000") { // no such prepared statement
    if (auto e = conn.prepare(name, sql)) {
      r.error = e;
      return r;
    }
    r = conn.run(name, params);
  }
  return r;
}

} // namespace

pg::outcome<registry_snapshot>
load_entities(pg::connection& conn, const std::vector<std::string>& site_ids,
              const std::vector<std::string>& flow_ids) {
  pg::outcome<registry_snapshot> out;
  registry_snapshot snap;
  std::vector<pg::param> sites(site_ids.begin(), site_ids.end());
  std::vector<pg::param> flows(flow_ids.begin(), flow_ids.end());
  static const std::string some_sites = std::string{site_columns}
                                        + " WHERE site_id = ANY($1::text[])";
  static const std::string some_flows
    = std::string{flow_columns}
      + " WHERE flow_id = ANY($1::text[]) OR site_id = ANY($2::text[])";
  auto r = run_prepared_on_demand(conn, "load_some_sites", some_sites,
                                  {pg::text_array(sites)});
  if (r.error) {
    out.error = r.error;
    return out;
  }
  read_sites(*r.value, snap.sites);
  auto rf = run_prepared_on_demand(conn, "load_some_flows", some_flows,
                                   {pg::text_array(flows),
                                    pg::text_array(sites)});
  if (rf.error) {
    out.error = rf.error;
    return out;
  }
  read_flows(*rf.value, snap.flows);
  out.value = std::move(snap);
  return out;
}

pg::outcome<stored_state>
load(pg::connection& conn,
     std::optional<std::chrono::milliseconds> dedup_retention) {
  pg::outcome<stored_state> out;
  stored_state st;
  auto entities = load_entities(conn);
  if (entities.error) {
    out.error = entities.error;
    return out;
  }
  st.snapshot = std::move(*entities.value);
  if (dedup_retention)
    if (auto pruned = prune_processed(conn, *dedup_retention); pruned.error) {
      out.error = pruned.error;
      return out;
    }
  auto done = conn.exec("SELECT event_id, (extract(epoch FROM processed_at) "
                        "* 1000)::bigint FROM processed_events");
  if (done.error) {
    out.error = done.error;
    return out;
  }
  auto& rp = *done.value;
  st.event_ids.reserve(static_cast<size_t>(rp.rows()));
  st.event_applied_ms.reserve(static_cast<size_t>(rp.rows()));
  for (int i = 0; i < rp.rows(); ++i) {
    st.event_ids.emplace_back(rp.text(i, 0));
    st.event_applied_ms.push_back(rp.as_int64(i, 1));
  }
  auto ms = load_matches(conn);
  if (ms.error) {
    out.error = ms.error;
    return out;
  }
  st.matches = std::move(*ms.value);
  out.value = std::move(st);
  return out;
}

std::optional<pg::db_error>
write_matches(pg::connection& conn, const std::vector<match_change>& changes,
              const fence& held) {
  // The last word per pair.
  std::map<std::pair<std::string, std::string>, const match_change*> last;
  for (auto& c : changes)
    last[{c.value.supply_flow_id, c.value.demand_flow_id}] = &c;
  std::vector<pg::param> del_s, del_d, sf, df, ss, ds, res, flags;
  std::vector<std::optional<double>> dist, qty, score, size, sdist, econ, fq,
    ft;
  for (auto& [key, c] : last) {
    if (c->removed) {
      del_s.emplace_back(key.first);
      del_d.emplace_back(key.second);
      continue;
    }
    auto& m = c->value;
    sf.emplace_back(m.supply_flow_id);
    df.emplace_back(m.demand_flow_id);
    ss.emplace_back(m.supply_site_id);
    ds.emplace_back(m.demand_site_id);
    res.emplace_back(std::string{to_string(m.resource)});
    dist.emplace_back(m.distance_m);
    qty.emplace_back(m.exchange_qty);
    score.emplace_back(m.score);
    size.emplace_back(m.s_size);
    sdist.emplace_back(m.s_dist);
    econ.emplace_back(m.s_econ);
    fq.emplace_back(m.f_quality);
    ft.emplace_back(m.f_taxonomy);
    std::vector<pg::param> fl(m.flags.begin(), m.flags.end());
    flags.emplace_back(pg::text_array(fl));
  }
  pg::transaction tx{conn, pg::transaction::already_begun};
  pg::connection::pipeline p{conn};
  p.add("BEGIN");
  if (!del_s.empty())
    p.add_prepared("delete_matches",
                   {pg::text_array(del_s), pg::text_array(del_d)});
  if (!sf.empty())
    p.add_prepared("upsert_matches",
                   {pg::text_array(sf), pg::text_array(df), pg::text_array(ss),
                    pg::text_array(ds), pg::text_array(res),
                    pg::float_array(dist), pg::float_array(qty),
                    pg::float_array(score), pg::float_array(size),
                    pg::float_array(sdist), pg::float_array(econ),
                    pg::float_array(fq), pg::float_array(ft),
                    pg::text_array(flags)});
  add_fence(p, held); // last: see fence_and_commit
  p.add("COMMIT");
  auto r = p.sync();
  if (r.error)
    return r.error; // the transaction rolls back
  tx.committed_in_pipeline();
  return std::nullopt;
}

pg::outcome<std::vector<match>>
load_matches(pg::connection& conn, caf::optional<resource_class> only) {
  pg::outcome<std::vector<match>> out;
  std::string sql = "SELECT supply_flow_id, demand_flow_id, supply_site_id, "
                    "demand_site_id, resource, distance_m, exchange_qty, "
                    "score, s_size, s_dist, s_econ, f_quality, f_taxonomy, "
                    "flags FROM matches";
  pg::outcome<pg::result> r;
  if (only) {
    if (auto e = conn.prepare("load_matches_of_class",
                              sql + " WHERE resource = $1 ORDER BY 1, 2")) {
      out.error = e;
      return out;
    }
    r = conn.run("load_matches_of_class",
                 {std::string{to_string(*only)}});
    conn.exec("DEALLOCATE load_matches_of_class");
  } else {
    r = conn.exec(sql + " ORDER BY 1, 2");
  }
  if (r.error) {
    out.error = r.error;
    return out;
  }
  auto& rs = *r.value;
  std::vector<match> ms;
  for (int i = 0; i < rs.rows(); ++i) {
    match m;
    m.supply_flow_id = std::string{rs.text(i, 0)};
    m.demand_flow_id = std::string{rs.text(i, 1)};
    m.supply_site_id = std::string{rs.text(i, 2)};
    m.demand_site_id = std::string{rs.text(i, 3)};
    auto res = rs.text(i, 4);
    m.resource = res == "heat"       ? resource_class::heat
                 : res == "water"    ? resource_class::water
                 : res == "material" ? resource_class::material
                                     : resource_class::co2;
    m.distance_m = rs.as_double(i, 5);
    m.exchange_qty = rs.as_double(i, 6);
    m.score = rs.as_double(i, 7);
    m.s_size = rs.as_double(i, 8);
    m.s_dist = rs.as_double(i, 9);
    m.s_econ = rs.as_double(i, 10);
    m.f_quality = rs.as_double(i, 11);
    m.f_taxonomy = rs.as_double(i, 12);
    m.flags = pg::parse_text_array(rs.text(i, 13));
    ms.push_back(std::move(m));
  }
  out.value = std::move(ms);
  return out;
}

std::optional<pg::db_error>
insert_dead_letters(pg::connection& conn,
                    const std::vector<dead_letter>& letters) {
  std::vector<pg::param> event_id, source, entry_id, reason, detail, payload;
  std::vector<std::optional<int64_t>> line, attempts;
  for (auto& dl : letters) {
    if (dl.event_id.empty())
      event_id.emplace_back(std::nullopt);
    else
      event_id.emplace_back(clean_text(dl.event_id));
    source.emplace_back(clean_text(dl.origin.source));
    // A stream entry is found by its id; the count of entries a node read
    // means nothing to anyone else.
    if (dl.origin.entry.empty()) {
      line.emplace_back(static_cast<int64_t>(dl.origin.line));
      entry_id.emplace_back(std::nullopt);
    } else {
      line.emplace_back(std::nullopt);
      entry_id.emplace_back(clean_text(dl.origin.entry));
    }
    reason.emplace_back(std::string{to_string(dl.reason)});
    detail.emplace_back(clean_text(mask_secrets(dl.detail)));
    // Text columns hold UTF-8 only; invalid bytes become U+FFFD.
    payload.emplace_back(clean_text(dl.payload));
    attempts.emplace_back(dl.attempts);
  }
  auto r = conn.run("insert_dead_letters",
                    {pg::text_array(event_id), pg::text_array(source),
                     pg::int_array(line), pg::text_array(entry_id),
                     pg::text_array(reason),
                     pg::text_array(detail), pg::text_array(payload),
                     pg::int_array(attempts)});
  return r.error;
}

} // namespace flowmatch::store
