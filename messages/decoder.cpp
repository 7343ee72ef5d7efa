#include "messages/decoder.hpp"

#include "messages/units.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace flowmatch {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

/// Thrown inside the decoder only, to unwind from a nested field check to
/// `decode`, which turns it into a dead letter. Never escapes this file.
struct rejection {
  reject_reason reason;
  std::string detail;
};

[[noreturn]] void reject(reject_reason r, std::string detail) {
  throw rejection{r, std::move(detail)};
}

std::string_view json_type_name(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "array";
    case element_type::OBJECT:
      return "object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "number";
    case element_type::STRING:
      return "string";
    case element_type::BOOL:
      return "bool";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

/// Reads the fields of one JSON object with a path prefix for messages
/// ("data.lat"). Absent and null both count as "not given".
class fields {
public:
  fields(object obj, std::string_view prefix) : obj_(obj), prefix_(prefix) {
  }

  std::string path(std::string_view key) const {
    return prefix_.empty() ? std::string{key}
                           : fmt::format("{}.{}", prefix_, key);
  }

  /// The element under `key`, or nullptr-like false when absent or null.
  bool find(std::string_view key, element& out) const {
    auto r = obj_.at_key(key);
    if (r.error())
      return false;
    out = r.value_unsafe();
    return out.type() != element_type::NULL_VALUE;
  }

  /// PostgreSQL text cannot hold U+0000 (events.md v1.1): an event with
  /// one is refused here, before it can reach memory or a table.
  void reject_nul(std::string_view key, std::string_view sv) const {
    if (sv.find('\0') != std::string_view::npos)
      reject(reject_reason::invalid_value,
             fmt::format("{} contains U+0000 (NUL), which no stored text may "
                         "hold",
                         path(key)));
  }

  [[noreturn]] void missing(std::string_view key) const {
    reject(reject_reason::missing_field, fmt::format("{} is required", path(key)));
  }

  [[noreturn]] void wrong_type(std::string_view key, std::string_view want,
                               const element& e) const {
    reject(reject_reason::wrong_type,
           fmt::format("{} must be a {}, got {}", path(key), want,
                       json_type_name(e.type())));
  }

  caf::optional<std::string> opt_string(std::string_view key,
                                        size_t max_chars = 0) const {
    element e;
    if (!find(key, e))
      return caf::none;
    if (e.type() != element_type::STRING)
      wrong_type(key, "string", e);
    std::string_view sv = e.get_string().value_unsafe();
    reject_nul(key, sv);
    if (max_chars > 0) {
      auto n = utf8_length(sv);
      if (n > max_chars)
        reject(reject_reason::out_of_range,
               fmt::format("{} has {} characters, at most {} allowed",
                           path(key), n, max_chars));
    }
    return std::string{sv};
  }

  std::string req_string(std::string_view key, size_t max_chars) const {
    auto s = opt_string(key, max_chars);
    if (!s)
      missing(key);
    if (s->empty())
      reject(reject_reason::out_of_range,
             fmt::format("{} must not be empty", path(key)));
    return std::move(*s);
  }

  caf::optional<double> opt_number(std::string_view key) const {
    element e;
    if (!find(key, e))
      return caf::none;
    double v;
    switch (e.type()) {
      case element_type::DOUBLE:
        v = e.get_double().value_unsafe();
        break;
      case element_type::INT64:
        v = static_cast<double>(e.get_int64().value_unsafe());
        break;
      case element_type::UINT64:
        v = static_cast<double>(e.get_uint64().value_unsafe());
        break;
      default:
        wrong_type(key, "number", e);
    }
    if (!std::isfinite(v))
      reject(reject_reason::non_finite_number,
             fmt::format("{} is not a finite number", path(key)));
    return v;
  }

  double req_number(std::string_view key) const {
    auto v = opt_number(key);
    if (!v)
      missing(key);
    return *v;
  }

  caf::optional<int64_t> opt_integer(std::string_view key) const {
    element e;
    if (!find(key, e))
      return caf::none;
    switch (e.type()) {
      case element_type::INT64:
        return e.get_int64().value_unsafe();
      case element_type::UINT64:
        reject(reject_reason::out_of_range,
               fmt::format("{} does not fit a signed 64-bit integer",
                           path(key)));
      case element_type::DOUBLE:
        // An integer literal too long for 64 bits arrives as a double (see
        // widen_big_integers): a valid number, too large for its field.
        if (double v = e.get_double().value_unsafe();
            std::nearbyint(v) == v && std::fabs(v) >= 9.2e18)
          reject(reject_reason::out_of_range,
                 fmt::format("{} is {}, does not fit a signed 64-bit integer",
                             path(key), v));
        reject(reject_reason::wrong_type,
               fmt::format("{} must be an integer, got a fractional or "
                           "exponent number",
                           path(key)));
      default:
        wrong_type(key, "integer", e);
    }
  }

  caf::optional<bool> opt_bool(std::string_view key) const {
    element e;
    if (!find(key, e))
      return caf::none;
    if (e.type() != element_type::BOOL)
      wrong_type(key, "bool", e);
    return e.get_bool().value_unsafe();
  }

  /// An array of strings, or none when absent.
  caf::optional<std::vector<std::string>>
  opt_string_array(std::string_view key) const {
    element e;
    if (!find(key, e))
      return caf::none;
    if (e.type() != element_type::ARRAY)
      wrong_type(key, "array of strings", e);
    std::vector<std::string> out;
    simdjson::dom::array items;
    if (e.get_array().get(items) != simdjson::SUCCESS)
      wrong_type(key, "array of strings", e);
    size_t i = 0;
    for (element item : items) {
      if (item.type() != element_type::STRING)
        reject(reject_reason::wrong_type,
               fmt::format("{}[{}] must be a string, got {}", path(key), i,
                           json_type_name(item.type())));
      std::string_view sv = item.get_string().value_unsafe();
      reject_nul(fmt::format("{}[{}]", key, i), sv);
      out.emplace_back(sv);
      ++i;
    }
    return out;
  }

private:
  object obj_;
  std::string_view prefix_;
};

bool all_digits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9')
      return false;
  return true;
}

