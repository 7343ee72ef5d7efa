// Configuration is validated before anything starts: each bad value gets a
// clear message naming the key, and exit code 2.

#include "process.hpp"

#include <catch2/catch.hpp>

#include <fstream>

using namespace flowmatch::test;

namespace {

const std::string data_dir = FLOWMATCH_TEST_DATA;
const std::string input = "--ingest.ndjson=" + data_dir + "/edge_cases.ndjson";

void expect_config_error(const std::vector<std::string>& args,
                         const std::string& mention) {
  std::string out, err;
  int code = run(args, &out, &err);
  INFO("args: " << Catch::Detail::stringify(args) << "\nstderr:\n" << err);
  CHECK(code == 2);
  CHECK_THAT(err, Catch::Contains(mention));
}

} // namespace

TEST_CASE("bad configuration values are refused before start") {
  expect_config_error({}, "ingest.ndjson or ingest.redis is required");
  expect_config_error({input, "--ingest.redis=redis://127.0.0.1:63790"},
                      "ingest.ndjson and ingest.redis exclude each other");
  const std::string stream = "--ingest.redis=redis://127.0.0.1:63790";
  expect_config_error({"--ingest.redis=http://127.0.0.1"},
                      "ingest.redis: 'http://127.0.0.1': must start with "
                      "redis://");
  expect_config_error({"--ingest.redis=redis://127.0.0.1:99999"},
                      "port '99999' is not a number within 1..65535");
  expect_config_error({"--ingest.redis=redis://127.0.0.1:6379/x"},
                      "database 'x' is not a number within 0..15");
  expect_config_error({stream, "--ingest.delivery-limit=0"},
                      "ingest.delivery-limit must be within 1..1000");
  expect_config_error({stream, "--ingest.claim-idle=0s"},
                      "ingest.claim-idle must be positive");
  expect_config_error({stream, "--ingest.read-count=0"},
                      "ingest.read-count must be within 1..100000");
  expect_config_error({stream, "--ingest.stream="},
                      "ingest.stream must not be empty");
  expect_config_error({"--ingest.ndjson=/no/such/file.ndjson"},
                      "cannot read '/no/such/file.ndjson'");
  expect_config_error({input, "--registry.policy=round-robin"},
                      "registry.policy must be key-hash");
  expect_config_error({input, "--registry.policy=random"},
                      "registry.policy must be key-hash, round-robin or "
                      "least-loaded");
  expect_config_error({input, "--log.level=loud"}, "log.level must be one of");
  expect_config_error({input, "--match.partitions-per-class=0"},
                      "match.partitions-per-class must be between 1 and 16");
  expect_config_error({input, "--match.partitions-per-class=17"},
                      "match.partitions-per-class must be between 1 and 16");
  expect_config_error({input, "--match.tile-km=-3"},
                      "match.tile-km must be between 0 and 20000 km");
  expect_config_error({input, "--shutdown.grace-period=0s"},
                      "shutdown.grace-period must be positive");
  expect_config_error({input, "--ingest.batch-size=0"},
                      "ingest.batch-size must be within");
  expect_config_error({input, "--supervision.max-attempts=0"},
                      "supervision.max-attempts must be at least 1");
  expect_config_error({input, "--output.state=/no/such/dir/state.ndjson"},
                      "output.state: cannot write");
  expect_config_error({input, "--ingest.partitions=4"},
                      "ingest.partitions above 1 needs cluster mode");
}

