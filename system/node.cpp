#include "system/node.hpp"

#include "actors/commit_coordinator.hpp"
#include "actors/dead_letter_file_sink.hpp"
#include "actors/dispatcher.hpp"
#include "actors/match_partition.hpp"
#include "actors/match_router.hpp"
#include "actors/match_stream.hpp"
#include "actors/match_writer.hpp"
#include "actors/postgis_dead_letter_sink.hpp"
#include "actors/postgis_sync.hpp"
#include "actors/registry_worker.hpp"
#include "base/logging.hpp"
#include "base/memory.hpp"
#include "system/state_file.hpp"
#include "system/summary.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/publish.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>

namespace flowmatch {

namespace {

using node_ptr = node_actor::stateful_pointer<node_state>;

double seconds_since(std::chrono::steady_clock::time_point start,
                     std::chrono::steady_clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

/// The text of an error made with a message (ours), else CAF's rendering.
std::string error_text(node_ptr self, const caf::error& err) {
  auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return self->system().render(err);
}

/// Why the stages cannot work, from their latest status: a database
/// writer with work waiting and no connection (writers connect when they
/// have something to write), a stream reader without Redis. Empty when
/// nothing stands in the way.
std::string not_ready_reason(const std::vector<actor_status>& stages) {
  for (auto& s : stages) {
    auto db = s.find("connected");
    if (db && db->value == 0 && s.queue_depth > 0)
      return fmt::format("{}: not connected to the database ({} waiting "
                         "for {:.0f} s)",
                         s.actor, s.queue_depth, s.oldest_wait_seconds);
    if (auto redis = s.find("redis_connected"); redis && redis->value == 0)
      return s.actor + ": Redis unreachable";
  }
  return {};
}

/// What the node reads, for people.
std::string input_name(const settings& cfg) {
  auto& s = cfg.source.reader.stream;
  if (s.url.empty())
    return cfg.source.reader.path;
  if (cfg.cluster.enabled())
    return fmt::format("redis:{} ({} partitions) at {} (group {}, consumer "
                       "{})",
                       s.stream, cfg.cluster.shape.stream_partitions, s.url,
                       s.group, s.consumer);
  return fmt::format("redis:{} at {} (group {}, consumer {})", s.stream,
                     s.url, s.group, s.consumer);
}

/// After a restore: gives back what the copies of the stored state took
/// (the stages keep their own), so that the node's resident memory is what
/// its state needs rather than the restore's peak; for the log.
std::string returned_memory() {
  auto mib = trim_free_memory() >> 20;
  if (mib == 0)
    return {};
  return fmt::format(" ({} MiB of memory returned to the system after it)",
                     mib);
}

/// Stops the stages in reverse order of start, then the node itself.
void finish(node_ptr self, int code) {
  auto& st = self->state;
  if (st.now == node_state::phase::finished)
    return;
  st.now = node_state::phase::finished;
  st.done.deliver(code);
  for (auto i = st.components.rbegin(); i != st.components.rend(); ++i)
    self->send_exit(i->handle, caf::exit_reason::user_shutdown);
  self->quit(caf::exit_reason::user_shutdown);
}

/// Adds a started stage to the component table and, when it answers the
/// status protocol, attaches it to telemetry.
template <class Handle>
Handle& started(node_ptr self, std::string name, Handle& handle) {
  auto& st = self->state;
  st.components.push_back({std::move(name),
                           caf::actor_cast<caf::actor>(handle)});
  if constexpr (caf::detail::tl_subset_of<status_source_actor::signatures,
                                          typename Handle::signatures>::value)
    if (st.telemetry)
      self->send(st.telemetry, attach_atom::value,
                 status_source_actor{handle});
  return handle;
}

// -- drain -------------------------------------------------------------------

/// One step of the drain: asks a stage one question, keeps the answer,
/// then the next step runs; a failure ends the run, naming the step.
struct drain_step {
  const char* what;
  std::function<void(node_ptr, std::function<void()> next)> run;
};

void step_failed(node_ptr self, const char* what, const caf::error& err) {
  log()->error("{} {} failed: {}", self->name(), what,
               self->system().render(err));
  finish(self, exit_failure);
}

/// The step `what`: asks `stage` with `question` and passes the answer
/// (of type Reply) to `keep`.
template <class Reply, class Stage, class Question, class Keep>
drain_step ask_step(const char* what, Stage stage,
                    std::chrono::milliseconds timeout, Question question,
                    Keep keep) {
  return {what, [=](node_ptr self, std::function<void()> next) {
            self->request(stage, timeout, question)
              .then(
                [self, keep, next](Reply& answer) {
                  keep(self, answer);
                  next();
                },
                [self, what](caf::error& err) {
                  step_failed(self, what, err);
                });
          }};
}

/// Prints the summary, then ends the run with its exit code.
void report(node_ptr self) {
  auto& st = self->state;
  bool stream = !st.cfg.source.reader.stream.url.empty();
  auto summary = format_summary(input_name(st.cfg), st.input, st.totals,
                                st.dead_letters_written,
                                seconds_since(st.started, st.drained),
                                st.matches,
                                stream ? std::optional<uint64_t>{
                                  st.unacknowledged}
                                       : std::nullopt);
  std::fwrite(summary.data(), 1, summary.size(), stdout);
  std::fflush(stdout);
  // The run's counts are true either way; a lost output or an input that
  // could not be read to its end is a failure.
  int code = exit_ok;
  if (!st.input.read_error.empty()) {
    log()->error("{} the input was not read to its end: {}", self->name(),
                 st.input.read_error);
    code = exit_input;
  }
  if (!st.state_written)
    code = exit_failure;
  finish(self, code);
}

std::vector<drain_step> drain_steps(node_ptr self) {
  auto& st = self->state;
  // Longer than the grace period: when the drain is slow, the deadline
  // (exit 3) speaks first, not a request timeout (exit 4).
  auto long_wait = st.cfg.grace_period + st.cfg.limits.reply;
  auto reply = st.cfg.limits.reply;
  std::vector<drain_step> steps;
  steps.push_back(ask_step<caf::ok_atom>(
    "draining the dispatcher", st.dispatcher, long_wait, drain_atom::value,
    [](node_ptr s, caf::ok_atom) {
      s->state.drained = std::chrono::steady_clock::now();
    }));
  if (st.cfg.source.reader.stream.url.empty()) {
    steps.push_back(ask_step<registry_stats>(
      "releasing held flows", st.dispatcher, long_wait, release_atom::value,
      [](node_ptr s, registry_stats& totals) {
        s->state.totals = std::move(totals);
      }));
  } else {
    // A stream is not over: flows held for their sites stay pending in
    // it (unacknowledged) and are read again at the next start.
    steps.push_back(ask_step<dispatch_status>(
      "counting events", st.dispatcher, reply, flight_atom::value,
      [](node_ptr s, dispatch_status& status) {
        s->state.totals = std::move(status.totals);
      }));
    // Counts, not a snapshot: copying half a million sites and flows
    // took 570 MB more at the drain (the 10x overload of tools/faults.py).
    steps.push_back(ask_step<registry_stats>(
      "counting sites and flows", st.dispatcher, long_wait, count_atom::value,
      [](node_ptr s, registry_stats& counts) {
        s->state.totals.sites = counts.sites;
        s->state.totals.flows = counts.flows;
      }));
  }
  steps.push_back(ask_step<uint64_t>(
    "counting matches", st.matcher, reply, matches_atom::value,
    [](node_ptr s, uint64_t n) { s->state.matches = n; }));
  if (st.match_stream)
    steps.push_back(ask_step<uint64_t>("flushing the match stream",
                                       st.match_stream, reply,
                                       caf::flush_atom::value,
                                       [](node_ptr, uint64_t) {}));
  if (!st.cfg.output_state.empty())
    steps.push_back(ask_step<registry_snapshot>(
      "writing the state file", st.dispatcher, long_wait,
      snapshot_atom::value, [](node_ptr s, registry_snapshot& snap) {
        auto& path = s->state.cfg.output_state;
        auto err = write_state_file(path, snap);
        s->state.state_written = err.empty();
        if (err.empty())
          log()->info("{} wrote {} sites and {} flows to {}", s->name(),
                      snap.sites.size(), snap.flows.size(), path);
        else
          log()->error("{} cannot write the state file: {}", s->name(), err);
      }));
  steps.push_back(ask_step<uint64_t>(
    "flushing dead letters", st.dead_letters, reply, caf::flush_atom::value,
    [](node_ptr s, uint64_t n) { s->state.dead_letters_written = n; }));
  if (!st.cfg.source.reader.stream.url.empty())
    steps.push_back(ask_step<uint64_t>(
      "acknowledging stream entries", st.source, reply, drain_atom::value,
      [](node_ptr s, uint64_t left) {
        s->state.unacknowledged = left;
        if (left > 0)
          log()->info("{} {} stream entries stay pending (flows held for "
                      "their sites): read again at the next start",
                      s->name(), left);
      }));
  return steps;
}

/// Runs the drain steps in order, then reports.
void run_drain(node_ptr self, std::shared_ptr<std::vector<drain_step>> steps,
               size_t i) {
  if (self->state.now == node_state::phase::finished)
    return;
  if (i == steps->size()) {
    report(self);
    return;
  }
  log()->debug("{} drain: {}", self->name(), (*steps)[i].what);
  (*steps)[i].run(self, [self, steps, i] { run_drain(self, steps, i + 1); });
}

void arm_deadline(node_ptr self) {
  auto& st = self->state;
  if (st.deadline_armed)
    return;
  st.deadline_armed = true;
  self->delayed_send(self, st.cfg.grace_period, deadline_atom::value);
}

/// Logs what is unfinished, then ends the run with `code` at once.
void abort_run(node_ptr self, int code, const std::string& why) {
  auto& st = self->state;
  log()->error("{} {}; stopping now", self->name(), why);
  self->request(st.dispatcher, std::chrono::seconds{1}, flight_atom::value)
    .then(
      [self, code](dispatch_status& s) {
        log()->error("{} unfinished: {} events in flight, {} batches "
                     "waiting for admission, {} of {} decoded events "
                     "admitted",
                     self->name(), s.total_in_flight(), s.parked_batches,
                     s.admitted,
                     self->state.input.events);
        finish(self, code);
      },
      [self, code](caf::error&) {
        log()->error("{} unfinished: the dispatcher did not answer",
                     self->name());
        finish(self, code);
      });
}

/// One line a few seconds apart while the node runs: what came in, what is
/// applied, what waits, and the rate since the last line.
void log_progress(node_ptr self, const dispatch_status& s,
                  const std::vector<actor_status>& stages) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  auto secs = seconds_since(st.progress_at, now);
  double rate = secs > 0 ? static_cast<double>(s.totals.applied
                                               - st.progress_applied)
                             / secs
                         : 0.0;
  // The stage whose oldest item has waited longest (from telemetry): where
  // to look when the rate drops.
  std::string slowest;
  const actor_status* worst = nullptr;
  for (auto& stage : stages)
    if (stage.oldest_wait_seconds > 0
        && (!worst || stage.oldest_wait_seconds > worst->oldest_wait_seconds))
      worst = &stage;
  if (worst)
    slowest = fmt::format("; longest wait: {} ({} waiting, oldest {:.1f} s)",
                          worst->actor, worst->queue_depth,
                          worst->oldest_wait_seconds);
  log()->info("{} progress: {} events admitted, {} applied, {} in flight, "
              "{} dead-lettered by the registry; {:.0f} applied/s{}",
              self->name(), s.admitted, s.totals.applied, s.total_in_flight(),
              s.totals.dead_lettered(), rate, slowest);
  st.progress_applied = s.totals.applied;
  st.progress_at = now;
}

// -- start -------------------------------------------------------------------

void start_source(node_ptr self) {
  auto& st = self->state;
  if (st.cfg.progress_interval.count() > 0) {
    st.progress_at = std::chrono::steady_clock::now();
    self->delayed_send(self, st.cfg.progress_interval, progress_atom::value);
  }
  st.source = self->spawn<caf::detached + caf::linked>(
    ingest_source, st.cfg.source, st.dispatcher,
    caf::actor_cast<source_listener_actor>(self), st.dead_letters,
    st.coordinator, std::move(st.already_applied));
  started(self, "ingest source", st.source);
  st.already_applied = processed_ids{};
}

/// One PostGIS sync per registry worker, each a committing subscriber of
/// its worker's batches; in cluster mode fenced by the node's id.
void start_syncs(node_ptr self) {
  auto& st = self->state;
  for (uint32_t i = 0; i < st.cfg.registry_workers; ++i) {
    auto sync = self->spawn<caf::detached + caf::linked>(
      postgis_sync, i, st.cfg.postgis, st.dead_letters,
      st.cfg.cluster.node_id);
    st.syncs.push_back(sync);
    started(self, fmt::format("PostGIS sync {}", i), sync);
    self->send(st.coordinator, subscribe_atom::value, commit_sink_actor{sync},
               i);
  }
}

/// The dispatcher with the registry's worker-pool group.
void start_dispatcher(node_ptr self) {
  auto& st = self->state;
  group_settings registry_group;
  registry_group.name = "registry";
  registry_group.workers = st.cfg.registry_workers;
  registry_group.policy = st.cfg.registry_policy;
  registry_group.max_in_flight = st.cfg.registry_max_in_flight;
  registry_group.handles = contract_event_types();
  registry_group.factory = registry_worker_factory(
    st.coordinator, st.dead_letters, st.cfg.worker);
  registry_group.supervision = st.cfg.supervision;
  registry_group.on_pool_started = [self](const worker_pool_actor& pool) {
    // The dispatcher stops its pools; telemetry still watches them.
    self->send(self->state.telemetry, attach_atom::value,
               status_source_actor{pool});
  };
  st.dispatcher = self->spawn<caf::linked>(
    dispatcher, std::vector<group_settings>{std::move(registry_group)});
  started(self, "dispatcher", st.dispatcher);
}

/// Starts the stages in order (the component table); with a database, the
/// stored state goes into them before the source starts.
void start_stages(node_ptr self, std::optional<stored_state> stored) {
  auto& st = self->state;
  st.now = node_state::phase::running;
  bool with_db = !st.cfg.postgis.dsn.empty();
  st.telemetry = self->spawn<caf::linked>(telemetry, st.cfg.telemetry);
  started(self, "telemetry", st.telemetry);
  if (with_db) {
    if (!st.cfg.output_dead_letters.empty())
      log()->warn("{} a database is configured: dead letters go to the "
                  "dead_letters table, not to {}",
                  self->name(), st.cfg.output_dead_letters);
    st.dead_letters = self->spawn<caf::detached + caf::linked>(
      postgis_dead_letter_sink, st.cfg.postgis);
  } else {
    st.dead_letters = self->spawn<caf::detached + caf::linked>(
      dead_letter_file_sink, st.cfg.output_dead_letters);
  }
  started(self, "dead-letter sink", st.dead_letters);
  // The commit barrier: every worker batch waits for its worker's PostGIS
  // sync (entities committed) and for the match router (matches stored).
  st.coordinator = self->spawn<caf::linked>(commit_coordinator, st.cfg.limits);
  started(self, "commit coordinator", st.coordinator);
  if (with_db)
    start_syncs(self);
  // The match service: one partition per class, each with its sinks (the
  // matches table, the match stream).
  if (!st.cfg.output_matches.empty()) {
    st.match_stream = self->spawn<caf::detached + caf::linked>(
      match_stream, st.cfg.output_matches);
    started(self, "match stream", st.match_stream);
  }
  // Each class's writer is shared by the class's partitions (a pair's
  // changes come from one partition at a time: the router's segments).
  match_tiling tiling{st.cfg.match, st.cfg.match_partitions_per_class,
                      st.cfg.match_tile_km};
  std::vector<std::vector<match_sink_actor>> sinks(match_tiling::classes);
  for (uint32_t c = 0; c < match_tiling::classes; ++c) {
    auto cls = static_cast<resource_class>(c);
    if (with_db) {
      auto writer = self->spawn<caf::detached + caf::linked>(
        match_writer, std::string{to_string(cls)}, st.cfg.postgis,
        store::fence{});
      sinks[c].push_back(started(
        self, fmt::format("match writer {}", to_string(cls)), writer));
    }
    if (st.match_stream)
      sinks[c].push_back(st.match_stream);
  }
  std::vector<match_partition_actor> partitions;
  for (uint32_t p = 0; p < tiling.partitions(); ++p) {
    auto cls = tiling.class_of(p);
    auto label = partition_label(tiling, p);
    auto partition = self->spawn<caf::linked>(
      match_partition, cls, label, st.cfg.match,
      sinks[static_cast<size_t>(cls)], st.cfg.limits);
    partitions.push_back(
      started(self, fmt::format("match partition {}", label), partition));
  }
  st.matcher = self->spawn<caf::linked>(match_router, std::move(partitions),
                                        std::move(tiling), st.cfg.limits, 0u);
  started(self, "match router", st.matcher);
  self->send(st.coordinator, subscribe_atom::value,
             commit_sink_actor{st.matcher}, all_workers);
  start_dispatcher(self);
  log()->info("{} running: input {}, {} workers, {} scheduler threads{}",
              self->name(), input_name(st.cfg),
              st.cfg.registry_workers, st.cfg.threads,
              with_db ? ", PostGIS schema " + st.cfg.postgis.schema : "");
  if (!stored) {
    start_source(self);
    return;
  }
  auto sites = stored->snapshot.sites.size();
  auto flows = stored->snapshot.flows.size();
  auto events = stored->event_ids.size();
  // The processed ids go to the source's dedup window.
  st.already_applied.ids = std::move(stored->event_ids);
  st.already_applied.applied_ms = std::move(stored->event_applied_ms);
  auto failed = [self](caf::error& err) {
    log()->critical("{} restoring the stored state failed: {}", self->name(),
                    self->system().render(err));
    finish(self, exit_failure);
  };
  auto timeout = st.cfg.limits.reply;
  // The match service first (it gets a copy), then the registry.
  self->request(st.matcher, timeout, restore_atom::value, stored->snapshot,
                std::move(stored->matches))
    .then(
      [=](caf::ok_atom) mutable {
        self->request(self->state.dispatcher, timeout, restore_atom::value,
                      std::move(stored->snapshot))
          .then(
            [=](caf::ok_atom) {
              log()->info("{} restored {} sites, {} flows and {} processed "
                          "event ids from the database{}",
                          self->name(), sites, flows, events,
                          returned_memory());
              if (self->state.now == node_state::phase::running)
                start_source(self);
            },
            failed);
      },
      failed);
}


// -- cluster mode ------------------------------------------------------------

/// The stream key of partition `q` (ingest.md): the key itself when the
/// stream has one partition.
std::string stream_key(const settings& cfg, uint32_t q) {
  auto& base = cfg.source.reader.stream.stream;
  return cfg.cluster.shape.stream_partitions > 1
           ? base + ":" + std::to_string(q)
           : base;
}

/// Publishes the gateway on cluster.listen (mutual TLS with openssl.*).
bool publish_gateway(node_ptr self) {
  auto& st = self->state;
  auto& c = st.cfg.cluster;
  auto host = c.listen_host;
  // The peers' view: the gateway's public interface only (the node's
  // control messages are not announced, and refused from other nodes).
  cluster_gateway_actor door{st.gateway};
  auto published
    = c.tls ? caf::openssl::publish(door, c.listen_port, host.c_str(), true)
            : self->system().middleman().publish(door, c.listen_port,
                                                 host.c_str(), true);
  if (!published) {
    log()->critical("{} cannot listen on cluster.listen {}: {}", self->name(),
                    c.address(), self->system().render(published.error()));
    return false;
  }
  log()->info("{} node {} listening for the cluster on {}{}", self->name(),
              c.node_id, c.address(), c.tls ? " (mutual TLS)" : "");
  return true;
}

/// Tells every sync the shard leases its transactions must hold.
void send_fences(node_ptr self) {
  auto& st = self->state;
  std::vector<std::string> names;
  std::vector<int64_t> epochs;
  for (auto& [name, epoch] : st.shard_leases) {
    names.push_back(name);
    epochs.push_back(epoch);
  }
  for (auto& sync : st.syncs)
    self->send(sync, fence_atom::value, names, epochs);
}

void take_next_gains(node_ptr self);

/// Starts what a lease round brought, from one snapshot of the database:
/// registry shards (restored into the dispatcher, placed by the match
/// router, then opened at the shard host), match partitions (spawned with
/// their own fenced writer, restored, then opened at the gateway), and,
/// once those are open, stream readers.
void take_gains(node_ptr self, std::vector<lease_gain> round) {
  auto& node = self->state;
  node.gaining = true;
  auto unclean = std::count_if(round.begin(), round.end(),
                               [](const lease_gain& g) { return !g.clean; });
  // Said before the work starts, so that an operator (and the scenario
  // that kills a node during a takeover) sees a takeover under way.
  log()->info("{} taking over {} leases{}", self->name(), round.size(),
              unclean == 0 ? std::string{}
                           : fmt::format(", {} of them expired (their holder "
                                         "did not release them)",
                                         unclean));
  for (auto& g : round)
    if (g.resource.kind == resource_kind::shard)
      node.shard_leases[resource_name(g.resource)] = g.epoch;
  send_fences(self);
  auto timeout = node.cfg.limits.reply;
  self->request(node.owner, timeout, snapshot_atom::value)
    .then(
      [self, round, timeout](stored_state& stored) mutable {
        auto& st = self->state;
        auto& cfg = st.cfg;
        auto shards = cfg.cluster.shape.shards;
        // Each gained shard's part of the snapshot.
        std::map<uint32_t, registry_snapshot> parts;
        std::vector<lease_gain> shard_gains, partition_gains, stream_gains;
        for (auto& g : round) {
          if (g.resource.kind == resource_kind::shard) {
            parts[g.resource.index];
            shard_gains.push_back(g);
          } else if (g.resource.kind == resource_kind::match) {
            partition_gains.push_back(g);
          } else {
            stream_gains.push_back(g);
          }
        }
        if (!parts.empty()) {
          for (auto& s : stored.snapshot.sites)
            if (auto i = parts.find(shard_of(s.site_id, shards));
                i != parts.end())
              i->second.sites.push_back(s);
          for (auto& f : stored.snapshot.flows)
            if (auto i = parts.find(shard_of(f.site_id, shards));
                i != parts.end())
              i->second.flows.push_back(f);
        }
        // Each gained partition's entities and stored matches.
        std::vector<registry_snapshot> placed;
        std::vector<std::vector<match>> placed_matches;
        match_tiling tiling{cfg.match, cfg.match_partitions_per_class,
                            cfg.match_tile_km};
        if (!partition_gains.empty()) {
          match_placement placement{tiling};
          placement.place(registry_snapshot{stored.snapshot},
                          std::move(stored.matches), placed, placed_matches);
        }
        auto ids = std::make_shared<processed_ids>();
        ids->ids = std::move(stored.event_ids);
        ids->applied_ms = std::move(stored.event_applied_ms);
        auto steps = shard_gains.size() + partition_gains.size();
        auto left = std::make_shared<size_t>(steps);
        auto failed = std::make_shared<bool>(false);
        auto fail = [self, round, failed](caf::error& err) {
          if (*failed)
            return;
          *failed = true;
          log()->critical("{} taking over leased work failed: {}",
                          self->name(), self->system().render(err));
          finish(self, exit_failure);
        };
        auto taken = round.size();
        auto start_streams = [self, stream_gains, ids, taken]() {
          auto& now = self->state;
          for (auto& g : stream_gains) {
            auto src = now.cfg.source;
            src.reader.stream.stream = stream_key(now.cfg, g.resource.index);
            src.reader.stream.claim_all_at_start = true;
            src.require_site_id = true;
            auto source = self->spawn<caf::detached + caf::linked>(
              ingest_source, src, admission_actor{now.shard_router},
              caf::actor_cast<source_listener_actor>(self), now.dead_letters,
              commit_coordinator_actor{}, *ids);
            now.sources.push_back(source);
            ++now.sources_running;
            started(self, fmt::format("ingest source {}",
                                      src.reader.stream.stream),
                    now.sources.back());
          }
          log()->info("{} took over {} leases; holds {} registry shards, {} "
                      "match partitions, {} stream readers{}",
                      self->name(), taken, now.shard_leases.size(),
                      now.partitions.size(), now.sources.size(),
                      returned_memory());
          now.gaining = false;
          take_next_gains(self);
        };
        auto one_done = [left, start_streams]() {
          if (--*left == 0)
            start_streams();
        };
        if (steps == 0) {
          start_streams();
          return;
        }
        bool first = true;
        for (auto& g : shard_gains) {
          auto s = g.resource.index;
          auto part = std::move(parts[s]);
          auto epoch = g.epoch;
          auto clean = g.clean;
          auto shard_ids = first ? ids : std::make_shared<processed_ids>();
          first = false;
          auto copy = part;
          self->request(st.dispatcher, timeout, restore_atom::value,
                        std::move(part))
            .then(
              [self, s, epoch, clean, copy, shard_ids, one_done,
               fail](caf::ok_atom) mutable {
                auto& now = self->state;
                self
                  ->request(now.matcher, now.cfg.limits.stall,
                            resync_atom::value, s, clean, std::move(copy))
                  .then(
                    [self, s, epoch, shard_ids, one_done](caf::ok_atom) {
                      self->send(self->state.shard_host, open_atom::value, s,
                                 epoch, shard_ids->ids,
                                 shard_ids->applied_ms);
                      one_done();
                    },
                    fail);
              },
              fail);
        }
        for (auto& g : partition_gains) {
          auto p = g.resource.index;
          auto cls = tiling.class_of(p);
          auto label = partition_label(tiling, p);
          std::vector<match_sink_actor> sinks;
          store::fence fence{cfg.cluster.node_id,
                             {resource_name(g.resource)},
                             {g.epoch}};
          auto writer = self->spawn<caf::detached + caf::linked>(
            match_writer, label, cfg.postgis, std::move(fence));
          st.partition_writers.push_back(writer);
          sinks.push_back(
            started(self, fmt::format("match writer {}", label), writer));
          if (st.match_stream)
            sinks.push_back(st.match_stream);
          auto partition = self->spawn<caf::linked>(
            match_partition, cls, label, cfg.match, std::move(sinks),
            cfg.limits);
          st.partitions.push_back(partition);
          started(self, fmt::format("match partition {}", label), partition);
          auto epoch = g.epoch;
          self
            ->request(partition, st.cfg.limits.stall, restore_atom::value,
                      std::move(placed[p]), std::move(placed_matches[p]))
            .then(
              [self, p, epoch, partition, one_done](caf::ok_atom) {
                self->send(self->state.gateway, open_atom::value, p, epoch,
                           partition);
                one_done();
              },
              fail);
        }
      },
      [self, round](caf::error& err) {
        // The database is away: the leases are held; try again.
        log()->warn("{} cannot load the state of the leases taken: {}; "
                    "trying again",
                    self->name(), self->system().render(err));
        self->state.gains.push_front(round);
        self->state.gaining = false;
        self->delayed_send(self, self->state.cfg.cluster.beat,
                           retry_atom::value);
      });
}

void take_next_gains(node_ptr self) {
  auto& st = self->state;
  if (st.gaining || st.gains.empty()
      || st.now != node_state::phase::running)
    return;
  auto round = std::move(st.gains.front());
  st.gains.pop_front();
  take_gains(self, std::move(round));
}

/// Cluster mode: the same stages as a single node without its own
/// source and match partitions; the shard host, gateway, shard router and
/// membership beside them. Work arrives as leases are taken.
void start_cluster_stages(node_ptr self) {
  auto& st = self->state;
  auto& cfg = st.cfg;
  st.now = node_state::phase::running;
  st.telemetry = self->spawn<caf::linked>(telemetry, cfg.telemetry);
  started(self, "telemetry", st.telemetry);
  st.dead_letters = self->spawn<caf::detached + caf::linked>(
    postgis_dead_letter_sink, cfg.postgis);
  started(self, "dead-letter sink", st.dead_letters);
  st.coordinator = self->spawn<caf::linked>(commit_coordinator, cfg.limits);
  started(self, "commit coordinator", st.coordinator);
  start_syncs(self);
  send_fences(self);
  if (!cfg.output_matches.empty()) {
    st.match_stream = self->spawn<caf::detached + caf::linked>(
      match_stream, cfg.output_matches);
    started(self, "match stream", st.match_stream);
  }
  match_tiling tiling{cfg.match, cfg.match_partitions_per_class,
                      cfg.match_tile_km};
  st.matcher = self->spawn<caf::linked>(match_router,
                                        std::vector<match_partition_actor>{},
                                        std::move(tiling), cfg.limits,
                                        cfg.cluster.shape.shards);
  started(self, "match router", st.matcher);
  self->send(st.coordinator, subscribe_atom::value,
             commit_sink_actor{st.matcher}, all_workers);
  start_dispatcher(self);
  st.shard_host = self->spawn<caf::linked>(
    shard_host, cfg.cluster, admission_actor{st.dispatcher}, st.coordinator,
    cfg.dedup_retention, cfg.limits);
  started(self, "shard host", st.shard_host);
  st.gateway = self->spawn<caf::linked>(cluster_gateway, cfg.cluster,
                                        st.shard_host, cfg.limits);
  started(self, "cluster gateway", st.gateway);
  if (!publish_gateway(self)) {
    finish(self, exit_config);
    return;
  }
  st.shard_router = self->spawn<caf::linked>(shard_router, cfg.cluster,
                                             cfg.limits);
  started(self, "shard router", st.shard_router);
  st.keeper = self->spawn<caf::detached + caf::linked>(
    lease_keeper, cfg.cluster, cfg.postgis);
  started(self, "lease keeper", st.keeper);
  st.membership = self->spawn<caf::linked>(
    cluster_membership, cfg.cluster, st.keeper,
    caf::actor_cast<lease_listener_actor>(self),
    cluster_gateway_actor{st.gateway});
  started(self, "cluster membership", st.membership);
  self->send(st.gateway, attach_atom::value, st.membership);
  self->send(st.membership, subscribe_atom::value,
             directory_sink_actor{st.matcher});
  self->send(st.membership, subscribe_atom::value,
             directory_sink_actor{st.shard_router});
  if (cfg.progress_interval.count() > 0) {
    st.progress_at = std::chrono::steady_clock::now();
    self->delayed_send(self, cfg.progress_interval, progress_atom::value);
  }
  log()->info("{} running as cluster node {}: {} registry shards, {} match "
              "partitions, {} stream partitions in the cluster; {} workers, "
              "{} scheduler threads, PostGIS schema {}",
              self->name(), cfg.cluster.node_id, cfg.cluster.shape.shards,
              cfg.cluster.shape.match_partitions,
              cfg.cluster.shape.stream_partitions, cfg.registry_workers,
              cfg.threads, cfg.postgis.schema);
}

/// A graceful leave: the readers stop and their events settle (or stay
/// pending: flows held for their sites), the node refuses new work from
/// the others and finishes what it admitted, its writers flush, then it
/// releases every lease so the others take over at once.
std::vector<drain_step> cluster_drain_steps(node_ptr self) {
  auto& st = self->state;
  auto long_wait = st.cfg.grace_period + st.cfg.limits.reply;
  auto reply = st.cfg.limits.reply;
  std::vector<drain_step> steps;
  steps.push_back(ask_step<caf::ok_atom>(
    "settling the routed events", st.shard_router, long_wait,
    drain_atom::value, [](node_ptr, caf::ok_atom) {}));
  for (auto& source : st.sources)
    steps.push_back(ask_step<uint64_t>(
      "acknowledging stream entries", source, reply, drain_atom::value,
      [](node_ptr s, uint64_t left) { s->state.unacknowledged += left; }));
  // The shard host refuses new events first; the gateway keeps taking
  // match parts until this node's own work drained, because the nodes'
  // work depends on each other's partitions (the whole cluster may be
  // stopping at once).
  steps.push_back({"refusing new events", [](node_ptr s, std::function<void()> next) {
                     s->send(s->state.shard_host, stop_atom::value);
                     next();
                   }});
  steps.push_back(ask_step<caf::ok_atom>(
    "draining the dispatcher", st.dispatcher, long_wait, drain_atom::value,
    [](node_ptr s, caf::ok_atom) {
      s->state.drained = std::chrono::steady_clock::now();
    }));
  steps.push_back(ask_step<caf::ok_atom>(
    "closing the gateway", st.gateway, long_wait, stop_atom::value,
    [](node_ptr, caf::ok_atom) {}));
  steps.push_back(ask_step<dispatch_status>(
    "counting events", st.dispatcher, reply, flight_atom::value,
    [](node_ptr s, dispatch_status& status) {
      s->state.totals = std::move(status.totals);
    }));
  steps.push_back(ask_step<registry_stats>(
    "counting sites and flows", st.dispatcher, long_wait, count_atom::value,
    [](node_ptr s, registry_stats& counts) {
      s->state.totals.sites = counts.sites;
      s->state.totals.flows = counts.flows;
    }));
  steps.push_back(ask_step<uint64_t>(
    "counting matches", st.gateway, reply, matches_atom::value,
    [](node_ptr s, uint64_t n) { s->state.matches = n; }));
  for (auto& writer : st.partition_writers)
    steps.push_back(ask_step<uint64_t>("flushing a match writer", writer,
                                       long_wait, caf::flush_atom::value,
                                       [](node_ptr, uint64_t) {}));
  if (st.match_stream)
    steps.push_back(ask_step<uint64_t>("flushing the match stream",
                                       st.match_stream, reply,
                                       caf::flush_atom::value,
                                       [](node_ptr, uint64_t) {}));
  steps.push_back(ask_step<uint64_t>(
    "flushing dead letters", st.dead_letters, reply, caf::flush_atom::value,
    [](node_ptr s, uint64_t n) { s->state.dead_letters_written = n; }));
  steps.push_back(ask_step<caf::ok_atom>(
    "releasing the leases", st.membership, reply, leave_atom::value,
    [](node_ptr, caf::ok_atom) {}));
  return steps;
}

/// Cluster mode: a lease is lost (or the node id is another process's
/// now). The node stops with exit 7 at once, without releasing anything;
/// its member row is marked gone first (briefly: the database may be what
/// failed) so that a restart with the same id can join without waiting.
void stop_lease_lost(node_ptr self, const std::string& why) {
  auto& st = self->state;
  if (st.now == node_state::phase::finished || st.stopping_lease_lost)
    return;
  st.stopping_lease_lost = true;
  log()->critical("{} {}: stopping (restart to rejoin the cluster)",
                  self->name(), why);
  if (!st.keeper) {
    finish(self, exit_lease_lost);
    return;
  }
  self->request(st.keeper, st.cfg.cluster.beat, stop_atom::value)
    .then([self](caf::ok_atom) { finish(self, exit_lease_lost); },
          [self](caf::error& err) {
            log()->warn("{} could not mark the member row gone ({}): a "
                        "restart may wait for its heartbeat to age",
                        self->name(), self->system().render(err));
            finish(self, exit_lease_lost);
          });
}

/// Cluster mode: the first signal starts a graceful leave.
void start_cluster_leave(node_ptr self) {
  auto& st = self->state;
  st.now = node_state::phase::draining;
  self->send(st.membership, stop_atom::value);
  if (st.sources_running == 0) {
    run_drain(self,
              std::make_shared<std::vector<drain_step>>(
                cluster_drain_steps(self)),
              0);
    return;
  }
  for (auto& source : st.sources)
    self->send(source, stop_atom::value);
}

/// With a database: the schema owner migrates and owns the schema and
/// loads what it holds (waiting for a database that is down at start);
/// then the stages start.
void open_database(node_ptr self) {
  auto& st = self->state;
  st.now = node_state::phase::connecting;
  st.owner = self->spawn<caf::detached + caf::linked>(
    schema_owner, st.cfg.postgis, st.cfg.dedup_retention,
    st.cfg.cluster.enabled());
  started(self, "schema owner", st.owner);
  self->request(st.owner, st.cfg.limits.stall, connect_atom::value)
    .then(
      [self](stored_state& stored) {
        if (self->state.now != node_state::phase::connecting)
          return;
        if (self->state.cfg.cluster.enabled())
          start_cluster_stages(self);
        else
          start_stages(self, std::move(stored));
      },
      [self](caf::error& err) {
        log()->critical("{} {}", self->name(), error_text(self, err));
        finish(self, exit_config);
      });
}

} // namespace

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               settings cfg) {
  self->state.cfg = std::move(cfg);
  // A stage that dies with an error (a pool past its restart intensity, a
  // sink that cannot write) ends the run with a failure.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (!msg.reason || self->state.now == node_state::phase::finished)
      return;
    auto why = error_text(self, msg.reason);
    // A fenced write (FL001) is a lost lease whichever stage saw it first.
    if (why.rfind(lease_lost_prefix, 0) == 0
        || why.find("FL001") != std::string::npos) {
      stop_lease_lost(self, why);
      return;
    }
    if (self->state.stopping_lease_lost) {
      // Stopping with exit 7 already: other stages fail with it (their
      // writes are fenced too); that is not another failure.
      log()->warn("{} while stopping after a lost lease: {}", self->name(),
                  why);
      return;
    }
    log()->critical("{} a stage failed: {}", self->name(),
                    self->system().render(msg.reason));
    finish(self, exit_failure);
  });
  return {
    [self](run_atom) -> caf::result<int> {
      auto& st = self->state;
      st.done = self->make_response_promise<int>();
      st.started = std::chrono::steady_clock::now();
      if (st.cfg.postgis.dsn.empty())
        start_stages(self, std::nullopt);
      else
        open_database(self);
      return st.done;
    },
    [self](eof_atom, source_stats& stats) {
      auto& st = self->state;
      if (st.cfg.cluster.enabled()) {
        // One of this node's stream readers ended (stopped for a leave,
        // or the stream failed).
        st.input.lines += stats.lines;
        st.input.events += stats.events;
        st.input.blank_lines += stats.blank_lines;
        st.input.duplicates += stats.duplicates;
        if (st.input.rejected.size() < stats.rejected.size())
          st.input.rejected.resize(stats.rejected.size());
        for (size_t i = 0; i < stats.rejected.size(); ++i)
          st.input.rejected[i] += stats.rejected[i];
        if (!stats.read_error.empty())
          st.input.read_error = stats.read_error;
        if (st.sources_running > 0)
          --st.sources_running;
        if (st.now == node_state::phase::draining && st.sources_running == 0)
          run_drain(self,
                    std::make_shared<std::vector<drain_step>>(
                      cluster_drain_steps(self)),
                    0);
        else if (st.now == node_state::phase::running)
          log()->warn("{} a stream reader ended before the node stops{}",
                      self->name(),
                      stats.read_error.empty() ? ""
                                               : ": " + stats.read_error);
        return;
      }
      st.input = std::move(stats);
      if (st.now != node_state::phase::running
          && st.now != node_state::phase::draining)
        return;
      st.now = node_state::phase::draining;
      arm_deadline(self);
      run_drain(self,
                std::make_shared<std::vector<drain_step>>(drain_steps(self)),
                0);
    },
    [self](signal_atom, int sig) {
      auto& st = self->state;
      ++st.signals;
      if (st.now == node_state::phase::finished)
        return;
      if (st.signals > 1) {
        abort_run(self, exit_interrupted,
                  fmt::format("second signal ({})", strsignal(sig)));
        return;
      }
      if (st.now == node_state::phase::connecting) {
        log()->info("{} {} before the database was reached: nothing was "
                    "read, stopping",
                    self->name(), strsignal(sig));
        finish(self, exit_ok);
        return;
      }
      log()->info("{} {}: stopping intake and draining (grace period {} ms; "
                  "signal again to stop at once)",
                  self->name(), strsignal(sig), st.cfg.grace_period.count());
      arm_deadline(self);
      if (st.cfg.cluster.enabled()) {
        if (st.now == node_state::phase::running)
          start_cluster_leave(self);
        return;
      }
      if (st.now == node_state::phase::running)
        self->send(st.source, stop_atom::value);
      // What the drain has to finish, for the operator.
      self->request(st.dispatcher, std::chrono::seconds{5}, flight_atom::value)
        .then(
          [self](dispatch_status& s) {
            log()->info("{} draining: {} events in flight, {} batches "
                        "waiting for admission",
                        self->name(), s.total_in_flight(), s.parked_batches);
          },
          [](caf::error&) {});
    },
    [self](progress_atom) {
      auto& st = self->state;
      if (st.now != node_state::phase::running
          && st.now != node_state::phase::draining)
        return;
      auto timeout = st.cfg.progress_interval;
      self->request(st.dispatcher, timeout, flight_atom::value)
        .then(
          [self, timeout](dispatch_status& s) {
            self->request(self->state.telemetry, timeout, metrics_atom::value)
              .then(
                [self, s](std::vector<actor_status>& stages) {
                  log_progress(self, s, stages);
                },
                [self, s](caf::error&) { log_progress(self, s, {}); });
          },
          [](caf::error&) {});
      self->delayed_send(self, st.cfg.progress_interval, progress_atom::value);
    },
    [self](ready_atom) -> caf::result<std::string> {
      auto& st = self->state;
      switch (st.now) {
        case node_state::phase::idle:
        case node_state::phase::connecting:
          return std::string{"connecting to the database (migrations, "
                             "owner lock, stored state)"};
        case node_state::phase::draining:
        case node_state::phase::finished:
          return std::string{"draining: the node is stopping"};
        case node_state::phase::running:
          break;
      }
      if (st.cfg.cluster.enabled()) {
        if (!st.membership || st.gaining)
          return std::string{"taking over leased work"};
      } else if (!st.source) {
        return std::string{"restoring the stored state"};
      }
      auto rp = self->make_response_promise<std::string>();
      self->request(st.telemetry, st.cfg.limits.reply, metrics_atom::value)
        .then(
          [rp](std::vector<actor_status>& stages) mutable {
            rp.deliver(not_ready_reason(stages));
          },
          [rp](caf::error&) mutable {
            rp.deliver(std::string{"telemetry did not answer"});
          });
      return rp;
    },
    [self](metrics_atom) -> caf::result<std::vector<actor_status>> {
      auto& st = self->state;
      if (!st.telemetry)
        return std::vector<actor_status>{};
      auto rp = self->make_response_promise<std::vector<actor_status>>();
      self->request(st.telemetry, st.cfg.limits.reply, metrics_atom::value)
        .then(
          [rp](std::vector<actor_status>& stages) mutable {
            rp.deliver(std::move(stages));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](gain_atom, std::vector<lease_gain>& round) {
      auto& st = self->state;
      st.gains.push_back(std::move(round));
      take_next_gains(self);
    },
    [self](leave_atom, std::string& why) { stop_lease_lost(self, why); },
    [self](retry_atom) { take_next_gains(self); },
    [self](deadline_atom) {
      if (self->state.now == node_state::phase::finished)
        return;
      abort_run(self, exit_deadline,
                fmt::format("grace period of {} ms is over",
                            self->state.cfg.grace_period.count()));
    },
  };
}

} // namespace flowmatch
