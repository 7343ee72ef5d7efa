#pragma once

// Configuration: `config.ini` in CAF's INI format (`--config-file=PATH`),
// every key overridable on the command line as `--group.key=value`. The raw
// options land in `flowmatch_config`; `validate` checks them all before
// anything starts and turns them into `settings`.

#include "actors/cluster.hpp"
#include "actors/dispatcher.hpp"
#include "core/match_rules.hpp"
#include "actors/ingest_source.hpp"
#include "actors/postgis_sync.hpp"
#include "actors/registry_worker.hpp"
#include "actors/telemetry.hpp"
#include "system/http_endpoint.hpp"
#include "actors/worker_pool.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <istream>
#include <string>

namespace flowmatch {

/// The options as parsed. Defaults come from the settings structs of the
/// stages they configure (one place each); config.ini repeats them for the
/// operator, and a test keeps the two equal (tests/system/config_keys.cpp).
class flowmatch_config : public caf::actor_system_config {
public:
  flowmatch_config();

  /// Reads a config file in CAF's INI format strictly, exactly as the
  /// command line is read: every key must be a known option of its section,
  /// every value must parse as the option's type. The error names the file,
  /// the line and the key (an operator's typo must never silently change
  /// what the node does). Values take effect at once; the command line,
  /// parsed after, overrides them.
  caf::error read_config_file(const std::string& path);

  /// The same for text already read (`name` is what errors show).
  caf::error read_config_text(std::istream& in, const std::string& name);

  /// Every option, flowmatch's and CAF's (for the test that config.ini
  /// documents each key).
  const caf::config_option_set& options() const {
    return custom_options_;
  }

  /// What `--dump-config` prints: every setting, passwords masked
  /// (base/secrets.hpp).
  caf::settings dump_content() const override;

  /// `--migrate`: apply the migrations and exit.
  bool migrate_only = false;

