#include "system/config.hpp"

#include "core/match_tiling.hpp"

#include "base/logging.hpp"
#include "base/secrets.hpp"
#include "streams/redis.hpp"
#include "system/http_endpoint.hpp"

#include <caf/config_option_adder.hpp>
#include <caf/make_config_option.hpp>
#include <caf/sec.hpp>

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace flowmatch {

#if defined(__clang__)
namespace {

// A clang build (the fuzz and sanitizer builds) beside Debian's CAF, which
// GCC built: CAF keeps one `meta_state` per option type in a function-local
// static (caf/make_config_option.hpp). GCC initializes its function
// pointers statically and only its type name at run time; clang
// initializes all of it at run time. The executable's copy interposes the
// library's, so when CAF's own options (actor_system_config's constructor)
// come first, GCC's code runs the guarded initialization on the
// executable's copy, sets the name, and leaves the pointers null: the first
// `--system.threads=2` read called address 0. Running clang's
// initialization first, before main, fills every field. Every option type
// of flowmatch_config is listed; a missing one shows at once in the
// sanitizer build's config tests.
template <class... Ts>
bool prime_option_meta_states() {
  (caf::detail::option_meta_state_instance<Ts>(), ...);
  return true;
}

[[maybe_unused]] const bool option_meta_states_primed
  = prime_option_meta_states<bool, size_t, uint32_t, uint64_t, int64_t,
                             double, std::string, std::vector<std::string>,
                             caf::timespan, caf::atom_value>();

} // namespace
#endif

namespace {

/// Every text value of `xs`, passwords masked.
void mask_settings(caf::settings& xs) {
  for (auto& kvp : xs) {
    auto& v = kvp.second;
    if (auto str = caf::get_if<std::string>(&v))
      *str = mask_secrets(*str);
    else if (auto dict = caf::get_if<caf::settings>(&v))
      mask_settings(*dict);
    else if (auto list = caf::get_if<caf::config_value::list>(&v))
      for (auto& x : *list)
        if (auto s = caf::get_if<std::string>(&x))
          *s = mask_secrets(*s);
  }
}

/// A consumer name that stays the same across restarts on this machine,
/// so a restarted node re-reads its own pending entries first.
std::string default_consumer_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
    return "flowmatch";
  return std::string{"flowmatch-"} + host;
}

} // namespace

caf::settings flowmatch_config::dump_content() const {
  auto result = actor_system_config::dump_content();
  mask_settings(result);
  return result;
}

