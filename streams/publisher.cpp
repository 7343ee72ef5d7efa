#include "streams/publisher.hpp"

#include "messages/routing_hash.hpp"
#include "streams/redis.hpp"

#include <simdjson.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

namespace flowmatch {

namespace {

class redis_publisher final : public event_publisher {
public:
  redis_publisher(const redis_publisher_settings& s, redis::endpoint where)
    : s_(s), max_len_(std::to_string(s.max_len)) {
    conn_ = redis::connection::open(where, s_.timeout, s_.timeout);
    if (conn_.broken())
      error_ = fmt::format("cannot connect to {}: {}", where.url(),
                           conn_.error());
  }

  bool publish(std::string_view event) override {
    if (!error_.empty())
      return false;
    auto key = s_.partitions > 1
                 ? partition_key(s_.stream, s_.partitions, event)
                 : s_.stream;
    if (s_.max_len > 0)
      conn_.append({"XADD", key, "MAXLEN", "~", max_len_, "*", "event",
                    event});
    else
      conn_.append({"XADD", key, "*", "event", event});
    ++outstanding_;
    if (outstanding_ >= s_.pipeline)
      return collect(outstanding_ - s_.pipeline / 2);
    return !conn_.broken() || fail_io();
  }

  bool flush() override {
    return error_.empty() && collect(outstanding_);
  }

  uint64_t confirmed() const override {
    return confirmed_;
  }

  const std::string& error() const override {
    return error_;
  }

private:
  /// Reads `n` answers, oldest first.
  bool collect(size_t n) {
    for (; n > 0; --n) {
      auto r = conn_.next_reply();
      if (!r)
        return fail_io();
      --outstanding_;
      if (r.view().is_error()) {
        error_ = fmt::format("XADD to {} refused after {} events: {}",
                             s_.stream, confirmed_, r.view().text());
        return false;
      }
      ++confirmed_;
    }
    return true;
  }

  bool fail_io() {
    error_ = fmt::format("Redis connection lost after {} confirmed events "
                         "({} unconfirmed: publish them again, duplicates "
                         "are harmless): {}",
                         confirmed_, outstanding_, conn_.error());
    return false;
  }

  redis_publisher_settings s_;
  std::string max_len_;
  redis::connection conn_;
  size_t outstanding_ = 0;
  uint64_t confirmed_ = 0;
  std::string error_;
};

class ndjson_publisher final : public event_publisher {
public:
  explicit ndjson_publisher(const std::string& path) : path_(path) {
    if (path == "-") {
      file_ = stdout;
      return;
    }
    file_ = std::fopen(path.c_str(), "ae");
    if (file_ == nullptr)
      error_ = fmt::format("cannot open {}: {}", path, std::strerror(errno));
  }

  ~ndjson_publisher() override {
    if (file_ && file_ != stdout)
      std::fclose(file_);
  }

  bool publish(std::string_view event) override {
    if (!error_.empty())
      return false;
    if (event.find('\n') != std::string_view::npos) {
      error_ = "an event must be one line (it holds a line end)";
      return false;
    }
    if (std::fwrite(event.data(), 1, event.size(), file_) != event.size()
        || std::fputc('\n', file_) == EOF)
      return fail("write");
    ++queued_;
    return true;
  }

  bool flush() override {
    if (!error_.empty())
      return false;
    if (std::fflush(file_) != 0)
      return fail("flush");
    // A pipe or a terminal cannot be synced; a file must be.
    if (file_ != stdout && ::fsync(::fileno(file_)) != 0)
      return fail("fsync");
    confirmed_ = queued_;
    return true;
  }

  uint64_t confirmed() const override {
    return confirmed_;
  }

  const std::string& error() const override {
    return error_;
  }

private:
  bool fail(const char* what) {
    error_ = fmt::format("cannot {} {}: {}", what, path_, std::strerror(errno));
    return false;
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t queued_ = 0;
  uint64_t confirmed_ = 0;
  std::string error_;
};

} // namespace

std::string partition_key(const std::string& stream, uint32_t partitions,
                          std::string_view event) {
  if (partitions <= 1)
    return stream;
  thread_local simdjson::dom::parser parser;
  std::string_view site;
  simdjson::padded_string padded{event};
  auto doc = parser.parse(padded);
  if (!doc.error()) {
    auto id = doc.value()["data"]["site_id"].get_string();
    if (!id.error())
      site = id.value();
  }
  return stream + ":"
         + std::to_string(site.empty() ? 0 : routing_slot(site, partitions));
}

std::unique_ptr<event_publisher>
make_redis_publisher(const redis_publisher_settings& settings,
                     std::string& error) {
  auto where = redis::parse_url(settings.url, error);
  if (!where) {
    error = fmt::format("{}: {}", settings.url, error);
    return nullptr;
  }
  if (settings.pipeline < 2) {
    error = "the pipeline must hold at least 2 commands";
    return nullptr;
  }
  auto p = std::make_unique<redis_publisher>(settings, *where);
  if (!p->error().empty()) {
    error = p->error();
    return nullptr;
  }
  return p;
}

std::unique_ptr<event_publisher> make_ndjson_publisher(const std::string& path,
                                                       std::string& error) {
  auto p = std::make_unique<ndjson_publisher>(path);
  if (!p->error().empty()) {
    error = p->error();
    return nullptr;
  }
  return p;
}

bool read_group_progress(const std::string& url, const std::string& stream,
                         const std::string& group, group_progress& out,
                         std::string& error) {
  auto where = redis::parse_url(url, error);
  if (!where)
    return false;
  auto conn = redis::connection::open(*where, std::chrono::seconds{5},
                                      std::chrono::seconds{5});
  if (conn.broken()) {
    error = conn.error();
    return false;
  }
  out = group_progress{};
  auto r = conn.command({"XINFO", "GROUPS", stream});
  if (!r) {
    error = conn.error();
    return false;
  }
  if (r.view().is_error()) {
    // No such key: no group either.
    if (r.view().text().find("no such key") != std::string_view::npos)
      return true;
    error = std::string{r.view().text()};
    return false;
  }
  auto row = redis::find_group(r.view(), group);
  if (row) {
    out.exists = true;
    out.pending = row->pending;
    out.consumers = row->consumers;
    out.lag = redis::checked_lag(conn, stream, *row);
  }
  return true;
}

} // namespace flowmatch
