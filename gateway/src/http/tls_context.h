// TLS contexts, built once per config snapshot (route/runtime.h) from the config's `tls`
// sections and held by the listener's and the cluster's runtime; a reload reads the files
// again, so rotated certificates take effect on SIGHUP (connections already open keep theirs).
//
//   ServerTls   a listener's: one context per certificate, the client's SNI picking among them
//               (a certificate serves the DNS names of its subjectAltName, or its CN; the first
//               certificate is the default); minimum version, TLS 1.2 ciphers, ALPN http/1.1,
//               optional client certificates checked against client_ca
//   ClientTls   a cluster's: the trust store (ca_file, or the system's), chain and name
//               verification, a client certificate, minimum version; per connection the SNI and
//               the name to verify (prepare())
//
// Both throw std::runtime_error naming the file or the key when OpenSSL refuses something.
// Thread-safety: built on one thread, then used by every worker (OpenSSL contexts are
// thread-safe once configured).
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace bulwark::gateway::http {

namespace ssl = boost::asio::ssl;

class ServerTls {
 public:
  explicit ServerTls(const config::ListenerTls& spec);
  ~ServerTls();
  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;

  // The context new connections start with (the first certificate's).
  ssl::context& context() noexcept { return *entries_.front().context; }
  const config::ListenerTls& spec() const noexcept { return spec_; }
  // The names a certificate is chosen for (tests, /config).
  const std::vector<std::string>& names(std::size_t certificate) const {
    return entries_.at(certificate).names;
  }

 private:
  struct Entry {
    std::unique_ptr<ssl::context> context;
    std::vector<std::string> names;  // lower case; "*.example.com" wildcards kept as such
  };
  static int on_server_name(SSL* ssl, int* alert, void* arg);
  const Entry* entry_for(std::string_view server_name) const noexcept;

  config::ListenerTls spec_;
  std::vector<Entry> entries_;
};

class ClientTls {
 public:
  explicit ClientTls(const config::ClusterTls& spec);
  ClientTls(const ClientTls&) = delete;
  ClientTls& operator=(const ClientTls&) = delete;

  ssl::context& context() noexcept { return context_; }
  const config::ClusterTls& spec() const noexcept { return spec_; }
  // Sets the connection's SNI (the configured `sni`, else `host` unless it is an IP address)
  // and, with `verify`, the name or address the certificate must be valid for. False when
  // OpenSSL refuses (the connection is then not attempted).
  bool prepare(SSL* ssl, std::string_view host) const;

 private:
  config::ClusterTls spec_;
  ssl::context context_;
};

// How a server handshake ended, as an index into observe::kTlsHandshakeResults: 0 ok, 1 timeout,
// 2 protocol_version, 3 no_shared_cipher, 4 client_certificate, 5 other. Pure.
std::size_t handshake_result(const boost::system::error_code& ec, bool timed_out) noexcept;

// The subject of the client certificate the handshake verified (RFC 2253), "" without one.
std::string verified_client_subject(SSL* ssl);

// Why an upstream handshake failed, for the log: the certificate check's verdict when it failed,
// else OpenSSL's message.
std::string upstream_tls_cause(SSL* ssl, const boost::system::error_code& ec);

// Whether `name` (a lower-case DNS name) is covered by `pattern` (exact, or "*.suffix" for one
// leftmost label). Pure.
bool tls_name_matches(std::string_view pattern, std::string_view name) noexcept;

}  // namespace bulwark::gateway::http
