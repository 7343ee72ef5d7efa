#include "core/slot_table.hpp"

#include <absl/hash/hash.h>

namespace flowmatch {

uint64_t slot_table::hash(std::string_view id) {
  return absl::Hash<std::string_view>{}(id);
}

uint32_t slot_table::probe(uint64_t hash) const {
  return find(hash, [](uint32_t) { return true; });
}

void slot_table::prefetch(uint64_t hash) const {
  if (!entries_.empty())
    __builtin_prefetch(&entries_[home(static_cast<uint32_t>(hash))]);
}

void slot_table::insert(uint64_t hash, uint32_t slot) {
  // At most 70 % full: a lookup probes about two entries, nearly always
  // in one line.
  if ((size_ + 1) * 10 > entries_.size() * 7)
    grow();
  auto h = static_cast<uint32_t>(hash);
  auto i = home(h);
  while (entries_[i].slot != none)
    i = (i + 1) & mask_;
  entries_[i] = entry{h, slot};
  ++size_;
}

void slot_table::erase(uint64_t hash, uint32_t slot) {
  if (entries_.empty())
    return;
  auto h = static_cast<uint32_t>(hash);
  auto i = home(h);
  for (;; i = (i + 1) & mask_) {
    if (entries_[i].slot == none)
      return; // not here
    if (entries_[i].hash == h && entries_[i].slot == slot)
      break;
  }
  // Backward shift: the entries after the gap move up into it unless that
  // would put them before their home, so every probe still finds its
  // entry before the first free one (no tombstones).
  for (auto j = (i + 1) & mask_;; j = (j + 1) & mask_) {
    auto& e = entries_[j];
    if (e.slot == none)
      break;
    // The gap at i lies cyclically within [home, j): move e there.
    auto from_home = (j - home(e.hash)) & mask_;
    auto gap_from_j = (j - i) & mask_;
    if (gap_from_j <= from_home) {
      entries_[i] = e;
      i = j;
    }
  }
  entries_[i] = entry{};
  --size_;
}

void slot_table::grow() {
  std::vector<entry> old;
  old.swap(entries_);
  entries_.assign(old.empty() ? 16 : old.size() * 2, entry{});
  mask_ = entries_.size() - 1;
  size_ = 0;
  for (auto& e : old)
    if (e.slot != none)
      insert(e.hash, e.slot);
}

} // namespace flowmatch
