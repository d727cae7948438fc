#include "listener/worker.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <stdexcept>
#include <thread>

#include "listener/connection.h"

namespace bulwark::gateway::listener {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;

struct Worker::Impl : WorkerState {
  Impl(const Clock& clock, route::Shared& shared, std::shared_ptr<const route::Snapshot> snap,
       uint64_t seed)
      : WorkerState(clock, shared, std::move(snap), seed) {}
  // Suspended connections are destroyed with the io_context and touch the connection list,
  // the pools and the buffers on the way out, so the io_context goes first; sockets it owns
  // (acceptors, idle upstream connections) must go before it.
  ~Impl() {
    ioc.stop();
    if (thread.joinable()) thread.join();
    acceptors.clear();
    upstreams.close_idle();
    redis.shutdown();
    wake_hub->close();
    ioc_owner.reset();
  }

  http::Task<void> accept_loop(http::Acceptor& acceptor, std::size_t listener);

  std::vector<std::unique_ptr<http::Acceptor>> acceptors;
  std::thread thread;
};

http::Task<void> Worker::Impl::accept_loop(http::Acceptor& acceptor, std::size_t listener) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(http::kTuple);
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
      // EMFILE and friends: the listening socket stays readable, so retrying at once would
      // spin; pause briefly and let connections finish (the resource monitor reports it).
      net::basic_waitable_timer<std::chrono::steady_clock,
                                net::wait_traits<std::chrono::steady_clock>, http::Executor>
          pause(ioc.get_executor());
      pause.expires_after(std::chrono::milliseconds(50));
      auto [wec] = co_await pause.async_wait(http::kTuple);
      if (wec || !acceptor.is_open()) co_return;
      continue;
    }
    auto connection = std::make_unique<Connection>(*this, std::move(socket), listener);
    net::co_spawn(ioc.get_executor(), Connection::serve(std::move(connection)), net::detached);
  }
}

Worker::Worker(const Clock& clock, route::Shared& shared,
               std::shared_ptr<const route::Snapshot> snapshot, uint64_t seed)
    : impl_(std::make_unique<Impl>(clock, shared, std::move(snapshot), seed)) {}

Worker::~Worker() { stop(); }

std::vector<uint16_t> Worker::listen(const std::vector<tcp::endpoint>& endpoints) {
  std::vector<uint16_t> ports;
  for (const auto& e : endpoints) {
    auto a = std::make_unique<http::Acceptor>(impl_->ioc.get_executor());
    error_code ec;
    using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
    a->open(e.protocol(), ec);
    if (!ec) a->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a->set_option(reuse_port(true), ec);
    if (!ec) a->bind(e, ec);
    if (!ec) a->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      // The address and the cause, without Boost's source location.
      throw std::runtime_error("cannot listen on " + e.address().to_string() + ":" +
                               std::to_string(e.port()) + ": " + ec.message());
    }
    ports.push_back(a->local_endpoint().port());
    impl_->acceptors.push_back(std::move(a));
  }
  return ports;
}

void Worker::start() {
  for (std::size_t i = 0; i < impl_->acceptors.size(); ++i) {
    net::co_spawn(impl_->ioc.get_executor(), impl_->accept_loop(*impl_->acceptors[i], i),
                  net::detached);
  }
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

void Worker::install(std::shared_ptr<const route::Snapshot> snapshot) {
  net::post(impl_->ioc, [impl = impl_.get(), s = std::move(snapshot)]() mutable {
    impl->snapshot = std::move(s);
    impl->redis.configure(impl->snapshot->redis);
  });
}

void Worker::begin_drain() {
  net::post(impl_->ioc, [impl = impl_.get()] {
    impl->draining = true;
    for (auto& a : impl->acceptors) {
      error_code ignored;
      a->close(ignored);
    }
    for (Connection* c : impl->connections) c->cancel_if_idle();
    impl->upstreams.close_idle();
  });
}

uint32_t Worker::open_connections() const noexcept {
  return impl_->open.load(std::memory_order_relaxed);
}

void Worker::stop() {
  if (!impl_) return;
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace bulwark::gateway::listener
