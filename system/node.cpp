#include "system/node.hpp"

#include "actors/commit_coordinator.hpp"
#include "actors/dead_letter_file_sink.hpp"
#include "actors/dispatcher.hpp"
#include "actors/match_partition.hpp"
#include "actors/match_router.hpp"
#include "actors/match_stream.hpp"
#include "actors/match_writer.hpp"
#include "actors/ingest_source.hpp"
#include "base/output_file.hpp"
#include "actors/postgis_dead_letter_sink.hpp"
#include "actors/postgis_sync.hpp"
#include "actors/registry_worker.hpp"
#include "actors/telemetry.hpp"
#include "messages/encoder.hpp"
#include "base/logging.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace flowmatch {

namespace {

using node_ptr = node_actor::stateful_pointer<node_state>;

double seconds_since(std::chrono::steady_clock::time_point start,
                     std::chrono::steady_clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

void finish(node_ptr self, int code) {
  auto& st = self->state;
  if (st.now == node_state::phase::finished)
    return;
  st.now = node_state::phase::finished;
  st.done.deliver(code);
  // user_shutdown (not normal) so that linked stages stop too.
  self->quit(caf::exit_reason::user_shutdown);
}

/// Writes the state file whole: under a temporary name, renamed into place
/// once every byte is on disk. A failure names the file and the cause.
bool write_state(node_ptr self, const registry_snapshot& snap) {
  auto& path = self->state.cfg.output_state;
  output_file out;
  bool ok = out.open(path, output_file::whole);
  // Sites first, so the snapshot read back in order never holds a flow.
  std::string line;
  for (size_t i = 0; ok && i < snap.sites.size(); ++i) {
    line = site_snapshot_line(snap.sites[i]);
    line.push_back('\n');
    ok = out.write(line);
  }
  for (size_t i = 0; ok && i < snap.flows.size(); ++i) {
    line = flow_snapshot_line(snap.flows[i]);
    line.push_back('\n');
    ok = out.write(line);
  }
  ok = out.commit() && ok;
  if (!ok)
    log()->error("{} cannot write the state file: {}", self->name(),
                 out.error());
  else
    log()->info("{} wrote {} sites and {} flows to {}", self->name(),
                snap.sites.size(), snap.flows.size(), path);
  return ok;
}

/// Prints the summary, then ends the run with `code`.
void report_and_finish(node_ptr self, int code) {
  auto& st = self->state;
  auto secs = seconds_since(st.started, st.drained);
  std::string summary = format_summary(st.cfg.source.reader.path, st.input,
                                       st.totals, st.dead_letters_written,
                                       secs, st.matches);
  std::fwrite(summary.data(), 1, summary.size(), stdout);
  std::fflush(stdout);
  finish(self, code);
}

void flush_dead_letters(node_ptr self, bool state_ok) {
  auto& st = self->state;
  self->request(st.dead_letters, st.cfg.supervision.reply_timeout,
                caf::flush_atom::value)
    .then(
      [self, state_ok](uint64_t n) {
        self->state.dead_letters_written = n;
        // The run's counts are true either way; a lost output or an input
        // that could not be read to its end is a failure.
        int code = exit_ok;
        if (!self->state.input.read_error.empty()) {
          log()->error("{} the input was not read to its end: {}",
                       self->name(), self->state.input.read_error);
          code = exit_input;
        }
        if (!state_ok)
          code = exit_failure;
        report_and_finish(self, code);
      },
      [self](caf::error& err) {
        log()->error("{} dead-letter flush failed: {}", self->name(),
                     self->system().render(err));
        finish(self, exit_failure);
      });
}

/// Counts the current matches and flushes the match stream, then `next`.
template <class F>
void count_matches(node_ptr self, F next) {
  auto& st = self->state;
  self->request(st.matcher, st.cfg.supervision.reply_timeout,
                matches_atom::value)
    .then(
      [self, next](uint64_t n) {
        self->state.matches = n;
        if (!self->state.match_stream) {
          next();
          return;
        }
        self->request(self->state.match_stream,
                      self->state.cfg.supervision.reply_timeout,
                      caf::flush_atom::value)
          .then([next](uint64_t) { next(); },
                [self](caf::error& err) {
                  log()->error("{} match stream flush failed: {}",
                               self->name(), self->system().render(err));
                  finish(self, exit_failure);
                });
      },
      [self](caf::error& err) {
        log()->error("{} match count failed: {}", self->name(),
                     self->system().render(err));
        finish(self, exit_failure);
      });
}

/// Steps 2..5 of the drain; step 1 (stop intake) happened before eof.
void drain(node_ptr self) {
  auto& st = self->state;
  // Longer than the grace period: when the drain is slow, the deadline
  // (exit 3) speaks first, not a request timeout (exit 4).
  auto timeout = st.cfg.grace_period + st.cfg.supervision.reply_timeout;
  self->request(st.dispatcher, timeout, drain_atom::value)
    .then(
      [self, timeout](caf::ok_atom) {
        self->state.drained = std::chrono::steady_clock::now();
        self->request(self->state.dispatcher, timeout, release_atom::value)
          .then(
            [self, timeout](registry_stats& totals) {
              self->state.totals = std::move(totals);
              count_matches(self, [self, timeout] {
              if (self->state.cfg.output_state.empty()) {
                flush_dead_letters(self, true);
                return;
              }
              self->request(self->state.dispatcher, timeout,
                            snapshot_atom::value)
                .then(
                  [self](registry_snapshot& snap) {
                    flush_dead_letters(self, write_state(self, snap));
                  },
                  [self](caf::error& err) {
                    log()->error("{} snapshot failed: {}", self->name(),
                                 self->system().render(err));
                    finish(self, exit_failure);
                  });
              });
            },
            [self](caf::error& err) {
              log()->error("{} release failed: {}", self->name(),
                           self->system().render(err));
              finish(self, exit_failure);
            });
      },
      [self](caf::error& err) {
        log()->error("{} drain failed: {}", self->name(),
                     self->system().render(err));
        finish(self, exit_failure);
      });
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

void start_source(node_ptr self) {
  auto& st = self->state;
  if (st.cfg.progress_interval.count() > 0) {
    st.progress_at = std::chrono::steady_clock::now();
    self->delayed_send(self, st.cfg.progress_interval, progress_atom::value);
  }
  st.source = self->spawn<caf::detached + caf::linked>(
    ingest_source, st.cfg.source, st.dispatcher,
    caf::actor_cast<source_listener_actor>(self), st.dead_letters,
    std::move(st.already_applied));
  self->send(st.telemetry, attach_atom::value,
             status_source_actor{st.source});
  st.already_applied = processed_ids{};
}

/// Spawns the stages; with a database, first restores the stored state.
void start_stages(node_ptr self, std::optional<store::stored_state> stored) {
  auto& st = self->state;
  st.now = node_state::phase::running;
  bool with_db = !st.cfg.postgis.dsn.empty();
  // Every stage is attached to telemetry as it starts.
  st.telemetry = self->spawn<caf::linked>(telemetry, st.cfg.telemetry);
  auto watch = [self](status_source_actor stage) {
    self->send(self->state.telemetry, attach_atom::value, std::move(stage));
  };
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
  watch(st.dead_letters);
  // The commit barrier: every worker batch waits for its worker's PostGIS
  // sync (entities committed) and for the match router (matches stored).
  st.coordinator = self->spawn<caf::linked>(commit_coordinator, st.cfg.limits);
  watch(st.coordinator);
  if (with_db)
    for (uint32_t i = 0; i < st.cfg.registry_workers; ++i) {
      auto sync = self->spawn<caf::detached + caf::linked>(
        postgis_sync, i, st.cfg.postgis, st.dead_letters);
      watch(sync);
      self->send(st.coordinator, subscribe_atom::value,
                 commit_sink_actor{sync}, i);
    }
  // The match service: one partition per class, each with its sinks (the
  // matches table, the match stream).
  if (!st.cfg.output_matches.empty()) {
    st.match_stream = self->spawn<caf::detached + caf::linked>(
      match_stream, st.cfg.output_matches);
    watch(st.match_stream);
  }
  std::vector<match_partition_actor> partitions;
  for (auto cls : {resource_class::heat, resource_class::water,
                   resource_class::material, resource_class::co2}) {
    std::vector<match_sink_actor> sinks;
    if (with_db) {
      auto writer = self->spawn<caf::detached + caf::linked>(
        match_writer, std::string{to_string(cls)}, st.cfg.postgis);
      watch(writer);
      sinks.push_back(writer);
    }
    if (st.match_stream)
      sinks.push_back(st.match_stream);
    partitions.push_back(self->spawn<caf::linked>(
      match_partition, cls, st.cfg.match, std::move(sinks), st.cfg.limits));
    watch(partitions.back());
  }
  st.matcher = self->spawn<caf::linked>(match_router, std::move(partitions),
                                        st.cfg.limits);
  watch(st.matcher);
  self->send(st.coordinator, subscribe_atom::value,
             commit_sink_actor{st.matcher}, all_workers);
  group_settings registry_group;
  registry_group.name = "registry";
  registry_group.workers = st.cfg.registry_workers;
  registry_group.policy = st.cfg.registry_policy;
  registry_group.max_in_flight = st.cfg.registry_max_in_flight;
  registry_group.handles = contract_event_types();
  registry_group.factory = registry_worker_factory(
    st.coordinator, st.dead_letters, st.cfg.worker);
  registry_group.supervision = st.cfg.supervision;
  registry_group.on_pool_started = [watch](const worker_pool_actor& pool) {
    watch(pool);
  };
  st.dispatcher = self->spawn<caf::linked>(
    dispatcher, std::vector<group_settings>{std::move(registry_group)});
  watch(st.dispatcher);
  log()->info("{} running: input {}, {} workers, {} scheduler threads{}",
              self->name(), st.cfg.source.reader.path, st.cfg.registry_workers,
              st.cfg.threads,
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
  auto timeout = st.cfg.supervision.reply_timeout;
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
                          "event ids from the database",
                          self->name(), sites, flows, events);
              if (self->state.now == node_state::phase::running)
                start_source(self);
            },
            failed);
      },
      failed);
}

