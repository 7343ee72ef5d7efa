// The lease keeper (the node's session with the membership and lease
// tables) and the membership actor (the beat: leases, links to the other
// nodes, the directory). See actors/cluster.hpp.

#include "actors/cluster.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <random>

namespace flowmatch {

namespace {

using keeper_ptr = lease_keeper_actor::stateful_pointer<lease_keeper_state>;
using membership_ptr
  = cluster_membership_actor::stateful_pointer<cluster_membership_state>;

/// A random id for one run of the process: tells a restarted node from a
/// second process that uses the same node id.
std::string new_incarnation() {
  std::random_device rd;
  std::mt19937_64 gen{(static_cast<uint64_t>(rd()) << 32) ^ rd()};
  return fmt::format("{:016x}", gen());
}

caf::error db_failure(const pg::db_error& e) {
  return caf::make_error(caf::sec::runtime_error, e.describe());
}

/// One beat of the keeper; an error leaves the held leases as they were
/// (they are renewed at the next beat that reaches the database).
caf::expected<cluster_view> beat(keeper_ptr self, bool acquire) {
  auto& st = self->state;
  bool fresh = !st.conn.is_open();
  if (auto e = ensure_session(st.conn, st.postgis, "flowmatch-leases")) {
    st.conn = pg::connection{};
    return db_failure(*e);
  }
  if (fresh) {
    // A new connection (first beat, or after the database restarted).
    if (auto e = cluster_store::prepare(st.conn)) {
      st.conn = pg::connection{};
      return db_failure(*e);
    }
  }
  if (!st.joined) {
    if (auto e = cluster_store::join(st.conn, st.cluster.node_id,
                                     st.cluster.address(), st.incarnation,
                                     st.cluster.lease)) {
      if (!e->retryable()) {
        cluster_view refused;
        refused.fatal = e->describe();
        return refused;
      }
      st.conn = pg::connection{};
      return db_failure(*e);
    }
    st.joined = true;
  }
  auto fail = [&](const pg::db_error& e) -> caf::error {
    // Whatever went wrong, the next beat starts on a new connection.
    st.conn = pg::connection{};
    return db_failure(e);
  };
  cluster_view view;
  auto alive = cluster_store::heartbeat(st.conn, st.cluster.node_id,
                                        st.incarnation);
  if (alive.error)
    return fail(*alive.error);
  if (!*alive.value) {
    view.fatal = fmt::format("another process took over node id '{}'",
                             st.cluster.node_id);
    st.held.clear();
    return view;
  }
  if (!st.held.empty()) {
    std::vector<std::string> names;
    std::vector<int64_t> epochs;
    for (auto& [r, e] : st.held) {
      names.push_back(r);
      epochs.push_back(e);
    }
    auto kept = cluster_store::renew(st.conn, st.cluster.node_id, names,
                                     epochs, st.cluster.lease);
    if (kept.error)
      return fail(*kept.error);
    std::sort(kept.value->begin(), kept.value->end());
    for (auto& r : names)
      if (!std::binary_search(kept.value->begin(), kept.value->end(), r)) {
        view.lost.push_back(r);
        st.held.erase(r);
      }
  }
  auto members = cluster_store::live_members(st.conn, st.cluster.lease);
  if (members.error)
    return fail(*members.error);
  view.members = std::move(*members.value);
  auto rows = cluster_store::leases(st.conn);
  if (rows.error)
    return fail(*rows.error);
  view.leases = std::move(*rows.value);
  if (acquire && view.lost.empty()) {
    // Rendezvous over the live members: take what falls to this node and
    // is free, expired or left by an earlier run of this id.
    std::vector<std::string> ids;
    for (auto& m : view.members)
      ids.push_back(m.node_id);
    if (std::find(ids.begin(), ids.end(), st.cluster.node_id) == ids.end())
      ids.push_back(st.cluster.node_id);
    std::map<std::string, const cluster_store::lease_row*> by_name;
    for (auto& row : view.leases)
      by_name[row.resource] = &row;
    std::vector<std::string> wanted;
    for (auto r : st.cluster.shape.all()) {
      auto name = resource_name(r);
      if (st.held.count(name) > 0)
        continue;
      auto owner = rendezvous_owner(name, ids);
      if (!owner || *owner != st.cluster.node_id)
        continue;
      auto row = by_name.find(name);
      if (row == by_name.end() || row->second->owner.empty()
          || !row->second->live || row->second->owner == st.cluster.node_id)
        wanted.push_back(name);
    }
    auto taken = cluster_store::acquire(st.conn, st.cluster.node_id, wanted,
                                        st.cluster.lease);
    if (taken.error && taken.error->sqlstate == "55P03") {
      // A lease row is locked by a writer of its holder (frozen in a
      // transaction until the server ends it): take it at a later beat.
      log()->debug("{} a lease to take is locked: {}", self->name(),
                   taken.error->describe());
      return view;
    }
    if (taken.error)
      return fail(*taken.error);
    for (auto& t : *taken.value) {
      auto id = parse_resource(t.resource);
      if (!id)
        continue;
      st.held[t.resource] = t.epoch;
      view.taken.push_back(lease_gain{*id, t.epoch, t.clean});
      auto row = by_name.find(t.resource);
      if (row != by_name.end()) {
        auto& r = const_cast<cluster_store::lease_row&>(*row->second);
        r.owner = st.cluster.node_id;
        r.epoch = t.epoch;
        r.live = true;
      } else {
        view.leases.push_back(cluster_store::lease_row{
          t.resource, st.cluster.node_id, t.epoch, true});
      }
    }
  }
  return view;
}

// -- membership ---------------------------------------------------------------

/// Splits "host:port".
bool split_address(const std::string& address, std::string& host,
                   uint16_t& port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return false;
  host = address.substr(0, colon);
  auto digits = std::string_view{address}.substr(colon + 1);
  auto [end, ec] = std::from_chars(digits.data(),
                                   digits.data() + digits.size(), port);
  return ec == std::errc{} && end == digits.data() + digits.size()
         && port != 0;
}

void publish(membership_ptr self) {
  for (auto& s : self->state.subscribers)
    self->send(s, directory_atom::value, self->state.directory);
}

/// Rebuilds the directory from the view and the links; tells subscribers
/// when it changed.
void rebuild(membership_ptr self, const cluster_view* view) {
  auto& st = self->state;
  cluster_directory d;
  auto index_of = [&](const std::string& id) -> int32_t {
    auto i = std::find(d.nodes.begin(), d.nodes.end(), id);
    if (i != d.nodes.end())
      return static_cast<int32_t>(i - d.nodes.begin());
    d.nodes.push_back(id);
    return static_cast<int32_t>(d.nodes.size() - 1);
  };
  d.self = index_of(st.cluster.node_id);
  d.shards.assign(st.cluster.shape.shards, {});
  d.partitions.assign(st.cluster.shape.match_partitions, {});
  d.streams.assign(st.cluster.shape.stream_partitions, {});
  if (view) {
    for (auto& m : view->members)
      st.addresses[m.node_id] = m.address;
    for (auto& row : view->leases) {
      auto id = parse_resource(row.resource);
      if (!id || row.owner.empty())
        continue;
      auto& list = id->kind == resource_kind::shard       ? d.shards
                   : id->kind == resource_kind::match     ? d.partitions
                                                          : d.streams;
      if (id->index >= list.size())
        continue;
      list[id->index] = cluster_directory::owner{index_of(row.owner),
                                                 row.epoch};
    }
  } else {
    // Only the links changed: keep the ownership.
    d.nodes = st.directory.nodes;
    d.self = st.directory.self;
    d.shards = st.directory.shards;
    d.partitions = st.directory.partitions;
    d.streams = st.directory.streams;
  }
  d.gateways.resize(d.nodes.size());
  for (size_t i = 0; i < d.nodes.size(); ++i) {
    if (static_cast<int32_t>(i) == d.self) {
      d.gateways[i] = st.own_gateway;
      continue;
    }
    if (auto l = st.links.find(d.nodes[i]); l != st.links.end())
      d.gateways[i] = l->second;
  }
  bool changed = d.nodes != st.directory.nodes
                 || d.gateways != st.directory.gateways;
  auto same = [](const std::vector<cluster_directory::owner>& a,
                 const std::vector<cluster_directory::owner>& b) {
    return a.size() == b.size()
           && std::equal(a.begin(), a.end(), b.begin(),
                         [](auto& x, auto& y) {
                           return x.node == y.node && x.epoch == y.epoch;
                         });
  };
  changed = changed || !same(d.shards, st.directory.shards)
            || !same(d.partitions, st.directory.partitions)
            || !same(d.streams, st.directory.streams);
  st.directory = std::move(d);
  if (changed)
    publish(self);
}

/// Connects to a node's gateway through the middleman actor, with a
/// timeout (io::remote_actor would block without one).
void connect(membership_ptr self, const std::string& node_id) {
  auto& cs = self->state;
  // One connection per pair: the node with the lower id connects and says
  // hello with its own gateway (two connections between the same nodes,
  // one each way, make CAF drop both; with TLS every time).
  if (!(cs.cluster.node_id < node_id))
    return;
  if (cs.links.count(node_id) > 0 || cs.connecting[node_id])
    return;
  auto a = cs.addresses.find(node_id);
  std::string host;
  uint16_t port = 0;
  if (a == cs.addresses.end() || !split_address(a->second, host, port))
    return;
  cs.connecting[node_id] = true;
  ++cs.connects;
  auto mm = cs.cluster.tls ? self->system().openssl_manager().actor_handle()
                           : self->system().middleman().actor_handle();
  self->request(mm, cs.cluster.lease, caf::connect_atom::value, host, port)
    .then(
      [self, node_id](const caf::node_id&, caf::strong_actor_ptr& ptr,
                      const std::set<std::string>& ifs) {
        auto& st = self->state;
        st.connecting[node_id] = false;
        if (!ptr
            || !self->system().assignable<cluster_gateway_actor>(ifs)) {
          log()->warn("{} {} at {} is not a flowmatch gateway", self->name(),
                      node_id, st.addresses[node_id]);
          return;
        }
        auto gw = caf::actor_cast<cluster_gateway_actor>(ptr);
        self->request(gw, st.cluster.lease, hello_atom::value,
                      st.cluster.node_id,
                      caf::actor_cast<caf::actor>(st.own_gateway))
          .then(
            [self, node_id, gw](std::string& id) {
              auto& now = self->state;
              if (id != node_id) {
                log()->warn("{} {} at {} says it is {}", self->name(),
                            node_id, now.addresses[node_id], id);
                return;
              }
              if (now.links.count(node_id) > 0)
                return;
              self->monitor(gw);
              now.links[node_id] = gw;
              log()->info("{} connected to {} at {}", self->name(), node_id,
                          now.addresses[node_id]);
              rebuild(self, nullptr);
            },
            [self, node_id](caf::error& err) {
              log()->debug("{} {} did not answer hello: {}", self->name(),
                           node_id, self->system().render(err));
            });
      },
      [self, node_id](caf::error& err) {
        auto& st = self->state;
        st.connecting[node_id] = false;
        log()->debug("{} cannot reach {} yet: {}", self->name(), node_id,
                     self->system().render(err));
      });
}

void on_view(membership_ptr self, cluster_view& view) {
  auto& st = self->state;
  ++st.beats;
  if (!view.fatal.empty() || !view.lost.empty()) {
    std::string what = view.fatal;
    if (what.empty()) {
      for (auto& r : view.lost)
        what += (what.empty() ? "" : ", ") + r;
      what = fmt::format("lost the lease of {} (it expired, and a successor "
                         "may hold it now)",
                         what);
    }
    st.leaving = true;
    self->send(st.listener, leave_atom::value, std::move(what));
    return;
  }
  st.leases_taken += view.taken.size();
  rebuild(self, &view);
  for (auto& m : view.members)
    if (m.node_id != st.cluster.node_id)
      connect(self, m.node_id);
  if (!view.taken.empty())
    self->send(st.listener, gain_atom::value, std::move(view.taken));
  if (!st.acquiring && !st.join_done) {
    // Wait for the seeds (they start at about the same time) so that the
    // first lease round spreads the work; at most join_timeout.
    bool all = true;
    for (auto& seed : st.cluster.seeds) {
      bool up = false;
      // A seed counts once it is a member (its row in the table) and
      // reachable: then rendezvous hashing sees it in the first round.
      for (auto& [id, addr] : st.addresses)
        if (addr == seed && id.rfind("seed ", 0) != 0
            && st.links.count(id) > 0)
          up = true;
      all = all && up;
    }
    auto waited = std::chrono::steady_clock::now() - st.started;
    if (all || waited >= st.cluster.join_timeout) {
      if (!all)
        log()->warn("{} not every seed answered within {} ms; taking "
                    "leases with the members there are",
                    self->name(), st.cluster.join_timeout.count());
      st.acquiring = true;
      st.join_done = true;
      self->send(self, retry_atom::value); // take leases now
    }
  }
}

/// One beat: asks the keeper (unless a beat is still out).
void start_beat(membership_ptr self) {
  auto& st = self->state;
  if (st.leaving || st.beat_pending)
    return;
  st.beat_pending = true;
  self->request(st.keeper, st.cluster.lease, tick_atom::value, st.acquiring)
    .then(
      [self](cluster_view& view) {
        self->state.beat_pending = false;
        if (!self->state.leaving)
          on_view(self, view);
      },
      [self](caf::error& err) {
        auto& failed = self->state;
        failed.beat_pending = false;
        ++failed.beat_failures;
        log()->warn("{} lease beat failed: {}", self->name(),
                    self->system().render(err));
      });
}

} // namespace

lease_keeper_actor::behavior_type
lease_keeper(lease_keeper_actor::stateful_pointer<lease_keeper_state> self,
             cluster_settings cluster, postgis_settings postgis) {
  self->state.cluster = std::move(cluster);
  self->state.postgis = std::move(postgis);
  // A beat never waits long behind a lock (a takeover of a lease whose
  // holder froze mid-transaction): it tries again at the next beat.
  self->state.postgis.lock_timeout = self->state.cluster.beat / 2;
  self->state.incarnation = new_incarnation();
  return {
    [self](tick_atom, bool acquire) -> caf::result<cluster_view> {
      auto view = beat(self, acquire);
      if (!view)
        return view.error();
      return std::move(*view);
    },
    [self](leave_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (auto e = ensure_session(st.conn, st.postgis, "flowmatch-leases"))
        return db_failure(*e);
      std::vector<std::string> names;
      for (auto& [r, e] : st.held)
        names.push_back(r);
      if (auto e = cluster_store::release(st.conn, st.cluster.node_id, names))
        return db_failure(*e);
      if (auto e = cluster_store::leave(st.conn, st.cluster.node_id,
                                        st.incarnation))
        return db_failure(*e);
      log()->info("{} released {} leases", self->name(), names.size());
      st.held.clear();
      return caf::ok_atom::value;
    },
    [self](stop_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      st.held.clear();
      if (auto e = ensure_session(st.conn, st.postgis, "flowmatch-leases"))
        return db_failure(*e);
      if (auto e = cluster_store::leave(st.conn, st.cluster.node_id,
                                        st.incarnation))
        return db_failure(*e);
      return caf::ok_atom::value;
    },
  };
}

cluster_membership_actor::behavior_type cluster_membership(
  cluster_membership_actor::stateful_pointer<cluster_membership_state> self,
  cluster_settings cluster, lease_keeper_actor keeper,
  lease_listener_actor listener, cluster_gateway_actor own_gateway) {
  auto& init = self->state;
  init.cluster = std::move(cluster);
  init.keeper = std::move(keeper);
  init.listener = std::move(listener);
  init.own_gateway = std::move(own_gateway);
  init.started = std::chrono::steady_clock::now();
  init.acquiring = init.cluster.seeds.empty();
  init.join_done = init.acquiring;
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    bool lost = false;
    for (auto i = st.links.begin(); i != st.links.end();) {
      if (i->second.address() != msg.source) {
        ++i;
        continue;
      }
      if (i->first.rfind("seed ", 0) != 0)
        log()->warn("{} lost the link to {}: {}", self->name(), i->first,
                    self->system().render(msg.reason));
      lost = true;
      i = st.links.erase(i);
    }
    if (lost) {
      ++st.peers_lost;
      rebuild(self, nullptr);
    }
  });
  self->send(self, tick_atom::value);
  return {
    [self](tick_atom) {
      // The one timer chain: it always schedules the next tick, so a slow
      // beat (a busy database) never stops the beats.
      self->delayed_send(self, self->state.cluster.beat, tick_atom::value);
      start_beat(self);
    },
    [self](retry_atom) { start_beat(self); },
    [self](hello_atom, std::string& id, cluster_gateway_actor& gw) {
      auto& st = self->state;
      if (!gw || st.links.count(id) > 0)
        return;
      self->monitor(gw);
      st.links[id] = gw;
      log()->info("{} {} connected here", self->name(), id);
      rebuild(self, nullptr);
    },
    [self](subscribe_atom, directory_sink_actor& sink) {
      self->send(sink, directory_atom::value, self->state.directory);
      self->state.subscribers.push_back(std::move(sink));
    },
    [self](stop_atom) {
      // A leave has begun: what is held is handed over at its end.
      self->state.acquiring = false;
      self->state.join_done = true;
    },
    [self](leave_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      st.leaving = true;
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->request(st.keeper, st.cluster.lease, leave_atom::value)
        .then([rp](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](directory_atom) { return self->state.directory; },
    [self](status_atom) {
      auto& st = self->state;
      actor_status s;
      s.actor = self->name();
      uint64_t held = 0, reachable = 0;
      for (auto* list : {&st.directory.shards, &st.directory.partitions,
                         &st.directory.streams})
        for (auto& o : *list)
          if (o.node == st.directory.self)
            ++held;
      for (auto& g : st.directory.gateways)
        if (g)
          ++reachable;
      s.counter("beats", static_cast<double>(st.beats))
        .counter("beat_failures", static_cast<double>(st.beat_failures))
        .counter("connects", static_cast<double>(st.connects))
        .counter("peers_lost", static_cast<double>(st.peers_lost))
        .counter("leases_taken", static_cast<double>(st.leases_taken))
        .gauge("leases_held", static_cast<double>(held))
        .gauge("nodes_known", static_cast<double>(st.directory.nodes.size()))
        .gauge("nodes_reachable", static_cast<double>(reachable));
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