void check_range(const fields& f, std::string_view key, double v, double lo,
                 double hi) {
  if (v < lo || v > hi)
    reject(reject_reason::out_of_range,
           fmt::format("{} is {}, must be within [{}, {}]", f.path(key), v, lo,
                       hi));
}

/// Identifiers: 1..128 characters.
constexpr size_t max_id_chars = 128;
constexpr size_t max_name_chars = 512;

site decode_site(const fields& d) {
  site s;
  s.site_id = d.req_string("site_id", max_id_chars);
  s.name = d.opt_string("name", max_name_chars);
  s.lat = d.req_number("lat");
  check_range(d, "lat", s.lat, -90, 90);
  s.lon = d.req_number("lon");
  check_range(d, "lon", s.lon, -180, 180);
  s.country = d.opt_string("country");
  s.nace = d.opt_string("nace");
  s.version = d.opt_integer("version");
  return s;
}

caf::optional<resource_class> parse_class(std::string_view s) {
  if (s == "heat")
    return resource_class::heat;
  if (s == "water")
    return resource_class::water;
  if (s == "material")
    return resource_class::material;
  if (s == "co2")
    return resource_class::co2;
  return caf::none;
}

bool is_medium(std::string_view s) {
  return s == "hot_water" || s == "steam" || s == "cooling_water"
         || s == "flue_gas" || s == "air";
}

