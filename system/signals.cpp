#include "system/signals.hpp"

#include <caf/all.hpp>

#include <csignal>
#include <pthread.h>

namespace flowmatch {

namespace {

// SIGUSR2 only wakes the bridge thread up to end it.
sigset_t bridge_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR2);
  return set;
}

} // namespace

void block_signals() {
  auto set = bridge_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

signal_bridge::signal_bridge(node_actor target) {
  thread_ = std::thread([target] {
    auto set = bridge_set();
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0)
        continue;
      if (sig == SIGUSR2)
        return;
      caf::anon_send(target, signal_atom::value, sig);
    }
  });
}

signal_bridge::~signal_bridge() {
  pthread_kill(thread_.native_handle(), SIGUSR2);
  thread_.join();
}

} // namespace flowmatch