/// The advisory lock that makes a node the one writer of its schema
/// (storage.md v1.1): two int4 keys, a constant and the schema's FNV-1a.
std::string owner_lock_keys(const std::string& schema) {
  uint32_t h = 2166136261u;
  for (unsigned char c : schema) {
    h ^= c;
    h *= 16777619u;
  }
  return fmt::format("7274311, {}", static_cast<int32_t>(h));
}

/// Takes the schema's owner lock on the node's own connection, held while
/// the node runs. Answers a message naming the running owner when another
/// node holds it, nothing when the lock is ours.
std::optional<std::string> take_owner_lock(pg::connection& conn,
                                           const std::string& schema,
                                           std::optional<pg::db_error>& err) {
  auto keys = owner_lock_keys(schema);
  auto r = conn.exec("SELECT pg_try_advisory_lock(" + keys + ")");
  if (r.error) {
    err = r.error;
    return std::nullopt;
  }
  if (r.value->as_bool(0, 0))
    return std::nullopt;
  // Name the owner for the operator.
  auto who = conn.exec(
    "SELECT a.pid, coalesce(a.client_addr::text, 'local'), "
    "a.application_name, a.backend_start FROM pg_locks l JOIN "
    "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
    "l.granted AND (l.classid::bigint, l.objid::bigint) = (" + keys
    + ") LIMIT 1");
  std::string owner = "another node";
  if (!who.error && who.value->rows() > 0)
    owner = fmt::format("a node (backend pid {}, {}, {}, since {})",
                        who.value->text(0, 0), who.value->text(0, 1),
                        who.value->text(0, 2), who.value->text(0, 3));
  return fmt::format("schema {} is owned by {}: one writer per schema until "
                     "cluster mode (storage.md v1.1); stop that node or use "
                     "another postgis.schema",
                     schema, owner);
}

