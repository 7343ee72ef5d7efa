#include "streams/redis.hpp"

#include <hiredis/hiredis.h>

#include <fmt/format.h>

#include <charconv>
#include <sys/time.h>

namespace flowmatch::redis {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  if (s.empty())
    return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

/// Splits a stream id "ms-seq" (a bare "ms" means seq 0).
bool split_id(std::string_view id, uint64_t& ms, uint64_t& seq) {
  auto dash = id.find('-');
  if (dash == std::string_view::npos) {
    seq = 0;
    return parse_number(id, ms);
  }
  return parse_number(id.substr(0, dash), ms)
         && parse_number(id.substr(dash + 1), seq);
}

} // namespace

// -- endpoint ----------------------------------------------------------------

std::string endpoint::url() const {
  return fmt::format("redis://{}:{}/{}", host, port, db);
}

std::optional<endpoint> parse_url(std::string_view url, std::string& error) {
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme) {
    error = "must start with redis:// (redis://host:port[/db])";
    return std::nullopt;
  }
  auto rest = url.substr(scheme.size());
  endpoint e;
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    auto db = rest.substr(slash + 1);
    if (!db.empty() && (!parse_number(db, e.db) || e.db < 0 || e.db > 15)) {
      error = fmt::format("database '{}' is not a number within 0..15", db);
      return std::nullopt;
    }
  }
  if (authority.find('@') != std::string_view::npos) {
    error = "credentials in the URL are not supported";
    return std::nullopt;
  }
  auto colon = authority.rfind(':');
  if (colon != std::string_view::npos) {
    auto port = authority.substr(colon + 1);
    if (!parse_number(port, e.port) || e.port < 1 || e.port > 65535) {
      error = fmt::format("port '{}' is not a number within 1..65535", port);
      return std::nullopt;
    }
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) {
    error = "no host";
    return std::nullopt;
  }
  e.host = std::string{authority};
  return e;
}

// -- replies -----------------------------------------------------------------

bool reply_view::is_nil() const {
  return r_ && r_->type == REDIS_REPLY_NIL;
}

bool reply_view::is_error() const {
  return r_ && r_->type == REDIS_REPLY_ERROR;
}

bool reply_view::is_array() const {
  return r_ && r_->type == REDIS_REPLY_ARRAY;
}

bool reply_view::is_string() const {
  return r_ && (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS);
}

bool reply_view::is_integer() const {
  return r_ && r_->type == REDIS_REPLY_INTEGER;
}

std::string_view reply_view::text() const {
  if (!r_ || r_->str == nullptr)
    return {};
  switch (r_->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return {r_->str, r_->len};
    default:
      return {};
  }
}

long long reply_view::integer() const {
  return is_integer() ? r_->integer : 0;
}

size_t reply_view::size() const {
  return is_array() ? r_->elements : 0;
}

reply_view reply_view::operator[](size_t i) const {
  return i < size() ? reply_view{r_->element[i]} : reply_view{};
}

reply::reply(redisReply* r) : r_(r) {
}

void reply::deleter::operator()(redisReply* r) const {
  freeReplyObject(r);
}

// -- bounded replies ---------------------------------------------------------

namespace {

// hiredis's own reply functions (one static table in the library), set
// once by bound_replies before any reader uses the bounded table.
const redisReplyObjectFunctions* hiredis_functions = nullptr;

void* create_bounded_array(const redisReadTask* task, int elements) {
  if (elements > max_reply_elements)
    return nullptr; // hiredis reports it as out of memory
  return hiredis_functions->createArray(task, elements);
}

} // namespace

void bound_replies(redisReader* reader) {
  static redisReplyObjectFunctions bounded = [reader] {
    hiredis_functions = reader->fn;
    auto functions = *reader->fn;
    functions.createArray = create_bounded_array;
    return functions;
  }();
  reader->fn = &bounded;
}

// -- connection --------------------------------------------------------------

connection connection::open(const endpoint& where,
                            std::chrono::milliseconds timeout,
                            std::chrono::milliseconds io_timeout) {
  connection c;
  c.ctx_ = redisConnectWithTimeout(where.host.c_str(), where.port,
                                   to_timeval(timeout));
  if (c.ctx_ == nullptr) {
    c.error_ = "cannot allocate a Redis context";
    return c;
  }
  if (c.ctx_->err) {
    c.fail("connect");
    return c;
  }
  bound_replies(c.ctx_->reader);
  c.set_io_timeout(io_timeout);
  if (where.db != 0) {
    auto db = std::to_string(where.db);
    auto r = c.command({"SELECT", db});
    if (r && r.view().is_error())
      c.error_ = fmt::format("SELECT {}: {}", db, r.view().text());
  }
  return c;
}

connection::connection(connection&& other) noexcept
  : ctx_(other.ctx_), error_(std::move(other.error_)) {
  other.ctx_ = nullptr;
}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (ctx_)
      redisFree(ctx_);
    ctx_ = other.ctx_;
    error_ = std::move(other.error_);
    other.ctx_ = nullptr;
  }
  return *this;
}

connection::~connection() {
  if (ctx_)
    redisFree(ctx_);
}

bool connection::broken() const {
  return ctx_ == nullptr || ctx_->err != 0 || !error_.empty();
}