flowmatch_config::flowmatch_config() {
  opt_group{custom_options_, "global"}.add(
    migrate_only, "migrate",
    "apply the schema's migrations (as postgis.owner-dsn when set), grant "
    "postgis.app-role its rights, and exit");
  opt_group{custom_options_, "system"}.add(
    threads, "threads",
    "CAF scheduler threads; 0 means one per core");
  opt_group{custom_options_, "log"}
    .add(log_level, "level",
         "trace, debug, info, warn, error, critical or off")
    .add(log_pattern, "pattern", "spdlog pattern of each log line")
    .add(log_format, "format",
         "text (the pattern) or json (one JSON object per line)")
    .add(log_progress_interval, "progress-interval",
         "how often a running node logs its progress (0s: never)");
  opt_group{custom_options_, "ingest"}
    .add(ingest_ndjson, "ndjson", "NDJSON event file to read, - for stdin")
    .add(ingest_batch_size, "batch-size",
         "events per batch from the source to the dispatcher")
    .add(ingest_max_outstanding, "max-outstanding",
         "batches a source may have waiting for admission")
    .add(ingest_poll_interval, "poll-interval",
         "longest wait for pipe input before the source checks for a stop")
    .add(ingest_max_rate, "max-rate",
         "lines read per second at most; 0 means no limit")
    .add(ingest_burst, "burst",
         "lines that may come at once after a pause; 0 means one batch")
    .add(ingest_redis, "redis",
         "Redis to consume a stream from, redis://host:port[/db]; empty: "
         "read ingest.ndjson")
    .add(ingest_stream, "stream", "stream key to consume")
    .add(ingest_group, "group", "consumer group of the stream")
    .add(ingest_consumer, "consumer",
         "this node's consumer name in the group; empty: flowmatch-HOSTNAME")
    .add(ingest_claim_idle, "claim-idle",
         "entries pending this long with another consumer are claimed")
    .add(ingest_delivery_limit, "delivery-limit",
         "an entry delivered more often is dead-lettered as poison")
    .add(ingest_read_count, "read-count", "stream entries asked for per read")
    .add(ingest_until_caught_up, "until-caught-up",
         "end once every stream entry was delivered (a catch-up run) "
         "instead of running until a signal")
    .add(ingest_partitions, "partitions",
         "stream partitions: keys STREAM:0 .. STREAM:P-1 when above 1 "
         "(cluster mode)");
  opt_group{custom_options_, "cluster"}
    .add(cluster_node_id, "node-id",
         "this node's id in a cluster (stable across restarts); empty: a "
         "single node")
    .add(cluster_listen, "listen",
         "host:port where this node listens for the other nodes (an "
         "explicit address; off loopback only with openssl.* keys)")
    .add(cluster_advertise, "advertise",
         "host:port the other nodes connect to when not cluster.listen (a "
         "proxy or NAT between them); empty: cluster.listen")
    .add(cluster_seeds, "seeds",
         "the other nodes' host:port, waited for at start")
    .add(cluster_shards, "shards",
         "registry shards (fixed for the life of a database)")
    .add(cluster_lease, "lease",
         "how long a lease lasts unless renewed; a failover takes about "
         "this long")
    .add(cluster_beat, "beat",
         "how often a node renews its leases and looks at the others")
    .add(cluster_peer_timeout, "peer-timeout",
         "a peer silent this long is dropped (BASP heartbeats)")
    .add(cluster_join_timeout, "join-timeout",
         "how long a starting node waits for its seeds before taking leases")
    .add(cluster_max_batch_bytes, "max-batch-bytes",
         "largest batch of events sent to another node")
    .add(cluster_max_unsettled, "max-unsettled",
         "events a node's readers keep in flight across the cluster");
  opt_group{custom_options_, "output"}
    .add(output_state, "state",
         "write the sites and flows at drain to this NDJSON file")
    .add(output_dead_letters, "dead-letters",
         "write rejected events to this NDJSON file")
    .add(output_matches, "matches",
         "write every match change to this NDJSON file (- for stdout)");
  opt_group{custom_options_, "match"}
    .add(match_partitions_per_class, "partitions-per-class",
         "match partitions of each resource class, by tile (1 to 16)")
    .add(match_tile_km, "tile-km",
         "smallest tile of a match partition in km (0: the class's d_max)")
    .add(match_check, "check",
         "recompute every match over the stored sites and flows, report "
         "differences from the matches table, exit 0 when none")
    .add(match.d_max_heat_km, "d-max-heat-km", "farthest heat exchange")
    .add(match.d_max_water_km, "d-max-water-km", "farthest water exchange")
    .add(match.d_max_co2_km, "d-max-co2-km", "farthest CO2 exchange")
    .add(match.d_max_material_km, "d-max-material-km",
         "farthest material exchange")
    .add(match.delta_t_k, "delta-t-k",
         "heat exchanger approach for liquids and steam (K)")
    .add(match.delta_t_gas_k, "delta-t-gas-k",
         "heat exchanger approach for flue gas and air (K)")
    .add(match.heat_pump_min_c, "heat-pump-min-c",
         "warmest supply a heat pump cannot use (deg C)")
    .add(match.heat_pump_quality, "heat-pump-quality",
         "f_quality of a match that needs a heat pump")
    .add(match.taxonomy_6, "taxonomy-6", "f_taxonomy for a 6-digit prefix")
    .add(match.taxonomy_4, "taxonomy-4", "f_taxonomy for a 4-digit prefix")
    .add(match.taxonomy_2, "taxonomy-2", "f_taxonomy for a 2-digit prefix")
    .add(match.material_distance_m, "material-distance-m",
         "material s_dist = exp(-d / this)")
    .add(match.heat_value_eur_mwh, "heat-value",
         "value of delivered heat (EUR/MWh)")
    .add(match.annuity, "annuity", "annuity factor of heat capex")
    .add(match.upkeep, "upkeep", "yearly upkeep share of heat capex")
    .add(match.source_exchanger_eur_mw, "source-exchanger-eur-mw",
         "source heat exchanger cost per MW")
    .add(match.sink_small_eur_mw, "sink-small-eur-mw",
         "sink exchanger and pump cost per MW below 1 MW")
    .add(match.sink_large_eur_mw, "sink-large-eur-mw",
         "sink exchanger and pump cost per MW from 1 MW")
    .add(match.econ_without_prices, "econ-without-prices",
         "s_econ of classes without prices")
    .add(match.w_size, "w-size", "weight of s_size")
    .add(match.w_dist, "w-dist", "weight of s_dist")
    .add(match.w_econ, "w-econ", "weight of s_econ");
  opt_group{custom_options_, "registry"}
    .add(registry_workers, "workers",
         "site/flow handler workers; 0 means one per core")
    .add(registry_policy, "policy",
         "routing policy; the registry needs key-hash for per-site order")
    .add(registry_max_in_flight, "max-in-flight",
         "events admitted but not yet applied, at most")
    .add(registry_hold_timeout, "hold-timeout",
         "how long a flow waits for its site before it is dead-lettered")
    .add(registry_hold_limit, "hold-limit",
         "flows held at once per worker, at most")
    .add(registry_dedup_retention, "dedup-retention",
         "how long an applied event id is remembered: a resend within it "
         "is a duplicate");
  opt_group{custom_options_, "supervision"}
    .add(supervision_max_attempts, "max-attempts",
         "crashes on one event before it is dead-lettered as poison")
    .add(supervision_backoff_initial, "backoff-initial",
         "first restart delay of a crashed worker (doubles per crash)")
    .add(supervision_backoff_max, "backoff-max", "longest restart delay")
    .add(supervision_max_restarts, "max-restarts",
         "restarts of one worker within restart-window before the node stops")
    .add(supervision_restart_window, "restart-window",
         "window of the restart intensity limit")
    .add(supervision_reply_timeout, "reply-timeout",
         "how long a stage waits for another's answer")
    .add(supervision_stall_timeout, "stall-timeout",
         "how long a stage waits for the next to take work (backpressure, "
         "a database outage) before the node stops with an error");
  opt_group{custom_options_, "metrics"}.add(
    metrics_listen, "listen",
    "host:port of the HTTP endpoint (/metrics, /healthz, /readyz); empty: "
    "none");
  opt_group{custom_options_, "telemetry"}.add(
    telemetry_interval, "interval",
    "how often the telemetry actor asks every stage for its status");
  opt_group{custom_options_, "shutdown"}.add(
    shutdown_grace_period, "grace-period",
    "time from the first signal or end of input to a forced exit");
  opt_group{custom_options_, "postgis"}
    .add(postgis_dsn, "dsn",
         "libpq conninfo of PostgreSQL+PostGIS; empty means no database")
    .add(postgis_owner_dsn, "owner-dsn",
         "libpq conninfo of the schema's owner, used only to migrate (at "
         "start or with --migrate); empty: postgis.dsn migrates")
    .add(postgis_app_role, "app-role",
         "after migrating, grant this role what the node needs and no more "
         "(read and write the schema's tables); empty: grant nothing")
    .add(postgis_schema, "schema", "schema of flowmatch's tables")
    .add(postgis_batch_size, "batch-size",
         "changes per transaction before a flush")
    .add(postgis_max_batch_age, "max-batch-age",
         "longest wait of a change for its transaction")
    .add(postgis_retry_initial, "retry-initial",
         "first reconnect delay (doubles per failure)")
    .add(postgis_retry_max, "retry-max", "longest reconnect delay");
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty()
         && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool is_name(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'
          || c == '.'))
      return false;
  return true;
}

