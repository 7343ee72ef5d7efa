#include "actors/ndjson_source.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace flowmatch {

ndjson_source_state::~ndjson_source_state() {
  if (owns_fd && fd >= 0)
    ::close(fd);
}

namespace {

using source_ptr = source_actor::stateful_pointer<ndjson_source_state>;

bool all_blank(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
      return false;
  return true;
}

void reject_line(source_ptr self, dead_letter dl) {
  auto& st = self->state;
  st.stats.count_rejection(dl.reason);
  st.rejects.push_back(std::move(dl));
}

void handle_line(source_ptr self, const char* p, size_t n) {
  auto& st = self->state;
  ++st.line_no;
  ++st.stats.lines;
  if (n > 0 && p[n - 1] == '\r')
    --n;
  if (all_blank(p, n)) {
    ++st.stats.blank_lines; // they separate nothing and carry nothing
    return;
  }
  // The buffer has decoder_padding spare bytes past any line in it.
  auto result = st.decoder.decode(std::string_view{p, n},
                                  event_origin{st.source_name, st.line_no},
                                  true);
  if (auto* ev = std::get_if<event>(&result)) {
    ++st.stats.events;
    if (!st.seen.admit(ev->id, st.now_ms)) {
      ++st.stats.duplicates;
      return;
    }
    st.batch.push_back(std::move(*ev));
  } else {
    auto& dl = std::get<dead_letter>(result);
    if (st.last_line_cut)
      // The producer was likely still writing it: say so, so an operator
      // knows to send it again rather than fix it.
      dl.detail = "the last line was cut short: intake stopped before its "
                  "line end arrived (" + dl.detail + ")";
    reject_line(self, std::move(dl));
  }
}

void finish_skip(source_ptr self) {
  auto& st = self->state;
  ++st.line_no;
  ++st.stats.lines;
  dead_letter dl;
  dl.origin = event_origin{st.source_name, st.line_no};
  dl.reason = reject_reason::line_too_long;
  dl.detail = "line has " + std::to_string(st.skip_bytes)
              + " bytes, at most " + std::to_string(max_line_bytes)
              + " allowed; kept the first "
              + std::to_string(st.skip_prefix.size());
  dl.payload = std::move(st.skip_prefix);
  reject_line(self, std::move(dl));
  st.skipping = false;
  st.skip_prefix.clear();
  st.skip_bytes = 0;
}

/// Splits complete lines out of the buffer until the batch is full.
void extract_lines(source_ptr self, bool ignore_batch_limit) {
  auto& st = self->state;
  char* data = st.buf.data();
  while (st.begin < st.end) {
    if (!ignore_batch_limit && st.batch.size() >= st.settings.batch_size)
      return;
    auto* nl = static_cast<char*>(
      std::memchr(data + st.begin, '\n', st.end - st.begin));
    if (st.skipping) {
      if (nl == nullptr) {
        st.skip_bytes += st.end - st.begin;
        st.begin = st.end;
        return;
      }
      st.skip_bytes += static_cast<size_t>(nl - (data + st.begin));
      st.begin = static_cast<size_t>(nl - data) + 1;
      finish_skip(self);
      continue;
    }
    if (nl == nullptr) {
      if (st.end - st.begin > max_line_bytes) {
        // Too long already: keep a prefix for the dead letter and drop the
        // rest as it arrives, never holding the whole line.
        st.skipping = true;
        st.skip_prefix.assign(data + st.begin, over_long_payload_prefix);
        st.skip_bytes = st.end - st.begin;
        st.begin = st.end;
      }
      return;
    }
    auto len = static_cast<size_t>(nl - (data + st.begin));
    handle_line(self, data + st.begin, len);
    st.begin += len + 1;
  }
}

/// Reads once, at most `max_bytes`. With `wait`, a stream is first polled
/// for up to the poll interval. Returns the bytes read: 0 when nothing
/// arrived in that time (or at end of input, which sets `eof`).
size_t fill(source_ptr self, bool wait,
          size_t max_bytes = std::numeric_limits<size_t>::max()) {
  auto& st = self->state;
  if (st.is_stream) {
    pollfd pfd{st.fd, POLLIN, 0};
    int timeout = wait ? static_cast<int>(st.settings.poll_interval.count())
                       : 0;
    int r = ::poll(&pfd, 1, timeout);
    if (r == 0)
      return 0;
    if (r < 0) {
      if (errno != EINTR)
        st.eof = true;
      return 0;
    }
  }
  if (st.begin > 0) {
    std::memmove(st.buf.data(), st.buf.data() + st.begin, st.end - st.begin);
    st.end -= st.begin;
    st.begin = 0;
  }
  auto capacity = st.buf.size() - decoder_padding;
  auto room = std::min({capacity - st.end, st.settings.read_size, max_bytes});
  auto n = ::read(st.fd, st.buf.data() + st.end, room);
  if (n > 0) {
    st.end += static_cast<size_t>(n);
    return static_cast<size_t>(n);
  }
  if (n == 0) {
    st.eof = true;
  } else if (errno != EINTR && errno != EAGAIN) {
    // Not an end of input: what was read so far is applied, and the run
    // fails with its own exit code.
    st.stats.read_error = fmt::format("read error on {} after {} lines: {}",
                                      st.source_name, st.line_no,
                                      std::strerror(errno));
    log()->error("{} {}", self->name(), st.stats.read_error);
    st.eof = true;
  }
  return 0;
}

void flush_rejects(source_ptr self) {
  auto& st = self->state;
  if (st.rejects.empty())
    return;
  if (st.dead_letters)
    self->send(st.dead_letters, std::move(st.rejects));
  st.rejects.clear();
}

void maybe_report(source_ptr self) {
  auto& st = self->state;
  if (!st.input_done || st.outstanding > 0 || st.reported)
    return;
  flush_rejects(self);
  st.reported = true;
  uint64_t rejected = 0;
  for (auto n : st.stats.rejected)
    rejected += n;
  log()->info("{} {}: {} lines, {} events, {} rejected", self->name(),
              st.source_name, st.stats.lines, st.stats.events, rejected);
  self->send(st.listener, eof_atom::value, st.stats);
  self->quit();
}

void schedule_read(source_ptr self);

void send_batch(source_ptr self) {
  auto& st = self->state;
  flush_rejects(self);
  if (st.batch.empty())
    return;
  ++st.outstanding;
  std::vector<event> batch;
  batch.swap(st.batch);
  batch.reserve(0);
  st.batch.reserve(st.settings.batch_size);
  // Waiting here is the backpressure; it lasts as long as the slowest
  // stage needs (a database outage), up to the stall limit.
  self->request(st.dispatcher, st.settings.admission_timeout,
                ingest_atom::value,
                std::move(batch))
    .then(
      [self](caf::ok_atom) {
        --self->state.outstanding;
        schedule_read(self);
        maybe_report(self);
      },
      [self](caf::error& err) {
        log()->critical("{} the dispatcher refused a batch: {}",
                        self->name(), self->system().render(err));
        self->quit(err);
      });
}

/// No more input (end of file, or stop): decode what is buffered,
/// including a last line without line end, and send it all.
void finish_input(source_ptr self) {
  auto& st = self->state;
  if (st.input_done)
    return;
  extract_lines(self, true);
  if (st.skipping)
    finish_skip(self);
  else if (st.begin < st.end) {
    st.last_line_cut = st.stopping && !st.eof;
    handle_line(self, st.buf.data() + st.begin, st.end - st.begin);
    st.begin = st.end;
  }
  send_batch(self);
  st.input_done = true;
  maybe_report(self);
}

void schedule_read(source_ptr self) {
  auto& st = self->state;
  if (st.read_scheduled || st.input_done
      || st.outstanding >= st.settings.max_outstanding)
    return;
  st.read_scheduled = true;
  self->send(self, read_atom::value);
}

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

void on_read(source_ptr self) {
  auto& st = self->state;
  st.read_scheduled = false;
  st.now_ms = wall_clock_ms();
  if (st.input_done)
    return;
  while (st.outstanding < st.settings.max_outstanding && !st.eof) {
    extract_lines(self, false);
    if (st.batch.size() >= st.settings.batch_size) {
      send_batch(self);
      continue;
    }
    // Wait on a pipe only when there is nothing to send meanwhile; with a
    // partial batch, send it rather than sit on it.
    if (fill(self, st.batch.empty()) == 0 && !st.eof) {
      if (!st.batch.empty())
        send_batch(self);
      break;
    }
  }
  if (st.eof)
    finish_input(self);
  else
    schedule_read(self);
}

void on_stop(source_ptr self) {
  auto& st = self->state;
  if (st.stopping || st.input_done)
    return;
  st.stopping = true;
  // A pipe may hold lines the producer wrote before the signal: take what
  // it holds now, without waiting, so none of it is lost; but not what a
  // busy producer writes after it, or the drain would never end.
  if (st.is_stream) {
    int held = 0;
    if (::ioctl(st.fd, FIONREAD, &held) != 0)
      held = 0;
    auto left = static_cast<size_t>(std::max(held, 0));
    while (left > 0 && !st.eof) {
      auto n = fill(self, false, left);
      if (n == 0)
        break;
      left -= std::min(left, n);
      extract_lines(self, true);
    }
  }
  log()->info("{} stopping intake of {} after {} lines", self->name(),
              st.source_name, st.line_no);
  finish_input(self);
}

} // namespace

