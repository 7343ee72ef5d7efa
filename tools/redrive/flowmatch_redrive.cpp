// flowmatch-redrive: sends open dead letters back through the
// EventPublisher, once their cause is fixed (the orphaned flow's site came,
// a corrected resend is not possible, a bug is deployed).
//
//   flowmatch-redrive --dsn CONNINFO [--schema S] [selection] --dry-run
//   flowmatch-redrive --dsn CONNINFO --reason orphan_flow --redis URL
//   flowmatch-redrive --dsn CONNINFO --event-id e42 --ndjson redo.ndjson
//
// Selection (all given must hold; open letters only, resolved_at IS NULL):
// --reason R (repeatable), --source S, --since T, --until T (timestamps
// PostgreSQL reads, on last_seen), --event-id ID (repeatable), --limit N.
// A re-published letter counts one more attempt (attempts, last_seen);
// when its event then applies, the node marks every open letter of that
// event id resolved (storage.md v1.1); when it fails again, the node writes
// the new failure as a letter of its own.
//
// Exit codes: 0 done (or nothing selected); 1 a database or publisher
// error; 2 bad arguments.

#include "storage/pg.hpp"
#include "streams/publisher.hpp"

#include "tools/cli_args.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

using namespace flowmatch;

namespace {

constexpr const char* usage = R"(usage: flowmatch-redrive --dsn CONNINFO [options]

Selects open dead letters (resolved_at IS NULL) and re-publishes their
payloads, oldest first, through the EventPublisher.

selection (all given must hold):
  --reason R       a reject reason (orphan_flow, poison_event, ...); repeatable
  --source S       where the letter came from (a path, stdin, redis:<key>)
  --since T        last seen at or after T (e.g. '2026-11-29 10:00+00')
  --until T        last seen before T
  --event-id ID    a letter of this event; repeatable
  --limit N        at most N letters (default 10000)

destination (one, unless --dry-run):
  --redis URL      publish to a Redis stream (with --stream, default
                   flowmatch:events)
  --ndjson PATH    append to an NDJSON file (- for stdout), to feed a node

  --schema S       the node's schema (default flowmatch)
  --dry-run        list what would be re-published and change nothing
  -h, --help       this text
)";

struct options {
  std::string dsn;
  std::string schema = "flowmatch";
  std::vector<std::string> reasons;
  std::optional<std::string> source, since, until;
  std::vector<std::string> event_ids;
  long limit = 10000;
  std::string redis, stream = "flowmatch:events", ndjson;
  bool dry_run = false;
};

[[noreturn]] void bad_args(const std::string& why) {
  std::fprintf(stderr, "flowmatch-redrive: %s\n\n%s", why.c_str(), usage);
  std::exit(2);
}

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "flowmatch-redrive: %s\n", why.c_str());
  std::exit(1);
}

options parse(int argc, char** argv) {
  options o;
  cli_args args{argc, argv, usage, bad_args};
  while (args.next()) {
    const auto& a = args.arg();
    auto value = [&](const char* name) { return args.value(name); };
    auto is = [&](const char* name) { return args.is(name); };
    if (is("--dsn")) {
      o.dsn = value("--dsn");
    } else if (is("--schema")) {
      o.schema = value("--schema");
    } else if (is("--reason")) {
      o.reasons.push_back(value("--reason"));
    } else if (is("--source")) {
      o.source = value("--source");
    } else if (is("--since")) {
      o.since = value("--since");
    } else if (is("--until")) {
      o.until = value("--until");
    } else if (is("--event-id")) {
      o.event_ids.push_back(value("--event-id"));
    } else if (is("--limit")) {
      auto v = value("--limit");
      char* end = nullptr;
      o.limit = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || o.limit < 1)
        bad_args("--limit needs a positive number, got '" + v + "'");
    } else if (is("--redis")) {
      o.redis = value("--redis");
    } else if (is("--stream")) {
      o.stream = value("--stream");
    } else if (is("--ndjson")) {
      o.ndjson = value("--ndjson");
    } else if (a == "--dry-run") {
      o.dry_run = true;
    } else {
      bad_args("unknown argument " + a);
    }
  }
  if (o.dsn.empty())
    bad_args("--dsn is required");
  if (!o.dry_run && o.redis.empty() == o.ndjson.empty())
    bad_args("give one destination, --redis URL or --ndjson PATH (or "
             "--dry-run)");
  return o;
}

