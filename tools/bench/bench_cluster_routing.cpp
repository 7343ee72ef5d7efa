// bench-cluster-routing: events per second from a reader's shard router to
// the registry shards' owner through the real gateway and shard host,
// with the owner in the same actor system (in process), or in another one
// reached over the CAF middleman (BASP over loopback TCP), plain and with
// mutual TLS. The owner's dispatcher is a stand-in that admits at once and
// reports each batch settled, so the figure is the cost of routing,
// serializing and settling, not of the registry. Same events, same credit
// window in every variant; median of the repetitions; ratios against in
// process.
//
//   build/bench-cluster-routing [--events=N] [--reps=N] [--certs=DIR]
//                               [--json=PATH]
//
// --certs: a folder made by `tools/certs.sh DIR a b` (default: made in a
// temporary folder with tools/certs.sh when the openssl command is there).

#include "actors/cluster.hpp"
#include "tools/bench/bench_common.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace flowmatch;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  size_t events = 300'000;
  int reps = 3;
  std::string certs;
  std::string json;
};

/// The owner's dispatcher, stood in: admits every batch at once and tells
/// the shard host its events are settled (as the commit coordinator would
/// once they are durable).
using fake_dispatcher_actor = admission_actor::extend<
  caf::reacts_to<subscribe_atom, settled_sink_actor>>;

fake_dispatcher_actor::behavior_type
fake_dispatcher(fake_dispatcher_actor::pointer self) {
  auto sink = std::make_shared<settled_sink_actor>();
  return {
    [=](ingest_atom, std::vector<event>& events) {
      std::vector<std::string> ids;
      ids.reserve(events.size());
      for (auto& e : events)
        ids.push_back(std::move(e.id));
      if (*sink)
        self->send(*sink, settled_atom::value, std::move(ids));
      return caf::ok_atom::value;
    },
    [=](subscribe_atom, settled_sink_actor& s) { *sink = std::move(s); },
  };
}

/// Every actor a run spawned: stopped before its actor system ends (which
/// waits for all of them).
std::vector<caf::actor> spawned;

void stop_all() {
  for (auto& a : spawned)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  spawned.clear();
}

/// The owner node's side: stand-in dispatcher, shard host and gateway.
cluster_gateway_actor spawn_owner(caf::actor_system& sys,
                                  const cluster_settings& cs) {
  auto d = sys.spawn(fake_dispatcher);
  spawned.push_back(caf::actor_cast<caf::actor>(d));
  // The shard host subscribes at "the coordinator": here the stand-in.
  auto coordinator = caf::actor_cast<commit_coordinator_actor>(d);
  auto host = sys.spawn(shard_host, cs, admission_actor{d}, coordinator,
                        std::chrono::milliseconds{3'600'000}, wait_limits{});
  auto gw = sys.spawn(cluster_gateway, cs, host, wait_limits{});
  spawned.push_back(caf::actor_cast<caf::actor>(host));
  spawned.push_back(caf::actor_cast<caf::actor>(gw));
  caf::scoped_actor self{sys};
  std::vector<std::string> no_ids;
  std::vector<int64_t> no_ms;
  for (uint32_t s = 0; s < cs.shape.shards; ++s)
    self->send(host, open_atom::value, s, int64_t{1}, no_ids, no_ms);
  return cluster_gateway_actor{gw};
}

