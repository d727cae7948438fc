// Every reason the gateway gives for an answer it makes itself (the `x-bulwark-reason` header,
// the JSON error body, the access log and the metrics), and for a stream it cuts. One constant
// per reason, in one place: docs/gateway.md lists them with their statuses. Reasons are stable
// snake_case names: dashboards and alerts key on them, so a rename is a breaking change.
#pragma once

#include <string_view>

namespace bulwark::gateway::reason {

// Request hygiene (http/hygiene.h says which rule each one is).
inline constexpr std::string_view kMalformed = "malformed";
inline constexpr std::string_view kUriTooLong = "uri_too_long";
inline constexpr std::string_view kBadRequestTarget = "bad_request_target";
inline constexpr std::string_view kBadCharacters = "bad_characters";
inline constexpr std::string_view kBadEncoding = "bad_encoding";
inline constexpr std::string_view kEncodedNull = "encoded_null";
inline constexpr std::string_view kPathTraversal = "path_traversal";
inline constexpr std::string_view kBadHeaderName = "bad_header_name";
inline constexpr std::string_view kBadHeaderValue = "bad_header_value";
inline constexpr std::string_view kObsFold = "obs_fold";
inline constexpr std::string_view kMissingHost = "missing_host";
inline constexpr std::string_view kDuplicateHost = "duplicate_host";
inline constexpr std::string_view kBadHost = "bad_host";
inline constexpr std::string_view kSmuggling = "smuggling";
inline constexpr std::string_view kBadContentLength = "bad_content_length";
inline constexpr std::string_view kDuplicateContentLength = "duplicate_content_length";
inline constexpr std::string_view kBadTransferEncoding = "bad_transfer_encoding";
inline constexpr std::string_view kTooManyHeaders = "too_many_headers";
inline constexpr std::string_view kHeadersTooLarge = "headers_too_large";

// Reading the request.
inline constexpr std::string_view kHeaderTimeout = "header_timeout";
inline constexpr std::string_view kBodyTimeout = "body_timeout";
inline constexpr std::string_view kBodyTooLarge = "body_too_large";
inline constexpr std::string_view kClientClosed = "client_closed";

// Routing.
inline constexpr std::string_view kNoRoute = "no_route";
inline constexpr std::string_view kMethodNotAllowed = "method_not_allowed";

// Limits (filters).
inline constexpr std::string_view kConnectionLimit = "connection_limit";
inline constexpr std::string_view kConcurrencyLimit = "concurrency_limit";
inline constexpr std::string_view kClusterConcurrencyLimit = "cluster_concurrency_limit";
inline constexpr std::string_view kQueueTimeout = "queue_timeout";
inline constexpr std::string_view kRateLimited = "rate_limited";
inline constexpr std::string_view kLimiterUnavailable = "limiter_unavailable";
inline constexpr std::string_view kBadClientKey = "bad_client_key";

// Optional per-route filters.
inline constexpr std::string_view kBlockedPattern = "blocked_pattern";
// Authentication (routes[].auth.jwt, filters/jwt): 401 without a token, 403 for a token that is
// refused, each refusal with its own reason.
inline constexpr std::string_view kJwtMissing = "jwt_missing";
inline constexpr std::string_view kJwtMalformed = "jwt_malformed";
inline constexpr std::string_view kJwtAlgorithm = "jwt_algorithm";
inline constexpr std::string_view kJwtUnknownKey = "jwt_unknown_key";
inline constexpr std::string_view kJwtSignature = "jwt_signature";
inline constexpr std::string_view kJwtExpired = "jwt_expired";
inline constexpr std::string_view kJwtNotYetValid = "jwt_not_yet_valid";
inline constexpr std::string_view kJwtIssuer = "jwt_issuer";
inline constexpr std::string_view kJwtAudience = "jwt_audience";
inline constexpr std::string_view kJwtMissingClaim = "jwt_missing_claim";
inline constexpr std::string_view kFaultAbort = "fault_abort";

// Call policies.
inline constexpr std::string_view kCircuitOpen = "circuit_open";
inline constexpr std::string_view kOverloaded = "overloaded";
inline constexpr std::string_view kNoHealthyEndpoint = "no_healthy_endpoint";

// The upstream call.
inline constexpr std::string_view kNoEndpoint = "no_endpoint";
inline constexpr std::string_view kPoolExhausted = "pool_exhausted";
inline constexpr std::string_view kConnectFailure = "connect_failure";
inline constexpr std::string_view kConnectTimeout = "connect_timeout";
inline constexpr std::string_view kRequestTimeout = "request_timeout";
inline constexpr std::string_view kFirstByteTimeout = "first_byte_timeout";
inline constexpr std::string_view kUpstreamReset = "upstream_reset";
inline constexpr std::string_view kBadResponse = "bad_response";
inline constexpr std::string_view kUpstreamTls = "upstream_tls";

// Stream guards (a cut stream; a 502 when nothing of the answer was sent yet).
inline constexpr std::string_view kStreamIdleTimeout = "stream_idle_timeout";
inline constexpr std::string_view kStreamTotalTimeout = "stream_total_timeout";
inline constexpr std::string_view kStreamMaxBytes = "stream_max_bytes";
inline constexpr std::string_view kStreamMaxChunk = "stream_max_chunk";
inline constexpr std::string_view kStreamMaxChunks = "stream_max_chunks";

}  // namespace bulwark::gateway::reason