std::string str(caf::string_view s) {
  return std::string{s.data(), s.size()};
}

} // namespace

caf::error flowmatch_config::read_config_file(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return caf::make_error(caf::sec::invalid_argument,
                           "config file " + path + ": cannot read: "
                             + std::strerror(errno));
  return read_config_text(in, path);
}

caf::error flowmatch_config::read_config_text(std::istream& in,
                                              const std::string& path) {
  auto fail = [&](size_t line, const std::string& what) {
    return caf::make_error(caf::sec::invalid_argument,
                           fmt::format("{}:{}: {}", path, line, what));
  };
  std::string raw;
  std::string section;
  size_t line = 0;
  while (std::getline(in, raw)) {
    ++line;
    auto text = trim(raw);
    if (text.empty() || text.front() == ';' || text.front() == '#')
      continue;
    if (text.front() == '[') {
      if (text.back() != ']' || !is_name(trim(text.substr(1, text.size() - 2))))
        return fail(line, fmt::format("'{}' is not a section header", text));
      section = std::string{trim(text.substr(1, text.size() - 2))};
      bool known = false;
      for (auto& opt : custom_options_)
        if (str(opt.category()) == section)
          known = true;
      if (!known)
        return fail(line, fmt::format("unknown section [{}]", section));
      continue;
    }
    auto eq = text.find('=');
    if (eq == std::string_view::npos)
      return fail(line, fmt::format("'{}' is neither 'key=value' nor a "
                                    "[section]",
                                    text));
    auto key = std::string{trim(text.substr(0, eq))};
    auto value = trim(text.substr(eq + 1));
    if (section.empty())
      return fail(line, fmt::format("{} is outside any [section]", key));
    auto name = section + "." + key;
    auto* opt = custom_options_.qualified_name_lookup(
      caf::string_view{name.data(), name.size()});
    if (opt == nullptr || !is_name(key)) {
      std::string known;
      for (auto& o : custom_options_)
        if (str(o.category()) == section)
          known += (known.empty() ? "" : ", ") + str(o.long_name());
      return fail(line, fmt::format("unknown key {} (the keys of [{}]: {})",
                                    name, section, known));
    }
    if (auto parsed = opt->parse(caf::string_view{value.data(), value.size()});
        !parsed)
      return fail(line, fmt::format("{}={} is not a valid {}", name, value,
                                    str(opt->type_name())));
    else
      put(content, name, std::move(*parsed));
  }
  return caf::none;
}