void connection::fail(const char* what) {
  error_ = ctx_ && ctx_->errstr[0] != '\0'
             ? fmt::format("{}: {}", what, ctx_->errstr)
             : fmt::format("{}: connection lost", what);
}

void connection::set_io_timeout(std::chrono::milliseconds timeout) {
  if (ctx_ && timeout.count() > 0)
    redisSetTimeout(ctx_, to_timeval(timeout));
}

namespace {

void to_argv(const std::vector<std::string_view>& args,
             std::vector<const char*>& argv, std::vector<size_t>& lens) {
  argv.clear();
  lens.clear();
  for (auto a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
}

} // namespace

reply connection::command(const std::vector<std::string_view>& args) {
  append(args);
  return next_reply();
}

void connection::append(const std::vector<std::string_view>& args) {
  if (broken())
    return;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  to_argv(args, argv, lens);
  if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(),
                             lens.data())
      != REDIS_OK)
    fail("queueing a command");
}

reply connection::next_reply() {
  if (broken())
    return reply{};
  void* r = nullptr;
  if (redisGetReply(ctx_, &r) != REDIS_OK || r == nullptr) {
    fail("reading a reply");
    return reply{};
  }
  return reply{static_cast<redisReply*>(r)};
}

// -- streams -----------------------------------------------------------------

bool parse_entries(reply_view entries, std::vector<entry_view>& out,
                   std::string& error) {
  if (entries.is_nil())
    return true;
  if (!entries.is_array()) {
    error = "stream entries are not an array";
    return false;
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    auto e = entries[i];
    if (e.is_nil())
      continue; // XCLAIM answers nil for an id that no longer exists
    if (!e.is_array() || e.size() != 2 || !e[0].is_string()) {
      error = "a stream entry is not [id, fields]";
      return false;
    }
    entry_view v;
    v.id = e[0].text();
    auto fields = e[1];
    if (fields.is_nil()) {
      v.deleted = true;
    } else if (!fields.is_array() || fields.size() % 2 != 0) {
      error = fmt::format("entry {}: fields are not name/value pairs", v.id);
      return false;
    } else {
      for (size_t f = 0; f + 1 < fields.size(); f += 2)
        if (fields[f].text() == "event" && fields[f + 1].is_string()) {
          v.event = fields[f + 1].text();
          break;
        }
    }
    out.push_back(v);
  }
  return true;
}

bool parse_read_reply(reply_view r, std::vector<entry_view>& out,
                      std::string& error) {
  if (r.is_nil())
    return true; // BLOCK timed out
  if (!r.is_array()) {
    error = "XREADGROUP answered with neither streams nor nil";
    return false;
  }
  for (size_t s = 0; s < r.size(); ++s) {
    auto stream = r[s];
    if (!stream.is_array() || stream.size() != 2) {
      error = "an XREADGROUP stream is not [key, entries]";
      return false;
    }
    if (!parse_entries(stream[1], out, error))
      return false;
  }
  return true;
}

bool parse_pending(reply_view r, std::vector<pending_row>& out,
                   std::string& error) {
  if (!r.is_array()) {
    error = "XPENDING answered with no array";
    return false;
  }
  for (size_t i = 0; i < r.size(); ++i) {
    auto row = r[i];
    if (!row.is_array() || row.size() != 4 || !row[0].is_string()) {
      error = "an XPENDING row is not [id, consumer, idle, deliveries]";
      return false;
    }
    out.push_back({row[0].text(), row[1].text(), row[2].integer(),
                   row[3].integer()});
  }
  return true;
}

std::optional<group_row> find_group(reply_view groups,
                                   std::string_view group) {
  for (size_t g = 0; g < groups.size(); ++g) {
    auto fields = groups[g];
    bool ours = false;
    group_row row;
    for (size_t f = 0; f + 1 < fields.size(); f += 2) {
      auto key = fields[f].text();
      auto val = fields[f + 1];
      if (key == "name")
        ours = val.text() == group;
      else if (key == "pending")
        row.pending = static_cast<uint64_t>(val.integer());
      else if (key == "consumers")
        row.consumers = static_cast<uint64_t>(val.integer());
      else if (key == "last-delivered-id")
        row.last_delivered = std::string{val.text()};
      else if (key == "lag" && val.is_integer())
        row.lag = val.integer();
    }
    if (ours)
      return row;
  }
  return std::nullopt;
}

int64_t checked_lag(connection& conn, std::string_view stream,
                    const group_row& row) {
  if (row.lag == 0)
    return 0;
  auto r = conn.command({"XINFO", "STREAM", stream});
  if (!r || r.view().is_error())
    return row.lag;
  auto v = r.view();
  for (size_t f = 0; f + 1 < v.size(); f += 2)
    if (v[f].text() == "last-generated-id")
      return v[f + 1].text() == row.last_delivered ? 0 : row.lag;
  return row.lag;
}

bool id_less(std::string_view a, std::string_view b) {
  uint64_t ams = 0, aseq = 0, bms = 0, bseq = 0;
  if (!split_id(a, ams, aseq) || !split_id(b, bms, bseq))
    return a < b;
  return ams < bms || (ams == bms && aseq < bseq);
}

} // namespace flowmatch::redis