TEST_CASE("cluster settings are checked before anything starts, naming the "
          "key") {
  std::string redis = "--ingest.redis=redis://127.0.0.1:1";
  std::string dsn = "--postgis.dsn=host=127.0.0.1 port=1";
  std::string id = "--cluster.node-id=n1";
  std::string listen = "--cluster.listen=127.0.0.1:47999";
  expect_config_error({redis, id, listen},
                      "cluster.node-id needs postgis.dsn");
  expect_config_error({"--ingest.ndjson=-", dsn, id, listen},
                      "cluster.node-id needs ingest.redis");
  expect_config_error({redis, dsn, id},
                      "cluster.listen is required in cluster mode");
  expect_config_error({redis, dsn, "--cluster.node-id=n 1", listen},
                      "cluster.node-id must be 1..64 letters");
  expect_config_error({redis, dsn, id, "--cluster.listen=127.0.0.1"},
                      "cluster.listen '127.0.0.1': must be host:port");
  expect_config_error({redis, dsn, id, "--cluster.listen=0.0.0.0:47999"},
                      "listen on an explicit address");
  expect_config_error({redis, dsn, id, "--cluster.listen=10.1.2.3:47999"},
                      "is not a loopback address: set openssl.certificate");
  expect_config_error({redis, dsn, id, listen,
                       "--openssl.certificate=/etc/hostname"},
                      "openssl.key is required with the other openssl.*");
  expect_config_error({redis, dsn, id, listen,
                       "--cluster.seeds=[\"127.0.0.1:x\"]"},
                      "cluster.seeds '127.0.0.1:x': the port must be a number");
  expect_config_error({redis, dsn, id, listen, "--cluster.beat=3s"},
                      "cluster.beat must be positive and at most a third");
  expect_config_error({redis, dsn, id, listen, "--cluster.peer-timeout=6s"},
                      "cluster.peer-timeout must be at least 200ms and "
                      "shorter than cluster.lease");
  expect_config_error({redis, dsn, id, listen, "--cluster.shards=0"},
                      "cluster.shards must be within 1..4096");
  expect_config_error({redis, dsn, id, listen, "--cluster.max-batch-bytes=10"},
                      "cluster.max-batch-bytes must be within");
  expect_config_error({redis, dsn, id, listen,
                       "--output.state=/tmp/x.ndjson"},
                      "output.state is a single node's snapshot");
  expect_config_error({"--ingest.ndjson=-", listen},
                      "cluster.listen, cluster.advertise and cluster.seeds "
                      "need cluster.node-id");
  expect_config_error({redis, dsn, id, listen, "--cluster.advertise=nowhere"},
                      "cluster.advertise 'nowhere': must be host:port");
}

TEST_CASE("unknown options and malformed values are refused") {
  expect_config_error({input, "--registry.wrokers=3"}, "registry.wrokers");
  expect_config_error({input, "--registry.workers=many"}, "registry.workers");
}

TEST_CASE("the shipped config.ini is valid and used with --config-file") {
  std::string out, err;
  auto ini = std::string{FLOWMATCH_SOURCE_DIR} + "/config.ini";
  int code = run({"--config-file=" + ini, input}, &out, &err);
  INFO("stderr:\n" << err);
  CHECK(code == 0);
  CHECK_THAT(out, Catch::Contains("flowmatch run summary"));
}

TEST_CASE("an empty value on the command line means empty") {
  // The shell turns --postgis.dsn="" into --postgis.dsn= : no database.
  std::string out, err;
  int code = run({input, "--postgis.dsn="}, &out, &err);
  INFO("stderr:\n" << err);
  CHECK(code == 0);
  CHECK_THAT(out, Catch::Contains("flowmatch run summary"));
  CHECK_THAT(err, !Catch::Contains("PostGIS"));
}

TEST_CASE("--help lists the options and exits 0") {
  std::string out, err;
  CHECK(run({"--help"}, &out, &err) == 0);
  CHECK_THAT(out + err, Catch::Contains("ingest.ndjson"));
  CHECK_THAT(out + err, Catch::Contains("registry.max-in-flight"));
}

TEST_CASE("a config file is read as strictly as the command line, and the "
          "command line overrides it") {
  auto ini = scratch("strict.ini");
  {
    std::ofstream out{ini};
    out << "; a comment\n[registry]\nworkers=2\n\n[log]\nlevel=\"info\"\n";
  }
  auto c = child_process::start({"--config-file=" + ini, input,
                                 "--registry.workers=3"});
  CHECK(c.wait() == 0);
  INFO("stderr:\n" << c.stderr_text);
  CHECK_THAT(c.stderr_text, Catch::Contains("3 workers"));
  std::remove(c.stdout_path.c_str());
  {
    std::ofstream out{ini};
    out << "[registry]\nworkers=2\n[postgis]\ndns=\"host=x\"\n";
  }
  expect_config_error({"--config-file=" + ini, input},
                      ini + ":4: unknown key postgis.dns");
  std::remove(ini.c_str());
}