namespace {

std::chrono::milliseconds to_ms(caf::timespan t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t);
}

caf::error bad(std::string what) {
  return caf::make_error(caf::sec::invalid_argument, std::move(what));
}

caf::error validate_cluster(const flowmatch_config& cfg, settings& s);

/// Whether a whole file can be written at `path`: its directory takes a
/// new file (the temporary one renamed into place), and an existing file
/// may be replaced. Creates nothing.
bool can_replace(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (dir.empty())
    dir = "/";
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return false;
  return ::access(path.c_str(), F_OK) != 0 || ::access(path.c_str(), W_OK) == 0;
}

bool can_write(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0644);
  if (fd < 0)
    return false;
  ::close(fd);
  return true;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

/// Splits and checks "host:port" (explicit host, port 1..65535).
std::string parse_host_port(const std::string& address, std::string& host,
                            uint16_t& port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return "must be host:port";
  host = address.substr(0, colon);
  if (host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto digits = address.substr(colon + 1);
  if (digits.empty() || digits.size() > 5
      || digits.find_first_not_of("0123456789") != std::string::npos)
    return "the port must be a number";
  auto n = std::stoul(digits);
  if (n == 0 || n > 65535)
    return "the port must be within 1..65535";
  port = static_cast<uint16_t>(n);
  if (host == "0.0.0.0" || host == "::" || host == "*")
    return "listen on an explicit address, not on every interface";
  return {};
}

caf::error validate_cluster(const flowmatch_config& cfg, settings& s) {
  auto& c = s.cluster;
  bool wants = !cfg.cluster_node_id.empty();
  if (cfg.ingest_partitions < 1 || cfg.ingest_partitions > 1024)
    return bad("ingest.partitions must be within 1..1024");
  if (!wants) {
    if (cfg.ingest_partitions > 1)
      return bad("ingest.partitions above 1 needs cluster mode "
                 "(cluster.node-id): a partitioned stream is read by the "
                 "nodes that hold its partitions' leases");
    if (!cfg.cluster_listen.empty() || !cfg.cluster_seeds.empty()
        || !cfg.cluster_advertise.empty())
      return bad("cluster.listen, cluster.advertise and cluster.seeds need "
                 "cluster.node-id");
    return caf::none;
  }
  if (!is_name(cfg.cluster_node_id) || cfg.cluster_node_id.size() > 64)
    return bad("cluster.node-id must be 1..64 letters, digits, '-', '_' or "
               "'.', got '" + cfg.cluster_node_id + "'");
  c.node_id = cfg.cluster_node_id;
  if (s.postgis.dsn.empty())
    return bad("cluster.node-id needs postgis.dsn: the leases live in "
               "PostgreSQL");
  if (s.source.reader.stream.url.empty())
    return bad("cluster.node-id needs ingest.redis: a cluster reads a Redis "
               "stream (a file has no owner to hand over)");
  if (!s.output_state.empty())
    return bad("output.state is a single node's snapshot; in cluster mode "
               "the database holds the state");
  if (cfg.cluster_listen.empty())
    return bad("cluster.listen is required in cluster mode (host:port)");
  if (auto why = parse_host_port(cfg.cluster_listen, c.listen_host,
                                 c.listen_port);
      !why.empty())
    return bad("cluster.listen '" + cfg.cluster_listen + "': " + why);
  if (!cfg.cluster_advertise.empty()) {
    std::string host;
    uint16_t port = 0;
    if (auto why = parse_host_port(cfg.cluster_advertise, host, port);
        !why.empty())
      return bad("cluster.advertise '" + cfg.cluster_advertise + "': " + why);
    c.advertise = cfg.cluster_advertise;
  }
  for (auto& seed : cfg.cluster_seeds) {
    std::string host;
    uint16_t port = 0;
    if (auto why = parse_host_port(seed, host, port); !why.empty())
      return bad("cluster.seeds '" + seed + "': " + why);
    if (seed != cfg.cluster_listen)
      c.seeds.push_back(seed);
  }
  c.tls = !cfg.openssl_certificate.empty() || !cfg.openssl_key.empty()
          || !cfg.openssl_cafile.empty() || !cfg.openssl_capath.empty();
  if (c.tls) {
    for (auto [key, value] :
         {std::pair{"openssl.certificate", &cfg.openssl_certificate},
          std::pair{"openssl.key", &cfg.openssl_key},
          std::pair{"openssl.cafile", &cfg.openssl_cafile}}) {
      if (value->empty())
        return bad(std::string{key} + " is required with the other "
                   "openssl.* keys (mutual TLS needs a certificate, its key "
                   "and the cluster's CA)");
      if (::access(value->c_str(), R_OK) != 0)
        return bad(std::string{key} + ": cannot read '" + *value + "'");
    }
  } else if (!is_loopback(c.listen_host)) {
    return bad("cluster.listen '" + cfg.cluster_listen
               + "' is not a loopback address: set openssl.certificate, "
                 "openssl.key and openssl.cafile (BASP authenticates "
                 "nobody; mutual TLS against the cluster's own CA does)");
  }
  if (cfg.cluster_shards < 1 || cfg.cluster_shards > 4096)
    return bad("cluster.shards must be within 1..4096");
  c.shape.shards = static_cast<uint32_t>(cfg.cluster_shards);
  c.shape.match_partitions = match_tiling::classes
                             * s.match_partitions_per_class;
  c.shape.stream_partitions = static_cast<uint32_t>(cfg.ingest_partitions);
  c.lease = to_ms(cfg.cluster_lease);
  c.beat = to_ms(cfg.cluster_beat);
  s.peer_timeout = to_ms(cfg.cluster_peer_timeout);
  if (c.lease < std::chrono::milliseconds{1000})
    return bad("cluster.lease must be at least 1s");
  if (c.beat.count() <= 0 || c.beat * 3 > c.lease)
    return bad("cluster.beat must be positive and at most a third of "
               "cluster.lease (a lease is renewed well before it expires)");
  if (s.peer_timeout < std::chrono::milliseconds{200}
      || s.peer_timeout >= c.lease)
    return bad("cluster.peer-timeout must be at least 200ms and shorter "
               "than cluster.lease (a link that spans a takeover must be "
               "dropped before it)");
  s.peer_heartbeat = s.peer_timeout / 4;
  if (cfg.cluster_join_timeout.count() < 0)
    return bad("cluster.join-timeout must not be negative");
  c.join_timeout = to_ms(cfg.cluster_join_timeout);
  if (cfg.cluster_max_batch_bytes < 4096
      || cfg.cluster_max_batch_bytes > 64 * 1024 * 1024)
    return bad("cluster.max-batch-bytes must be within 4096..67108864 (BASP "
               "allocates whatever a peer announces: keep batches small)");
  c.max_batch_bytes = cfg.cluster_max_batch_bytes;
  if (cfg.cluster_max_unsettled < 1)
    return bad("cluster.max-unsettled must be at least 1");
  c.max_unsettled = cfg.cluster_max_unsettled;
  // A writer frozen mid-transaction must not hold its fence locks (and
  // every takeover of its leases) for longer than half a lease.
  s.postgis.idle_transaction_timeout = c.lease / 2;
  // The readers' consumer name is the node id (ingest.md), and entries of
  // a dead node are claimed once idle half a lease.
  s.source.reader.stream.consumer = c.node_id;
  s.source.reader.stream.claim_idle
    = std::min(s.source.reader.stream.claim_idle, c.lease / 2);
  return caf::none;
}

} // namespace

