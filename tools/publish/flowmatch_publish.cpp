// flowmatch-publish: publishes NDJSON events (a file or stdin) to a Redis
// stream through the EventPublisher, with progress on long inputs, and can
// wait until a consumer group has acknowledged everything.
//
//   flowmatch-publish --redis redis://127.0.0.1:63790 events.ndjson
//   flowmatch-publish --redis URL --wait-group flowmatch --timeout 120 -
//
// Exit codes: 0 done; 1 Redis refused or was lost (the message says how
// many events were confirmed); 2 bad arguments or an unreadable input;
// 3 the group did not catch up within the timeout.

#include "streams/publisher.hpp"

#include "tools/cli_args.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

namespace {

using namespace flowmatch;
using steady = std::chrono::steady_clock;

constexpr const char* usage = R"(usage: flowmatch-publish [options] [FILE|-]

Publishes one event per NDJSON line (FILE, or stdin for - or no FILE) to a
Redis stream: XADD <stream> * event <line> (ingest.md). Blank lines are
skipped; every other line is published as it is (flowmatch validates and
dead-letters what is wrong).

options:
  --redis URL          Redis to publish to, redis://host:port[/db]
                       (default: $FLOWMATCH_REDIS_URL, else
                       redis://127.0.0.1:63790, the one of tools/redis.sh)
  --stream KEY         stream key (default flowmatch:events)
  --partitions P       stream partitions: an event goes to KEY:N, N the
                       FNV-1a 64 of its data.site_id mod P (ingest.md)
  --maxlen N           trim the stream to about N entries (XADD MAXLEN ~ N);
                       default 0: never trim
  --pipeline N         XADDs in flight before their answers are read
                       (default 512)
  --progress SECONDS   progress line on stderr this often (default 2; 0: off)
  --wait-group GROUP   after publishing, wait until GROUP has read and
                       acknowledged every entry (pending and lag zero)
  --timeout SECONDS    longest wait for --wait-group (default 300)
  --quiet              no progress and no final line
  -h, --help           this text
)";

struct options {
  redis_publisher_settings publisher;
  std::string input = "-";
  double progress = 2;
  std::string wait_group;
  double timeout = 300;
  bool quiet = false;
};

[[noreturn]] void bad_args(const std::string& why) {
  std::fprintf(stderr, "flowmatch-publish: %s\n\n%s", why.c_str(), usage);
  std::exit(2);
}

template <class T>
T number(const char* name, const std::string& text) {
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    if (used != text.size() || v < 0)
      throw std::invalid_argument{text};
    return static_cast<T>(v);
  } catch (const std::exception&) {
    bad_args(fmt::format("{} needs a non-negative number, got '{}'", name,
                         text));
  }
}

options parse(int argc, char** argv) {
  options o;
  if (auto* env = std::getenv("FLOWMATCH_REDIS_URL"); env && *env)
    o.publisher.url = env;
  else
    o.publisher.url = "redis://127.0.0.1:63790";
  bool have_input = false;
  cli_args args{argc, argv, usage, bad_args};
  while (args.next()) {
    const auto& a = args.arg();
    auto value = [&](const char* name) { return args.value(name); };
    auto is = [&](const char* name) { return args.is(name); };
    if (is("--redis")) {
      o.publisher.url = value("--redis");
    } else if (is("--stream")) {
      o.publisher.stream = value("--stream");
    } else if (is("--partitions")) {
      o.publisher.partitions
        = number<uint32_t>("--partitions", value("--partitions"));
      if (o.publisher.partitions < 1 || o.publisher.partitions > 1024)
        bad_args("--partitions must be within 1..1024");
    } else if (is("--maxlen")) {
      o.publisher.max_len = number<uint64_t>("--maxlen", value("--maxlen"));
    } else if (is("--pipeline")) {
      o.publisher.pipeline = number<size_t>("--pipeline", value("--pipeline"));
    } else if (is("--progress")) {
      o.progress = number<double>("--progress", value("--progress"));
    } else if (is("--wait-group")) {
      o.wait_group = value("--wait-group");
    } else if (is("--timeout")) {
      o.timeout = number<double>("--timeout", value("--timeout"));
    } else if (a == "--quiet") {
      o.quiet = true;
    } else if (a.size() > 1 && a[0] == '-') {
      bad_args("unknown option " + a);
    } else if (have_input) {
      bad_args("one input only");
    } else {
      o.input = a;
      have_input = true;
    }
  }
  if (o.publisher.stream.empty())
    bad_args("--stream must not be empty");
  return o;
}

