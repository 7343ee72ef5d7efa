#include "storage/pg.hpp"

#include <libpq-fe.h>

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

namespace flowmatch::pg {

std::string db_error::describe() const {
  if (sqlstate.empty())
    return message;
  return fmt::format("SQLSTATE {}: {}", sqlstate, message);
}

error_kind classify(std::string_view s) {
  if (s.size() != 5)
    return error_kind::permanent;
  if (s == "FL001")
    return error_kind::fenced; // cluster_fence: a lease was lost
  auto cls = s.substr(0, 2);
  if (cls == "08" || cls == "53")
    return error_kind::retryable; // connection exception, resources
  if (s == "40001" || s == "40P01")
    return error_kind::retryable; // serialization failure, deadlock
  if (s == "57P01" || s == "57P02" || s == "57P03")
    return error_kind::retryable; // admin/crash shutdown, cannot connect now
  return error_kind::permanent;
}

// -- result ------------------------------------------------------------------

result::result(pg_result* r) : res_(r, PQclear) {
}

int result::rows() const {
  return res_ ? PQntuples(res_.get()) : 0;
}

int result::columns() const {
  return res_ ? PQnfields(res_.get()) : 0;
}

bool result::is_null(int row, int col) const {
  return PQgetisnull(res_.get(), row, col) == 1;
}

std::string_view result::text(int row, int col) const {
  return {PQgetvalue(res_.get(), row, col),
          static_cast<size_t>(PQgetlength(res_.get(), row, col))};
}

double result::as_double(int row, int col) const {
  return std::strtod(PQgetvalue(res_.get(), row, col), nullptr);
}

int64_t result::as_int64(int row, int col) const {
  return std::strtoll(PQgetvalue(res_.get(), row, col), nullptr, 10);
}

std::string_view result::command_tag() const {
  const char* tag = res_ ? PQcmdStatus(res_.get()) : nullptr;
  return tag ? std::string_view{tag} : std::string_view{};
}

int64_t result::affected() const {
  if (!res_)
    return 0;
  const char* n = PQcmdTuples(res_.get());
  return n[0] == '\0' ? 0 : std::strtoll(n, nullptr, 10);
}

bool result::as_bool(int row, int col) const {
  return PQgetvalue(res_.get(), row, col)[0] == 't';
}

// -- connection --------------------------------------------------------------

connection::connection(connection&& other) noexcept : conn_(other.conn_) {
  other.conn_ = nullptr;
}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (conn_ != nullptr)
      PQfinish(conn_);
    conn_ = other.conn_;
    other.conn_ = nullptr;
  }
  return *this;
}

connection::~connection() {
  if (conn_ != nullptr)
    PQfinish(conn_);
}

namespace {

/// A failed connection attempt that trying again cannot fix: the server
/// answered and refused who we are or what we asked for. libpq gives no
/// SQLSTATE for a failed connection, so this reads the server's message
/// (English: flowmatch's own connections set no lc_messages; a translated
/// message falls back to "retryable", the safe side for a running node).
bool refused_for_good(std::string_view msg) {
  for (std::string_view marker :
       {"authentication failed", "does not exist", "no pg_hba.conf entry",
        "is not permitted to log in", "permission denied",
        "invalid connection option", "invalid port number",
        "invalid sslmode value", "server does not support SSL",
        "no password supplied"})
    if (msg.find(marker) != std::string_view::npos)
      return true;
  return false;
}

} // namespace

outcome<connection> connection::open(const std::string& dsn,
                                     const std::string& application_name) {
  outcome<connection> out;
  // A conninfo that does not parse (a typo like `hots=`) never will.
  if (dsn.find('=') != std::string::npos) {
    char* why = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(dsn.c_str(), &why);
    if (parsed == nullptr) {
      std::string msg = why ? why : "malformed conninfo";
      PQfreemem(why);
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
        msg.pop_back();
      out.error = db_error{error_kind::permanent, "",
                           "invalid conninfo: " + msg};
      return out;
    }
    PQconninfoFree(parsed);
  }
  // Keywords and values so the DSN is never concatenated with anything.
  const char* keys[] = {"dbname", "application_name", "connect_timeout",
                        nullptr};
  const char* values[] = {dsn.c_str(), application_name.c_str(), "10",
                          nullptr};
  // expand_dbname=1: the first dbname value may be a full conninfo string.
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (c == nullptr) {
    out.error = db_error{error_kind::retryable, "", "out of memory"};
    return out;
  }
  connection conn{c};
  if (PQstatus(c) != CONNECTION_OK) {
    out.error = conn.connection_error();
    if (refused_for_good(out.error->message))
      out.error->kind = error_kind::permanent;
    return out;
  }
  out.value = std::move(conn);
  return out;
}

