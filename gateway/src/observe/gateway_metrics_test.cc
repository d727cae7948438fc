#include "observe/gateway_metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/observe/prometheus.h"

namespace bulwark::gateway::observe {
namespace {

static_assert(status_class_index(200) == 1);
static_assert(status_class_index(0) == 4);

TEST(GatewayMetrics, StatusClassIndex) {
  EXPECT_EQ(status_class_index(100), 0u);
  EXPECT_EQ(status_class_index(101), 0u);
  EXPECT_EQ(status_class_index(199), 0u);
  EXPECT_EQ(status_class_index(200), 1u);
  EXPECT_EQ(status_class_index(304), 2u);
  EXPECT_EQ(status_class_index(404), 3u);
  EXPECT_EQ(status_class_index(499), 3u);
  EXPECT_EQ(status_class_index(500), 4u);
  EXPECT_EQ(status_class_index(599), 4u);
  // Anything that is not a valid status counts as a server error.
  EXPECT_EQ(status_class_index(0), 4u);
  EXPECT_EQ(status_class_index(99), 4u);
  EXPECT_EQ(status_class_index(600), 4u);
  EXPECT_EQ(status_class_index(-1), 4u);
}

TEST(GatewayMetrics, SameNameReturnsTheSameHandle) {
  bulwark::observe::Registry registry;
  GatewayMetrics metrics(registry);

  RouteMetrics& api = metrics.route("api");
  EXPECT_EQ(&api, &metrics.route("api"));
  EXPECT_NE(&api, &metrics.route("other"));
  EXPECT_EQ(api.name, "api");
  for (Counter* c : api.requests) ASSERT_NE(c, nullptr);
  EXPECT_NE(api.requests[0], api.requests[1]);
  EXPECT_NE(api.requests[1], metrics.route("other").requests[1]);
  EXPECT_NE(api.duration, nullptr);
  EXPECT_NE(api.request_bytes, api.response_bytes);

  ListenerMetrics& pub = metrics.listener("public");
  EXPECT_EQ(&pub, &metrics.listener("public"));
  EXPECT_EQ(pub.name, "public");
  EXPECT_NE(pub.connections_active, nullptr);
  EXPECT_NE(pub.connections_total, nullptr);
  EXPECT_NE(pub.requests_active, pub.connections_active);

  ClusterMetrics& backend = metrics.cluster("backend");
  EXPECT_EQ(&backend, &metrics.cluster("backend"));
  EXPECT_NE(backend.duration, nullptr);

  EndpointMetrics& e1 = metrics.endpoint("backend", "127.0.0.1:9001");
  EXPECT_EQ(&e1, &metrics.endpoint("backend", "127.0.0.1:9001"));
  EXPECT_NE(&e1, &metrics.endpoint("backend", "127.0.0.1:9002"));
  EXPECT_NE(&e1, &metrics.endpoint("other", "127.0.0.1:9001"));
  EXPECT_NE(e1.pool_idle, e1.pool_busy);
  EXPECT_NE(e1.connect_failures, e1.connections_opened);

  // Handles survive many later insertions (map nodes do not move).
  for (int i = 0; i < 200; ++i) {
    std::string name = "route-";
    name += std::to_string(i);
    metrics.route(name);
  }
  EXPECT_EQ(&api, &metrics.route("api"));
  api.requests[1]->inc();
  EXPECT_EQ(metrics.route("api").requests[1]->value(), 1.0);
}

TEST(GatewayMetrics, LazySeriesAreCreatedOnceAndKept) {
  bulwark::observe::Registry registry;
  GatewayMetrics metrics(registry);
  ListenerMetrics& pub = metrics.listener("public");
  Counter& exhausted = pub.response(503, "pool_exhausted");
  EXPECT_EQ(&exhausted, &pub.response(503, "pool_exhausted"));
  EXPECT_NE(&exhausted, &pub.response(503, "draining"));
  EXPECT_NE(&exhausted, &pub.response(504, "pool_exhausted"));
  EXPECT_NE(&exhausted, &metrics.listener("other").response(503, "pool_exhausted"));

  RouteMetrics& api = metrics.route("api");
  Counter& idle = api.stream_abort("stream_idle_timeout");
  EXPECT_EQ(&idle, &api.stream_abort("stream_idle_timeout"));
  EXPECT_NE(&idle, &api.stream_abort("stream_max_bytes"));
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(GatewayMetrics, PrometheusTextCarriesRecordedSeries) {
  bulwark::observe::Registry registry;
  GatewayMetrics metrics(registry);

  ListenerMetrics& pub = metrics.listener("public");
  pub.connections_total->inc();
  pub.connections_total->inc();
  pub.connections_active->set(1);
  pub.requests_active->inc();
  pub.response(503, "pool_exhausted").inc();
  pub.response(400, "bad \"host\"").inc();

  RouteMetrics& api = metrics.route("api");
  api.requests[status_class_index(200)]->inc(2);
  api.requests[status_class_index(404)]->inc();
  api.duration->observe(0.012);
  api.request_bytes->inc(100);
  api.response_bytes->inc(5120);
  api.stream_abort("stream_idle_timeout").inc();

  ClusterMetrics& backend = metrics.cluster("backend");
  backend.requests[status_class_index(502)]->inc();
  backend.duration->observe(2.0);

  EndpointMetrics& ep = metrics.endpoint("backend", "127.0.0.1:9001");
  ep.requests[status_class_index(201)]->inc();
  ep.duration->observe(0.0001);
  ep.active->set(3);
  ep.connect_failures->inc();
  ep.connections_opened->inc(4);
  ep.pool_idle->set(2);
  ep.pool_busy->set(1);

  metrics.reload_result(true, 3);
  metrics.reload_result(false, 9);
  metrics.set_draining(true);

  bulwark::observe::ScrapeStats stats;
  const std::string text = bulwark::observe::to_prometheus_text(registry, &stats);
  EXPECT_EQ(stats.dropped, 0u) << stats.first_error;

  const char* expected[] = {
      "# TYPE bulwark_listener_connections_total counter",
      R"(bulwark_listener_connections_total{listener="public"} 2)",
      "# TYPE bulwark_listener_connections_active gauge",
      R"(bulwark_listener_connections_active{listener="public"} 1)",
      R"(bulwark_listener_requests_active{listener="public"} 1)",
      R"(bulwark_gateway_responses_total{listener="public",code="503",reason="pool_exhausted"} 1)",
      R"(bulwark_gateway_responses_total{listener="public",code="400",reason="bad \"host\""} 1)",
      R"(bulwark_route_requests_total{route="api",class="2xx"} 2)",
      R"(bulwark_route_requests_total{route="api",class="4xx"} 1)",
      R"(bulwark_route_requests_total{route="api",class="5xx"} 0)",
      "# TYPE bulwark_route_request_duration_seconds histogram",
      R"(bulwark_route_request_duration_seconds_bucket{route="api",le="0.01"} 0)",
      R"(bulwark_route_request_duration_seconds_bucket{route="api",le="0.025"} 1)",
      R"(bulwark_route_request_duration_seconds_bucket{route="api",le="60"} 1)",
      R"(bulwark_route_request_duration_seconds_bucket{route="api",le="+Inf"} 1)",
      R"(bulwark_route_request_duration_seconds_count{route="api"} 1)",
      R"(bulwark_route_request_bytes_total{route="api"} 100)",
      R"(bulwark_route_response_bytes_total{route="api"} 5120)",
      R"(bulwark_route_stream_aborts_total{route="api",reason="stream_idle_timeout"} 1)",
      R"(bulwark_cluster_requests_total{cluster="backend",class="5xx"} 1)",
      R"(bulwark_cluster_request_duration_seconds_bucket{cluster="backend",le="2.5"} 1)",
      R"(bulwark_cluster_request_duration_seconds_sum{cluster="backend"} 2)",
      R"(bulwark_endpoint_requests_total{cluster="backend",endpoint="127.0.0.1:9001",class="2xx"} 1)",
      R"(bulwark_endpoint_request_duration_seconds_bucket{cluster="backend",endpoint="127.0.0.1:9001",le="0.0005"} 1)",
      R"(bulwark_endpoint_requests_active{cluster="backend",endpoint="127.0.0.1:9001"} 3)",
      R"(bulwark_endpoint_connect_failures_total{cluster="backend",endpoint="127.0.0.1:9001"} 1)",
      R"(bulwark_endpoint_connections_opened_total{cluster="backend",endpoint="127.0.0.1:9001"} 4)",
      R"(bulwark_endpoint_pool_connections{cluster="backend",endpoint="127.0.0.1:9001",state="idle"} 2)",
      R"(bulwark_endpoint_pool_connections{cluster="backend",endpoint="127.0.0.1:9001",state="busy"} 1)",
      R"(bulwark_config_reloads_total{result="success"} 1)",
      R"(bulwark_config_reloads_total{result="failure"} 1)",
      "bulwark_config_generation 3",  // a failed reload keeps the generation in service
      "bulwark_config_last_reload_success 0",
      "bulwark_draining 1",
  };
  for (const char* line : expected) EXPECT_TRUE(has_line(text, line)) << line << "\n" << text;
  // Without a source the access log series is left to whoever owns the access log.
  EXPECT_EQ(text.find("bulwark_access_log_dropped_total"), std::string::npos) << text;

