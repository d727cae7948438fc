// Checks of the PEM files a config names (TLS certificates, keys, CA bundles), so that a bad
// file is a config error naming it — at --check-config and on reload — never a failure at the
// first connection. OpenSSL reads them; nothing else is done with them here.
#pragma once

#include <string>

namespace bulwark::gateway::config {

enum class PemKind { certificate, private_key };

// "" when `file` is readable and holds at least one certificate (or a private key); otherwise
// what is wrong, naming the file ("cannot read /etc/x.pem: No such file or directory", "no
// PEM certificate in /etc/x.pem").
std::string pem_problem(const std::string& file, PemKind kind);

// "" when the key in `key_file` belongs to the first certificate of `cert_file` (or either
// cannot be read: pem_problem reports that); otherwise the mismatch, naming both files.
std::string key_mismatch(const std::string& cert_file, const std::string& key_file);

}  // namespace bulwark::gateway::config
