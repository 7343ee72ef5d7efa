#pragma once

// The authoritative in-memory registry of one worker's share of sites and
// flows, with the contract's semantics: upserts, the version rule, deletes
// with cascade, and flows held until their site arrives. Event-id
// deduplication is not here: it is by id alone, across workers, in each
// source's event_id_window. Pure logic without actors, so it is tested
// directly; the registry_worker actor owns one and feeds it batches.

#include "messages/batch.hpp"
#include "messages/dead_letter.hpp"
#include "messages/domain.hpp"

#include <absl/container/flat_hash_set.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace flowmatch {

/// What applying events produced: changes to publish, dead letters to send.
struct registry_output {
  std::vector<change> changes;
  std::vector<dead_letter> dead_letters;
  std::vector<std::string> event_ids;
  std::vector<std::string> event_keys;
  registry_stats stats;

  void took_in(const std::string& id, const std::string& key) {
    event_ids.push_back(id);
    event_keys.push_back(key);
  }

  void clear() {
    changes.clear();
    dead_letters.clear();
    event_ids.clear();
    event_keys.clear();
    stats = registry_stats{};
  }
};

class registry {
public:
  using clock = std::chrono::steady_clock;

  /// `hold_limit` bounds how many flow upserts may wait for their sites at
  /// once; past it the oldest is dead-lettered.
  explicit registry(size_t hold_limit = 1'000'000) : hold_limit_(hold_limit) {
  }

  /// Applies one event. Strong guarantee: when it throws, nothing changed.
  void apply(const event& ev, clock::time_point now, registry_output& out);

  /// Dead-letters held flows that arrived before `cutoff`.
  void expire_held(clock::time_point cutoff, registry_output& out);

  /// Dead-letters every held flow: at the end of input no site can come.
  void release_all_held(registry_output& out);

  /// After the database refused `refused` for good: where memory still
  /// holds exactly that change (no later change of the entity applied
  /// since; that one's own commit decides), brings the entity back to its
  /// stored row in `stored` (or removes it when there is none). Publishes
  /// the result as changes marked `stored` (the table holds them already),
  /// so the match service follows.
  void repair(const change& refused, const registry_snapshot& stored,
              registry_output& out);

  /// Takes in state loaded from the database (no changes published).
  void restore(registry_snapshot state);

  /// Takes out site `site_id` and everything linked to it through flows:
  /// the flows at those sites and the upserts held for them, the other
  /// sites those flows are at or wait for, and so on (nothing else
  /// references them). Publishes nothing: the state only changes worker.
  /// The site need not be known here; the part then covers just its id.
  registry_part hand_over(const std::string& site_id);

  /// Takes in a part another worker handed over (no changes published).
  void take_over(registry_part part);

  /// Sorted by id, for stable output.
  registry_snapshot snapshot() const;

  /// The ids the dispatcher routes by that live here (its routing table,
  /// actors/dispatcher.hpp): in `flow_ids` the flows known or held, in
  /// `site_ids` the sites known or waited for by a held flow.
  registry_part routing_keys() const;

  size_t site_count() const {
    return sites_.size();
  }
  size_t flow_count() const {
    return flows_.size();
  }
  size_t held_count() const {
    return held_total_;
  }
  const site* find_site(const std::string& id) const;
  const resource_flow* find_flow(const std::string& id) const;

  /// Progress through the batch being applied, kept with the registry so
  /// that it survives a crash of the worker: a redelivered batch resumes
  /// after the events already applied.
  struct cursor {
    uint64_t seq = 0;
    size_t next_index = 0;
    /// Every batch up to this seq was applied completely (its report may
    /// still be on its way through the committer): a redelivery of one of
    /// them is skipped, not applied again.
    uint64_t applied_through = 0;
  };
  cursor progress;

private:
  struct held_flow {
    event ev;
    clock::time_point arrived;
  };

  void upsert_site(const event& ev, registry_output& out);
  void delete_site(const event& ev, registry_output& out);
  /// The ids of the flows at a site, sorted.
  std::vector<std::string> flows_at(const std::string& site_id) const;
  /// After a site moved: a copy of each of its flows, marked stored (the
  /// database row is unchanged), so the match service can hand the flows
  /// to the partitions of their new place without keeping their data.
  void replace_flows(const std::string& site_id, const std::string& event_id,
                     registry_output& out);
  void upsert_flow(const event& ev, registry_output& out);
  void delete_flow(const event& ev, registry_output& out);
  void put_site(const site& s);
  void put_flow(const resource_flow& f);
  void hold(const event& ev, clock::time_point now, registry_output& out);
  /// Cancels held upserts of a flow; returns how many. With `superseded`,
  /// their ids are taken in as done (a delete superseded them).
  size_t drop_held_of_flow(const std::string& flow_id,
                           registry_output* superseded);
  void dead_letter_held(held_flow& h, std::string detail,
                        registry_output& out);
  struct hold_ticket;
  /// Takes the held flow of a ticket out of the hold, if still held.
  caf::optional<held_flow> take_held(const hold_ticket& ticket);
  void remove_flow(const std::string& flow_id, const std::string& event_id,
                   registry_output& out);

  size_t hold_limit_;
  std::unordered_map<std::string, site> sites_;
  std::unordered_map<std::string, resource_flow> flows_;
  std::unordered_map<std::string, std::unordered_set<std::string>>
    flows_by_site_;
  /// Held flow upserts per unknown site, in arrival order.
  std::unordered_map<std::string, std::deque<held_flow>> held_;
  /// Ids of held events, so a ticket knows whether its event still waits.
  absl::flat_hash_set<std::string> held_ids_;
  /// Arrival order of held events for expiry: (arrival, site, event id).
  struct hold_ticket {
    clock::time_point arrived;
    std::string site_id;
    std::string event_id;
  };
  std::deque<hold_ticket> hold_order_;
  size_t held_total_ = 0;
};

} // namespace flowmatch
