#pragma once

// Batches: the unit in which events travel from the dispatcher to workers,
// and in which accepted changes travel to subscribers. Batching per
// destination keeps the cost of a CAF message off the per-event path.

#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"
#include "messages/match.hpp"

#include <caf/meta/type_name.hpp>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

namespace flowmatch {

/// Events for one worker: its picks, in order, out of an admitted input
/// batch that all workers share (immutable). Routing thus never copies or
/// moves an event, and the pool keeps the batch for redelivery after a
/// worker crash for free.
struct event_batch {
  /// Assigned by the worker pool per worker, increasing; lets a restarted
  /// worker resume a batch after the events it already applied.
  uint64_t seq = 0;
  /// Position of an event the worker must dead-letter instead of applying
  /// (a poison event that crashed it too often), or -1.
  int64_t poison_index = -1;
  /// How many times the poison event was attempted (for the dead letter).
  uint32_t poison_attempts = 0;
  /// When the dispatcher admitted the events (steady clock, ns): the start
  /// of their latency to durable.
  int64_t admitted_ns = 0;
  std::string poison_error;
  /// The shared input batch.
  std::shared_ptr<const std::vector<event>> events;
  /// Positions into `events` of this worker's events, in order. Shared and
  /// immutable too, so the pool's copy for redelivery is free.
  std::shared_ptr<const std::vector<uint32_t>> picks;

  size_t size() const {
    return picks ? picks->size() : 0;
  }