source_actor::behavior_type
ndjson_source(source_actor::stateful_pointer<ndjson_source_state> self,
              ndjson_source_settings settings, dispatcher_actor dispatcher,
              source_listener_actor listener,
              dead_letter_sink_actor dead_letters,
              processed_ids already_applied) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.seen = event_id_window{st.settings.dedup_retention.count()};
  st.now_ms = wall_clock_ms();
  for (size_t i = 0; i < already_applied.ids.size(); ++i)
    st.seen.remember(already_applied.ids[i],
                     i < already_applied.applied_ms.size()
                       ? already_applied.applied_ms[i]
                       : st.now_ms);
  // Old ids leave the window one shard per tick: a full sweep takes 64
  // ticks, so an id outlives its retention by at most that much.
  auto sweep = std::clamp(st.settings.dedup_retention
                            / static_cast<int>(event_id_window::shard_count),
                          std::chrono::milliseconds{1},
                          std::chrono::milliseconds{1000});
  st.dispatcher = std::move(dispatcher);
  st.listener = std::move(listener);
  st.dead_letters = std::move(dead_letters);
  st.buf.resize(max_line_bytes + st.settings.read_size + decoder_padding + 1);
  st.batch.reserve(st.settings.batch_size);
  if (st.settings.path == "-") {
    st.fd = STDIN_FILENO;
    st.source_name = "stdin";
  } else {
    st.fd = ::open(st.settings.path.c_str(), O_RDONLY | O_CLOEXEC);
    st.owns_fd = true;
    st.source_name = st.settings.path;
  }
  if (st.fd < 0) {
    st.stats.read_error = fmt::format("cannot open {}: {}", st.settings.path,
                                      std::strerror(errno));
    log()->critical("{} {}", self->name(), st.stats.read_error);
    st.eof = true;
  } else {
    struct stat sb {};
    if (::fstat(st.fd, &sb) == 0)
      st.is_stream = S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)
                     || S_ISCHR(sb.st_mode);
  }
  schedule_read(self);
  log()->info("{} reading {}", self->name(), st.source_name);
  self->delayed_send(self, sweep, expire_atom::value);
  return {
    [self](read_atom) { on_read(self); },
    [self](stop_atom) { on_stop(self); },
    [self](forget_atom, const std::vector<std::string>& ids) {
      for (auto& id : ids)
        self->state.seen.forget(id);
    },
    [self, sweep](expire_atom) {
      self->state.seen.expire_next_shard(wall_clock_ms());
      self->delayed_send(self, sweep, expire_atom::value);
    },
  };
}

} // namespace flowmatch