/// One attempt to reach the database, migrate it and load its state; on a
/// retryable failure, tries again after a growing delay.
void connect_database(node_ptr self) {
  auto& st = self->state;
  auto& pgs = st.cfg.postgis;
  auto conn = pg::connection::open(pgs.dsn, "flowmatch-node");
  std::optional<pg::db_error> err = conn.error;
  std::optional<store::stored_state> stored;
  if (!err) {
    auto m = migrate(*conn.value, pgs.schema);
    if (m.error) {
      err = m.error;
    } else if (auto taken = take_owner_lock(*conn.value, pgs.schema, err)) {
      log()->critical("{} {}", self->name(), *taken);
      finish(self, exit_config);
      return;
    } else if (!err) {
      auto loaded = store::load(*conn.value, st.cfg.dedup_retention);
      if (loaded.error)
        err = loaded.error;
      else
        stored = std::move(loaded.value);
    }
  }
  if (!err) {
    // The connection keeps the owner lock for the node's lifetime.
    st.owner_conn = std::move(*conn.value);
    start_stages(self, std::move(stored));
    return;
  }
  if (!err->retryable()) {
    // Wrong password, unknown database or role, a malformed conninfo, no
    // rights: retrying cannot help, so say so at once.
    log()->critical("{} cannot use the database (postgis.dsn, "
                    "postgis.schema): {}",
                    self->name(), err->describe());
    finish(self, exit_config);
    return;
  }
  log()->warn("{} database unreachable at start: {}; retrying in {} ms",
              self->name(), err->describe(), st.connect_delay.count());
  self->delayed_send(self, st.connect_delay, connect_atom::value);
  st.connect_delay = std::min(st.connect_delay * 2, pgs.retry_max);
}

} // namespace

