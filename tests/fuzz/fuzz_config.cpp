// libFuzzer target: the configuration, as the operator writes it. The
// input is a config file, then a line "%%", then command-line arguments,
// one per line; they go through the strict file reader, CAF's command-line
// parser and `validate` (file checks off: a fuzzer must not create files).
// Any outcome is fine but a crash, a hang or an accepted setting that
// breaks its own rule.

#include "actors/actors.hpp"
#include "system/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace flowmatch;

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_config: %s\n", what);
  std::abort();
}

bool prints_and_exits(const std::string& arg) {
  // CAF's help and config dump print to stdout; they are not what is
  // fuzzed here.
  for (const char* p : {"--long-help", "--help", "-h", "-?", "--dump-config",
                        "--caf#dump-config", "--caf#long-help"})
    if (arg.rfind(p, 0) == 0)
      return true;
  return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input{reinterpret_cast<const char*>(data), size};
  std::string_view file = input;
  std::string_view rest;
  if (auto cut = input.find("\n%%\n"); cut != std::string_view::npos) {
    file = input.substr(0, cut);
    rest = input.substr(cut + 4);
  }
  std::vector<std::string> args;
  while (!rest.empty()) {
    auto end = rest.find('\n');
    std::string arg{rest.substr(0, end)};
    if (!arg.empty() && !prints_and_exits(arg))
      args.push_back(std::move(arg));
    rest = end == std::string_view::npos ? std::string_view{}
                                         : rest.substr(end + 1);
  }
  flowmatch_config cfg;
  add_message_types(cfg);
  std::istringstream text{std::string{file}};
  if (cfg.read_config_text(text, "fuzz.ini"))
    return 0;
  std::istringstream no_ini;
  if (cfg.parse(std::move(args), no_ini))
    return 0;
  if (cfg.cli_helptext_printed)
    return 0;
  auto s = validate(cfg, file_checks::off);
  if (!s)
    return 0;
  // What validate accepted keeps the rules it enforces.
  if (s->threads == 0)
    broken("accepted zero scheduler threads");
  if (s->registry_workers == 0 || s->registry_workers > 1024)
    broken("accepted a worker count out of 1..1024");
  if (s->cluster.enabled() && !(s->cluster.beat * 3 <= s->cluster.lease))
    broken("accepted a beat longer than a third of the lease");
  return 0;
}
