#include "core/cluster_plan.hpp"

#include <charconv>

namespace flowmatch {

namespace {

constexpr std::string_view kind_names[] = {"shard", "match", "stream"};

/// splitmix64's finalizer: FNV-1a alone spreads the last bytes poorly.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

} // namespace

std::string resource_name(resource_id r) {
  return std::string{kind_names[static_cast<size_t>(r.kind)]} + "/"
         + std::to_string(r.index);
}

std::optional<resource_id> parse_resource(std::string_view name) {
  auto slash = name.find('/');
  if (slash == std::string_view::npos)
    return std::nullopt;
  auto kind = name.substr(0, slash);
  auto number = name.substr(slash + 1);
  for (size_t k = 0; k < std::size(kind_names); ++k) {
    if (kind != kind_names[k])
      continue;
    uint32_t index = 0;
    auto [end, ec] = std::from_chars(number.data(),
                                     number.data() + number.size(), index);
    if (ec != std::errc{} || end != number.data() + number.size()
        || number.empty())
      return std::nullopt;
    return resource_id{static_cast<resource_kind>(k), index};
  }
  return std::nullopt;
}

uint32_t cluster_shape::count(resource_kind k) const {
  switch (k) {
    case resource_kind::shard:
      return shards;
    case resource_kind::match:
      return match_partitions;
    case resource_kind::stream:
      return stream_partitions;
  }
  return 0;
}

std::vector<resource_id> cluster_shape::all() const {
  std::vector<resource_id> out;
  for (auto k : {resource_kind::shard, resource_kind::match,
                 resource_kind::stream})
    for (uint32_t i = 0; i < count(k); ++i)
      out.push_back(resource_id{k, i});
  return out;
}

const std::string* rendezvous_owner(const std::string& resource,
                                    const std::vector<std::string>& members) {
  const std::string* best = nullptr;
  uint64_t best_weight = 0;
  auto r = fnv1a64(resource);
  for (auto& m : members) {
    auto w = mix(fnv1a64(m) ^ mix(r));
    if (!best || w > best_weight || (w == best_weight && m < *best)) {
      best = &m;
      best_weight = w;
    }
  }
  return best;
}

} // namespace flowmatch