/// A PostgreSQL array literal of text values.
std::string text_array(const std::vector<std::string>& xs) {
  std::string out = "{";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '"';
    for (char c : xs[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

constexpr const char* select_sql = R"sql(
SELECT id, coalesce(event_id, ''), coalesce(source, ''),
       coalesce(entry_id, line::text, ''), reason, attempts,
       coalesce(payload, ''), to_char(last_seen, 'YYYY-MM-DD HH24:MI:SSOF')
FROM dead_letters
WHERE resolved_at IS NULL
  AND ($1::text[] IS NULL OR reason = ANY($1::text[]))
  AND ($2::text IS NULL OR source = $2)
  AND ($3::timestamptz IS NULL OR last_seen >= $3::timestamptz)
  AND ($4::timestamptz IS NULL OR last_seen < $4::timestamptz)
  AND ($5::text[] IS NULL OR event_id = ANY($5::text[]))
ORDER BY id
LIMIT $6
)sql";

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  auto opened = pg::connection::open(o.dsn, "flowmatch-redrive");
  if (!opened)
    fail("cannot connect: " + opened.error->describe());
  auto& conn = *opened.value;
  if (auto r = conn.exec("SET search_path TO "
                         + conn.quote_identifier(o.schema) + ", public");
      !r)
    fail("schema " + o.schema + ": " + r.error->describe());
  if (auto err = conn.prepare("select", select_sql))
    fail("the dead_letters table of schema " + o.schema
         + " cannot be read: " + err->describe());
  std::vector<pg::param> params{
    o.reasons.empty() ? pg::param{} : pg::param{text_array(o.reasons)},
    o.source, o.since, o.until,
    o.event_ids.empty() ? pg::param{} : pg::param{text_array(o.event_ids)},
    std::to_string(o.limit)};
  auto letters = conn.run("select", params);
  if (!letters)
    fail("selecting dead letters: " + letters.error->describe());
  auto& rows = *letters.value;
  if (rows.rows() == 0) {
    std::fprintf(stderr, "no open dead letter matches\n");
    return 0;
  }
  if (o.dry_run) {
    std::printf("%-8s %-16s %-20s %-28s %-8s %s\n", "id", "event", "reason",
                "source:position", "attempts", "payload");
    for (int i = 0; i < rows.rows(); ++i) {
      auto payload = std::string{rows.text(i, 6)};
      if (payload.size() > 60)
        payload = payload.substr(0, 57) + "...";
      std::printf("%-8s %-16s %-20s %-28s %-8s %s\n",
                  std::string{rows.text(i, 0)}.c_str(),
                  std::string{rows.text(i, 1)}.c_str(),
                  std::string{rows.text(i, 4)}.c_str(),
                  fmt::format("{}:{}", rows.text(i, 2), rows.text(i, 3))
                    .c_str(),
                  std::string{rows.text(i, 5)}.c_str(), payload.c_str());
    }
    std::fprintf(stderr,
                 "dry run: %d letters would be re-published; nothing "
                 "changed\n",
                 rows.rows());
    return 0;
  }
  std::string why;
  std::unique_ptr<event_publisher> publisher;
  if (!o.redis.empty()) {
    redis_publisher_settings s;
    s.url = o.redis;
    s.stream = o.stream;
    publisher = make_redis_publisher(s, why);
  } else {
    publisher = make_ndjson_publisher(o.ndjson, why);
  }
  if (!publisher)
    fail(why);
  std::vector<std::string> ids;
  for (int i = 0; i < rows.rows(); ++i) {
    if (!publisher->publish(rows.text(i, 6)))
      fail(publisher->error());
    ids.emplace_back(rows.text(i, 0));
  }
  if (!publisher->flush())
    fail(publisher->error());
  // Re-published: one more attempt each. The node resolves them when
  // their events apply.
  if (auto err = conn.prepare("count", "UPDATE dead_letters SET attempts = "
                                       "attempts + 1, last_seen = now() "
                                       "WHERE id = ANY($1::bigint[])"))
    fail(err->describe());
  std::string id_array = "{";
  for (size_t i = 0; i < ids.size(); ++i)
    id_array += (i ? "," : "") + ids[i];
  id_array += "}";
  if (auto r = conn.run("count", {id_array}); !r)
    fail("counting the attempts: " + r.error->describe());
  std::fprintf(stderr, "re-published %zu dead letters to %s\n", ids.size(),
               o.redis.empty() ? o.ndjson.c_str()
                               : (o.redis + " " + o.stream).c_str());
  return 0;
}