resource_flow decode_flow(const fields& d) {
  resource_flow f;
  f.flow_id = d.req_string("flow_id", max_id_chars);
  f.site_id = d.req_string("site_id", max_id_chars);
  auto dir = d.opt_string("direction");
  if (!dir)
    d.missing("direction");
  if (*dir == "supply")
    f.direction = flow_direction::supply;
  else if (*dir == "demand")
    f.direction = flow_direction::demand;
  else
    reject(reject_reason::invalid_value,
           fmt::format("data.direction is \"{}\", must be supply or demand",
                       *dir));
  auto res = d.opt_string("resource");
  if (!res)
    d.missing("resource");
  auto cls = parse_class(*res);
  if (!cls)
    reject(reject_reason::invalid_value,
           fmt::format("data.resource is \"{}\", must be heat, water, "
                       "material or co2",
                       *res));
  f.resource = *cls;
  f.quantity = d.req_number("quantity");
  if (!(f.quantity > 0))
    reject(reject_reason::out_of_range,
           fmt::format("data.quantity is {}, must be > 0", f.quantity));
  auto unit = d.opt_string("unit");
  if (!unit)
    d.missing("unit");
  f.unit = std::move(*unit);
  f.operating_hours = d.opt_number("operating_hours");
  if (f.operating_hours && !(*f.operating_hours > 0 && *f.operating_hours <= 8760))
    reject(reject_reason::out_of_range,
           fmt::format("data.operating_hours is {}, must be within (0, 8760]",
                       *f.operating_hours));
  auto annual = to_annual_quantity(f.resource, f.unit, f.quantity,
                                   f.effective_hours());
  if (!annual) {
    if (is_known_unit(f.unit))
      reject(reject_reason::unit_class_mismatch,
             fmt::format("data.unit \"{}\" is not a unit of class {} "
                         "(canonical {})",
                         f.unit, to_string(f.resource),
                         canonical_unit(f.resource)));
    reject(reject_reason::invalid_value,
           fmt::format("data.unit \"{}\" is not a known unit", f.unit));
  }
  // The canonical annual amount must be a finite, positive number (1e308
  // MW overflows it): no table or stream may ever hold infinity or NaN.
  if (!std::isfinite(*annual) || !(*annual > 0))
    reject(reject_reason::out_of_range,
           fmt::format("data.quantity {} {} is {} {} a year, beyond the "
                       "range of a finite positive number",
                       f.quantity, f.unit, *annual,
                       canonical_unit(f.resource)));
  f.annual_quantity = *annual;
  // Class-specific fields are validated (and required) where the contract
  // gives them a meaning: temperature and medium for heat, ewc for a
  // material supply, accepts_ewc for a material demand, hazardous on the
  // supply side, accepts_hazardous on the demand side. Elsewhere they mean
  // nothing: kept when well-formed, dropped when not, never a rejection.
  bool heat = f.resource == resource_class::heat;
  bool material = f.resource == resource_class::material;
  bool supply = f.direction == flow_direction::supply;
  auto where = [](bool applies, auto parse) {
    if (applies)
      return parse();
    try {
      return parse();
    } catch (rejection&) {
      return decltype(parse()){};
    }
  };
  f.temperature_c = where(heat, [&] { return d.opt_number("temperature_c"); });
  if (heat && !f.temperature_c)
    d.missing("temperature_c");
  f.medium = where(heat, [&] {
    auto m = d.opt_string("medium");
    if (m && !is_medium(*m))
      reject(reject_reason::invalid_value,
             fmt::format("data.medium is \"{}\", must be hot_water, steam, "
                         "cooling_water, flue_gas or air",
                         *m));
    return m;
  });
  f.ewc = where(material && supply, [&] {
    auto e = d.opt_string("ewc");
    if (e && (e->size() != 6 || !all_digits(*e)))
      reject(reject_reason::invalid_value,
             fmt::format("data.ewc is \"{}\", must be a 6-digit EWC code",
                         *e));
    return e;
  });
  if (material && supply && !f.ewc)
    d.missing("ewc");
  f.accepts_ewc = where(material && !supply, [&] {
    auto codes = d.opt_string_array("accepts_ewc");
    if (codes)
      for (const auto& code : *codes)
        if ((code.size() != 2 && code.size() != 4 && code.size() != 6)
            || !all_digits(code))
          reject(reject_reason::invalid_value,
                 fmt::format("data.accepts_ewc holds \"{}\", each entry "
                             "must be 2, 4 or 6 digits",
                             code));
    return codes;
  });
  if (material && !supply) {
    if (!f.accepts_ewc)
      d.missing("accepts_ewc");
    if (f.accepts_ewc->empty())
      reject(reject_reason::out_of_range,
             "data.accepts_ewc must not be empty for a material demand");
  }
  f.hazardous = where(supply, [&] { return d.opt_bool("hazardous"); });
  f.accepts_hazardous = where(!supply, [&] {
    return d.opt_bool("accepts_hazardous");
  });
  f.max_transport_km = d.opt_number("max_transport_km");
  if (f.max_transport_km && !(*f.max_transport_km > 0))
    reject(reject_reason::out_of_range,
           fmt::format("data.max_transport_km is {}, must be > 0",
                       *f.max_transport_km));
  f.version = d.opt_integer("version");
  return f;
}

