#pragma once

// Shared helpers of the tests: an actor system configured like the node's,
// event builders, and small collector actors that stand in for peers.

#include "actors/actors.hpp"
#include "actors/commit_coordinator.hpp"
#include "messages/type_ids.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace flowmatch::test {

/// An actor system with flowmatch's message types and 2 scheduler threads
/// (the size of the machines this runs on).
struct test_config : caf::actor_system_config {
  test_config() {
    flowmatch::add_message_types(*this);
    set("scheduler.max-threads", size_t{2});
  }
};

inline event make_site_event(std::string id, std::string site_id,
                             caf::optional<int64_t> version = caf::none,
                             double lat = 48.0, double lon = 14.0) {
  event ev;
  ev.id = std::move(id);
  ev.type = event_type::site_updated;
  ev.site_data.site_id = std::move(site_id);
  ev.site_data.lat = lat;
  ev.site_data.lon = lon;
  ev.site_data.version = version;
  ev.origin = event_origin{"test", 0};
  return ev;
}

inline event make_flow_event(std::string id, std::string flow_id,
                             std::string site_id,
                             caf::optional<int64_t> version = caf::none) {
  event ev;
  ev.id = std::move(id);
  ev.type = event_type::resource_flow_updated;
  auto& f = ev.flow_data;
  f.flow_id = std::move(flow_id);
  f.site_id = std::move(site_id);
  f.direction = flow_direction::supply;
  f.resource = resource_class::water;
  f.quantity = 10;
  f.unit = "m3/h";
  f.annual_quantity = 87600;
  f.version = version;
  ev.origin = event_origin{"test", 0};
  return ev;
}

inline event make_delete_event(std::string id, event_type type,
                               std::string target) {
  event ev;
  ev.id = std::move(id);
  ev.type = type;
  ev.target_id = std::move(target);
  ev.origin = event_origin{"test", 0};
  return ev;
}

/// Collects every change batch it is sent; `get_atom` returns them all.
using change_collector_actor = change_sink_actor::extend<
  caf::replies_to<caf::get_atom>::with<std::vector<change>>>;

struct change_collector_state {
  static inline const char* name = "change-collector";
  std::vector<change> changes;
};

inline change_collector_actor::behavior_type change_collector(
  change_collector_actor::stateful_pointer<change_collector_state> self) {
  return {
    [self](change_batch& b) {
      for (auto& c : b.changes)
        self->state.changes.push_back(std::move(c));
    },
    [self](caf::get_atom) { return self->state.changes; },
  };
}

/// Collects dead letters; `get_atom` returns them all.
using dead_letter_collector_actor = dead_letter_sink_actor::extend<
  caf::replies_to<caf::get_atom>::with<std::vector<dead_letter>>>;

struct dead_letter_collector_state {
  static inline const char* name = "dead-letter-collector";
  std::vector<dead_letter> letters;
};

inline dead_letter_collector_actor::behavior_type dead_letter_collector(
  dead_letter_collector_actor::stateful_pointer<dead_letter_collector_state>
    self) {
  return {
    [self](std::vector<dead_letter>& xs) {
      for (auto& x : xs)
        self->state.letters.push_back(std::move(x));
    },
    [self](caf::flush_atom) {
      return static_cast<uint64_t>(self->state.letters.size());
    },
    [self](status_atom) {
      actor_status s;
      s.actor = self->name();
      s.counter("dead_letters_written",
                static_cast<double>(self->state.letters.size()));
      return s;
    },
    [self](caf::get_atom) { return self->state.letters; },
  };
}

/// A finite timeout for every request a test makes.
constexpr auto test_timeout = std::chrono::seconds{60};

/// Built with AddressSanitizer (tools/sanitize.sh): its quarantine keeps
/// freed memory resident and its checks slow every allocation, so bounds on
/// a process's memory or on which side of a test is faster do not hold
/// there. Tests skip only those checks; every other one still runs.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool under_address_sanitizer = true;
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
constexpr bool under_address_sanitizer = true;
#  else
constexpr bool under_address_sanitizer = false;
#  endif
#else
constexpr bool under_address_sanitizer = false;
#endif

/// Sends `events` to the dispatcher in batches, each request waiting for
/// admission, like a source does.
inline void ingest_all(caf::scoped_actor& self, const dispatcher_actor& d,
                       std::vector<event> events, size_t batch = 256) {
  for (size_t i = 0; i < events.size(); i += batch) {
    std::vector<event> part;
    for (size_t j = i; j < std::min(events.size(), i + batch); ++j)
      part.push_back(std::move(events[j]));
    bool admitted = false;
    self->request(d, test_timeout, ingest_atom::value, std::move(part))
      .receive([&](caf::ok_atom) { admitted = true; },
               [&](caf::error& err) {
                 FAIL("dispatcher refused a batch: "
                      << self->system().render(err));
               });
    REQUIRE(admitted);
  }
}

/// Waits until every admitted event is applied.
inline void drain(caf::scoped_actor& self, const dispatcher_actor& d) {
  bool drained = false;
  self->request(d, test_timeout, drain_atom::value)
    .receive([&](caf::ok_atom) { drained = true; },
             [&](caf::error& err) {
               FAIL("drain failed: " << self->system().render(err));
             });
  REQUIRE(drained);
}

template <class Result, class Handle, class... Ts>
Result ask(caf::scoped_actor& self, const Handle& h, Ts&&... xs) {
  Result result{};
  bool answered = false;
  self->request(h, test_timeout, std::forward<Ts>(xs)...)
    .receive(
      [&](Result& r) {
        result = std::move(r);
        answered = true;
      },
      [&](caf::error& err) {
        FAIL("request failed: " << self->system().render(err));
      });
  REQUIRE(answered);
  return result;
}

/// A commit coordinator that shows every batch to `watcher` and waits for
/// no one: for tests that run workers without storage.
inline commit_coordinator_actor
watching_coordinator(caf::actor_system& sys, change_sink_actor watcher) {
  auto c = sys.spawn(commit_coordinator, wait_limits{});
  caf::anon_send(c, subscribe_atom::value, std::move(watcher), all_workers);
  return c;
}

} // namespace flowmatch::test
