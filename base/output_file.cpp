#include "base/output_file.hpp"

#include <cerrno>
#include <cstring>

#include <unistd.h>

namespace flowmatch {

output_file::~output_file() {
  if (file_ != nullptr && owns_)
    std::fclose(file_);
  if (!temp_.empty())
    ::unlink(temp_.c_str()); // never committed: leave the target alone
}

bool output_file::fail(const char* what, int err) {
  if (error_.empty())
    error_ = path_ + ": " + what + ": " + std::strerror(err);
  return false;
}

bool output_file::open(const std::string& path, mode m) {
  path_ = path;
  if (path == "-") {
    file_ = stdout;
    return true;
  }
  std::string target = path;
  if (m == whole) {
    temp_ = path + ".tmp." + std::to_string(::getpid());
    target = temp_;
  }
  file_ = std::fopen(target.c_str(), "w");
  if (file_ == nullptr) {
    temp_.clear();
    return fail("open", errno);
  }
  owns_ = true;
  return true;
}

bool output_file::write(std::string_view bytes) {
  if (!error_.empty() || file_ == nullptr)
    return false;
  errno = 0;
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
    return fail("write", errno != 0 ? errno : EIO);
  return true;
}

bool output_file::flush() {
  if (!error_.empty() || file_ == nullptr)
    return false;
  if (std::fflush(file_) != 0)
    return fail("flush", errno);
  // stdout may be a pipe or terminal: nothing to sync there.
  if (owns_ && ::fsync(::fileno(file_)) != 0 && errno != EINVAL)
    return fail("fsync", errno);
  return true;
}

bool output_file::commit() {
  bool ok = flush();
  if (file_ != nullptr && owns_) {
    if (std::fclose(file_) != 0 && ok)
      ok = fail("close", errno);
    file_ = nullptr;
  }
  if (!temp_.empty()) {
    if (ok && std::rename(temp_.c_str(), path_.c_str()) != 0)
      ok = fail("rename into place", errno);
    if (!ok)
      ::unlink(temp_.c_str());
    temp_.clear();
  }
  return ok;
}

} // namespace flowmatch
