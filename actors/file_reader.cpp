// The reader of a file or of stdin (a pipe, a terminal): large reads into
// one buffer, lines split in place, over-long lines dropped as they arrive.

#include "actors/line_reader.hpp"

#include "messages/decoder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <optional>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace flowmatch {

namespace {

class file_reader final : public line_reader {
public:
  explicit file_reader(const reader_settings& s) : settings_(s) {
    buf_.resize(max_line_bytes + settings_.read_size + decoder_padding + 1);
    if (s.path == "-") {
      fd_ = STDIN_FILENO;
      name_ = "stdin";
    } else {
      fd_ = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
      owns_fd_ = true;
      name_ = s.path;
    }
    if (fd_ < 0) {
      error_ = fmt::format("cannot open {}: {}", s.path, std::strerror(errno));
      eof_ = true;
      return;
    }
    struct stat sb {};
    if (::fstat(fd_, &sb) == 0)
      is_stream_ = S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)
                   || S_ISCHR(sb.st_mode);
  }

  ~file_reader() override {
    if (owns_fd_ && fd_ >= 0)
      ::close(fd_);
  }

  const std::string& name() const override {
    return name_;
  }

  const std::string& error() const override {
    return error_;
  }

  void stop() override {
    if (stopped_)
      return;
    stopped_ = true;
    // A pipe may hold lines the producer wrote before the stop: take what
    // it holds now, but not what a busy producer writes after it, or the
    // drain would never end. A file ends at what is buffered.
    budget_ = 0;
    if (is_stream_) {
      int held = 0;
      if (::ioctl(fd_, FIONREAD, &held) == 0)
        budget_ = static_cast<size_t>(std::max(held, 0));
    }
  }

  input_item next(bool wait) override {
    for (;;) {
      if (auto item = split())
        return *item;
      // The buffer holds no complete line: read more, unless the input is
      // over.
      bool exhausted = eof_ || (stopped_ && budget_ == 0);
      if (!exhausted) {
        auto n = fill(wait && !stopped_);
        if (n > 0)
          continue;
        if (!eof_ && !stopped_)
          return item_of(input_item::nothing_yet);
        if (!eof_)
          budget_ = 0; // stopped and the pipe held less than it said
        continue;
      }
      return last_item();
    }
  }

private:
  input_item item_of(input_item::kind_t kind) {
    input_item x;
    x.kind = kind;
    x.origin = event_origin{name_, line_no_};
    return x;
  }

  /// The next complete line (or an over-long one) in the buffer, if any.
  std::optional<input_item> split() {
    char* data = buf_.data();
    while (begin_ < end_) {
      auto* nl = static_cast<char*>(
        std::memchr(data + begin_, '\n', end_ - begin_));
      if (skipping_) {
        if (nl == nullptr) {
          skip_bytes_ += end_ - begin_;
          begin_ = end_;
          return std::nullopt;
        }
        skip_bytes_ += static_cast<size_t>(nl - (data + begin_));
        begin_ = static_cast<size_t>(nl - data) + 1;
        return finish_skip();
      }
      if (nl == nullptr) {
        if (end_ - begin_ > max_line_bytes) {
          // Too long already: keep a prefix for the dead letter and drop
          // the rest as it arrives, never holding the whole line.
          skipping_ = true;
          skip_prefix_.assign(data + begin_, over_long_payload_prefix);
          skip_bytes_ = end_ - begin_;
          begin_ = end_;
        }
        return std::nullopt;
      }
      auto len = static_cast<size_t>(nl - (data + begin_));
      auto* p = data + begin_;
      begin_ += len + 1;
      return line_item(p, len, false);
    }
    return std::nullopt;
  }

  input_item line_item(const char* p, size_t len, bool cut) {
    if (len > 0 && p[len - 1] == '\r')
      --len;
    ++line_no_;
    auto x = item_of(input_item::line);
    x.text = std::string_view{p, len};
    x.cut = cut;
    return x;
  }

  input_item finish_skip() {
    ++line_no_;
    auto x = item_of(input_item::too_long);
    held_prefix_ = std::move(skip_prefix_);
    x.text = held_prefix_;
    x.bytes = skip_bytes_;
    skipping_ = false;
    skip_prefix_.clear();
    skip_bytes_ = 0;
    return x;
  }

  /// At the end of input: a line without line end, then `end`.
  input_item last_item() {
    if (skipping_)
      return finish_skip();
    if (begin_ < end_) {
      auto* p = buf_.data() + begin_;
      auto len = end_ - begin_;
      begin_ = end_;
      return line_item(p, len, stopped_ && !eof_);
    }
    return item_of(input_item::end);
  }

  /// Reads once (at most the stop budget after a stop). With `wait`, a
  /// stream is first polled for up to the poll interval. Returns the bytes
  /// read: 0 when nothing arrived or at end of input (which sets eof_).
  size_t fill(bool wait) {
    if (is_stream_) {
      pollfd pfd{fd_, POLLIN, 0};
      int timeout = wait ? static_cast<int>(settings_.poll_interval.count())
                         : 0;
      int r = ::poll(&pfd, 1, timeout);
      if (r == 0)
        return 0;
      if (r < 0) {
        if (errno != EINTR)
          eof_ = true;
        return 0;
      }
    }
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    auto capacity = buf_.size() - decoder_padding;
    auto room = std::min(capacity - end_, settings_.read_size);
    if (stopped_)
      room = std::min(room, budget_);
    auto n = ::read(fd_, buf_.data() + end_, room);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      if (stopped_)
        budget_ -= std::min(budget_, static_cast<size_t>(n));
      return static_cast<size_t>(n);
    }
    if (n == 0) {
      eof_ = true;
    } else if (errno != EINTR && errno != EAGAIN) {
      // Not an end of input: what was read so far is applied, and the run
      // fails with its own exit code.
      error_ = fmt::format("read error on {} after {} lines: {}", name_,
                           line_no_, std::strerror(errno));
      eof_ = true;
    }
    return 0;
  }

  reader_settings settings_;
  std::string name_;
  int fd_ = -1;
  bool owns_fd_ = false;
  bool is_stream_ = false;
  std::vector<char> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool skipping_ = false;
  std::string skip_prefix_;
  std::string held_prefix_;
  size_t skip_bytes_ = 0;
  uint64_t line_no_ = 0;
  bool eof_ = false;
  bool stopped_ = false;
  /// After a stop: bytes the pipe held at the stop, still to read.
  size_t budget_ = std::numeric_limits<size_t>::max();
  std::string error_;
};

} // namespace

std::unique_ptr<line_reader>
open_file_reader(const reader_settings& settings) {
  return std::make_unique<file_reader>(settings);
}

std::unique_ptr<line_reader> open_reader(const reader_settings& settings) {
  if (!settings.stream.url.empty())
    return open_stream_reader(settings.stream, settings.poll_interval);
  return open_file_reader(settings);
}

} // namespace flowmatch
