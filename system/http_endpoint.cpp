#include "system/http_endpoint.hpp"

#include "base/logging.hpp"

#include <CivetServer.h>
#include <caf/all.hpp>

#include <arpa/inet.h>
#include <fmt/format.h>

#include <optional>

namespace flowmatch {

namespace {

void respond(mg_connection* conn, int code, const char* content_type,
             const std::string& body) {
  const char* reason = code == 200 ? "OK" : "Service Unavailable";
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, reason, content_type, body.size());
  mg_write(conn, body.data(), body.size());
}

/// Asks the node; nothing when it does not answer in time.
template <class Reply, class... Ts>
std::optional<Reply> ask(caf::actor_system& sys, const node_actor& node,
                         std::chrono::milliseconds timeout, Ts... xs) {
  std::optional<Reply> out;
  caf::scoped_actor self{sys};
  self->request(node, timeout, xs...)
    .receive([&](Reply& r) { out = std::move(r); }, [&](caf::error&) {});
  return out;
}

} // namespace

struct http_endpoint::handlers {
  struct metrics : CivetHandler {
    handlers* up;
    explicit metrics(handlers* h) : up(h) {
    }
    bool handleGet(CivetServer*, mg_connection* conn) override {
      auto stages = ask<std::vector<actor_status>>(
        up->sys, up->node, up->settings.timeout, metrics_atom::value);
      if (!stages) {
        respond(conn, 503, "text/plain; charset=utf-8",
                "the node did not answer within the timeout\n");
        return true;
      }
      respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
              render_prometheus(*stages, up->build));
      return true;
    }
  };

  struct healthz : CivetHandler {
    handlers* up;
    explicit healthz(handlers* h) : up(h) {
    }
    bool handleGet(CivetServer*, mg_connection* conn) override {
      // Any answer from the node proves the actor system schedules.
      auto reason = ask<std::string>(up->sys, up->node, up->settings.timeout,
                                     ready_atom::value);
      if (reason)
        respond(conn, 200, "text/plain; charset=utf-8", "ok\n");
      else
        respond(conn, 503, "text/plain; charset=utf-8",
                fmt::format("the actor system did not answer within {} ms\n",
                            up->settings.timeout.count()));
      return true;
    }
  };

  struct readyz : CivetHandler {
    handlers* up;
    explicit readyz(handlers* h) : up(h) {
    }
    bool handleGet(CivetServer*, mg_connection* conn) override {
      auto reason = ask<std::string>(up->sys, up->node, up->settings.timeout,
                                     ready_atom::value);
      if (!reason)
        respond(conn, 503, "text/plain; charset=utf-8",
                "the node did not answer within the timeout\n");
      else if (reason->empty())
        respond(conn, 200, "text/plain; charset=utf-8", "ready\n");
      else
        respond(conn, 503, "text/plain; charset=utf-8", *reason + "\n");
      return true;
    }
  };

  caf::actor_system& sys;
  node_actor node;
  http_settings settings;
  build_info build;
  metrics metrics_handler{this};
  healthz healthz_handler{this};
  readyz readyz_handler{this};

  handlers(caf::actor_system& s, node_actor n, http_settings cfg,
           build_info b)
    : sys(s), node(std::move(n)), settings(std::move(cfg)),
      build(std::move(b)) {
  }
};

http_endpoint::http_endpoint(caf::actor_system& sys, node_actor node,
                             http_settings settings, build_info build)
  : handlers_(std::make_unique<handlers>(sys, std::move(node), settings,
                                         std::move(build))) {
  std::vector<std::string> options{"listening_ports", settings.listen,
                                   "num_threads", "2"};
  try {
    server_ = std::make_unique<CivetServer>(options);
  } catch (const std::exception& e) {
    error_ = fmt::format("metrics.listen {}: cannot listen ({})",
                         settings.listen, e.what());
    return;
  }
  server_->addHandler("/metrics", handlers_->metrics_handler);
  server_->addHandler("/healthz", handlers_->healthz_handler);
  server_->addHandler("/readyz", handlers_->readyz_handler);
  auto host = settings.listen.substr(0, settings.listen.rfind(':'));
  log()->info("serving /metrics, /healthz and /readyz on http://{}:{}", host,
              port());
}

http_endpoint::~http_endpoint() {
  if (server_)
    server_->close();
}

int http_endpoint::port() const {
  if (!server_)
    return -1;
  auto ports = server_->getListeningPorts();
  return ports.empty() ? -1 : ports.front();
}

std::string check_listen_address(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    return "must be host:port";
  auto host = listen.substr(0, colon);
  auto port = listen.substr(colon + 1);
  in_addr addr{};
  if (host != "localhost" && ::inet_pton(AF_INET, host.c_str(), &addr) != 1)
    return "the host must be an IPv4 address or localhost, got '" + host
           + "'";
  // The endpoint has no authentication: on the network only where an
  // operator names the interface, never by a wildcard.
  if (addr.s_addr == INADDR_ANY && host != "localhost")
    return "listen on an explicit address, not on every interface";
  if (port.empty() || port.size() > 5
      || port.find_first_not_of("0123456789") != std::string::npos
      || std::stoi(port) > 65535)
    return "the port must be a number within 0..65535, got '" + port + "'";
  return {};
}

} // namespace flowmatch