  // [system]
  size_t threads = 0;
  // [log]
  std::string log_level = "info";
  std::string log_pattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v";
  std::string log_format = "text";
  caf::timespan log_progress_interval = std::chrono::seconds{2};
  // [ingest]
  std::string ingest_ndjson;
  size_t ingest_batch_size = ingest_settings{}.batch_size;
  size_t ingest_max_outstanding = ingest_settings{}.max_outstanding;
  caf::timespan ingest_poll_interval = reader_settings{}.poll_interval;
  double ingest_max_rate = ingest_settings{}.max_rate;
  size_t ingest_burst = ingest_settings{}.burst;
  std::string ingest_redis;
  std::string ingest_stream = stream_settings{}.stream;
  std::string ingest_group = stream_settings{}.group;
  std::string ingest_consumer;
  caf::timespan ingest_claim_idle = stream_settings{}.claim_idle;
  size_t ingest_delivery_limit = stream_settings{}.delivery_limit;
  size_t ingest_read_count = stream_settings{}.read_count;
  bool ingest_until_caught_up = false;
  size_t ingest_partitions = 1;
  // [cluster]
  std::string cluster_node_id;
  std::string cluster_listen;
  std::string cluster_advertise;
  std::vector<std::string> cluster_seeds;
  size_t cluster_shards = cluster_shape{}.shards;
  caf::timespan cluster_lease = cluster_settings{}.lease;
  caf::timespan cluster_beat = cluster_settings{}.beat;
  caf::timespan cluster_peer_timeout = std::chrono::seconds{2};
  caf::timespan cluster_join_timeout = cluster_settings{}.join_timeout;
  size_t cluster_max_batch_bytes = cluster_settings{}.max_batch_bytes;
  size_t cluster_max_unsettled = cluster_settings{}.max_unsettled;
  // [output]
  std::string output_state;
  std::string output_dead_letters;
  std::string output_matches;
  // [match]: the match model's defaults (docs/contracts/matching.md).
  match_settings match;
  bool match_check = false;
  size_t match_partitions_per_class = 1;
  double match_tile_km = 0;
  // [registry]
  size_t registry_workers = 0;
  std::string registry_policy = "key-hash";
  size_t registry_max_in_flight = group_settings{}.max_in_flight;
  caf::timespan registry_hold_timeout = registry_worker_settings{}.hold_timeout;
  size_t registry_hold_limit = registry_worker_settings{}.hold_limit;
  caf::timespan registry_dedup_retention = default_dedup_retention;
  // [supervision]
  size_t supervision_max_attempts = supervision_settings{}.max_attempts;
  caf::timespan supervision_backoff_initial
    = supervision_settings{}.backoff_initial;
  caf::timespan supervision_backoff_max = supervision_settings{}.backoff_max;
  size_t supervision_max_restarts = supervision_settings{}.max_restarts;
  caf::timespan supervision_restart_window
    = supervision_settings{}.restart_window;
  caf::timespan supervision_reply_timeout = wait_limits{}.reply;
  caf::timespan supervision_stall_timeout = wait_limits{}.stall;
  // [metrics]
  std::string metrics_listen = http_settings{}.listen;
  // [telemetry]
  caf::timespan telemetry_interval = telemetry_settings{}.interval;
  // [shutdown]
  caf::timespan shutdown_grace_period = std::chrono::seconds{30};
  // [postgis]
  std::string postgis_dsn;
  std::string postgis_owner_dsn;
  std::string postgis_app_role;
  std::string postgis_schema = postgis_settings{}.schema;
  size_t postgis_batch_size = postgis_settings{}.batch_size;
  caf::timespan postgis_max_batch_age = postgis_settings{}.max_age;
  caf::timespan postgis_retry_initial = postgis_settings{}.retry_initial;
  caf::timespan postgis_retry_max = postgis_settings{}.retry_max;
};

/// Everything the node needs, validated.
struct settings {
  size_t threads = 1;
  ingest_settings source;
  std::string output_state;
  std::string output_dead_letters;
  /// The match stream file (`-` for stdout); empty: none.
  std::string output_matches;
  match_settings match;
  /// Match partitions of each resource class, and their smallest tile
  /// (never below the class's d_max).
  uint32_t match_partitions_per_class = 1;
  double match_tile_km = 0;
  /// Run the consistency check instead of the node.
  bool match_check = false;
  /// Apply the migrations (as postgis.owner-dsn when set) instead of
  /// running the node.
  bool migrate_only = false;
  uint32_t registry_workers = 1;
  routing_policy registry_policy = routing_policy::key_hash;
  uint64_t registry_max_in_flight = 65536;
  /// How long an applied event id is remembered for deduplication (also
  /// in `source`).
  std::chrono::milliseconds dedup_retention = default_dedup_retention;
  registry_worker_settings worker;
  supervision_settings supervision;
  /// Reply and stall limits of every request between stages.
  wait_limits limits;
  std::chrono::milliseconds grace_period{30000};
  /// How often a running node logs its progress; zero: never.
  std::chrono::milliseconds progress_interval{2000};
  /// Empty dsn: no database.
  postgis_settings postgis;
  telemetry_settings telemetry;
  http_settings http;
  /// Cluster mode (node id set), or a single node.
  cluster_settings cluster;
  /// BASP heartbeats between the nodes (both sides send them) and how long
  /// a silent peer is kept (`middleman.heartbeat-interval`,
  /// `middleman.connection-timeout`).
  std::chrono::milliseconds peer_heartbeat{500};
  std::chrono::milliseconds peer_timeout{2000};
};

/// Whether `validate` checks the files named by the options (it may
/// create an empty output file to see that it can). The configuration
/// fuzzer turns this off: it must not create files at random paths.
enum class file_checks { on, off };

/// Checks every option; the error names the key and the allowed values.
caf::expected<settings> validate(const flowmatch_config& cfg,
                                 file_checks files = file_checks::on);

/// Exit codes of `actor-system`.
enum exit_code : int {
  exit_ok = 0,
  exit_config = 2,      ///< bad configuration or command line
  exit_deadline = 3,    ///< the grace period ran out before the drain ended
  exit_failure = 4,     ///< a stage failed (e.g. restart intensity exceeded)
  exit_interrupted = 5, ///< a second signal cut the drain short
  exit_input = 6,       ///< the input could not be read (I/O error)
  exit_lease_lost = 7,  ///< cluster mode: a lease was lost (a successor
                        ///< may own the work now); restart to rejoin
};

} // namespace flowmatch
