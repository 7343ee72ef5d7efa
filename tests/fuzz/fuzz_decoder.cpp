// libFuzzer target: the NDJSON decoder and validator (messages/decoder.hpp)
// on any bytes as one line. Whatever the line, the decoder must return an
// event that keeps the contract's promises or a dead letter with a reason,
// and the padded and unpadded paths must agree.

#include "messages/decoder.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace flowmatch;

[[noreturn]] void broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_decoder: %s: %s\n", what, detail.c_str());
  std::abort();
}

void no_nul(const std::string& s, const char* field) {
  if (s.find('\0') != std::string::npos)
    broken("a decoded string holds U+0000", field);
}

/// The promises an accepted event keeps (events.md, v1.1).
void check_event(const event& ev) {
  if (ev.id.empty())
    broken("an accepted event has no id", ev.raw);
  no_nul(ev.id, "id");
  no_nul(ev.target_id, "target_id");
  switch (ev.type) {
    case event_type::site_created:
    case event_type::site_updated: {
      auto& s = ev.site_data;
      no_nul(s.site_id, "site_id");
      if (s.site_id.empty())
        broken("a site upsert has no site_id", ev.raw);
      if (!std::isfinite(s.lat) || s.lat < -90 || s.lat > 90
          || !std::isfinite(s.lon) || s.lon < -180 || s.lon > 180)
        broken("a site is off the globe", ev.raw);
      break;
    }
    case event_type::resource_flow_created:
    case event_type::resource_flow_updated: {
      auto& f = ev.flow_data;
      no_nul(f.flow_id, "flow_id");
      no_nul(f.site_id, "site_id");
      if (f.flow_id.empty() || f.site_id.empty())
        broken("a flow upsert has no flow_id or site_id", ev.raw);
      if (!(f.quantity > 0) || !std::isfinite(f.quantity)
          || !std::isfinite(f.annual_quantity) || !(f.annual_quantity > 0))
        broken("a flow quantity is not finite and positive", ev.raw);
      if (f.operating_hours
          && (!std::isfinite(*f.operating_hours) || *f.operating_hours <= 0))
        broken("operating hours are not finite and positive", ev.raw);
      if (f.temperature_c && !std::isfinite(*f.temperature_c))
        broken("a temperature is not finite", ev.raw);
      break;
    }
    case event_type::site_deleted:
    case event_type::resource_flow_deleted:
      if (ev.target_id.empty())
        broken("a delete names nothing", ev.raw);
      break;
  }
  (void) to_string(ev.type);
}

void check_letter(const dead_letter& dl) {
  if (static_cast<size_t>(dl.reason) >= reject_reason_count)
    broken("a dead letter has no valid reason", dl.detail);
  if (to_string(dl.reason).empty())
    broken("a reason without a name", dl.detail);
  if (dl.detail.empty())
    broken("a dead letter does not say why", std::string{to_string(dl.reason)});
}

event_decoder& decoder() {
  static event_decoder d;
  return d;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line{reinterpret_cast<const char*>(data), size};
  event_origin origin{"fuzz", 1};
  auto plain = decoder().decode(line, origin, false);
  // The same bytes with the padding the fast path may read past the end.
  std::vector<char> padded(size + decoder_padding);
  if (size > 0)
    std::memcpy(padded.data(), data, size);
  auto fast = decoder().decode(std::string_view{padded.data(), size}, origin,
                               true);
  if (plain.index() != fast.index())
    broken("padded and unpadded decoding disagree", std::string{line});
  if (auto* ev = std::get_if<event>(&plain)) {
    check_event(*ev);
    if (std::get<event>(fast).id != ev->id)
      broken("padded and unpadded decoding give other ids", ev->id);
  } else {
    auto& a = std::get<dead_letter>(plain);
    auto& b = std::get<dead_letter>(fast);
    check_letter(a);
    if (a.reason != b.reason)
      broken("padded and unpadded decoding give other reasons", a.detail);
  }
  return 0;
}