double seconds_since(steady::time_point t) {
  return std::chrono::duration<double>(steady::now() - t).count();
}

/// Waits until the group acknowledged everything; false on timeout.
bool wait_for_group(const options& o) {
  auto start = steady::now();
  auto last_note = start;
  group_progress p;
  for (;;) {
    std::string why;
    // Every partition's group (ingest.md); their sums.
    bool read = true;
    p = group_progress{};
    p.exists = true;
    p.lag = 0;
    for (uint32_t n = 0; n < o.publisher.partitions && read; ++n) {
      group_progress one;
      auto key = o.publisher.partitions > 1
                   ? o.publisher.stream + ":" + std::to_string(n)
                   : o.publisher.stream;
      read = read_group_progress(o.publisher.url, key, o.wait_group, one, why);
      p.exists = p.exists && one.exists;
      p.pending += one.pending;
      p.lag = (p.lag < 0 || one.lag < 0) ? -1 : p.lag + one.lag;
    }
    if (!read) {
      std::fprintf(stderr, "flowmatch-publish: cannot ask Redis: %s\n",
                   why.c_str());
    } else if (p.done()) {
      if (!o.quiet)
        std::fprintf(stderr,
                     "group %s acknowledged everything after %.1f s\n",
                     o.wait_group.c_str(), seconds_since(start));
      return true;
    }
    if (seconds_since(start) > o.timeout) {
      std::fprintf(stderr,
                   "flowmatch-publish: group %s did not catch up within "
                   "%.0f s: %s, pending %llu, lag %lld\n",
                   o.wait_group.c_str(), o.timeout,
                   p.exists ? "exists" : "does not exist",
                   static_cast<unsigned long long>(p.pending),
                   static_cast<long long>(p.lag));
      if (p.exists && p.lag == 0 && p.pending > 0)
        std::fprintf(stderr,
                     "  (every entry was read; pending ones are in flight, or "
                     "flows held for sites that have not come: see "
                     "registry.hold-timeout)\n");
      return false;
    }
    if (!o.quiet && o.progress > 0 && seconds_since(last_note) >= o.progress) {
      last_note = steady::now();
      std::fprintf(stderr, "waiting for group %s: pending %llu, lag %lld\n",
                   o.wait_group.c_str(),
                   static_cast<unsigned long long>(p.pending),
                   static_cast<long long>(p.lag));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  std::ifstream file;
  std::istream* in = &std::cin;
  if (o.input != "-") {
    file.open(o.input, std::ios::binary);
    if (!file) {
      std::fprintf(stderr, "flowmatch-publish: cannot read %s: %s\n",
                   o.input.c_str(), std::strerror(errno));
      return 2;
    }
    in = &file;
  }
  std::ios::sync_with_stdio(false);
  std::string why;
  auto publisher = make_redis_publisher(o.publisher, why);
  if (!publisher) {
    std::fprintf(stderr, "flowmatch-publish: %s\n", why.c_str());
    return 1;
  }
  auto start = steady::now();
  auto last_note = start;
  uint64_t lines = 0, published = 0;
  std::string line;
  while (std::getline(*in, line)) {
    ++lines;
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos)
      continue;
    if (!publisher->publish(line))
      break;
    ++published;
    if (!o.quiet && o.progress > 0 && (published & 1023) == 0
        && seconds_since(last_note) >= o.progress) {
      last_note = steady::now();
      auto secs = seconds_since(start);
      std::fprintf(stderr, "published %llu events (%.0f/s)\n",
                   static_cast<unsigned long long>(published),
                   secs > 0 ? static_cast<double>(published) / secs : 0.0);
    }
  }
  if (!publisher->flush() || !publisher->error().empty()) {
    std::fprintf(stderr, "flowmatch-publish: %s\n",
                 publisher->error().c_str());
    return 1;
  }
  auto secs = seconds_since(start);
  if (!o.quiet)
    std::fprintf(stderr,
                 "published %llu events of %llu lines to %s on %s in %.2f s "
                 "(%.0f/s)\n",
                 static_cast<unsigned long long>(publisher->confirmed()),
                 static_cast<unsigned long long>(lines),
                 o.publisher.stream.c_str(), o.publisher.url.c_str(), secs,
                 secs > 0 ? static_cast<double>(publisher->confirmed()) / secs
                          : 0.0);
  if (!o.wait_group.empty() && !wait_for_group(o))
    return 3;
  return 0;
}
