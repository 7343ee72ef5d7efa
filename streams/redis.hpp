#pragma once

// The hiredis wall: the only place that includes hiredis (tools/
// check_layers.py enforces it). A blocking connection with commands as
// argument vectors (never formatted strings: values cannot inject
// commands), pipelining, and the parsing of Redis Streams replies
// (ingest.md). Callers that block on it run in detached actors or in
// plain threads (the publisher tool), never on scheduler threads.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;
struct redisReply;
struct redisReader;

namespace flowmatch::redis {

/// The most elements one reply array may announce. hiredis 0.14 allocates
/// an array's element table as soon as it reads the header, before any
/// element arrives: a peer sending `*666666662` made it ask for 5 GB
/// (found by fuzz-redis-reply). Our largest reply is a read batch
/// (ingest.read-count entries of a few fields each), far below this.
constexpr int max_reply_elements = 1 << 20;

/// Makes `reader` refuse a reply array announcing more than
/// max_reply_elements (the reply fails as hiredis's out-of-memory error,
/// and the connection is treated as broken). Every connection opened here
/// has it.
void bound_replies(redisReader* reader);

/// Where a Redis server is: `redis://host:port[/db]`.
struct endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;

  std::string url() const;
};

/// Parses `redis://host[:port][/db]`; on failure returns nothing and says
/// why in `error`.
std::optional<endpoint> parse_url(std::string_view url, std::string& error);

/// A read-only view of one reply (or of an element of one).
class reply_view {
public:
  reply_view() = default;
  explicit reply_view(const redisReply* r) : r_(r) {
  }

  bool is_nil() const;
  bool is_error() const;
  bool is_array() const;
  bool is_string() const; ///< a bulk string or a status
  bool is_integer() const;
  /// The text of a string, status or error reply; empty otherwise.
  std::string_view text() const;
  long long integer() const;
  size_t size() const; ///< elements of an array; 0 otherwise
  reply_view operator[](size_t i) const;

  explicit operator bool() const {
    return r_ != nullptr;
  }

private:
  const redisReply* r_ = nullptr;
};

/// An owned reply; empty when the command never got an answer (an I/O
/// error: see `connection::error`).
class reply {
public:
  reply() = default;
  explicit reply(redisReply* r);

  reply_view view() const {
    return reply_view{r_.get()};
  }
  explicit operator bool() const {
    return r_ != nullptr;
  }

private:
  struct deleter {
    void operator()(redisReply* r) const;
  };
  std::unique_ptr<redisReply, deleter> r_;
};

/// One blocking connection. After an I/O error (`broken()`) it is
/// useless: open a new one.
class connection {
public:
  /// Connects within `timeout` and selects the endpoint's database; every
  /// later command waits at most `io_timeout` (0: for ever) for its
  /// answer.
  static connection open(const endpoint& where,
                         std::chrono::milliseconds timeout,
                         std::chrono::milliseconds io_timeout);

  connection() = default;
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  ~connection();

  bool broken() const;
  /// Why the connection failed, or the last command's I/O error.
  const std::string& error() const {
    return error_;
  }

  /// Sends one command and waits for its reply.
  reply command(const std::vector<std::string_view>& args);

  /// Pipelining: queue commands, then take their replies in order.
  void append(const std::vector<std::string_view>& args);
  reply next_reply();

  /// How long a blocking command may wait on the socket: longer than its
  /// own BLOCK time.
  void set_io_timeout(std::chrono::milliseconds timeout);

private:
  void fail(const char* what);

  redisContext* ctx_ = nullptr;
  std::string error_;
};

/// One stream entry as a reply holds it (views into that reply).
struct entry_view {
  std::string_view id;
  /// The `event` field; nothing when the entry has none.
  std::optional<std::string_view> event;
  /// The entry was deleted (trimmed) while pending: only its id is left.
  bool deleted = false;
};

/// Parses the entries of an `XRANGE`/`XCLAIM` reply, or of one stream of
/// an `XREADGROUP` reply ([id, [field, value, ...]] each). A malformed
/// reply gives false and says why in `error`.
bool parse_entries(reply_view entries, std::vector<entry_view>& out,
                   std::string& error);

/// The entries of the single stream in an `XREADGROUP` reply (a nil reply,
/// a timeout, gives none).
bool parse_read_reply(reply_view r, std::vector<entry_view>& out,
                      std::string& error);

/// `XPENDING key group start end count [consumer]` rows.
struct pending_row {
  std::string_view id;
  std::string_view consumer;
  long long idle_ms = 0;
  long long deliveries = 0;
};
bool parse_pending(reply_view r, std::vector<pending_row>& out,
                   std::string& error);

/// One consumer group of an `XINFO GROUPS` reply.
struct group_row {
  uint64_t pending = 0;
  /// Entries not yet delivered to the group; -1 when Redis cannot say
  /// (entries were deleted).
  int64_t lag = -1;
  uint64_t consumers = 0;
  std::string last_delivered;
};

/// Finds `group` in an `XINFO GROUPS` reply; nothing when it is not there.
std::optional<group_row> find_group(reply_view groups, std::string_view group);

/// The group's lag, checked: 0 when the group was given the stream's last
/// entry, whatever XINFO GROUPS said; else its lag, or -1 when Redis cannot
/// count it (entries were deleted). Redis 7.0 cannot be trusted with a
/// positive lag: after an AOF rewrite and a restart, a group's entries-read
/// comes back from the rewrite's time while its last-delivered-id is
/// current, and the lag stays overstated by the difference for good
/// (tests/streams/redis_reader.cpp). Costs an XINFO STREAM when the lag is not
/// 0; `conn` failing leaves the unchecked value.
int64_t checked_lag(connection& conn, std::string_view stream,
                    const group_row& row);

/// Stream ids compare as (ms, seq); `a < b`.
bool id_less(std::string_view a, std::string_view b);

} // namespace flowmatch::redis
