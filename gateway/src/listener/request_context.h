// RequestContext: everything a request needs that a connection waiting for its next request
// does not — the read buffer's storage, the write buffer, the parsed fields, the parser, the
// upstream exchange, the filter chain's inline state. A worker keeps a pool of them: a
// connection takes one when a request's first bytes arrive and gives it back when it goes idle,
// so an idle keep-alive connection costs its socket, its timer and a few words.
//
// Thread-safety: none; one pool per worker thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filter/chain.h"
#include "filter/local_reply.h"
#include "http/connection_io.h"
#include "http/hygiene.h"
#include "http/message_parser.h"
#include "listener/request_wake.h"
#include "upstream/exchange.h"

namespace bulwark::gateway::listener {

struct RequestContext {
  RequestContext(const upstream::WorkerLeg& worker, std::shared_ptr<WakeHub> hub)
      : wake(std::make_shared<RequestWake>(std::move(hub))), exchange(worker) {
    out.reserve(4096);
    wake_token.target = wake;
  }

  http::ReadBuffer in;  // its storage comes from the worker's BufferPool
  std::string out;
  std::vector<http::HeaderField> fields;
  std::optional<http::RequestParser> parser;
  http::NormalizedTarget target;
  std::string request_id;
  std::string log_method;
  std::string log_path;
  std::string allow;         // 405's Allow
  filter::LocalReply reply;  // the answer being made (kept out of coroutine frames)
  filter::ChainRun chain;
  filter::RequestInfo request_info;  // what the request filters see; kept for resume()
  filter::UpstreamEdits edits;       // request filters' header changes for the upstream
  std::shared_ptr<RequestWake> wake;  // a filter's wait (listener/request_wake.h)
  filter::WakeToken wake_token;       // the current wait's token (its `wait` kept current)
  upstream::ExchangeRequest exchange_request;
  upstream::ExchangeResult exchange_result;
  upstream::Exchange exchange;
};

class RequestContextPool {
 public:
  RequestContextPool(upstream::WorkerLeg worker, std::shared_ptr<WakeHub> hub)
      : worker_(worker), hub_(std::move(hub)) {}

  std::unique_ptr<RequestContext> take() {
    if (spare_.empty()) return std::make_unique<RequestContext>(worker_, hub_);
    auto ctx = std::move(spare_.back());
    spare_.pop_back();
    return ctx;
  }
  // `ctx` must hold no buffer storage and no finished-but-uncompleted request.
  void give(std::unique_ptr<RequestContext> ctx) {
    if (spare_.size() < kMaxSpare) spare_.push_back(std::move(ctx));
  }

 private:
  static constexpr std::size_t kMaxSpare = 256;
  upstream::WorkerLeg worker_;
  std::shared_ptr<WakeHub> hub_;
  std::vector<std::unique_ptr<RequestContext>> spare_;
};

}  // namespace bulwark::gateway::listener
