// Benchmarks of the Redis stream path, each beside its baseline in the same
// run (docs/performance.md):
//
//   publish   the EventPublisher's XADD events/s against a bare pipelined
//             hiredis loop over the same lines and pipeline depth;
//   consume   a bare hiredis XREADGROUP + XACK loop over a stream's entries:
//             the ceiling that the node's stream consumption (measured by
//             tools/bench/suite.py with the real actor-system) is set
//             against.
//
//   bench-stream --redis URL --input FILE [--reps N] [--json PATH]
//   bench-stream --redis URL --consume STREAM --group G   (one bare pass)

#include "actors/line_reader.hpp"
#include "streams/publisher.hpp"
#include "streams/redis.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace flowmatch;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string url = "redis://127.0.0.1:63790/0";
  std::string input;
  std::string json;
  std::string consume_stream;
  std::string group = "bench-bare";
  int reps = 3;
  size_t pipeline = 512;
  size_t read_count = 1024;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "bench-stream: %s\n", why.c_str());
  std::exit(1);
}

redis::connection connect(const std::string& url) {
  std::string why;
  auto where = redis::parse_url(url, why);
  if (!where)
    die(why);
  auto c = redis::connection::open(*where, std::chrono::seconds{2},
                                   std::chrono::seconds{30});
  if (c.broken())
    die("cannot connect to " + url + ": " + c.error());
  return c;
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// The baseline: XADD with hiredis directly, the same pipeline depth.
double bare_publish(const options& o, const std::vector<std::string>& lines,
                    const std::string& key) {
  auto c = connect(o.url);
  c.command({"DEL", key});
  auto start = clock_type::now();
  size_t outstanding = 0;
  for (auto& line : lines) {
    c.append({"XADD", key, "*", "event", line});
    if (++outstanding >= o.pipeline)
      for (; outstanding > o.pipeline / 2; --outstanding)
        if (!c.next_reply())
          die(c.error());
  }
  for (; outstanding > 0; --outstanding)
    if (!c.next_reply())
      die(c.error());
  auto secs = seconds_since(start);
  c.command({"DEL", key});
  return static_cast<double>(lines.size()) / secs;
}

double publisher_publish(const options& o,
                         const std::vector<std::string>& lines,
                         const std::string& key) {
  auto c = connect(o.url);
  c.command({"DEL", key});
  redis_publisher_settings s;
  s.url = o.url;
  s.stream = key;
  s.pipeline = o.pipeline;
  std::string why;
  auto p = make_redis_publisher(s, why);
  if (!p)
    die(why);
  auto start = clock_type::now();
  for (auto& line : lines)
    if (!p->publish(line))
      die(p->error());
  if (!p->flush())
    die(p->error());
  auto secs = seconds_since(start);
  if (p->confirmed() != lines.size())
    die("the publisher confirmed fewer events than it was given");
  c.command({"DEL", key});
  return static_cast<double>(lines.size()) / secs;
}

/// One pass of the bare consumer over `key` with a fresh group: read a
/// batch, acknowledge it, until nothing is left. Returns entries/s.
double bare_consume(const options& o, const std::string& key, size_t& seen) {
  auto c = connect(o.url);
  c.command({"XGROUP", "DESTROY", key, o.group});
  auto r = c.command({"XGROUP", "CREATE", key, o.group, "0", "MKSTREAM"});
  if (!r || r.view().is_error())
    die("XGROUP CREATE failed");
  auto count = std::to_string(o.read_count);
  seen = 0;
  std::vector<redis::entry_view> entries;
  std::vector<std::string> ids;
  std::string why;
  auto start = clock_type::now();
  for (;;) {
    auto batch = c.command({"XREADGROUP", "GROUP", o.group, "bare", "COUNT",
                            count, "STREAMS", key, ">"});
    entries.clear();
    if (!batch || !redis::parse_read_reply(batch.view(), entries, why))
      die("XREADGROUP failed: " + why + c.error());
    if (entries.empty())
      break;
    std::vector<std::string_view> ack{"XACK", key, o.group};
    for (auto& e : entries)
      ack.push_back(e.id);
    if (!c.command(ack))
      die(c.error());
    seen += entries.size();
  }
  auto secs = seconds_since(start);
  c.command({"XGROUP", "DESTROY", key, o.group});
  return static_cast<double>(seen) / secs;
}

/// The node's stream reader alone over `key` with a fresh group: every
/// entry handed out and acknowledged in rounds of a batch, as the ingest
/// driver does, without decoding. Separates the reader's cost from the
/// pipeline's.
double reader_consume(const options& o, const std::string& key,
                      const std::string& group) {
  auto c = connect(o.url);
  c.command({"XGROUP", "DESTROY", key, group});
  stream_settings s;
  s.url = o.url;
  s.stream = key;
  s.group = group;
  s.consumer = "bench";
  s.read_count = o.read_count;
  s.until_caught_up = true;
  auto reader = open_stream_reader(s, std::chrono::milliseconds{100});
  std::vector<uint64_t> settled;
  size_t seen = 0;
  auto start = clock_type::now();
  for (;;) {
    auto item = reader->next(settled.empty());
    if (item.kind == input_item::end)
      break;
    if (item.kind == input_item::nothing_yet)
      continue;
    ++seen;
    settled.push_back(item.origin.line);
    if (settled.size() >= 1024)
      reader->acknowledge(std::exchange(settled, {}));
  }
  reader->acknowledge(std::move(settled));
  auto secs = seconds_since(start);
  if (!reader->error().empty() || reader->unacknowledged() != 0)
    die("the reader did not acknowledge everything: " + reader->error());
  c.command({"XGROUP", "DESTROY", key, group});
  return static_cast<double>(seen) / secs;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      auto eq = a.find('=');
      if (eq != std::string::npos)
        return a.substr(eq + 1);
      if (i + 1 >= argc)
        die(a + " needs a value");
      return std::string{argv[++i]};
    };
    auto is = [&](const char* n) {
      return a == n || a.rfind(std::string{n} + "=", 0) == 0;
    };
    if (is("--redis"))
      o.url = value();
    else if (is("--input"))
      o.input = value();
    else if (is("--json"))
      o.json = value();
    else if (is("--reps"))
      o.reps = std::stoi(value());
    else if (is("--consume"))
      o.consume_stream = value();
    else if (is("--group"))
      o.group = value();
    else if (a == "--quick")
      o.reps = 1;
    else
      die("unknown option " + a);
  }
  if (!o.consume_stream.empty()) {
    size_t seen = 0;
    auto rate = bare_consume(o, o.consume_stream, seen);
    std::printf("{\"entries\": %zu, \"entries_per_s\": %.0f}\n", seen, rate);
    return 0;
  }
  if (o.input.empty())
    die("--input FILE is required");
  std::vector<std::string> lines;
  {
    std::ifstream in(o.input, std::ios::binary);
    if (!in)
      die("cannot read " + o.input);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty())
        lines.push_back(line);
  }
  auto key = fmt::format("bench:stream:{}", ::getpid());
  std::vector<double> bare, ours, consume, reader;
  for (int rep = 0; rep <= o.reps; ++rep) {
    // Alternating, so drift on this shared machine hits both alike.
    auto b = bare_publish(o, lines, key + ":bare");
    auto p = publisher_publish(o, lines, key + ":publisher");
    if (rep == 0)
      continue; // warm-up
    bare.push_back(b);
    ours.push_back(p);
    std::fprintf(stderr, "rep %d: bare XADD %.0f/s, publisher %.0f/s\n", rep,
                 b, p);
  }
  // The consumer's ceiling over the same lines.
  {
    auto c = connect(o.url);
    c.command({"DEL", key});
    redis_publisher_settings s;
    s.url = o.url;
    s.stream = key;
    std::string why;
    auto p = make_redis_publisher(s, why);
    for (auto& line : lines)
      p->publish(line);
    p->flush();
    for (int rep = 0; rep <= o.reps; ++rep) {
      size_t seen = 0;
      auto r = bare_consume(o, key, seen);
      if (seen != lines.size())
        die("the bare consumer saw fewer entries than were published");
      auto ours_r = reader_consume(o, key, "bench-reader");
      if (rep > 0) {
        consume.push_back(r);
        reader.push_back(ours_r);
      }
    }
    c.command({"DEL", key});
  }
  auto out = fmt::format(
    "{{\"events\": {}, \"bare_xadd_per_s\": {:.0f}, "
    "\"publisher_per_s\": {:.0f}, \"publisher_ratio\": {:.3f}, "
    "\"bare_consume_per_s\": {:.0f}, \"reader_consume_per_s\": {:.0f}, "
    "\"reader_ratio\": {:.3f}}}\n",
    lines.size(), median(bare), median(ours), median(ours) / median(bare),
    median(consume), median(reader), median(reader) / median(consume));
  std::fputs(out.c_str(), stdout);
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << out;
  }
  return 0;
}