std::vector<std::vector<event>> make_batches(size_t n) {
  constexpr size_t batch = 1024;
  std::vector<std::vector<event>> out;
  for (size_t i = 0; i < n; i += batch) {
    std::vector<event> b;
    for (size_t j = i; j < std::min(n, i + batch); ++j) {
      event e;
      e.id = "e" + std::to_string(j);
      e.type = event_type::site_updated;
      e.site_data.site_id = "site-" + std::to_string(j % 50'000);
      e.site_data.name = "a site";
      e.site_data.lat = 48.0 + static_cast<double>(j % 100) / 100.0;
      e.site_data.lon = 14.0;
      e.raw = R"({"id":"e","type":"site_updated","data":{"site_id":"site"}})";
      b.push_back(std::move(e));
    }
    out.push_back(std::move(b));
  }
  return out;
}

/// Routes every batch through `router` (admission window of 4 batches,
/// as a source keeps) and waits until every event is settled.
double run(caf::actor_system& sys, shard_router_actor router,
           const std::vector<std::vector<event>>& batches, size_t total) {
  caf::scoped_actor self{sys};
  size_t sent = 0, admitted = 0, settled = 0;
  auto start = clock_type::now();
  auto send_next = [&] {
    self->send(router, ingest_atom::value, batches[sent++]);
  };
  while (sent < batches.size() && sent < 4)
    send_next();
  while (settled < total) {
    self->receive(
      [&](caf::ok_atom) {
        ++admitted;
        if (sent < batches.size())
          send_next();
      },
      [&](settled_atom, const std::vector<std::string>& ids) {
        settled += ids.size();
      },
      [&](forget_atom, const std::vector<std::string>& ids) {
        settled += ids.size();
      },
      caf::after(std::chrono::seconds{60}) >> [&] {
        std::fprintf(stderr, "bench-cluster-routing: stalled at %zu of %zu "
                             "settled\n",
                     settled, total);
        std::exit(1);
      });
  }
  return static_cast<double>(total)
         / std::chrono::duration<double>(clock_type::now() - start).count();
}

/// A router whose directory names one owner for every shard.
shard_router_actor make_router(caf::actor_system& sys,
                               const cluster_settings& cs,
                               cluster_gateway_actor owner, bool remote) {
  auto router = sys.spawn(shard_router, cs, wait_limits{});
  spawned.push_back(caf::actor_cast<caf::actor>(router));
  cluster_directory d;
  d.nodes = {"reader", "owner"};
  d.self = 0;
  d.gateways = {cluster_gateway_actor{}, owner};
  d.shards.assign(cs.shape.shards, cluster_directory::owner{1, 1});
  if (!remote)
    d.self = 1;
  caf::anon_send(router, directory_atom::value, std::move(d));
  return router;
}

struct variant {
  std::string name;
  double rate = 0;
};

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    if (auto events = bench::option_value(argv[i], "--events"))
      o.events = std::stoul(events);
    else if (auto reps = bench::option_value(argv[i], "--reps"))
      o.reps = std::stoi(reps);
    else if (auto certs = bench::option_value(argv[i], "--certs"))
      o.certs = certs;
    else if (auto json = bench::option_value(argv[i], "--json"))
      o.json = json;
    else {
      std::fprintf(stderr, "usage: bench-cluster-routing [--events=N] "
                           "[--reps=N] [--certs=DIR] [--json=PATH]\n");
      return 2;
    }
  }
  if (o.certs.empty()) {
    o.certs = "/tmp/flowmatch-bench-certs";
    auto cmd = fmt::format("{}/tools/certs.sh {} owner reader > /dev/null",
                           FLOWMATCH_SOURCE_DIR, o.certs);
    if (std::system(cmd.c_str()) != 0)
      o.certs.clear();
  }
  cluster_settings cs;
  cs.node_id = "owner";
  cs.shape.shards = 64;
  auto config = [&](bool tls, const std::string& who) {
    auto cfg = std::make_unique<caf::actor_system_config>();
    add_message_types(*cfg);
    cfg->set("scheduler.max-threads", size_t{2});
    cfg->load<caf::io::middleman>();
    if (tls) {
      cfg->load<caf::openssl::manager>();
      cfg->openssl_certificate = o.certs + "/" + who + ".pem";
      cfg->openssl_key = o.certs + "/" + who + ".key";
      cfg->openssl_cafile = o.certs + "/ca.pem";
    }
    return cfg;
  };
  // The owner nodes, forked first, while this process has no thread: one
  // plain, one with mutual TLS. Each publishes its gateway on a free
  // loopback port, tells it through a pipe and serves until killed.
  struct owner_process {
    pid_t pid = 0;
    uint16_t port = 0;
  };
  owner_process owners[2];
  for (int v = 0; v < 2; ++v) {
    bool tls = v == 1;
    if (tls && o.certs.empty()) {
      std::printf("(no certificates: tools/certs.sh or --certs; TLS "
                  "skipped)\n");
      continue;
    }
    int fds[2];
    if (::pipe(fds) != 0)
      return 1;
    auto child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      auto owner_cfg = config(tls, "owner");
      caf::actor_system owner_sys{*owner_cfg};
      auto owner = spawn_owner(owner_sys, cs);
      auto port = tls ? caf::openssl::publish(owner, 0, "127.0.0.1", true)
                      : owner_sys.middleman().publish(owner, 0, "127.0.0.1",
                                                      true);
      uint16_t p = port ? *port : 0;
      if (::write(fds[1], &p, sizeof(p)) != sizeof(p) || p == 0)
        std::_Exit(1);
      for (;;)
        ::pause();
    }
    ::close(fds[1]);
    owners[v].pid = child;
    if (::read(fds[0], &owners[v].port, sizeof(uint16_t))
        != sizeof(uint16_t))
      owners[v].port = 0;
    ::close(fds[0]);
  }
  auto batches = make_batches(o.events);
  std::vector<variant> results;
  auto measure = [&](const std::string& name, auto&& one_run) {
    std::vector<double> rates;
    for (int r = 0; r < o.reps + 1; ++r) {
      auto rate = one_run();
      if (r > 0) // the first run warms up
        rates.push_back(rate);
    }
    results.push_back({name, bench::median(rates)});
    std::printf("%-24s %10.0f events/s\n", name.c_str(), results.back().rate);
    std::fflush(stdout);
  };

  // In process: reader and owner in one actor system.
  {
    auto cfg = config(false, "owner");
    caf::actor_system sys{*cfg};
    auto owner = spawn_owner(sys, cs);
    measure("in process", [&] {
      return run(sys, make_router(sys, cs, owner, false), batches, o.events);
    });
    stop_all();
  }
  // The owners in other processes, reached over loopback: plain BASP,
  // then mutual TLS.
  for (int v = 0; v < 2; ++v) {
    if (owners[v].port == 0)
      continue;
    bool tls = v == 1;
    {
      auto reader_cfg = config(tls, "reader");
      caf::actor_system reader_sys{*reader_cfg};
      auto remote
        = tls ? caf::openssl::remote_actor<cluster_gateway_actor>(
            reader_sys, "127.0.0.1", owners[v].port)
              : reader_sys.middleman().remote_actor<cluster_gateway_actor>(
                "127.0.0.1", owners[v].port);
      if (!remote) {
        std::fprintf(stderr, "connect failed: %s\n",
                     reader_sys.render(remote.error()).c_str());
        continue;
      }
      measure(tls ? "other process, TLS" : "other process, plain", [&] {
        return run(reader_sys, make_router(reader_sys, cs, *remote, true),
                   batches, o.events);
      });
      stop_all();
    }
  }
  for (auto& owner : owners)
    if (owner.pid > 0) {
      ::kill(owner.pid, SIGKILL);
      ::waitpid(owner.pid, nullptr, 0);
    }
  auto base = results.front().rate;
  for (auto& r : results)
    std::printf("%-24s %.2fx of in process\n", r.name.c_str(),
                base > 0 ? r.rate / base : 0.0);
  if (!o.json.empty()) {
    std::ofstream out{o.json};
    out << "{\"events\": " << o.events << ", \"reps\": " << o.reps
        << ", \"variants\": [";
    for (size_t i = 0; i < results.size(); ++i)
      out << (i ? ", " : "") << "{\"name\": \"" << results[i].name
          << "\", \"events_per_second\": " << results[i].rate
          << ", \"ratio\": " << (base > 0 ? results[i].rate / base : 0.0)
          << "}";
    out << "]}\n";
  }
  return 0;
}
