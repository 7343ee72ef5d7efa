// actor-system: runs one flowmatch node. See README.md for the options.

#include "messages/type_ids.hpp"
#include "system/config.hpp"
#include "base/logging.hpp"
#include "system/match_check.hpp"
#include "system/node.hpp"
#include "system/signals.hpp"

#include <caf/all.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
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

int main(int argc, char** argv) {
  // Before any thread exists, so that only the bridge receives signals.
  block_signals();
  flowmatch_config cfg;
  cfg.add_message_types<caf::id_block::flowmatch>();
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
      std::cerr << "actor-system: configuration error: " << describe(cfg, err)
                << "\n";
      return exit_config;
    }
  }
  std::istringstream no_ini;
  if (auto err = cfg.parse(std::move(args), no_ini)) {
    std::cerr << "actor-system: " << cfg.render(err) << "\n"
              << "run with --help for the options\n";
    return exit_config;
  }
  if (cfg.cli_helptext_printed)
    return exit_ok;
  auto s = validate(cfg);
  if (!s) {
    std::cerr << "actor-system: configuration error: "
              << describe(cfg, s.error()) << "\n";
    return exit_config;
  }
  if (s->match_check)
    return check_matches(*s);
  cfg.set("scheduler.max-threads", s->threads);
  int code = exit_failure;
  {
    caf::actor_system sys{cfg};
    auto root = sys.spawn<caf::detached>(node, *s);
    signal_bridge signals{root};
    caf::scoped_actor self{sys};
    self->request(root, caf::infinite, run_atom::value)
      .receive([&](int c) { code = c; },
               [&](caf::error& err) {
                 log()->critical("node failed: {}", sys.render(err));
                 code = exit_failure;
               });
    if (code != exit_ok) {
      // Hard stop: stages may still hold work; do not wait for them.
      log()->flush();
      std::fflush(stdout);
      std::_Exit(code);
    }
  }
  log()->flush();
  return code;
}