caf::optional<event_type> parse_type(std::string_view s) {
  if (s == "site_created")
    return event_type::site_created;
  if (s == "site_updated")
    return event_type::site_updated;
  if (s == "site_deleted")
    return event_type::site_deleted;
  if (s == "resource_flow_created")
    return event_type::resource_flow_created;
  if (s == "resource_flow_updated")
    return event_type::resource_flow_updated;
  if (s == "resource_flow_deleted")
    return event_type::resource_flow_deleted;
  return caf::none;
}

/// After simdjson refused a line: tells non-finite numbers (NaN, Infinity or
/// a literal beyond double range), which JSON cannot express, from other
/// syntax errors, so each gets its own reason.
bool has_non_finite_token(std::string_view line) {
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      continue;
    }
    auto rest = line.substr(i);
    if (rest.rfind("NaN", 0) == 0 || rest.rfind("Infinity", 0) == 0
        || rest.rfind("inf", 0) == 0 || rest.rfind("nan", 0) == 0)
      return true;
    if ((c >= '0' && c <= '9') || c == '-') {
      // Parse the number literal and see whether it overflows a double.
      size_t j = i;
      while (j < line.size()
             && std::strchr("0123456789+-.eE", line[j]) != nullptr)
        ++j;
      std::string literal{line.substr(i, j - i)};
      char* end = nullptr;
      double v = std::strtod(literal.c_str(), &end);
      if (end != literal.c_str() && std::isinf(v))
        return true;
      i = j - 1;
    }
  }
  return false;
}

/// The line with every integer literal that fits no 64-bit integer turned
/// into a double literal (".0" appended), or none when there is none.
caf::optional<std::string> widen_big_integers(std::string_view line) {
  std::string out;
  bool changed = false;
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < line.size())
        out.push_back(line[++i]);
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out.push_back(c);
      continue;
    }
    if ((c >= '0' && c <= '9') || c == '-') {
      size_t j = i + (c == '-' ? 1 : 0);
      size_t digits_start = j;
      while (j < line.size() && line[j] >= '0' && line[j] <= '9')
        ++j;
      bool integer = j > digits_start
                     && (j == line.size()
                         || std::strchr(".eE", line[j]) == nullptr);
      out.append(line.substr(i, j - i));
      // 19 digits may overflow int64, 20 uint64: let the parser say which
      // fit and widen only the longer ones.
      if (integer && j - digits_start > 19) {
        out.append(".0");
        changed = true;
      }
      i = j - 1; // j > i: a sign or at least one digit was taken
      continue;
    }
    out.push_back(c);
  }
  if (!changed)
    return caf::none;
  return out;
}

dead_letter make_dead_letter(std::string_view line, event_origin origin,
                             reject_reason reason, std::string detail,
                             std::string event_id = {}) {
  dead_letter dl;
  dl.event_id = std::move(event_id);
  dl.origin = std::move(origin);
  dl.reason = reason;
  dl.detail = std::move(detail);
  dl.payload = std::string{line};
  return dl;
}

} // namespace

