// actor-system: runs one flowmatch node. See README.md for the options.

#include "messages/type_ids.hpp"
#include "system/config.hpp"
#include "system/logging.hpp"
#include "system/match_check.hpp"
#include "system/node.hpp"
#include "system/signals.hpp"

#include <caf/all.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

using namespace flowmatch;

int main(int argc, char** argv) {
  // Before any thread exists, so that only the bridge receives signals.
  block_signals();
  flowmatch_config cfg;
  cfg.add_message_types<caf::id_block::flowmatch>();
  // `--key=` (what the shell makes of `--key=""`) means an empty value;
  // CAF's parser wants the quotes, so give them back.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> fixed;
  for (auto& a : args) {
    // CAF's short help lists only its own options; ours are the point.
    if (a == "--help" || a == "-h" || a == "-?")
      a = "--long-help";
    if (a.size() > 3 && a.rfind("--", 0) == 0 && a.back() == '=')
      a += "\"\"";
    fixed.push_back(a.data());
  }
  fixed.push_back(nullptr);
  if (auto err = cfg.parse(argc, fixed.data())) {
    std::cerr << "actor-system: " << cfg.render(err) << "\n"
              << "run with --help for the options\n";
    return exit_config;
  }
  if (cfg.cli_helptext_printed)
    return exit_ok;
  auto s = validate(cfg);
  if (!s) {
    std::cerr << "actor-system: configuration error: "
              << cfg.render(s.error()) << "\n";
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
