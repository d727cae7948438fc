// The effective configuration as JSON for GET /config: every key of the YAML contract with the
// value in force (defaults filled in), durations as strings ("250ms", "30s"), sizes in bytes,
// rates as "100/s".
//
// Redaction: values that may hold credentials are replaced by "<redacted>": any key whose
// name contains password, secret, token, api_key or authorization (case-insensitive), and the
// userinfo part of any address or URL ("user:pass@host" -> "<redacted>@host").
#pragma once

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace bulwark::gateway::admin {

nlohmann::json config_to_json(const config::Config& config);

// Applies the redaction rules above to any JSON document in place (config_to_json() calls it on
// its result): a non-empty value under a sensitive key becomes "<redacted>"; the userinfo of
// every string that is a URL ("scheme://user:pass@host/...") and of every "user@host:port"
// string under an address-like key (address, listen, endpoints, url) becomes "<redacted>".
void redact(nlohmann::json& document);

}  // namespace bulwark::gateway::admin
