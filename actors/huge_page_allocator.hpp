#pragma once

// An allocator for the match index's large arrays (flow slots, terms, match
// records, hash tables): blocks of 2 MiB and more are mapped on their own,
// aligned to 2 MiB and marked for transparent huge pages. A million flows
// take hundreds of MiB read at random; in 4 KiB pages nearly every read
// also misses the TLB (a page walk, costlier still in a virtual machine).
// Smaller blocks come from the ordinary heap. Where the kernel has no
// transparent huge pages, the advice is ignored and this is plain mmap.

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace flowmatch {

namespace detail {

constexpr size_t huge_page = size_t{2} << 20;

inline size_t huge_round(size_t bytes) {
  return (bytes + huge_page - 1) & ~(huge_page - 1);
}

/// Maps `bytes` (a multiple of 2 MiB) at a 2 MiB boundary, with the advice.
inline void* map_huge(size_t bytes) {
  // Map one huge page more, then cut the ends off to the boundary.
  auto span = bytes + huge_page;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    throw std::bad_alloc{};
  auto start = reinterpret_cast<uintptr_t>(raw);
  auto aligned = (start + huge_page - 1) & ~(huge_page - 1);
  if (aligned > start)
    munmap(raw, aligned - start);
  auto tail = start + span - (aligned + bytes);
  if (tail > 0)
    munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

} // namespace detail

template <class T>
class huge_page_allocator {
public:
  using value_type = T;

  huge_page_allocator() noexcept = default;
  template <class U>
  huge_page_allocator(const huge_page_allocator<U>&) noexcept {
  }

  T* allocate(size_t n) {
    auto bytes = n * sizeof(T);
    if (bytes < detail::huge_page)
      return std::allocator<T>{}.allocate(n);
    return static_cast<T*>(detail::map_huge(detail::huge_round(bytes)));
  }

  void deallocate(T* p, size_t n) noexcept {
    auto bytes = n * sizeof(T);
    if (bytes < detail::huge_page)
      std::allocator<T>{}.deallocate(p, n);
    else
      munmap(p, detail::huge_round(bytes));
  }

  template <class U>
  bool operator==(const huge_page_allocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const huge_page_allocator<U>&) const noexcept {
    return false;
  }
};

} // namespace flowmatch
