#pragma once

// An output file whose every write, flush and close is checked: a full disk
// or a lost device is an error that names the file and the cause, never a
// silently short file. Two modes:
// - a stream (the dead letters, the match stream): lines are appended as
//   they come, readable while the node runs; `flush` makes them durable;
// - a whole file (the state snapshot): written under a temporary name in
//   the same directory and renamed into place by `commit`, so a reader sees
//   the old file or the complete new one, never a file cut mid-line.
// `-` means stdout (a stream). Blocking I/O: for detached actors only.

#include <cstdio>
#include <string>
#include <string_view>

namespace flowmatch {

class output_file {
public:
  enum mode { stream, whole };

  output_file() = default;
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  ~output_file();

  /// Opens `path`; false (with `error()`) when it cannot.
  bool open(const std::string& path, mode m);

  bool is_open() const {
    return file_ != nullptr;
  }

  /// Writes `bytes`; false once any write failed (the error is sticky).
  bool write(std::string_view bytes);

  /// Flushes to the kernel and to the disk (fsync); false on failure.
  bool flush();

  /// Flushes, closes and (whole files) renames into place. After a failure
  /// the temporary file is removed and the target left as it was.
  bool commit();

  /// What failed, naming the file: "state.ndjson: write: No space left on
  /// device". Empty while nothing failed.
  const std::string& error() const {
    return error_;
  }

private:
  bool fail(const char* what, int err);

  std::string path_;
  std::string temp_;
  std::FILE* file_ = nullptr;
  bool owns_ = false;
  std::string error_;
};

} // namespace flowmatch
