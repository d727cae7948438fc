#include "upstream/health_checker.h"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <string>
#include <thread>

namespace bulwark::gateway::upstream {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr std::size_t kMaxStatusLine = 1024;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

}  // namespace

bool probe_passed(std::string_view status_line, const config::HealthCheckSpec& spec) noexcept {
  // "HTTP/1.x NNN ..."
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1.") return false;
  if (status_line[8] != ' ') return false;
  int status = 0;
  const char* first = status_line.data() + 9;
  const auto [end, ec] = std::from_chars(first, first + 3, status);
  if (ec != std::errc{} || end != first + 3) return false;
  return spec.expects(status);
}

struct HealthChecker::Impl {
  explicit Impl(bulwark::observe::Logger l) : log(std::move(l)), work(ioc.get_executor()) {
    thread = std::thread([this] { ioc.run(); });
  }
  ~Impl() {
    generation.fetch_add(1);
    work.reset();
    ioc.stop();
    if (thread.joinable()) thread.join();
  }

  net::awaitable<void> probe_loop(std::shared_ptr<const route::Snapshot> snapshot,
                                  const route::ClusterRuntime& cluster,
                                  const route::EndpointRuntime& endpoint, uint64_t loop_generation);
  net::awaitable<bool> probe(const config::HealthCheckSpec& spec,
                             const route::EndpointRuntime& endpoint);
  void record(const route::ClusterRuntime& cluster, const route::EndpointRuntime& endpoint,
              bool passed);

  bulwark::observe::Logger log;
  net::io_context ioc{1};
  net::executor_work_guard<net::io_context::executor_type> work;
  std::atomic<uint64_t> generation{0};
  std::thread thread;
};

net::awaitable<void> HealthChecker::Impl::probe_loop(
    std::shared_ptr<const route::Snapshot> snapshot, const route::ClusterRuntime& cluster,
    const route::EndpointRuntime& endpoint, uint64_t loop_generation) {
  const config::HealthCheckSpec& spec = *cluster.config->health_check;
  net::steady_timer pause(co_await net::this_coro::executor);
  while (generation.load() == loop_generation) {
    const bool passed = co_await probe(spec, endpoint);
    if (generation.load() != loop_generation) break;
    record(cluster, endpoint, passed);
    pause.expires_after(spec.interval);
    co_await pause.async_wait(kTuple);
  }
  (void)snapshot;  // held so that `cluster` and `endpoint` outlive the loop
}

net::awaitable<bool> HealthChecker::Impl::probe(const config::HealthCheckSpec& spec,
                                                const route::EndpointRuntime& endpoint) {
  const auto executor = co_await net::this_coro::executor;
  auto socket = std::make_shared<tcp::socket>(executor);
  net::steady_timer deadline(executor);
  deadline.expires_after(spec.timeout);
  // The socket is shared with the timer's handler, which may run after this probe returned.
  deadline.async_wait([socket](const boost::system::error_code& ec) {
    if (!ec) {
      boost::system::error_code ignored;
      socket->close(ignored);
    }
  });
  bool passed = false;
  if (auto [ec] = co_await socket->async_connect(endpoint.endpoint, kTuple); !ec) {
    const std::string request = "GET " + spec.path + " HTTP/1.1\r\nHost: " + endpoint.address +
                                "\r\nConnection: close\r\nUser-Agent: bulwark-health-check\r\n\r\n";
    auto [wec, written] = co_await net::async_write(*socket, net::buffer(request), kTuple);
    if (!wec) {
      std::string answer;
      auto [rec, n] = co_await net::async_read_until(
          *socket, net::dynamic_buffer(answer, kMaxStatusLine), "\r\n", kTuple);
      passed = !rec && probe_passed(std::string_view(answer).substr(0, n), spec);
    }
  }
  deadline.cancel();
  boost::system::error_code ignored;
  socket->close(ignored);
  co_return passed;
}

void HealthChecker::Impl::record(const route::ClusterRuntime& cluster,
                                 const route::EndpointRuntime& endpoint, bool passed) {
  const config::HealthCheckSpec& spec = *cluster.config->health_check;
  EndpointHealth& health = *endpoint.health;
  health.count_probe(passed);
  const auto changed =
      health.probes.record(passed, spec.healthy_threshold, spec.unhealthy_threshold);
  if (!changed) return;
  health.set_status(*changed);
  const bulwark::observe::LogLevel level = *changed == HealthStatus::down
                                               ? bulwark::observe::LogLevel::warn
                                               : bulwark::observe::LogLevel::info;
  log.log(level, "endpoint health changed",
          {{"cluster", cluster.config->name},
           {"endpoint", endpoint.label},
           {"status", to_string(*changed)}});
}

HealthChecker::HealthChecker(bulwark::observe::Logger log)
    : impl_(std::make_unique<Impl>(std::move(log))) {}

HealthChecker::~HealthChecker() = default;

void HealthChecker::watch(std::shared_ptr<const route::Snapshot> snapshot) {
  const uint64_t loop_generation = impl_->generation.fetch_add(1) + 1;
  net::post(impl_->ioc, [impl = impl_.get(), snapshot = std::move(snapshot), loop_generation] {
    for (const route::ClusterRuntime& cluster : snapshot->clusters) {
      if (!cluster.config->health_check) continue;
      for (const route::EndpointRuntime& endpoint : cluster.endpoints) {
        net::co_spawn(impl->ioc, impl->probe_loop(snapshot, cluster, endpoint, loop_generation),
                      net::detached);
      }
    }
  });
}

}  // namespace bulwark::gateway::upstream
