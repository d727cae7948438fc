#include "config/pem.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace bulwark::gateway::config {

namespace {

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> open_file(const std::string& file, std::string& problem) {
  errno = 0;
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) {
    const int err = errno;
    problem = "cannot read " + file + ": " + (err != 0 ? std::strerror(err) : "unreadable");
    ERR_clear_error();
  }
  return bio;
}

std::unique_ptr<X509, X509Free> first_certificate(const std::string& file, std::string& problem) {
  auto bio = open_file(file, problem);
  if (!bio) return nullptr;
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!cert) problem = "no PEM certificate in " + file;
  return cert;
}

std::unique_ptr<EVP_PKEY, KeyFree> private_key(const std::string& file, std::string& problem) {
  auto bio = open_file(file, problem);
  if (!bio) return nullptr;
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!key) problem = "no PEM private key in " + file + " (or it is encrypted)";
  return key;
}

}  // namespace

std::string pem_problem(const std::string& file, PemKind kind) {
  std::string problem;
  if (kind == PemKind::certificate) {
    first_certificate(file, problem);
  } else {
    private_key(file, problem);
  }
  return problem;
}

std::string key_mismatch(const std::string& cert_file, const std::string& key_file) {
  std::string problem;
  auto cert = first_certificate(cert_file, problem);
  auto key = private_key(key_file, problem);
  if (!cert || !key) return {};
  const bool matches = X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  if (matches) return {};
  return "the key in " + key_file + " does not belong to the certificate in " + cert_file;
}

}  // namespace bulwark::gateway::config