  metrics.set_draining(false);
  metrics.reload_result(true, 10);
  const std::string after = bulwark::observe::to_prometheus_text(registry);
  EXPECT_TRUE(has_line(after, "bulwark_draining 0")) << after;
  EXPECT_TRUE(has_line(after, "bulwark_config_generation 10")) << after;
  EXPECT_TRUE(has_line(after, "bulwark_config_last_reload_success 1")) << after;
  EXPECT_TRUE(has_line(after, R"(bulwark_config_reloads_total{result="success"} 2)")) << after;
}

TEST(GatewayMetrics, EveryFamilyHasHelpAndType) {
  bulwark::observe::Registry registry;
  GatewayMetrics metrics(registry);
  metrics.listener("l").response(500, "x");
  metrics.route("r").stream_abort("stream_max_chunk");
  metrics.cluster("c");
  metrics.endpoint("c", "e");
  metrics.set_access_log_dropped_source([] { return uint64_t{0}; });
  const std::string text = bulwark::observe::to_prometheus_text(registry);
  for (const char* family : {"bulwark_listener_connections_active",
                             "bulwark_listener_connections_total",
                             "bulwark_listener_requests_active",
                             "bulwark_gateway_responses_total",
                             "bulwark_route_requests_total",
                             "bulwark_route_request_duration_seconds",
                             "bulwark_route_request_bytes_total",
                             "bulwark_route_response_bytes_total",
                             "bulwark_route_stream_aborts_total",
                             "bulwark_cluster_requests_total",
                             "bulwark_cluster_request_duration_seconds",
                             "bulwark_endpoint_requests_total",
                             "bulwark_endpoint_request_duration_seconds",
                             "bulwark_endpoint_requests_active",
                             "bulwark_endpoint_connect_failures_total",
                             "bulwark_endpoint_connections_opened_total",
                             "bulwark_endpoint_pool_connections",
                             "bulwark_config_reloads_total",
                             "bulwark_config_generation",
                             "bulwark_config_last_reload_success",
                             "bulwark_draining",
                             "bulwark_access_log_dropped_total"}) {
    EXPECT_NE(text.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
    EXPECT_NE(text.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  }
}

TEST(GatewayMetrics, AccessLogDroppedStaysMonotonicAcrossSources) {
  bulwark::observe::Registry registry;
  GatewayMetrics metrics(registry);
  uint64_t first = 5;
  metrics.set_access_log_dropped_source([&first] { return first; });
  EXPECT_TRUE(has_line(bulwark::observe::to_prometheus_text(registry),
                       "# TYPE bulwark_access_log_dropped_total counter"));
  EXPECT_TRUE(has_line(bulwark::observe::to_prometheus_text(registry),
                       "bulwark_access_log_dropped_total 5"));
  first = 6;
  EXPECT_TRUE(has_line(bulwark::observe::to_prometheus_text(registry),
                       "bulwark_access_log_dropped_total 6"));
  // A reload reopens the access log: the new log starts at 0, the exported counter does not.
  metrics.set_access_log_dropped_source([] { return uint64_t{2}; });
  first = 1000;  // the old source is no longer read
  EXPECT_TRUE(has_line(bulwark::observe::to_prometheus_text(registry),
                       "bulwark_access_log_dropped_total 8"));
  metrics.set_access_log_dropped_source({});
  EXPECT_TRUE(has_line(bulwark::observe::to_prometheus_text(registry),
                       "bulwark_access_log_dropped_total 8"));
}

TEST(GatewayMetrics, DestructionDetachesTheCollector) {
  bulwark::observe::Registry registry;
  auto metrics = std::make_unique<GatewayMetrics>(registry);
  metrics->set_access_log_dropped_source([] { return uint64_t{1}; });
  metrics->route("api").requests[1]->inc();
  metrics.reset();
  const std::string text = bulwark::observe::to_prometheus_text(registry);
  EXPECT_EQ(text.find("bulwark_access_log_dropped_total"), std::string::npos) << text;
  // The registered families (and their series) belong to the registry and remain.
  EXPECT_TRUE(has_line(text, R"(bulwark_route_requests_total{route="api",class="2xx"} 1)"));
}

TEST(GatewayMetrics, HandlesAreSafeFromManyThreads) {
  bulwark::observe::Registry registry;
  GatewayMetrics metrics(registry);
  constexpr int kThreads = 4;
  constexpr int kIterations = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics] {
      for (int i = 0; i < kIterations; ++i) {
        RouteMetrics& r = metrics.route("api");
        r.requests[status_class_index(200)]->inc();
        r.stream_abort("stream_total_timeout").inc();
        metrics.listener("public").response(503, "draining").inc();
        metrics.endpoint("backend", "e").active->inc();
      }
    });
  }
  for (int i = 0; i < 20; ++i) bulwark::observe::to_prometheus_text(registry);
  for (auto& th : threads) th.join();
  EXPECT_EQ(metrics.route("api").requests[1]->value(), kThreads * kIterations);
  EXPECT_EQ(metrics.route("api").stream_abort("stream_total_timeout").value(),
            kThreads * kIterations);
  EXPECT_EQ(metrics.listener("public").response(503, "draining").value(), kThreads * kIterations);
  EXPECT_EQ(metrics.endpoint("backend", "e").active->value(), kThreads * kIterations);
}

}  // namespace
}  // namespace bulwark::gateway::observe
