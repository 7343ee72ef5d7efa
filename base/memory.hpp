#pragma once

// The process's memory as the kernel sees it, and giving freed memory back.

#include <cstddef>

namespace flowmatch {

/// Resident set size of this process in bytes (/proc/self/statm).
size_t resident_bytes();

/// Returns the heap's free pages to the kernel (glibc's malloc_trim) and
/// the resident bytes this gave back. glibc keeps what a burst of
/// allocations freed (a restore from the database copies every entity and
/// match once more than it keeps): 528 MB of 1.94 GB after restoring the
/// 10x log of tools/faults.py. Takes a while on a big heap; call it after
/// a burst, not per message.
size_t trim_free_memory();

} // namespace flowmatch