bool connection::is_open() const {
  return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK;
}

int connection::backend_pid() const {
  return conn_ ? PQbackendPID(conn_) : 0;
}

db_error connection::connection_error() const {
  std::string msg = conn_ ? PQerrorMessage(conn_) : "no connection";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
    msg.pop_back();
  // A connection that cannot be made or was lost is worth retrying; libpq
  // gives no SQLSTATE for it.
  return db_error{error_kind::retryable, "", msg};
}

outcome<result> connection::check(pg_result* raw) {
  outcome<result> out;
  if (raw == nullptr) {
    out.error = connection_error();
    return out;
  }
  result r{raw};
  switch (PQresultStatus(raw)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_PIPELINE_SYNC:
      out.value = std::move(r);
      return out;
    default:
      break;
  }
  const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(raw, PG_DIAG_MESSAGE_PRIMARY);
  std::string message = primary ? primary : PQresultErrorMessage(raw);
  if (state == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    db_error e = connection_error();
    if (state != nullptr)
      e.sqlstate = state;
    if (!message.empty())
      e.message = message;
    out.error = e;
    return out;
  }
  out.error = db_error{classify(state), state, message};
  return out;
}

outcome<result> connection::exec(const std::string& sql) {
  if (!is_open()) {
    outcome<result> out;
    out.error = connection_error();
    return out;
  }
  return check(PQexec(conn_, sql.c_str()));
}

std::optional<db_error> connection::prepare(const std::string& name,
                                            const std::string& sql) {
  auto r = check(PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr));
  return r.error;
}

namespace {

/// Pointers into the params for libpq; NULL for absent values.
std::vector<const char*> pointers(const std::vector<param>& params) {
  std::vector<const char*> out;
  out.reserve(params.size());
  for (auto& p : params)
    out.push_back(p ? p->c_str() : nullptr);
  return out;
}

} // namespace

outcome<result> connection::run(const std::string& name,
                                const std::vector<param>& params) {
  if (!is_open()) {
    outcome<result> out;
    out.error = connection_error();
    return out;
  }
  auto values = pointers(params);
  return check(PQexecPrepared(conn_, name.c_str(),
                              static_cast<int>(values.size()), values.data(),
                              nullptr, nullptr, 0));
}

std::optional<db_error> connection::copy_in(const std::string& sql,
                                            const std::string& data) {
  PGresult* start = PQexec(conn_, sql.c_str());
  if (start == nullptr || PQresultStatus(start) != PGRES_COPY_IN)
    return check(start).error.value_or(connection_error());
  PQclear(start);
  constexpr size_t chunk = 1 << 20;
  for (size_t off = 0; off < data.size(); off += chunk) {
    auto n = std::min(chunk, data.size() - off);
    if (PQputCopyData(conn_, data.data() + off, static_cast<int>(n)) != 1)
      return connection_error();
  }
  if (PQputCopyEnd(conn_, nullptr) != 1)
    return connection_error();
  auto done = check(PQgetResult(conn_));
  while (PGresult* extra = PQgetResult(conn_))
    PQclear(extra);
  return done.error;
}

std::string connection::quote_identifier(std::string_view id) {
  char* quoted = PQescapeIdentifier(conn_, id.data(), id.size());
  if (quoted == nullptr)
    return {};
  std::string out{quoted};
  PQfreemem(quoted);
  return out;
}

// -- pipeline ----------------------------------------------------------------

void connection::pipeline::add(std::string sql) {
  items_.push_back(item{false, std::move(sql), {}});
}

void connection::pipeline::add_prepared(std::string name,
                                        std::vector<param> params) {
  items_.push_back(item{true, std::move(name), std::move(params)});
}