  /// The i-th event of this worker's sequence.
  const event& at(size_t i) const {
    return (*events)[(*picks)[i]];
  }
};

template <class Inspector>
typename std::enable_if<Inspector::reads_state,
                        typename Inspector::result_type>::type
inspect(Inspector& f, event_batch& x) {
  // Serializing: only this worker's events, in order.
  std::vector<event> mine;
  mine.reserve(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    mine.push_back(x.at(i));
  return f(caf::meta::type_name("event_batch"), x.seq, x.poison_index,
           x.poison_attempts, x.poison_error, x.admitted_ns, mine);
}

template <class Inspector>
typename std::enable_if<Inspector::writes_state,
                        typename Inspector::result_type>::type
inspect(Inspector& f, event_batch& x) {
  // Deserializing: a batch of its own, every event picked.
  auto fresh = std::make_shared<std::vector<event>>();
  auto result = f(caf::meta::type_name("event_batch"), x.seq, x.poison_index,
                  x.poison_attempts, x.poison_error, x.admitted_ns, *fresh);
  auto picks = std::make_shared<std::vector<uint32_t>>(fresh->size());
  for (uint32_t i = 0; i < picks->size(); ++i)
    (*picks)[i] = i;
  x.picks = std::move(picks);
  x.events = std::move(fresh);
  return result;
}

/// One accepted change to the registry, as published to subscribers (the
/// PostGIS sync and the match service). Deletes carry only the id.
struct change {
  enum kind_t : uint8_t {
    site_upserted,
    site_deleted,
    flow_upserted,
    flow_deleted,
  };
  kind_t kind = site_upserted;
  /// The event that caused it (a cascade delete names the site delete).
  std::string event_id;
  site site_data;          ///< for site_upserted
  resource_flow flow_data; ///< for flow_upserted
  std::string id;          ///< the deleted site or flow id
  /// Already what the database holds: memory is brought back to the table
  /// after the database refused a change. The store skips it; the match
  /// service applies it like any other.
  bool stored = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, change& x) {
  auto checked = caf::meta::load_callback([&x]() -> caf::error {
    return check_enum(x.kind, change::flow_deleted, "change.kind");
  });
  return f(caf::meta::type_name("change"), x.kind, x.event_id, x.site_data,
           x.flow_data, x.id, x.stored, checked);
}


/// Counters a worker reports with each finished batch; the dispatcher sums
/// them into the run summary.
struct registry_stats {
  uint64_t applied = 0;      ///< events that took effect (incl. no-op deletes)
  uint64_t stale = 0;        ///< upserts older than the stored version
  uint64_t held = 0;         ///< flows held for a site not known yet
  uint64_t held_applied = 0; ///< held flows applied once the site came
  uint64_t superseded = 0;   ///< held flows cancelled by a delete of the flow
  /// Entities held at the end (filled in by `release` only).
  uint64_t sites = 0;
  uint64_t flows = 0;
  /// Dead letters by reject_reason (index = enum value).
  std::vector<uint64_t> dead_letters;
  /// Ids of admitted events that were dead-lettered after all (orphan,
  /// poison, refused by the database): the dispatcher tells the source to
  /// forget them, so a corrected resend applies (events.md v1.1). Emptied
  /// by the dispatcher.
  std::vector<std::string> rejected_ids;

  void count_dead_letter(reject_reason r) {
    if (dead_letters.size() < reject_reason_count)
      dead_letters.resize(reject_reason_count);
    ++dead_letters[static_cast<size_t>(r)];
  }

  uint64_t dead_lettered() const {
    uint64_t n = 0;
    for (auto x : dead_letters)
      n += x;
    return n;
  }

  registry_stats& operator+=(const registry_stats& o) {
    applied += o.applied;
    stale += o.stale;
    held += o.held;
    held_applied += o.held_applied;
    superseded += o.superseded;
    sites += o.sites;
    flows += o.flows;
    if (dead_letters.size() < o.dead_letters.size())
      dead_letters.resize(o.dead_letters.size());
    for (size_t i = 0; i < o.dead_letters.size(); ++i)
      dead_letters[i] += o.dead_letters[i];
    rejected_ids.insert(rejected_ids.end(), o.rejected_ids.begin(),
                        o.rejected_ids.end());
    return *this;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_stats& x) {
  return f(caf::meta::type_name("registry_stats"), x.applied, x.stale, x.held, x.held_applied, x.superseded, x.sites, x.flows,
           x.dead_letters, x.rejected_ids);
}

/// Changes of one worker batch, in the order they took effect. `event_ids`
/// lists every event the batch took in (applied, stale or no-op) and
/// `event_keys` their routing keys (site ids), so a subscriber can record
/// them as processed.
struct change_batch {
  std::vector<change> changes;
  std::vector<std::string> event_ids;
  std::vector<std::string> event_keys;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, change_batch& x) {
  return f(caf::meta::type_name("change_batch"), x.changes, x.event_ids,
           x.event_keys);
}

/// The current sites and flows of a worker (or of all workers, merged).
struct registry_snapshot {
  std::vector<site> sites;
  std::vector<resource_flow> flows;

  /// Takes in another part (of another worker).
  void append(registry_snapshot&& part) {
    for (auto& s : part.sites)
      sites.push_back(std::move(s));
    for (auto& f : part.flows)
      flows.push_back(std::move(f));
  }

  /// Sorted by id, for stable output.
  void sort_by_id() {
    std::sort(sites.begin(), sites.end(), [](const site& a, const site& b) {
      return a.site_id < b.site_id;
    });
    std::sort(flows.begin(), flows.end(),
              [](const resource_flow& a, const resource_flow& b) {
                return a.flow_id < b.flow_id;
              });
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_snapshot& x) {
  return f(caf::meta::type_name("registry_snapshot"), x.sites, x.flows);
}

/// A committing subscriber's answer for one change batch, once the batch's
/// effects are durable in it: what it refused for good (dead letters it
/// wrote, counted into the batch's report) and, when it refused something,
/// the stored rows of the entities concerned, so the worker can bring its
/// memory back to them (`refused` and `stored` go to the pool as a repair).
struct commit_result {
  registry_stats refusals;
  std::vector<change> refused;
  registry_snapshot stored;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, commit_result& x) {
  return f(caf::meta::type_name("commit_result"), x.refusals, x.refused,
           x.stored);
}

/// Everything a restarted node needs, as the database holds it: sites,
/// flows, matches, and the processed event ids with the times they were
/// applied (ms since the Unix epoch).
struct stored_state {
  registry_snapshot snapshot;
  std::vector<std::string> event_ids;
  std::vector<int64_t> event_applied_ms;
  std::vector<match> matches;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_state& x) {
  return f(caf::meta::type_name("stored_state"), x.snapshot, x.event_ids,
           x.event_applied_ms, x.matches);
}

/// Sites handed from one worker to another with everything linked to them
/// through flows (see `registry::hand_over` and the dispatcher): the sites
/// and flows as they are, and the flow upserts held for a site, each with
/// when it arrived (steady-clock ticks: both workers are in one process).
/// The id lists name every site and flow the part covers, including sites
/// known only by held flows; the pool's answer to the dispatcher carries
/// only them.
struct registry_part {
  std::vector<site> sites;
  std::vector<resource_flow> flows;
  std::vector<event> held;
  std::vector<int64_t> held_since;
  std::vector<std::string> site_ids;
  std::vector<std::string> flow_ids;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_part& x) {
  return f(caf::meta::type_name("registry_part"), x.sites, x.flows, x.held,
           x.held_since, x.site_ids, x.flow_ids);
}

/// What an ingest source counted: lines read, events decoded, rejections by
/// reason (decoder reasons only).
struct source_stats {
  uint64_t lines = 0;
  uint64_t events = 0;
  /// Empty or whitespace-only lines, skipped (events.md v1.1: counted).
  uint64_t blank_lines = 0;
  /// Events whose id was seen before (within the dedup retention), skipped.
  uint64_t duplicates = 0;
  std::vector<uint64_t> rejected;
  /// Why the input could not be read to its end (open or read failure);
  /// empty when it was. The node exits with exit_input then.
  std::string read_error;

  void count_rejection(reject_reason r) {
    if (rejected.size() < reject_reason_count)
      rejected.resize(reject_reason_count);
    ++rejected[static_cast<size_t>(r)];
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, source_stats& x) {
  return f(caf::meta::type_name("source_stats"), x.lines, x.events,
           x.blank_lines, x.duplicates, x.rejected, x.read_error);
}

/// In-flight accounting of the dispatcher, for operators and tests.
struct dispatch_status {
  std::vector<uint64_t> in_flight;      ///< per group, now
  std::vector<uint64_t> peak_in_flight; ///< per group, highest seen
  uint64_t admitted = 0;                ///< events taken in so far
  uint64_t parked_batches = 0;          ///< batches waiting for credit
  /// Sites moved between workers so far, because a flow linked them.
  uint64_t handovers = 0;
  /// Entries of the key-hash routing tables now (flows and moved sites),
  /// and how often they were rebuilt from the workers.
  uint64_t routing_entries = 0;
  uint64_t compactions = 0;
  registry_stats totals;                ///< summed worker counters

  /// Events in flight over all groups.
  uint64_t total_in_flight() const {
    uint64_t n = 0;
    for (auto x : in_flight)
      n += x;
    return n;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dispatch_status& x) {
  return f(caf::meta::type_name("dispatch_status"), x.in_flight,
           x.peak_in_flight, x.admitted, x.parked_batches, x.handovers,
           x.routing_entries, x.compactions, x.totals);
}

} // namespace flowmatch
