#pragma once

// The match index's map from a flow id to the flow's slot, as small as a
// hash map can be: an open-addressing table of 8-byte entries (32 bits of
// the id's hash and the slot), eight to a cache line, probed linearly. It
// keeps no ids: the index holds each flow's id in its slot, and a lookup
// confirms a candidate there (`is_id(slot)`), a line the index reads
// anyway. So a lookup costs one line of the table besides, where a general
// hash map with string keys costs two (control bytes, then the entry) and
// stores every id a second time. And a lookup can be split: `prefetch`
// the line, later `probe` it for the slot without confirming, which is
// what the batch pipeline needs. Pure logic, no actors.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace flowmatch {

class slot_table {
public:
  static constexpr uint32_t none = UINT32_MAX;

  /// The hash every call takes (computed once per id by the caller).
  static uint64_t hash(std::string_view id);

  /// The slot of the entry with this hash for which `is_id(slot)` holds,
  /// or `none`.
  template <class IsId>
  uint32_t find(uint64_t hash, IsId&& is_id) const;

  /// The first slot stored with this hash, unconfirmed (it may belong to
  /// another id with the same 32 hash bits): a hint for prefetching.
  uint32_t probe(uint64_t hash) const;

  /// Hints to the CPU to load the line a lookup of this hash starts at.
  void prefetch(uint64_t hash) const;

  /// Adds an entry; the caller makes sure its id is not in the table.
  void insert(uint64_t hash, uint32_t slot);

  /// Removes the entry of `slot` stored with this hash, if any.
  void erase(uint64_t hash, uint32_t slot);

  size_t size() const {
    return size_;
  }

private:
  struct entry {
    uint32_t hash = 0;
    uint32_t slot = none; ///< none: the entry is free
  };

  size_t home(uint32_t hash) const {
    return hash & mask_;
  }
  void grow();

  std::vector<entry> entries_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

template <class IsId>
uint32_t slot_table::find(uint64_t hash, IsId&& is_id) const {
  if (entries_.empty())
    return none;
  auto h = static_cast<uint32_t>(hash);
  for (auto i = home(h);; i = (i + 1) & mask_) {
    const auto& e = entries_[i];
    if (e.slot == none)
      return none;
    if (e.hash == h && is_id(e.slot))
      return e.slot;
  }
}

} // namespace flowmatch