decode_result event_decoder::decode(std::string_view line,
                                    event_origin origin, bool padded) {
  if (line.size() > max_line_bytes)
    return make_dead_letter(
      line.substr(0, over_long_payload_prefix), std::move(origin),
      reject_reason::line_too_long,
      fmt::format("line has {} bytes, at most {} allowed", line.size(),
                  max_line_bytes));
  element doc;
  auto err = parser_.parse(line.data(), line.size(), !padded).get(doc);
  if (err) {
    if (err == simdjson::UTF8_ERROR)
      return make_dead_letter(line, std::move(origin),
                              reject_reason::invalid_utf8,
                              "the line is not valid UTF-8");
    if (has_non_finite_token(line))
      return make_dead_letter(line, std::move(origin),
                              reject_reason::non_finite_number,
                              "a number is NaN, infinite or beyond the range "
                              "of a double");
    if (err == simdjson::NUMBER_ERROR) {
      // Valid JSON with an integer beyond 64 bits, which simdjson refuses:
      // read it as a double, so its field says it is out of range.
      if (auto widened = widen_big_integers(line)) {
        auto result = decode(*widened, origin, false);
        if (auto* ev = std::get_if<event>(&result)) {
          ev->raw = std::string{line};
        } else if (auto* dl = std::get_if<dead_letter>(&result)) {
          dl->payload = std::string{line};
        }
        return result;
      }
    }
    return make_dead_letter(line, std::move(origin),
                            reject_reason::malformed_json,
                            fmt::format("invalid JSON: {}",
                                        simdjson::error_message(err)));
  }
  if (doc.type() != element_type::OBJECT)
    return make_dead_letter(line, std::move(origin),
                            reject_reason::not_an_object,
                            fmt::format("an event must be a JSON object, got "
                                        "{}",
                                        json_type_name(doc.type())));
  event ev;
  try {
    fields top{doc.get_object().value_unsafe(), ""};
    // The id first, so that every later rejection can name its event.
    ev.id = top.req_string("id", max_id_chars);
    auto type_name = top.opt_string("type");
    if (!type_name)
      top.missing("type");
    auto type = parse_type(*type_name);
    if (!type)
      reject(reject_reason::unknown_event_type,
             fmt::format("type \"{}\" is not one of the six event types",
                         *type_name));
    ev.type = *type;
    if (auto t = top.opt_string("time")) {
      if (!is_rfc3339(*t))
        reject(reject_reason::invalid_value,
               fmt::format("time \"{}\" is not an RFC 3339 timestamp", *t));
      ev.time = std::move(*t);
    }
    element data;
    if (!top.find("data", data))
      top.missing("data");
    if (data.type() != element_type::OBJECT)
      top.wrong_type("data", "object", data);
    fields d{data.get_object().value_unsafe(), "data"};
    switch (ev.type) {
      case event_type::site_created:
      case event_type::site_updated:
        ev.site_data = decode_site(d);
        break;
      case event_type::site_deleted:
        ev.target_id = d.req_string("site_id", max_id_chars);
        break;
      case event_type::resource_flow_created:
      case event_type::resource_flow_updated:
        ev.flow_data = decode_flow(d);
        break;
      case event_type::resource_flow_deleted:
        ev.target_id = d.req_string("flow_id", max_id_chars);
        // Optional (v1.1): the flow's site, its routing key.
        if (auto site = d.opt_string("site_id", max_id_chars)) {
          if (site->empty())
            reject(reject_reason::out_of_range,
                   "data.site_id must not be empty");
          ev.flow_data.site_id = std::move(*site);
        }
        break;
    }
  } catch (rejection& r) {
    return make_dead_letter(line, std::move(origin), r.reason,
                            std::move(r.detail), std::move(ev.id));
  }
  ev.origin = std::move(origin);
  ev.raw = std::string{line};
  return ev;
}

namespace {

bool digits_at(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

} // namespace

bool is_rfc3339(std::string_view s) {
  // full-date "T" partial-time [time-offset], e.g. 2026-11-27T10:00:00Z
  int year, month, day, hour, minute, second;
  if (!digits_at(s, 0, 4, year) || s.size() < 19 || s[4] != '-'
      || !digits_at(s, 5, 2, month) || s[7] != '-'
      || !digits_at(s, 8, 2, day)
      || (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
      || !digits_at(s, 11, 2, hour) || s[13] != ':'
      || !digits_at(s, 14, 2, minute) || s[16] != ':'
      || !digits_at(s, 17, 2, second))
    return false;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23
      || minute > 59 || second > 60)
    return false;
  size_t i = 19;
  if (s[i] == '.') {
    size_t start = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9')
      ++i;
    if (i == start)
      return false;
  }
  // An ISO 8601 local date-time without offset is taken too (read as
  // UTC): producers often emit it, and rejecting whole events over an
  // informational field would lose data.
  if (i == s.size())
    return true;
  if (s[i] == 'Z' || s[i] == 'z')
    return i + 1 == s.size();
  if (s[i] != '+' && s[i] != '-')
    return false;
  int oh, om;
  return i + 6 == s.size() && digits_at(s, i + 1, 2, oh) && s[i + 3] == ':'
         && digits_at(s, i + 4, 2, om) && oh <= 23 && om <= 59;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80)
      ++n;
  return n;
}

std::string sanitize_utf8(std::string_view s) {
  if (simdjson::validate_utf8(s.data(), s.size()))
    return std::string{s};
  std::string out;
  out.reserve(s.size() + 16);
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3
                              : (c >> 3) == 0x1E ? 4 : 0;
    if (len > 0 && i + len <= s.size()
        && simdjson::validate_utf8(s.data() + i, len)) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD"); // U+FFFD REPLACEMENT CHARACTER
      ++i;
    }
  }
  return out;
}

} // namespace flowmatch