std::string format_summary(const std::string& input, const source_stats& in,
                           const registry_stats& t,
                           uint64_t dead_letters_written, double seconds,
                           uint64_t matches) {
  std::string out;
  auto row = [&](std::string_view label, auto value) {
    fmt::format_to(std::back_inserter(out), "  {:<24}{}\n", label, value);
  };
  out += "flowmatch run summary\n";
  row("input", input == "-" ? std::string{"stdin"} : input);
  row("lines read", in.lines);
  if (in.blank_lines > 0)
    row("  of which blank", in.blank_lines);
  row("events decoded", in.events);
  row("applied", t.applied);
  row("  of which held first", t.held_applied);
  row("duplicates skipped", in.duplicates);
  row("stale versions ignored", t.stale);
  if (t.superseded > 0)
    row("held, then deleted", t.superseded);
  uint64_t rejected = 0;
  std::vector<uint64_t> by_reason(reject_reason_count, 0);
  for (size_t i = 0; i < in.rejected.size(); ++i)
    by_reason[i] += in.rejected[i];
  for (size_t i = 0; i < t.dead_letters.size(); ++i)
    by_reason[i] += t.dead_letters[i];
  for (auto n : by_reason)
    rejected += n;
  row("dead-lettered", rejected);
  for (size_t i = 0; i < by_reason.size(); ++i)
    if (by_reason[i] > 0)
      row(fmt::format("  {}", to_string(static_cast<reject_reason>(i))),
          by_reason[i]);
  if (dead_letters_written != rejected)
    row("dead letters written", dead_letters_written);
  row("sites", t.sites);
  row("flows", t.flows);
  row("matches", matches);
  row("elapsed", fmt::format("{:.3f} s", seconds));
  if (!in.read_error.empty())
    row("input error", in.read_error);
  row("rate", fmt::format("{:.0f} events/s",
                          seconds > 0 ? static_cast<double>(in.events) / seconds
                                      : 0.0));
  return out;
}

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               settings cfg) {
  self->state.cfg = std::move(cfg);
  // A stage that dies with an error (a pool past its restart intensity, a
  // sink that cannot write) ends the run with a failure.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (!msg.reason || self->state.now == node_state::phase::finished)
      return;
    log()->critical("{} a stage failed: {}", self->name(),
                    self->system().render(msg.reason));
    finish(self, exit_failure);
  });
  return {
    [self](run_atom) -> caf::result<int> {
      auto& st = self->state;
      st.done = self->make_response_promise<int>();
      st.started = std::chrono::steady_clock::now();
      if (st.cfg.postgis.dsn.empty()) {
        start_stages(self, std::nullopt);
      } else {
        st.now = node_state::phase::connecting;
        st.connect_delay = st.cfg.postgis.retry_initial;
        connect_database(self);
      }
      return st.done;
    },
    [self](connect_atom) {
      if (self->state.now == node_state::phase::connecting)
        connect_database(self);
    },
    [self](eof_atom, source_stats& stats) {
      auto& st = self->state;
      st.input = std::move(stats);
      if (st.now != node_state::phase::running
          && st.now != node_state::phase::draining)
        return;
      st.now = node_state::phase::draining;
      arm_deadline(self);
      drain(self);
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