outcome<std::vector<result>> connection::pipeline::sync() {
  outcome<std::vector<result>> out;
  PGconn* c = conn_.conn_;
  if (!conn_.is_open() || PQenterPipelineMode(c) != 1) {
    out.error = conn_.connection_error();
    return out;
  }
  for (auto& it : items_) {
    int ok;
    if (it.prepared) {
      auto values = pointers(it.params);
      ok = PQsendQueryPrepared(c, it.text.c_str(),
                               static_cast<int>(values.size()), values.data(),
                               nullptr, nullptr, 0);
    } else {
      ok = PQsendQueryParams(c, it.text.c_str(), 0, nullptr, nullptr, nullptr,
                             nullptr, 0);
    }
    if (ok != 1) {
      out.error = conn_.connection_error();
      return out; // the connection is unusable; the caller drops it
    }
  }
  if (PQpipelineSync(c) != 1) {
    out.error = conn_.connection_error();
    return out;
  }
  std::vector<result> results;
  results.reserve(items_.size());
  // One result (then a NULL) per statement, then the sync marker. After an
  // error the server skips the rest: those come back as PIPELINE_ABORTED.
  for (size_t i = 0; i < items_.size(); ++i) {
    PGresult* r = PQgetResult(c);
    if (r == nullptr) {
      out.error = conn_.connection_error();
      return out;
    }
    auto status = PQresultStatus(r);
    if (status == PGRES_PIPELINE_ABORTED) {
      PQclear(r);
    } else {
      auto checked = conn_.check(r);
      if (checked.error && !out.error)
        out.error = checked.error;
      if (checked.value)
        results.push_back(std::move(*checked.value));
    }
    // The NULL that ends this statement's results.
    while (PGresult* extra = PQgetResult(c))
      PQclear(extra);
  }
  PGresult* marker = PQgetResult(c);
  if (marker == nullptr || PQresultStatus(marker) != PGRES_PIPELINE_SYNC) {
    if (marker != nullptr)
      PQclear(marker);
    if (!out.error)
      out.error = conn_.connection_error();
    return out;
  }
  PQclear(marker);
  if (PQexitPipelineMode(c) != 1 && !out.error)
    out.error = conn_.connection_error();
  if (!out.error)
    out.value = std::move(results);
  return out;
}

// -- array literals ----------------------------------------------------------

std::string text_array(const std::vector<param>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0)
      out.push_back(',');
    if (!values[i]) {
      out.append("NULL");
      continue;
    }
    out.push_back('"');
    for (char ch : *values[i]) {
      if (ch == '"' || ch == '\\')
        out.push_back('\\');
      out.push_back(ch);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

namespace {

/// `{a,b,NULL,...}` with each present value written by `write`.
template <class T, class Write>
std::string array_literal(const std::vector<std::optional<T>>& values,
                          Write write) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0)
      out.push_back(',');
    if (values[i])
      write(out, *values[i]);
    else
      out.append("NULL");
  }
  out.push_back('}');
  return out;
}

} // namespace

std::string float_array(const std::vector<std::optional<double>>& values) {
  return array_literal(values, [](std::string& out, double v) {
    fmt::format_to(std::back_inserter(out), "{}", v);
  });
}

std::string int_array(const std::vector<std::optional<int64_t>>& values) {
  return array_literal(values, [](std::string& out, int64_t v) {
    fmt::format_to(std::back_inserter(out), "{}", v);
  });
}

std::string bool_array(const std::vector<std::optional<bool>>& values) {
  return array_literal(values, [](std::string& out, bool v) {
    out.push_back(v ? 't' : 'f');
  });
}

void append_copy_field(std::string& out, std::string_view field) {
  for (char ch : field) {
    switch (ch) {
      case '\\':
        out.append("\\\\");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      default:
        out.push_back(ch);
    }
  }
}

std::vector<std::string> parse_text_array(std::string_view s) {
  std::vector<std::string> out;
  if (s.size() < 2 || s.front() != '{' || s.back() != '}')
    return out;
  size_t i = 1;
  while (i < s.size() - 1) {
    std::string item;
    if (s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size())
          ++i;
        item.push_back(s[i++]);
      }
      ++i; // closing quote
    } else {
      while (i < s.size() - 1 && s[i] != ',')
        item.push_back(s[i++]);
    }
    out.push_back(std::move(item));
    if (i < s.size() - 1 && s[i] == ',')
      ++i;
  }
  return out;
}

transaction::transaction(connection& conn) : conn_(&conn) {
  if (auto r = conn.exec("BEGIN"); r.error) {
    begin_error_ = std::move(r.error);
    open_ = false;
  }
}

transaction::~transaction() {
  rollback();
}

std::optional<db_error> transaction::commit() {
  if (!open_)
    return db_error{error_kind::permanent, "", "no open transaction"};
  auto r = conn_->exec("COMMIT");
  open_ = false;
  if (r.error) {
    // A failed COMMIT ends the transaction too; make sure of it.
    conn_->exec("ROLLBACK");
    return r.error;
  }
  // COMMIT of a transaction a failed statement aborted succeeds as a
  // ROLLBACK: nothing was stored, which the caller must hear.
  if (r.value && r.value->command_tag() == "ROLLBACK")
    return db_error{error_kind::permanent, "25P02",
                    "the transaction was aborted by an earlier error and "
                    "rolled back instead of committed"};
  return std::nullopt;
}

void transaction::rollback() {
  if (!open_)
    return;
  open_ = false;
  // Also after a lost connection: then it fails, and the caller reconnects.
  conn_->exec("ROLLBACK");
}

} // namespace flowmatch::pg
