#include "base/memory.hpp"

#include <malloc.h>
#include <unistd.h>

#include <fstream>

namespace flowmatch {

size_t resident_bytes() {
  std::ifstream statm{"/proc/self/statm"};
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

size_t trim_free_memory() {
  auto before = resident_bytes();
  ::malloc_trim(0);
  auto after = resident_bytes();
  return before > after ? before - after : 0;
}

} // namespace flowmatch
