#include "http/tls_context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl/error.hpp>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <stdexcept>

namespace bulwark::gateway::http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "refused";
  char text[256];
  ERR_error_string_n(e, text, sizeof text);
  return text;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + openssl_error());
}

int min_version(config::TlsVersion v) noexcept {
  return v == config::TlsVersion::v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

// The DNS names a certificate is valid for: its subjectAltName DNS entries, else its CN.
std::vector<std::string> certificate_names(SSL_CTX* ctx) {
  std::vector<std::string> names;
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) return names;
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const auto* data = ASN1_STRING_get0_data(gn->d.dNSName);
      names.push_back(lower(std::string_view(reinterpret_cast<const char*>(data),
                                             static_cast<std::size_t>(
                                                 ASN1_STRING_length(gn->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0) {
      names.push_back(lower(cn));
    }
  }
  return names;
}

int select_http11(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                  const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  // The client's list: length-prefixed protocol names.
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == "http/1.1") {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  // No common protocol: go on without ALPN (a client offering only h2 then speaks HTTP/1.1 or
  // gives up, as with a server that knows no ALPN).
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

std::size_t handshake_result(const boost::system::error_code& ec, bool timed_out) noexcept {
  if (!ec) return 0;
  if (timed_out) return 1;
  if (ec.category() != boost::asio::error::get_ssl_category()) return 5;
  const auto code = static_cast<unsigned long>(ec.value());
  if (ERR_GET_LIB(code) != ERR_LIB_SSL) return 5;
  switch (ERR_GET_REASON(code)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      return 2;
    case SSL_R_NO_SHARED_CIPHER:
      return 3;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return 4;
    default:
      return 5;
  }
}

std::string verified_client_subject(SSL* ssl) {
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string subject(data, static_cast<std::size_t>(len > 0 ? len : 0));
  BIO_free(bio);
  // A header value: no control characters.
  for (char& c : subject) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return subject;
}

std::string upstream_tls_cause(SSL* ssl, const boost::system::error_code& ec) {
  if (ssl != nullptr) {
    const long verdict = SSL_get_verify_result(ssl);
    if (verdict != X509_V_OK) return X509_verify_cert_error_string(verdict);
  }
  return ec.message();
}

bool tls_name_matches(std::string_view pattern, std::string_view name) noexcept {
  if (pattern == name) return true;
  if (!pattern.starts_with("*.")) return false;
  const auto dot = name.find('.');
  return dot != std::string_view::npos && dot > 0 && name.substr(dot) == pattern.substr(1);
}

ServerTls::ServerTls(const config::ListenerTls& spec) : spec_(spec) {
  static constexpr unsigned char kSessionContext[] = "bulwark";
  for (const config::CertificateSpec& c : spec_.certificates) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    SSL_CTX* native = ctx->native_handle();
    SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_min_proto_version(native, min_version(spec_.min_version)) != 1) {
      fail("tls.min_version");
    }
    if (!spec_.ciphers.empty() && SSL_CTX_set_cipher_list(native, spec_.ciphers.c_str()) != 1) {
      fail("tls.ciphers '" + spec_.ciphers + "'");
    }
    if (SSL_CTX_use_certificate_chain_file(native, c.cert.c_str()) != 1) fail(c.cert);
    if (SSL_CTX_use_PrivateKey_file(native, c.key.c_str(), SSL_FILETYPE_PEM) != 1) fail(c.key);
    if (SSL_CTX_check_private_key(native) != 1) fail(c.key + " does not match " + c.cert);
    SSL_CTX_set_alpn_select_cb(native, &select_http11, nullptr);
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
    if (!spec_.client_ca.empty()) {
      if (SSL_CTX_load_verify_locations(native, spec_.client_ca.c_str(), nullptr) != 1) {
        fail(spec_.client_ca);
      }
      STACK_OF(X509_NAME)* cas = SSL_load_client_CA_file(spec_.client_ca.c_str());
      if (cas == nullptr) fail(spec_.client_ca);
      SSL_CTX_set_client_CA_list(native, cas);
      SSL_CTX_set_verify(native,
                         SSL_VERIFY_PEER |
                             (spec_.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         nullptr);
    }
    entries_.push_back({std::move(ctx), certificate_names(native)});
  }
  if (entries_.empty()) throw std::runtime_error("tls: no certificate");
  if (entries_.size() > 1) {
    SSL_CTX* first = entries_.front().context->native_handle();
    SSL_CTX_set_tlsext_servername_callback(first, &ServerTls::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(first, this);
  }
}

ServerTls::~ServerTls() = default;

const ServerTls::Entry* ServerTls::entry_for(std::string_view server_name) const noexcept {
  std::string name;
  try {
    name = lower(server_name);
  } catch (...) {
    return nullptr;
  }
  for (const Entry& e : entries_) {
    for (const std::string& pattern : e.names) {
      if (tls_name_matches(pattern, name)) return &e;
    }
  }
  return nullptr;
}

int ServerTls::on_server_name(SSL* ssl, int* /*alert*/, void* arg) {
  const auto* self = static_cast<const ServerTls*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate
  const Entry* e = self->entry_for(name);
  if (e != nullptr && e != &self->entries_.front()) {
    SSL_set_SSL_CTX(ssl, e->context->native_handle());
  }
  return SSL_TLSEXT_ERR_OK;
}

ClientTls::ClientTls(const config::ClusterTls& spec)
    : spec_(spec), context_(ssl::context::tls_client) {
  SSL_CTX* native = context_.native_handle();
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(native, min_version(spec_.min_version)) != 1) {
    fail("tls.min_version");
  }
  if (spec_.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(native) != 1) fail("the system's trust store");
  } else if (SSL_CTX_load_verify_locations(native, spec_.ca_file.c_str(), nullptr) != 1) {
    fail(spec_.ca_file);
  }
  if (!spec_.client_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(native, spec_.client_cert.c_str()) != 1) {
      fail(spec_.client_cert);
    }
    if (SSL_CTX_use_PrivateKey_file(native, spec_.client_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      fail(spec_.client_key);
    }
  }
  SSL_CTX_set_verify(native, spec_.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  // Sessions are kept per endpoint by the pools (upstream/pool.h), not in the context.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
}

bool ClientTls::prepare(SSL* ssl, std::string_view host) const {
  const std::string name(spec_.sni.empty() ? host : std::string_view(spec_.sni));
  boost::system::error_code ec;
  boost::asio::ip::make_address(name, ec);
  const bool is_address = !ec;
  if (!is_address && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return false;
  if (!spec_.verify) return true;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  const int ok = is_address ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                            : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
  return ok == 1;
}

}  // namespace bulwark::gateway::http
