#include "base/logging.hpp"

#include "base/secrets.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <fmt/format.h>

#include <ctime>

namespace flowmatch {

namespace {

/// Hides passwords (base/secrets.hpp) in every line before `inner` formats
/// it: a libpq or Redis error, or a setting echoed in a message, may carry
/// a conninfo.
class masking_formatter final : public spdlog::formatter {
public:
  explicit masking_formatter(std::unique_ptr<spdlog::formatter> inner)
    : inner_(std::move(inner)) {
  }

  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override {
    std::string_view text{msg.payload.data(), msg.payload.size()};
    if (!may_hold_secret(text)) {
      inner_->format(msg, dest);
      return;
    }
    auto masked = mask_secrets(text);
    auto copy = msg;
    copy.payload = spdlog::string_view_t{masked.data(), masked.size()};
    inner_->format(copy, dest);
    // The colour sink reads where the level's colour goes from the message
    // it passed in.
    msg.color_range_start = copy.color_range_start;
    msg.color_range_end = copy.color_range_end;
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<masking_formatter>(inner_->clone());
  }

private:
  std::unique_ptr<spdlog::formatter> inner_;
};

void use_pattern(spdlog::logger& l, const std::string& pattern) {
  l.set_formatter(std::make_unique<masking_formatter>(
    std::make_unique<spdlog::pattern_formatter>(pattern)));
}

} // namespace

std::shared_ptr<spdlog::logger>& log() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("flowmatch");
    use_pattern(*l, "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::warn);
    return l;
  }();
  return instance;
}

namespace {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += static_cast<char>(c);
    }
  }
  out += '"';
}

class json_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override {
    auto level = spdlog::level::to_string_view(msg.level);
    auto line = json_log_line(
      msg.time, std::string_view{level.data(), level.size()},
      std::string_view{msg.payload.data(), msg.payload.size()});
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

} // namespace

std::string json_log_line(std::chrono::system_clock::time_point time,
                          std::string_view level, std::string_view text) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              time.time_since_epoch())
              .count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  std::string out = "{\"time\":";
  append_json_string(out, fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}."
                                      "{:03}Z",
                                      utc.tm_year + 1900, utc.tm_mon + 1,
                                      utc.tm_mday, utc.tm_hour, utc.tm_min,
                                      utc.tm_sec, ms % 1000));
  out += ",\"level\":";
  append_json_string(out, level);
  // Every line starts with the name of the actor that wrote it.
  auto space = text.find(' ');
  auto actor = space == std::string_view::npos ? std::string_view{}
                                               : text.substr(0, space);
  auto message = space == std::string_view::npos ? text
                                                 : text.substr(space + 1);
  if (!actor.empty()) {
    out += ",\"actor\":";
    append_json_string(out, actor);
  }
  out += ",\"message\":";
  append_json_string(out, message);
  // "(event ID)" names the event a line is about; "-" is none.
  auto at = text.find("(event ");
  if (at != std::string_view::npos) {
    auto begin = at + 7;
    auto end = text.find(')', begin);
    if (end != std::string_view::npos && end > begin
        && text.substr(begin, end - begin) != "-") {
      out += ",\"event_id\":";
      append_json_string(out, text.substr(begin, end - begin));
    }
  }
  out += "}\n";
  return out;
}

void use_json_logs() {
  log()->set_formatter(
    std::make_unique<masking_formatter>(std::make_unique<json_formatter>()));
}

bool configure_logging(const std::string& level, const std::string& pattern) {
  auto lvl = spdlog::level::from_str(level);
  // from_str maps unknown names to `off`; only accept "off" when asked.
  if (lvl == spdlog::level::off && level != "off")
    return false;
  log()->set_level(lvl);
  if (!pattern.empty())
    use_pattern(*log(), pattern);
  return true;
}

} // namespace flowmatch
