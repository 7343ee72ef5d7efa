// config.ini documents every key the code reads, with its default: the
// keys flowmatch registers and the keys config.ini sets are the same set,
// and each value config.ini gives is the code's default. A key added in
// code without its line in config.ini (or a default changed in one place
// only) fails here, naming it.

#include "system/config.hpp"

#include <catch2/catch.hpp>

#include <caf/config_value.hpp>

#include <fstream>
#include <map>
#include <set>
#include <string>

using namespace flowmatch;

namespace {

/// The sections flowmatch owns (the rest are CAF's own).
const std::set<std::string> our_sections{"system", "log",         "ingest",
                                         "output", "match",       "registry",
                                         "supervision", "postgis", "shutdown",
                                         "telemetry", "metrics", "cluster"};

/// Every key of our sections, with the value the options hold now.
std::map<std::string, std::string> option_values(flowmatch_config& cfg) {
  std::map<std::string, std::string> out;
  auto str = [](caf::string_view sv) {
    return std::string(sv.data(), sv.size());
  };
  for (auto& opt : cfg.options()) {
    auto section = str(opt.category());
    if (our_sections.count(section) == 0)
      continue;
    auto value = opt.get();
    out[section + "." + str(opt.long_name())] = value ? caf::to_string(*value) : "(no value)";
  }
  return out;
}

/// The keys config.ini sets, as section.key.
std::set<std::string> ini_keys(const std::string& path) {
  std::ifstream in{path};
  std::set<std::string> keys;
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == ';')
      continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    auto eq = line.find('=');
    if (eq != std::string::npos)
      keys.insert(section + "." + line.substr(0, eq));
  }
  return keys;
}

} // namespace

TEST_CASE("config.ini sets every key the code reads, and only those") {
  auto ini = std::string{FLOWMATCH_SOURCE_DIR} + "/config.ini";
  flowmatch_config cfg;
  auto in_code = option_values(cfg);
  auto in_ini = ini_keys(ini);
  REQUIRE_FALSE(in_ini.empty());
  for (auto& [key, value] : in_code) {
    INFO("config.ini does not document " << key << " (default " << value
                                         << ")");
    CHECK(in_ini.count(key) == 1);
  }
  for (auto& key : in_ini) {
    INFO("config.ini sets " << key << ", which the code does not read");
    CHECK(in_code.count(key) == 1);
  }
}

TEST_CASE("every value in config.ini is the code's default") {
  auto ini = std::string{FLOWMATCH_SOURCE_DIR} + "/config.ini";
  flowmatch_config defaults;
  flowmatch_config read;
  REQUIRE_FALSE(read.read_config_file(ini));
  auto want = option_values(defaults);
  auto got = option_values(read);
  for (auto& [key, value] : want) {
    INFO(key << ": the code's default is " << value << ", config.ini says "
             << got[key]);
    CHECK(got[key] == value);
  }
}
