#include "messages/encoder.hpp"

#include "base/secrets.hpp"
#include "messages/decoder.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace flowmatch {

void append_json_string(std::string& out, std::string_view raw) {
  std::string clean = sanitize_utf8(raw);
  out.push_back('"');
  for (char c : clean) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out.append(fmt::format("\\u{:04x}", static_cast<unsigned>(c)));
        else
          out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_json_number(std::string& out, double v) {
  // JSON has no NaN or infinity, and no output may hold one (events.md
  // v1.1): the validator keeps them out; this is the last line.
  if (!std::isfinite(v))
    throw std::domain_error(fmt::format("refusing to encode the non-finite "
                                        "number {} as JSON",
                                        v));
  // fmt prints the shortest representation that reads back to the same
  // double, so snapshots round-trip exactly.
  fmt::format_to(std::back_inserter(out), "{}", v);
}

namespace {

/// Builds one JSON object field by field.
class object_writer {
public:
  explicit object_writer(std::string& out) : out_(out) {
    out_.push_back('{');
  }

  void key(std::string_view k) {
    if (!first_)
      out_.push_back(',');
    first_ = false;
    append_json_string(out_, k);
    out_.push_back(':');
  }

  void str(std::string_view k, std::string_view v) {
    key(k);
    append_json_string(out_, v);
  }

  void num(std::string_view k, double v) {
    key(k);
    append_json_number(out_, v);
  }

  void integer(std::string_view k, int64_t v) {
    key(k);
    fmt::format_to(std::back_inserter(out_), "{}", v);
  }

  void boolean(std::string_view k, bool v) {
    key(k);
    out_.append(v ? "true" : "false");
  }

  void raw(std::string_view k, std::string_view json) {
    key(k);
    out_.append(json);
  }

  template <class T, class F>
  void opt(std::string_view k, const caf::optional<T>& v, F write) {
    if (v)
      write(k, *v);
  }

  void close() {
    out_.push_back('}');
  }

private:
  std::string& out_;
  bool first_ = true;
};

/// A stable, short event id for snapshot lines: ids are limited to 128
/// characters, entity ids too, so a prefix would not always fit.
std::string snapshot_id(std::string_view kind, std::string_view key) {
  // 64-bit FNV-1a; collisions would need 2^32 entities to become likely.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("snapshot-{}-{:016x}", kind, h);
}

std::string snapshot_line(std::string_view id, std::string_view type,
                          const std::string& data) {
  std::string out;
  object_writer w{out};
  w.str("id", id);
  w.str("type", type);
  w.raw("data", data);
  w.close();
  return out;
}

} // namespace

std::string site_data_json(const site& s) {
  std::string out;
  object_writer w{out};
  auto str = [&](std::string_view k, const std::string& v) { w.str(k, v); };
  w.str("site_id", s.site_id);
  w.opt("name", s.name, str);
  w.num("lat", s.lat);
  w.num("lon", s.lon);
  w.opt("country", s.country, str);
  w.opt("nace", s.nace, str);
  if (s.version)
    w.integer("version", *s.version);
  w.close();
  return out;
}

std::string flow_data_json(const resource_flow& f) {
  std::string out;
  object_writer w{out};
  auto str = [&](std::string_view k, const std::string& v) { w.str(k, v); };
  auto num = [&](std::string_view k, double v) { w.num(k, v); };
  auto boolean = [&](std::string_view k, bool v) { w.boolean(k, v); };
  w.str("flow_id", f.flow_id);
  w.str("site_id", f.site_id);
  w.str("direction", to_string(f.direction));
  w.str("resource", to_string(f.resource));
  w.num("quantity", f.quantity);
  w.str("unit", f.unit);
  w.opt("operating_hours", f.operating_hours, num);
  w.opt("temperature_c", f.temperature_c, num);
  w.opt("medium", f.medium, str);
  w.opt("ewc", f.ewc, str);
  if (f.accepts_ewc) {
    w.key("accepts_ewc");
    out.push_back('[');
    for (size_t i = 0; i < f.accepts_ewc->size(); ++i) {
      if (i > 0)
        out.push_back(',');
      append_json_string(out, (*f.accepts_ewc)[i]);
    }
    out.push_back(']');
  }
  w.opt("hazardous", f.hazardous, boolean);
  w.opt("accepts_hazardous", f.accepts_hazardous, boolean);
  w.opt("max_transport_km", f.max_transport_km, num);
  if (f.version)
    w.integer("version", *f.version);
  w.close();
  return out;
}

std::string site_snapshot_line(const site& s) {
  return snapshot_line(snapshot_id("site", s.site_id), "site_created",
                       site_data_json(s));
}

std::string flow_snapshot_line(const resource_flow& f) {
  return snapshot_line(snapshot_id("flow", f.flow_id),
                       "resource_flow_created", flow_data_json(f));
}

std::string dead_letter_line(const dead_letter& dl) {
  std::string out;
  object_writer w{out};
  w.str("reason", to_string(dl.reason));
  w.str("detail", mask_secrets(dl.detail));
  if (dl.event_id.empty()) {
    w.key("event_id");
    out.append("null");
  } else {
    w.str("event_id", dl.event_id);
  }
  w.str("source", dl.origin.source);
  if (dl.origin.entry.empty())
    w.integer("line", static_cast<int64_t>(dl.origin.line));
  else
    w.str("entry_id", dl.origin.entry);
  w.integer("attempts", dl.attempts);
  w.str("payload", dl.payload);
  w.close();
  return out;
}

} // namespace flowmatch
