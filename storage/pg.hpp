#pragma once

// The thin libpq layer: the one place that touches libpq. RAII ownership of
// connections and results, one error funnel that classifies every failure
// as retryable (connection loss, serialization failure, deadlock, server
// shutting down) or permanent, prepared statements with `$n` parameters
// only, and pipelines (libpq 15's pipeline mode) for batches: many
// statements, one round trip.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;
struct pg_result;

namespace flowmatch::pg {

/// Whether trying again (after reconnecting) can succeed; `fenced`: the
/// writer lost a cluster lease (SQLSTATE FL001, raised by the fence in
/// the transaction), so it must stop writing for good.
enum class error_kind { retryable, permanent, fenced };

struct db_error {
  error_kind kind = error_kind::permanent;
  std::string sqlstate; ///< five characters, or empty for client-side errors
  std::string message;

  bool retryable() const {
    return kind == error_kind::retryable;
  }
  bool fenced() const {
    return kind == error_kind::fenced;
  }

  /// "SQLSTATE 23505: duplicate key ..." or the client message.
  std::string describe() const;
};

/// Classifies an SQLSTATE: class 08 (connection), 40001, 40P01, 57P0x
/// (shutdown), 53xxx (resources) are retryable; everything else permanent.
error_kind classify(std::string_view sqlstate);

/// A parameter: text, or NULL.
using param = std::optional<std::string>;

/// An owned query result.
class result {
public:
  result() = default;
  explicit result(pg_result* r);

  int rows() const;
  int columns() const;
  bool is_null(int row, int col) const;
  /// The text of a value ("" for NULL).
  std::string_view text(int row, int col) const;
  double as_double(int row, int col) const;
  int64_t as_int64(int row, int col) const;
  bool as_bool(int row, int col) const;
  /// Rows a DELETE, UPDATE or INSERT touched.
  int64_t affected() const;
  /// The command tag ("INSERT 0 1", "COMMIT", "ROLLBACK", ...).
  std::string_view command_tag() const;

private:
  std::shared_ptr<pg_result> res_;
};

/// A result or an error.
template <class T>
struct outcome {
  std::optional<T> value;
  std::optional<db_error> error;

  explicit operator bool() const {
    return !error;
  }
};

/// An owned connection. Move-only; closing is automatic.
class connection {
public:
  connection() = default;
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  /// Connects with a libpq conninfo string; sets application_name.
  static outcome<connection> open(const std::string& dsn,
                                  const std::string& application_name);

  bool is_open() const;

  /// Runs SQL without parameters (schema changes, BEGIN/COMMIT).
  outcome<result> exec(const std::string& sql);

  /// Prepares a named statement (once per connection).
  std::optional<db_error> prepare(const std::string& name,
                                  const std::string& sql);

  /// Runs a prepared statement.
  outcome<result> run(const std::string& name,
                      const std::vector<param>& params);

  /// Quotes an identifier (schema, table) for SQL text.
  std::string quote_identifier(std::string_view id);

  /// COPY ... FROM STDIN with `data` in COPY's text format (benchmarks and
  /// bulk loads).
  std::optional<db_error> copy_in(const std::string& sql,
                                  const std::string& data);

  /// The server process id of this connection (for fault tests and logs).
  int backend_pid() const;

  /// A pipeline: queue statements, then `sync` sends them in one round trip
  /// and reads every result. Stops at the first error (the server skips the
  /// rest of the pipeline) and reports it.
  class pipeline {
  public:
    explicit pipeline(connection& c) : conn_(c) {
    }
    /// Queues SQL without parameters.
    void add(std::string sql);
    /// Queues a prepared statement.
    void add_prepared(std::string name, std::vector<param> params);
    /// Sends everything, waits for all results. On success returns one
    /// result per queued statement.
    outcome<std::vector<result>> sync();

  private:
    struct item {
      bool prepared;
      std::string text; ///< SQL or statement name
      std::vector<param> params;
    };
    connection& conn_;
    std::vector<item> items_;
  };

private:
  explicit connection(pg_conn* c) : conn_(c) {
  }
  db_error connection_error() const;
  /// Turns a result into an outcome through the one error funnel.
  outcome<result> check(pg_result* r);
  pg_conn* conn_ = nullptr;
};

/// A transaction that rolls back unless committed: every early return (an
/// error half way, an exception) leaves the connection ready for the next
/// attempt, and no code writes BEGIN/COMMIT/ROLLBACK by hand.
class transaction {
public:
  /// Sends BEGIN now; check `begin_error()`.
  explicit transaction(connection& conn);
  /// For a BEGIN that went out in a pipeline with the first statements.
  struct begun_t {};
  static constexpr begun_t already_begun{};
  transaction(connection& conn, begun_t) : conn_(&conn) {
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  ~transaction();

  const std::optional<db_error>& begin_error() const {
    return begin_error_;
  }

  /// COMMIT; on failure the transaction is rolled back.
  std::optional<db_error> commit();

  /// ROLLBACK now (also what the destructor does when not committed).
  void rollback();

  /// The COMMIT went out at the end of a pipeline that succeeded.
  void committed_in_pipeline() {
    open_ = false;
  }

private:
  connection* conn_;
  bool open_ = true;
  std::optional<db_error> begin_error_;
};

/// Renders a text array literal for a `text[]` parameter.
std::string text_array(const std::vector<param>& values);

/// Renders a `float8[]` literal (shortest round-trip digits).
std::string float_array(const std::vector<std::optional<double>>& values);

/// Renders an `int8[]` literal.
std::string int_array(const std::vector<std::optional<int64_t>>& values);

/// Renders a `bool[]` literal.
std::string bool_array(const std::vector<std::optional<bool>>& values);

/// Appends a field in COPY's text format (backslash-escaped).
void append_copy_field(std::string& out, std::string_view field);

/// Parses a `text[]` value as PostgreSQL prints it.
std::vector<std::string> parse_text_array(std::string_view literal);

} // namespace flowmatch::pg
