#include "base/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace flowmatch {

std::shared_ptr<spdlog::logger>& log() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("flowmatch");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::warn);
    return l;
  }();
  return instance;
}

bool configure_logging(const std::string& level, const std::string& pattern) {
  auto lvl = spdlog::level::from_str(level);
  // from_str maps unknown names to `off`; only accept "off" when asked.
  if (lvl == spdlog::level::off && level != "off")
    return false;
  log()->set_level(lvl);
  if (!pattern.empty())
    log()->set_pattern(pattern);
  return true;
}

} // namespace flowmatch
