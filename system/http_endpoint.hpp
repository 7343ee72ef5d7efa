#pragma once

// The node's HTTP endpoint for operators (`metrics.listen`):
//
//   /metrics  every stage's status in the Prometheus text format
//   /healthz  200 when the actor system answers within the timeout
//   /readyz   200 when the node can do its work (database connected,
//             migrations applied, state restored, input connected); 503
//             with a one-line reason otherwise
//
// civetweb (Debian's libcivetweb) serves it on its own threads; a request
// asks the node actor (a scoped actor, with a finite timeout) and never
// touches actor state, so nothing is shared and nothing is locked in our
// code.

#include "actors/actors.hpp"
#include "system/prometheus_text.hpp"

#include <caf/actor_system.hpp>

#include <chrono>
#include <memory>
#include <string>

class CivetServer;

namespace flowmatch {

struct http_settings {
  /// host:port; empty: no endpoint.
  std::string listen = "127.0.0.1:9464";
  /// How long a request waits for the node.
  std::chrono::milliseconds timeout{std::chrono::seconds{2}};
};

class http_endpoint {
public:
  /// Starts serving; on failure (the port is taken, say) `error()` says
  /// why and nothing is served.
  http_endpoint(caf::actor_system& sys, node_actor node,
                http_settings settings, build_info build);
  ~http_endpoint();

  const std::string& error() const {
    return error_;
  }

  /// The port it listens on (useful with port 0).
  int port() const;

private:
  struct handlers;
  std::unique_ptr<handlers> handlers_;
  std::unique_ptr<CivetServer> server_;
  std::string error_;
};

/// Checks `host:port` (a numeric IPv4 address or `localhost`, a port
/// within 0..65535); empty when fine, else why not.
std::string check_listen_address(const std::string& listen);

} // namespace flowmatch
