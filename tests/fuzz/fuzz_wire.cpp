// libFuzzer target: the bytes a peer node could send as the payload of a
// cluster message, loaded with CAF's binary deserializer into each type
// that crosses nodes (the gateway's interface in actors/cluster.hpp:
// routed events, a partition's changes, a shard's resync, settled and
// forgotten ids; plus matches and dead letters). The first byte picks the
// type. What loads must be valid (every enum one of its values: the load
// callbacks in messages/ refuse the rest) and must save and load again to
// the same bytes.

#include "messages/batch.hpp"
#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"
#include "messages/match.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace flowmatch;

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_wire: %s\n", what);
  std::abort();
}

template <class Enum>
void in_range(Enum value, Enum last, const char* what) {
  if (static_cast<uint64_t>(value) > static_cast<uint64_t>(last))
    broken(what);
}

void finite(double v) {
  if (!std::isfinite(v))
    broken("a loaded number is not finite (CAF's encoder would hang on it)");
}

void valid(const site& s) {
  finite(s.lat);
  finite(s.lon);
}

void valid(const resource_flow& f) {
  finite(f.quantity);
  finite(f.annual_quantity);
  for (auto* o : {&f.operating_hours, &f.temperature_c, &f.max_transport_km})
    if (*o)
      finite(**o);
  in_range(f.direction, flow_direction::demand, "flow direction out of range");
  in_range(f.resource, resource_class::co2, "resource class out of range");
  (void) to_string(f.direction);
  (void) to_string(f.resource);
}

void valid(const event& e) {
  in_range(e.type, event_type::resource_flow_deleted,
           "event type out of range");
  (void) to_string(e.type);
  (void) e.site_key();
  valid(e.site_data);
  valid(e.flow_data);
}

void valid(const change& c) {
  in_range(c.kind, change::flow_deleted, "change kind out of range");
  valid(c.site_data);
  valid(c.flow_data);
}

void valid(const registry_snapshot& s) {
  for (auto& x : s.sites)
    valid(x);
  for (auto& f : s.flows)
    valid(f);
}

void valid(const dead_letter& d) {
  in_range(d.reason, reject_reason::permanent_db_error,
           "dead-letter reason out of range");
  (void) to_string(d.reason);
}

void valid(const match& m) {
  in_range(m.resource, resource_class::co2, "match class out of range");
  for (auto v : {m.distance_m, m.exchange_qty, m.score, m.s_size, m.s_dist,
                 m.s_econ, m.f_quality, m.f_taxonomy})
    finite(v);
  (void) to_string(m.resource);
}

void valid(const std::string&) {
}

template <class T>
void valid(const std::vector<T>& xs) {
  for (auto& x : xs)
    valid(x);
}

template <class T>
std::vector<char> save(T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  if (sink(x))
    broken("a loaded value does not save");
  return buf;
}

template <class T>
void load(const char* data, size_t size) {
  T x;
  caf::binary_deserializer source{nullptr, data, size};
  if (source(x))
    return; // refused: what a node does with bad bytes
  valid(x);
  auto bytes = save(x);
  T again;
  caf::binary_deserializer reload{nullptr, bytes};
  if (reload(again))
    broken("saved bytes do not load again");
  if (save(again) != bytes)
    broken("a value changes over save and load");
}

} // namespace

namespace {

/// Writes one seed: the selector byte, then a value's bytes.
template <class T>
void write_seed(const std::string& dir, uint8_t selector, T x) {
  auto bytes = save(x);
  bytes.insert(bytes.begin(), static_cast<char>(selector));
  auto path = dir + "/seed-" + std::to_string(selector);
  if (auto* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
}

void write_seeds(const std::string& dir) {
  event ev;
  ev.id = "e1";
  ev.type = event_type::resource_flow_created;
  ev.flow_data.flow_id = "f1";
  ev.flow_data.site_id = "s1";
  ev.flow_data.quantity = 12.5;
  ev.flow_data.unit = "MW";
  ev.flow_data.temperature_c = 90.0;
  ev.origin = event_origin{"redis:flowmatch:events:0", 7, "1-0"};
  ev.raw = R"({"id":"e1"})";
  change c;
  c.kind = change::flow_upserted;
  c.event_id = "e1";
  c.flow_data = ev.flow_data;
  registry_snapshot snap;
  site s;
  s.site_id = "s1";
  s.lat = 48.2;
  s.lon = 14.3;
  s.name = std::string{"Linz"};
  snap.sites.push_back(s);
  snap.flows.push_back(ev.flow_data);
  dead_letter dl;
  dl.event_id = "e2";
  dl.reason = reject_reason::orphan_flow;
  dl.detail = "no site";
  match m;
  m.supply_flow_id = "f1";
  m.demand_flow_id = "f2";
  m.flags = {"long_distance"};
  write_seed(dir, 0, std::vector<event>{ev, ev});
  write_seed(dir, 1, std::vector<change>{c});
  write_seed(dir, 2, snap);
  write_seed(dir, 3, std::vector<std::string>{"e1", "e2"});
  write_seed(dir, 4, ev);
  write_seed(dir, 5, c);
  write_seed(dir, 6, std::vector<dead_letter>{dl});
  write_seed(dir, 7, std::vector<match>{m});
}

} // namespace

/// `-write_seeds=DIR` writes one valid value of each type and exits
/// (tools/fuzz.sh seeds the corpus with them).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    std::string arg = (*argv)[i];
    if (arg.rfind("-write_seeds=", 0) == 0) {
      write_seeds(arg.substr(13));
      std::exit(0);
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto rest = reinterpret_cast<const char*>(data + 1);
  auto n = size - 1;
  switch (data[0] % 8) {
    case 0: load<std::vector<event>>(rest, n); break;       // route
    case 1: load<std::vector<change>>(rest, n); break;      // partition
    case 2: load<registry_snapshot>(rest, n); break;        // resync
    case 3: load<std::vector<std::string>>(rest, n); break; // settled, forget
    case 4: load<event>(rest, n); break;
    case 5: load<change>(rest, n); break;
    case 6: load<std::vector<dead_letter>>(rest, n); break;
    default: load<std::vector<match>>(rest, n); break;
  }
  return 0;
}
