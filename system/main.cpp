// actor-system: runs one flowmatch node. See README.md for the options.

#include "messages/type_ids.hpp"
#include "system/config.hpp"
#include "base/logging.hpp"
#include "base/secrets.hpp"
#include "system/match_check.hpp"
#include "system/migrate_command.hpp"
#include "system/node.hpp"
#include "system/signals.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace flowmatch;

namespace {

/// The message of one of our own configuration errors, or CAF's rendering
/// of another (a parser error names the argument).
std::string describe(flowmatch_config& cfg, const caf::error& err) {
  if (err.category() == caf::atom("system") && err.context().match_elements<std::string>())
    return err.context().get_as<std::string>(0);
  return cfg.render(err);
}

} // namespace

namespace {

/// Ends the process with `code` if the actor system has not stopped
/// within `bound` after this object was made (destroyed: all stopped).
class shutdown_watchdog {
public:
  shutdown_watchdog(std::chrono::seconds bound, int code)
    : thread_([this, bound, code] {
        std::unique_lock<std::mutex> lock{mutex_};
        if (cv_.wait_for(lock, bound, [this] { return stopped_; }))
          return;
        log()->critical("actors still running {} s after the node ended "
                        "(a database call that does not return?); exiting "
                        "with code {} without waiting",
                        bound.count(), code);
        log()->flush();
        std::fflush(stdout);
        std::_Exit(code);
      }) {
  }

  ~shutdown_watchdog() {
    {
      std::lock_guard<std::mutex> lock{mutex_};
      stopped_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::thread thread_;
};

} // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so that only the bridge receives signals.
  block_signals();
  flowmatch_config cfg;
  flowmatch::add_message_types(cfg);
  // `--key=` (what the shell makes of `--key=""`) means an empty value;
  // CAF's parser wants the quotes, so give them back.
  std::vector<std::string> args;
  std::string config_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // CAF's short help lists only its own options; ours are the point.
    if (a == "--help" || a == "-h" || a == "-?")
      a = "--long-help";
    if (a.rfind("--config-file=", 0) == 0) {
      config_file = a.substr(14);
      continue;
    }
    if (a.size() > 3 && a.rfind("--", 0) == 0 && a.back() == '=')
      a += "\"\"";
    args.push_back(std::move(a));
  }
  // The file first, read as strictly as the command line (its errors name
  // the file, line and key), then the command line over it. CAF's own
  // lenient INI reading is not used: it ignores unknown keys and values
  // of the wrong type.
  if (!config_file.empty()) {
    if (auto err = cfg.read_config_file(config_file)) {
      std::cerr << "actor-system: configuration error: "
                << mask_secrets(describe(cfg, err)) << "\n";
      return exit_config;
    }
  }
  std::istringstream no_ini;
  if (auto err = cfg.parse(std::move(args), no_ini)) {
    std::cerr << "actor-system: " << mask_secrets(cfg.render(err)) << "\n"
              << "run with --help for the options\n";
    return exit_config;
  }
  if (cfg.cli_helptext_printed)
    return exit_ok;
  auto s = validate(cfg);
  if (!s) {
    std::cerr << "actor-system: configuration error: "
              << mask_secrets(describe(cfg, s.error())) << "\n";
    return exit_config;
  }
  if (s->match_check)
    return check_matches(*s);
  if (s->migrate_only)
    return run_migrations(*s);
  cfg.set("scheduler.max-threads", s->threads);
  if (s->cluster.enabled()) {
    // The network layer only in cluster mode: a single node opens no
    // port but its metrics endpoint. Heartbeats on every node (a frozen
    // or cut-off peer is dropped after peer-timeout; both sides must send
    // them, or an idle healthy peer is dropped) and our own application
    // identifier (a CAF program of another kind is refused at connect).
    cfg.load<caf::io::middleman>();
    if (s->cluster.tls)
      cfg.load<caf::openssl::manager>();
    cfg.set("middleman.heartbeat-interval",
            caf::timespan{s->peer_heartbeat});
    cfg.set("middleman.connection-timeout", caf::timespan{s->peer_timeout});
    cfg.set("middleman.app-identifiers",
            std::vector<std::string>{"flowmatch-cluster-v1"});
  }
  int code = exit_failure;
  std::optional<shutdown_watchdog> watchdog;
  {
    caf::actor_system sys{cfg};
    auto root = sys.spawn<caf::detached>(node, *s);
    signal_bridge signals{root};
    // The operators' endpoint, up while the node runs (readiness says
    // when it can work).
    std::optional<http_endpoint> http;
    if (!s->http.listen.empty()) {
      http.emplace(sys, root, s->http,
                   build_info{FLOWMATCH_VERSION, FLOWMATCH_GIT_COMMIT});
      if (!http->error().empty()) {
        log()->critical("{}", http->error());
        anon_send_exit(root, caf::exit_reason::user_shutdown);
        return exit_config;
      }
    }
    caf::scoped_actor self{sys};
    // A run lasts as long as the service runs: no timeout. It ends with
    // the node's answer, or with the node itself going down unanswered.
    self->monitor(root);
    self->send(root, run_atom::value);
    bool over = false;
    self->receive_while([&] { return !over; })(
      [&](int c) {
        code = c;
        over = true;
      },
      [&](caf::error& err) {
        log()->critical("node failed: {}", sys.render(err));
        code = exit_failure;
        over = true;
      },
      [&](caf::down_msg& down) {
        log()->critical("node stopped without a result: {}",
                        sys.render(down.reason));
        code = exit_failure;
        over = true;
      });
    // The node has quit and taken its linked stages with it; leaving this
    // scope waits until every actor has stopped. Each one hears its exit
    // message at once (nothing sleeps or reads without a timeout), except
    // a libpq call stuck on a server that stopped answering: for that
    // case only, a watchdog ends the process after a bound, saying so.
    log()->flush();
    std::fflush(stdout);
    watchdog.emplace(std::chrono::seconds{10}, code);
  }
  watchdog.reset();
  log()->flush();
  return code;
}