caf::expected<settings> validate(const flowmatch_config& cfg,
                                 file_checks files) {
  settings s;
  auto checks = files == file_checks::on;
  auto cores = std::max(1u, std::thread::hardware_concurrency());
  s.threads = cfg.threads == 0 ? cores : cfg.threads;
  if (s.threads > 256)
    return bad("system.threads must be at most 256");
  if (cfg.log_format != "text" && cfg.log_format != "json")
    return bad("log.format must be text or json, got '" + cfg.log_format
               + "'");
  if (cfg.log_format == "json")
    use_json_logs();
  if (!configure_logging(cfg.log_level,
                         cfg.log_format == "json" ? "" : cfg.log_pattern))
    return bad("log.level must be one of trace, debug, info, warn, error, "
               "critical, off; got '"
               + cfg.log_level + "'");
  if (cfg.log_progress_interval.count() < 0)
    return bad("log.progress-interval must not be negative");
  s.progress_interval = to_ms(cfg.log_progress_interval);
  s.match_check = cfg.match_check;
  s.migrate_only = cfg.migrate_only;
  // Neither a check nor a migration reads events.
  bool no_input = cfg.match_check || cfg.migrate_only;
  bool stream = !cfg.ingest_redis.empty();
  if (stream && !cfg.ingest_ndjson.empty())
    return bad("ingest.ndjson and ingest.redis exclude each other: read a "
               "file or consume a stream, not both");
  if (!stream && cfg.ingest_ndjson.empty() && !no_input)
    return bad("ingest.ndjson or ingest.redis is required: a file path, - "
               "for stdin, or redis://host:port[/db]");
  if (stream) {
    auto& st = s.source.reader.stream;
    std::string why;
    if (!redis::parse_url(cfg.ingest_redis, why))
      return bad("ingest.redis: '" + cfg.ingest_redis + "': " + why);
    st.url = cfg.ingest_redis;
    if (cfg.ingest_stream.empty())
      return bad("ingest.stream must not be empty");
    st.stream = cfg.ingest_stream;
    if (cfg.ingest_group.empty())
      return bad("ingest.group must not be empty");
    st.group = cfg.ingest_group;
    st.consumer = cfg.ingest_consumer.empty() ? default_consumer_name()
                                              : cfg.ingest_consumer;
    if (cfg.ingest_claim_idle.count() <= 0)
      return bad("ingest.claim-idle must be positive");
    st.claim_idle = to_ms(cfg.ingest_claim_idle);
    if (cfg.ingest_delivery_limit < 1 || cfg.ingest_delivery_limit > 1000)
      return bad("ingest.delivery-limit must be within 1..1000");
    st.delivery_limit = static_cast<uint32_t>(cfg.ingest_delivery_limit);
    if (cfg.ingest_read_count < 1 || cfg.ingest_read_count > 100'000)
      return bad("ingest.read-count must be within 1..100000");
    st.read_count = cfg.ingest_read_count;
    st.until_caught_up = cfg.ingest_until_caught_up;
  }
  if (!stream && !no_input && cfg.ingest_ndjson != "-") {
    if (::access(cfg.ingest_ndjson.c_str(), R_OK) != 0)
      return bad("ingest.ndjson: cannot read '" + cfg.ingest_ndjson + "'");
    struct stat sb {};
    if (::stat(cfg.ingest_ndjson.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode))
      return bad("ingest.ndjson: '" + cfg.ingest_ndjson
                 + "' is a directory, not an NDJSON file");
  }
  s.source.reader.path = cfg.ingest_ndjson;
  if (cfg.ingest_batch_size < 1 || cfg.ingest_batch_size > 1'000'000)
    return bad("ingest.batch-size must be within 1..1000000");
  s.source.batch_size = cfg.ingest_batch_size;
  if (cfg.ingest_max_outstanding < 1 || cfg.ingest_max_outstanding > 64)
    return bad("ingest.max-outstanding must be within 1..64");
  s.source.max_outstanding = cfg.ingest_max_outstanding;
  if (cfg.ingest_poll_interval.count() <= 0)
    return bad("ingest.poll-interval must be positive");
  s.source.reader.poll_interval = to_ms(cfg.ingest_poll_interval);
  if (!(cfg.ingest_max_rate >= 0) || cfg.ingest_max_rate > 1e9)
    return bad("ingest.max-rate must be within 0..1000000000 (0: no limit)");
  s.source.max_rate = cfg.ingest_max_rate;
  if (cfg.ingest_burst > 100'000'000)
    return bad("ingest.burst must be within 0..100000000 (0: one batch)");
  s.source.burst = cfg.ingest_burst;
  s.output_state = cfg.output_state;
  if (checks && !s.output_state.empty() && !can_replace(s.output_state))
    return bad("output.state: cannot write '" + s.output_state + "'");
  s.output_dead_letters = cfg.output_dead_letters;
  s.output_matches = cfg.output_matches;
  if (checks && !s.output_matches.empty() && s.output_matches != "-"
      && !can_write(s.output_matches))
    return bad("output.matches: cannot write '" + s.output_matches + "'");
  if (auto why = cfg.match.validate(); !why.empty())
    return bad(why);
  s.match = cfg.match;
  if (cfg.match_partitions_per_class < 1
      || cfg.match_partitions_per_class > match_tiling::max_per_class)
    return bad("match.partitions-per-class must be between 1 and "
               + std::to_string(match_tiling::max_per_class) + ", got "
               + std::to_string(cfg.match_partitions_per_class));
  s.match_partitions_per_class = static_cast<uint32_t>(
    cfg.match_partitions_per_class);
  if (!(cfg.match_tile_km >= 0) || cfg.match_tile_km > 20000)
    return bad("match.tile-km must be between 0 and 20000 km, got "
               + std::to_string(cfg.match_tile_km));
  s.match_tile_km = cfg.match_tile_km;
  if (checks && !s.output_dead_letters.empty()
      && !can_write(s.output_dead_letters))
    return bad("output.dead-letters: cannot write '" + s.output_dead_letters
               + "'");
  s.registry_workers = static_cast<uint32_t>(
    cfg.registry_workers == 0 ? cores : cfg.registry_workers);
  if (s.registry_workers > 1024)
    return bad("registry.workers must be at most 1024");
  auto policy = parse_routing_policy(cfg.registry_policy);
  if (!policy)
    return bad("registry.policy must be key-hash, round-robin or "
               "least-loaded; got '"
               + cfg.registry_policy + "'");
  if (*policy != routing_policy::key_hash)
    return bad("registry.policy must be key-hash: the registry keeps each "
               "site with its flows on one worker, which only key-hash "
               "routing guarantees ('"
               + cfg.registry_policy + "' is for stateless groups)");
  s.registry_policy = *policy;
  if (cfg.registry_max_in_flight < 1)
    return bad("registry.max-in-flight must be at least 1");
  s.registry_max_in_flight = cfg.registry_max_in_flight;
  if (cfg.registry_hold_timeout.count() <= 0)
    return bad("registry.hold-timeout must be positive");
  s.worker.hold_timeout = to_ms(cfg.registry_hold_timeout);
  s.worker.hold_check_interval = std::min(
    std::chrono::milliseconds{1000},
    std::max(std::chrono::milliseconds{1}, s.worker.hold_timeout / 4));
  if (cfg.registry_hold_limit < 1)
    return bad("registry.hold-limit must be at least 1");
  s.worker.hold_limit = cfg.registry_hold_limit;
  if (cfg.registry_dedup_retention.count() <= 0)
    return bad("registry.dedup-retention must be positive");
  s.dedup_retention = to_ms(cfg.registry_dedup_retention);
  s.source.dedup_retention = s.dedup_retention;
  if (cfg.supervision_max_attempts < 1)
    return bad("supervision.max-attempts must be at least 1");
  s.supervision.max_attempts
    = static_cast<uint32_t>(cfg.supervision_max_attempts);
  s.supervision.backoff_initial = to_ms(cfg.supervision_backoff_initial);
  s.supervision.backoff_max = to_ms(cfg.supervision_backoff_max);
  if (s.supervision.backoff_initial.count() < 0
      || s.supervision.backoff_max < s.supervision.backoff_initial)
    return bad("supervision.backoff-initial must be >= 0 and at most "
               "supervision.backoff-max");
  s.supervision.max_restarts
    = static_cast<uint32_t>(cfg.supervision_max_restarts);
  if (cfg.supervision_restart_window.count() <= 0)
    return bad("supervision.restart-window must be positive");
  s.supervision.restart_window = to_ms(cfg.supervision_restart_window);
  if (cfg.supervision_reply_timeout.count() <= 0)
    return bad("supervision.reply-timeout must be positive");
  s.limits.reply = to_ms(cfg.supervision_reply_timeout);
  s.source.flush_timeout = s.limits.stall;
  if (cfg.supervision_stall_timeout.count() <= 0)
    return bad("supervision.stall-timeout must be positive");
  s.limits.stall = to_ms(cfg.supervision_stall_timeout);
  s.supervision.limits = s.limits;
  s.source.admission_timeout = s.limits.stall;
  if (cfg.telemetry_interval.count() <= 0)
    return bad("telemetry.interval must be positive");
  if (!cfg.metrics_listen.empty()) {
    auto why = check_listen_address(cfg.metrics_listen);
    if (!why.empty())
      return bad("metrics.listen '" + cfg.metrics_listen + "': " + why);
  }
  s.http.listen = cfg.metrics_listen;
  // civetweb takes numeric addresses only.
  if (s.http.listen.rfind("localhost:", 0) == 0)
    s.http.listen = "127.0.0.1" + s.http.listen.substr(9);
  s.http.timeout = s.limits.reply < std::chrono::milliseconds{2000}
                     ? s.limits.reply
                     : std::chrono::milliseconds{2000};
  s.telemetry.interval = to_ms(cfg.telemetry_interval);
  if (cfg.shutdown_grace_period.count() <= 0)
    return bad("shutdown.grace-period must be positive");
  s.grace_period = to_ms(cfg.shutdown_grace_period);
  s.postgis.dsn = cfg.postgis_dsn;
  s.postgis.owner_dsn = cfg.postgis_owner_dsn;
  if (cfg.migrate_only && cfg.postgis_dsn.empty()
      && cfg.postgis_owner_dsn.empty())
    return bad("--migrate needs postgis.owner-dsn or postgis.dsn");
  if (!cfg.migrate_only && !cfg.postgis_owner_dsn.empty()
      && cfg.postgis_dsn.empty())
    return bad("postgis.owner-dsn needs postgis.dsn: the owner's conninfo "
               "only migrates, the node works as postgis.dsn");
  if (cfg.postgis_app_role.size() > 63)
    return bad("postgis.app-role must be at most 63 characters");
  if (!cfg.postgis_app_role.empty() && cfg.postgis_dsn.empty()
      && cfg.postgis_owner_dsn.empty())
    return bad("postgis.app-role needs a database (postgis.dsn)");
  s.postgis.app_role = cfg.postgis_app_role;
  if (cfg.postgis_schema.empty() || cfg.postgis_schema.size() > 63)
    return bad("postgis.schema must be 1..63 characters");
  s.postgis.schema = cfg.postgis_schema;
  if (cfg.postgis_batch_size < 1 || cfg.postgis_batch_size > 1'000'000)
    return bad("postgis.batch-size must be within 1..1000000");
  s.postgis.batch_size = cfg.postgis_batch_size;
  if (cfg.postgis_max_batch_age.count() <= 0)
    return bad("postgis.max-batch-age must be positive");
  s.postgis.max_age = to_ms(cfg.postgis_max_batch_age);
  if (cfg.postgis_retry_initial.count() <= 0
      || cfg.postgis_retry_max < cfg.postgis_retry_initial)
    return bad("postgis.retry-initial must be positive and at most "
               "postgis.retry-max");
  s.postgis.retry_initial = to_ms(cfg.postgis_retry_initial);
  s.postgis.retry_max = to_ms(cfg.postgis_retry_max);
  if (auto err = validate_cluster(cfg, s))
    return err;
  return s;
}

} // namespace flowmatch
