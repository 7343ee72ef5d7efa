#pragma once

// Signals reach the actor world through one thread: SIGINT and SIGTERM are
// blocked in every thread (the mask is inherited, so block them before the
// actor system starts), and a dedicated thread takes them with sigwait and
// sends the root actor `signal_atom`. This thread is the one place outside
// the actors that shares anything with them: an actor handle.

#include "actors/actors.hpp"

#include <thread>

namespace flowmatch {

/// Blocks SIGINT, SIGTERM and the bridge's own wake-up signal in the
/// calling thread and every thread it starts later.
void block_signals();

class signal_bridge {
public:
  /// Starts the thread; each SIGINT/SIGTERM becomes
  /// `anon_send(target, signal_atom, sig)`.
  explicit signal_bridge(node_actor target);

  /// Stops and joins the thread.
  ~signal_bridge();

  signal_bridge(const signal_bridge&) = delete;
  signal_bridge& operator=(const signal_bridge&) = delete;

private:
  std::thread thread_;
};

} // namespace flowmatch
