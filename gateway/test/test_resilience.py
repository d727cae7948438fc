"""The resilience policies applied to proxied requests, end to end: retries (another endpoint,
replayed bodies, non-idempotent methods, Retry-After, the budget), the circuit breaker (opens
without touching the upstream, half-opens, closes), outlier ejection, per-client and per-route
rate limits (429 with the RateLimit fields, a second client unaffected, dry run, bad keys), the
cluster concurrency limit, stream.max_chunks, block patterns and fault injection. Each asserts statuses, reasons, what the
upstreams saw and the metrics."""

import os
import threading
import time

from harness import Client, GatewayTest, PeerClosed, make_config, request, scale, wait_until

FAST_BACKOFF = {"base": "1ms", "max": "5ms"}


def with_route(config, **route_opts):
    config["routes"][0].update(route_opts)
    return config


def with_cluster(config, **cluster_opts):
    config["clusters"][0].update(cluster_opts)
    return config


class RetryTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.bad = self.start_upstream()
        self.bad.answer_all = (503, [])
        self.good = self.start_upstream()

    def gateway(self, endpoints, **retry):
        spec = {"attempts": 2, "backoff": FAST_BACKOFF}
        spec.update(retry)
        return self.start_gateway(with_route(make_config(endpoints), retry=spec))

    def test_one_failing_endpoint_of_two_costs_no_get(self):
        gw = self.gateway([self.bad.address, self.good.address])
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok?i=%d" % i).status for i in range(20)]
        self.assertEqual(statuses, [200] * 20)
        self.assertGreater(self.bad.count(), 0, "round robin never reached the bad endpoint")
        # Every 503 was retried once, on the other endpoint.
        self.assertEqual(gw.metric_value("bulwark_route_retries_total", {"route": "api"}),
                         self.bad.count())
        self.assertEqual(self.good.count(), 20)

    def test_a_body_is_replayed_byte_for_byte(self):
        gw = self.gateway([self.bad.address, self.good.address])
        body = bytes(range(256)) * 40  # 10 KiB
        resp = request(gw.port, "PUT", "/echo", body=body)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, body)
        self.assertEqual(self.bad.count(), 1)

    def test_a_post_that_reached_the_upstream_is_not_retried(self):
        gw = self.gateway([self.bad.address])
        resp = request(gw.port, "POST", "/ok", body=b"x" * 100)
        self.assertEqual(resp.status, 503)
        self.assertEqual(self.bad.count(), 1)
        self.assertEqual(gw.metric_value("bulwark_route_retries_denied_total",
                                         {"route": "api", "reason": "not_idempotent"}), 1)

    def test_a_post_is_retried_when_the_route_opts_in(self):
        gw = self.gateway([self.bad.address, self.good.address], non_idempotent=True)
        resp = request(gw.port, "POST", "/echo", body=b"payload")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"payload")

    def test_404_is_never_retried(self):
        self.bad.answer_all = (404, [])
        gw = self.gateway([self.bad.address, self.good.address], on=["5xx"])
        resp = request(gw.port, "GET", "/ok")
        self.assertEqual(resp.status, 404)
        self.assertEqual(self.bad.count() + self.good.count(), 1)

    def test_retry_after_is_honoured_up_to_the_cap(self):
        self.bad.answer_all = (503, [("Retry-After", "30")])
        gw = self.gateway([self.bad.address], max_retry_after="300ms")
        start = time.monotonic()
        resp = request(gw.port, "GET", "/ok", timeout=scale(10))
        elapsed = time.monotonic() - start
        self.assertEqual(resp.status, 503)
        self.assertEqual(self.bad.count(), 2)
        self.assertGreaterEqual(elapsed, 0.25, "the retry did not wait for Retry-After")
        self.assertLess(elapsed, scale(5), "Retry-After was not capped")

    def test_the_budget_bounds_retries(self):
        # No ratio, a floor of one retry per 10 s window.
        gw = self.gateway([self.bad.address], attempts=3,
                          budget={"ratio": 0, "min_per_second": 0.1})
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(5)]
        self.assertEqual(statuses, [503] * 5)
        self.assertEqual(gw.metric_value("bulwark_route_retries_total", {"route": "api"}), 1)
        self.assertEqual(self.bad.count(), 6)
        self.assertEqual(gw.metric_value("bulwark_retry_budget_exhausted_total",
                                         {"target": "backend"}), 5)

    def test_an_always_failing_upstream_gets_at_most_the_budget(self):
        # 60 requests, 3 attempts each: without a budget 180 upstream calls. The budget allows
        # ratio x requests + floor x window seconds retries.
        gw = self.gateway([self.bad.address], attempts=3,
                          budget={"ratio": 0.2, "min_per_second": 0.5})
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(60)]
        self.assertEqual(statuses, [503] * 60)
        self.assertLessEqual(self.bad.count(), int(60 * 1.2 + 0.5 * 10))
        self.assertGreater(self.bad.count(), 60, "no retry at all")

    def test_no_retry_after_the_first_response_byte(self):
        # Head and 1000 body bytes, then a reset: the client has the head already.
        gw = self.gateway([self.good.address], attempts=3, on=["reset", "5xx"])
        with Client(gw.port, timeout=scale(5)) as c:
            c.send("GET /reset_mid HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            head = c.read_head()
            self.assertEqual(head.status, 200)
            self.assertTrue(c.wait_closed(scale(5)))
        self.assertEqual(self.good.count("/reset_mid"), 1)
        self.assertEqual(gw.metric_value("bulwark_route_retries_total", {"route": "api"}), 0)

    def test_connect_failures_go_to_the_other_endpoint(self):
        from upstream import closed_port
        gw = self.gateway(["127.0.0.1:%d" % closed_port(), self.good.address])
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(6)]
        self.assertEqual(statuses, [200] * 6)


class BreakerTest(GatewayTest):
    def test_opens_refuses_without_the_upstream_then_half_opens_and_closes(self):
        up = self.start_upstream()
        up.answer_all = (500, [])
        breaker = {"consecutive_failures": 3, "open": {"duration": "1s"},
                   "half_open": {"probes": 1, "success_threshold": 1}}
        gw = self.start_gateway(with_cluster(make_config([up.address]), circuit_breaker=breaker))
        with Client(gw.port) as c:
            for _ in range(3):
                self.assertEqual(c.request("GET", "/ok").status, 500)
            refused = c.request("GET", "/ok")
        self.assertGatewayResponse(refused, 503, "circuit_open")
        self.assertEqual(refused.header("retry-after"), "1")
        self.assertEqual(up.count(), 3, "an open breaker let a request through")
        self.assertEqual(gw.metric_value("bulwark_breaker_state",
                                         {"breaker": "backend", "state": "open"}), 1)
        _, clusters = gw.admin_json("/clusters")
        self.assertEqual(clusters[0]["breaker"], "open", clusters)
        self.assertEqual(clusters[0]["endpoints"][0]["breaker"], "open", clusters)

        up.answer_all = None
        # Within the open time every request is refused at once; after it one probe passes,
        # succeeds and closes the breaker.
        self.assertTrue(wait_until(lambda: request(gw.port, "GET", "/ok").status == 200,
                                   scale(5), interval=0.05, what="breaker to close"))
        self.assertEqual(gw.metric_value("bulwark_breaker_state",
                                         {"breaker": "backend", "state": "closed"}), 1)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)

    def test_opens_on_the_failure_rate_and_refuses_in_well_under_a_millisecond(self):
        up = self.start_upstream()
        breaker = {"window": {"type": "count", "size": 10}, "min_calls": 10,
                   "failure_rate": "50%", "open": {"duration": "30s"}}
        gw = self.start_gateway(with_cluster(make_config([up.address]), circuit_breaker=breaker))
        with Client(gw.port) as c:
            # 3 successes and 7 failures (500) in the window of 10: 70 % > 50 %.
            for i in range(10):
                path = "/status?code=500" if i % 5 in (1, 2, 4) or i == 8 else "/ok"
                c.request("GET", path)
            self.assertEqual(up.count(), 10)
            refused = [c.request("GET", "/ok") for _ in range(20)]
        self.assertTrue(all(r.header("x-bulwark-reason") == "circuit_open" for r in refused))
        self.assertEqual(up.count(), 10)
        # The access log is written after the answer: wait (bounded) for all 20 records.
        def refusal_durations():
            try:
                return [r["duration_ms"] for r in gw.access_lines()
                        if r.get("reason") == "circuit_open"]
            except ValueError:  # a record being written
                return []
        wait_until(lambda: len(refusal_durations()) >= 20, scale(5), what="20 refusals logged")
        durations = refusal_durations()
        self.assertEqual(len(durations), 20)
        self.assertLess(sorted(durations)[len(durations) // 2], 1.0, durations)
        self.assertGreaterEqual(gw.metric_value("bulwark_breaker_transitions_total",
                                                {"breaker": "backend"}), 1)

    def test_4xx_answers_do_not_open_it(self):
        up = self.start_upstream()
        up.answer_all = (404, [])
        gw = self.start_gateway(with_cluster(make_config([up.address]),
                                             circuit_breaker={"consecutive_failures": 2}))
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(5)]
        self.assertEqual(statuses, [404] * 5)


class FallbackTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.primary = self.start_upstream()
        self.primary.answer_all = (503, [])
        self.backup = self.start_upstream()
        config = make_config([self.primary.address])
        config["clusters"][0]["circuit_breaker"] = {"consecutive_failures": 2,
                                                    "open": {"duration": "30s"}}
        backup = dict(config["clusters"][0], name="backup", endpoints=[self.backup.address])
        del backup["circuit_breaker"]
        config["clusters"].append(backup)
        config["routes"][0]["fallback"] = ["backup"]
        self.gw = self.start_gateway(config)

    def test_the_backup_serves_while_the_primary_fails_and_its_breaker_is_open(self):
        with Client(self.gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(10)]
        self.assertEqual(statuses, [200] * 10)
        # Two 503s opened the breaker; after that the primary was not called at all.
        self.assertEqual(self.primary.count(), 2)
        self.assertEqual(self.backup.count(), 10)
        self.assertEqual(self.gw.metric_value("bulwark_route_fallbacks_total", {"route": "api"}),
                         10)
        self.assertEqual(self.gw.metric_value("bulwark_breaker_state",
                                              {"breaker": "backend", "state": "open"}), 1)

    def test_a_body_is_replayed_to_the_backup_and_a_sent_post_is_not(self):
        body = b"0123456789" * 300
        resp = request(self.gw.port, "PUT", "/echo", body=body)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, body)
        resp = request(self.gw.port, "POST", "/echo", body=b"once")
        self.assertEqual(resp.status, 503)  # the primary's answer: the POST reached it
        self.assertEqual(self.backup.count("/echo"), 1)


class OutlierTest(GatewayTest):
    def test_a_failing_endpoint_is_ejected_and_traffic_goes_to_the_other(self):
        bad = self.start_upstream()
        bad.answer_all = (502, [])
        good = self.start_upstream()
        gw = self.start_gateway(with_cluster(
            make_config([bad.address, good.address]),
            outlier_detection={"consecutive_5xx": 2, "base_ejection": "30s"}))
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(12)]
        self.assertEqual(statuses.count(502), 2, statuses)
        self.assertEqual(bad.count(), 2)
        self.assertEqual(gw.metric_value("bulwark_endpoint_ejected",
                                         {"cluster": "backend", "endpoint": bad.address}), 1)
        self.assertEqual(gw.metric_value("bulwark_endpoint_ejections_total",
                                         {"endpoint": bad.address}), 1)
        _, clusters = gw.admin_json("/clusters")
        health = {e["address"]: e["health"] for e in clusters[0]["endpoints"]}
        self.assertEqual(health, {bad.address: "ejected", good.address: "unknown"})


class OutlierRecoveryTest(GatewayTest):
    def test_one_bad_endpoint_of_three_is_routed_around_and_comes_back(self):
        ups = [self.start_upstream() for _ in range(3)]
        ups[1].answer_all = (503, [])
        gw = self.start_gateway(with_cluster(
            make_config([u.address for u in ups]),
            outlier_detection={"consecutive_5xx": 1, "base_ejection": "1s"}))
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(9)]
        self.assertEqual(statuses.count(503), 1, statuses)
        self.assertEqual(ups[1].count(), 1)
        ups[1].answer_all = None
        # After the ejection time it is picked again.
        def back():
            request(gw.port, "GET", "/ok")
            return ups[1].count() > 1
        self.assertTrue(wait_until(back, scale(5), interval=0.05, what="endpoint back"))
        self.assertEqual(gw.metric_value("bulwark_endpoint_ejected",
                                         {"endpoint": ups[1].address}), 0)


class HealthCheckTest(GatewayTest):
    CHECK = {"path": "/ok", "interval": "100ms", "timeout": "500ms", "healthy_threshold": 1,
             "unhealthy_threshold": 2}

    def health(self, gw, address, status):
        return gw.metric_value("bulwark_endpoint_health",
                               {"endpoint": address, "status": status}) == 1

    def test_a_down_endpoint_gets_no_traffic_and_comes_back_when_it_passes(self):
        bad = self.start_upstream()
        bad.answer_all = (503, [])
        good = self.start_upstream()
        gw = self.start_gateway(with_cluster(make_config([bad.address, good.address]),
                                             health_check=self.CHECK))
        self.assertTrue(wait_until(lambda: self.health(gw, bad.address, "down") and
                                   self.health(gw, good.address, "up"), scale(5),
                                   what="probes to mark the endpoints"))
        probe = bad.last_request()
        self.assertEqual(probe.header("user-agent"), "bulwark-health-check")
        before = bad.count()
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(10)]
        self.assertEqual(statuses, [200] * 10)
        # Only probes reached the down endpoint meanwhile.
        self.assertTrue(all(r.header("user-agent") == "bulwark-health-check"
                            for r in bad.requests[before:]))
        self.assertGreater(gw.metric_value("bulwark_endpoint_health_checks_total",
                                           {"endpoint": bad.address, "result": "failed"}), 1)
        bad.answer_all = None
        self.assertTrue(wait_until(lambda: self.health(gw, bad.address, "up"), scale(5),
                                   what="the endpoint to come back"))
        self.assertIn("endpoint health changed", gw.stderr())

    def test_no_usable_endpoint_is_503_no_healthy_endpoint(self):
        bad = self.start_upstream()
        bad.answer_all = (500, [])
        gw = self.start_gateway(with_cluster(make_config([bad.address]),
                                             health_check=self.CHECK))
        self.assertTrue(wait_until(lambda: self.health(gw, bad.address, "down"), scale(5),
                                   what="the probe to mark the endpoint down"))
        resp = request(gw.port, "GET", "/ok")
        self.assertGatewayResponse(resp, 503, "no_healthy_endpoint")
        _, clusters = gw.admin_json("/clusters")
        self.assertEqual(clusters[0]["endpoints"][0]["health"], "down")

    def test_readyz_follows_a_critical_cluster_and_ignores_the_others(self):
        bad = self.start_upstream()
        bad.answer_all = (500, [])
        config = with_cluster(make_config([bad.address]), health_check=self.CHECK,
                              critical=True)
        other = dict(config["clusters"][0], name="other", critical=False)
        config["clusters"].append(other)
        gw = self.start_gateway(config)
        self.assertTrue(wait_until(lambda: gw.admin("/readyz").status == 503, scale(5),
                                   what="/readyz to fail with the critical cluster"))
        status, body = gw.admin_json("/readyz")
        self.assertEqual(status, 503)
        self.assertEqual(body, {"status": "not_ready", "failing": ["cluster:backend"]})
        bad.answer_all = None
        self.assertTrue(wait_until(lambda: gw.admin("/readyz").status == 200, scale(5),
                                   what="/readyz to pass once the endpoint is back"))
        # The same failure on a cluster that is not critical leaves /readyz alone.
        bad.answer_all = (500, [])
        config["clusters"][0]["critical"] = False
        gw.write_config(config)
        status, doc = gw.admin_json("/reload", method="POST")
        self.assertEqual(status, 200, doc)
        self.assertTrue(wait_until(lambda: gw.metric_value(
            "bulwark_endpoint_health", {"cluster": "backend", "status": "down"}) == 1, scale(5),
            what="the endpoint to go down again"))
        # Readiness runs every 500 ms: three runs' worth of polling sees no failure.
        self.assertFalse(wait_until(lambda: gw.admin("/readyz").status == 503, 1.5),
                         "a cluster that is no longer critical failed /readyz")


class RateLimitTest(GatewayTest):
    def test_per_client_limit_answers_429_and_spares_other_clients(self):
        up = self.start_upstream()
        config = make_config([up.address])
        config["listeners"][0]["rate_limit"] = {"per_client": {"rate": "5/s"}}
        gw = self.start_gateway(config)
        start = time.monotonic()
        with Client(gw.port) as c:
            responses = [c.request("GET", "/ok") for _ in range(20)]
        elapsed = time.monotonic() - start
        allowed = sum(1 for r in responses if r.status == 200)
        refused = [r for r in responses if r.status == 429]
        self.assertEqual(allowed + len(refused), 20)
        self.assertGreaterEqual(allowed, 5)
        self.assertLessEqual(allowed, 5 + int(elapsed * 5) + 1)
        self.assertGatewayResponse(refused[0], 429, "rate_limited")
        self.assertEqual(refused[0].header("ratelimit-limit"), "5")
        self.assertEqual(refused[0].header("ratelimit-remaining"), "0")
        self.assertEqual(refused[0].header("retry-after"), "1")
        self.assertIsNotNone(refused[0].header("ratelimit-reset"))
        self.assertEqual(up.count(), allowed, "a refused request reached the upstream")
        with Client(gw.port, source="127.0.0.2") as other:
            self.assertEqual(other.request("GET", "/ok").status, 200)
        self.assertEqual(gw.metric_value("bulwark_rate_limit_decisions_total",
                                         {"limit": "public/per_client", "result": "limited"}),
                         len(refused))

    def test_a_10_per_second_limit_admits_10_per_second_over_5_seconds(self):
        up = self.start_upstream()
        config = make_config([up.address])
        config["listeners"][0]["rate_limit"] = {"per_client": {"rate": "10/s", "burst": 1}}
        gw = self.start_gateway(config)
        allowed = 0
        with Client(gw.port) as c:
            start = time.monotonic()
            while time.monotonic() - start < 5.0:
                if c.request("GET", "/ok").status == 200:
                    allowed += 1
            elapsed = time.monotonic() - start
        expected = 1 + 10 * elapsed  # the burst, then 10 per second
        self.assertGreaterEqual(allowed, expected * 0.95 - 1, (allowed, elapsed))
        self.assertLessEqual(allowed, expected * 1.05 + 1, (allowed, elapsed))

    def test_route_limit_by_header_with_bounded_keys_and_dry_run(self):
        up = self.start_upstream()
        config = make_config([up.address])
        api = config["routes"][0]
        dry = dict(api, name="dry", match={"path_prefix": "/dry", "host": "*"},
                   rate_limit={"key": "route", "rate": "1/s", "dry_run": True})
        api["rate_limit"] = {"key": "header:X-Api-Key", "rate": "1/s", "max_key_bytes": 16}
        config["routes"] = [dry, api]
        gw = self.start_gateway(config)
        with Client(gw.port) as c:
            self.assertEqual(c.request("GET", "/ok", headers=[("X-Api-Key", "a")]).status, 200)
            self.assertEqual(c.request("GET", "/ok", headers=[("X-Api-Key", "a")]).status, 429)
            self.assertEqual(c.request("GET", "/ok", headers=[("X-Api-Key", "b")]).status, 200)
            bad = c.request("GET", "/ok", headers=[("X-Api-Key", "k" * 17)])
            self.assertGatewayResponse(bad, 400, "bad_client_key")
        with Client(gw.port) as c:
            self.assertEqual([c.request("GET", "/dry").status for _ in range(3)], [200] * 3)
        self.assertEqual(gw.metric_value("bulwark_rate_limit_decisions_total",
                                         {"limit": "dry", "result": "limited"}), 2)


class ClusterLimitTest(GatewayTest):
    def test_cluster_concurrency_limit_fails_fast(self):
        up = self.start_upstream()
        gw = self.start_gateway(with_cluster(make_config([up.address]),
                                             max_concurrent_requests=1))
        slow = {}
        t = threading.Thread(target=lambda: slow.update(
            r=request(gw.port, "GET", "/slow?ms=1500", timeout=scale(10))), daemon=True)
        t.start()
        self.assertTrue(up.slow_waiting.wait(scale(5)))
        resp = request(gw.port, "GET", "/ok")
        self.assertGatewayResponse(resp, 503, "cluster_concurrency_limit")
        rec = gw.wait_access(lambda r: r.get("reason") == "cluster_concurrency_limit")
        self.assertIsNotNone(rec)
        self.assertLess(rec["duration_ms"], 5.0, rec)
        t.join(scale(10))
        self.assertEqual(slow["r"].status, 200)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        self.assertEqual(gw.metric_value("bulwark_cluster_requests_active",
                                         {"cluster": "backend"}), 0)


class ClusterQueueTest(GatewayTest):
    """clusters[].queue: requests over the limit wait for a slot, by route priority."""

    def config(self, queue):
        config = with_cluster(make_config([self.up.address]), max_concurrent_requests=1,
                              queue=queue)
        api = config["routes"][0]
        low = dict(api, name="low", match={"path_prefix": "/low", "host": "*"}, priority="low")
        high = dict(api, name="high", match={"path_prefix": "/high", "host": "*"},
                    priority="high")
        config["routes"] = [low, high, api]
        return config

    def queued(self, gw):
        _, clusters = gw.admin_json("/clusters")
        return clusters[0]["queued"]

    def hold_the_slot(self, gw, ms):
        """A request that holds the cluster's only slot for `ms` (its thread and result)."""
        held = {}
        t = threading.Thread(target=lambda: held.update(
            r=request(gw.port, "GET", "/slow?ms=%d" % ms, timeout=scale(20))), daemon=True)
        t.start()
        self.assertTrue(self.up.slow_waiting.wait(scale(5)))
        return t, held

    def test_waiting_requests_are_let_in_by_priority_then_in_arrival_order(self):
        self.up = self.start_upstream()
        gw = self.start_gateway(self.config({"max_size": 10, "max_wait": "10s"}))
        holder, held = self.hold_the_slot(gw, 1000)
        results = {}
        threads = []
        # Queued one at a time, in this order; the high one arrives last.
        for path in ["/low/ok?n=1", "/low/ok?n=2", "/ok?n=3", "/high/ok?n=4"]:
            t = threading.Thread(target=lambda p=path: results.update(
                {p: request(gw.port, "GET", p, timeout=scale(20))}), daemon=True)
            t.start()
            threads.append(t)
            want = len(threads)
            self.assertTrue(wait_until(lambda: self.queued(gw) == want, scale(5),
                                       what="request %s queued" % path))
        holder.join(scale(20))
        for t in threads:
            t.join(scale(20))
        self.assertEqual(held["r"].status, 200)
        self.assertEqual([results[p].status for p in results], [200] * 4)
        with self.up._lock:
            order = [r.target for r in self.up.requests if "n=" in r.target]
        self.assertEqual(order, ["/high/ok?n=4", "/ok?n=3", "/low/ok?n=1", "/low/ok?n=2"])
        self.assertEqual(self.queued(gw), 0)
        self.assertEqual(gw.metric_value("bulwark_bulkhead_queued_total",
                                         {"bulkhead": "backend"}), 4)
        self.assertEqual(gw.metric_value("bulwark_bulkhead_granted_total",
                                         {"bulkhead": "backend", "wait": "queued"}), 4)
        self.assertEqual(gw.metric_value("bulwark_cluster_requests_active",
                                         {"cluster": "backend"}), 0)

    def test_a_wait_longer_than_max_wait_is_503_queue_timeout_and_a_full_queue_fails_fast(self):
        self.up = self.start_upstream()
        gw = self.start_gateway(self.config({"max_size": 1, "max_wait": "200ms"}))
        holder, held = self.hold_the_slot(gw, 1500)
        waited = {}
        t = threading.Thread(target=lambda: waited.update(
            r=request(gw.port, "GET", "/ok?n=1", timeout=scale(10)),
            at=time.monotonic()), daemon=True)
        start = time.monotonic()
        t.start()
        self.assertTrue(wait_until(lambda: self.queued(gw) == 1, scale(5), what="queued"))
        full = request(gw.port, "GET", "/ok?n=2")  # the queue's one place is taken
        self.assertGatewayResponse(full, 503, "cluster_concurrency_limit")
        t.join(scale(10))
        self.assertGatewayResponse(waited["r"], 503, "queue_timeout")
        self.assertGreaterEqual(waited["at"] - start, 0.19)
        self.assertLess(waited["at"] - start, scale(1.2))
        self.assertGreaterEqual(int(waited["r"].header("retry-after")), 1)
        self.assertEqual(self.up.count("/ok"), 0, "a refused request reached the upstream")
        holder.join(scale(10))
        self.assertEqual(held["r"].status, 200)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        self.assertEqual(gw.metric_value("bulwark_gateway_responses_total",
                                         {"reason": "queue_timeout"}), 1)


class HedgeTest(GatewayTest):
    """routes[].hedge: a slow attempt is overtaken by a hedge on another endpoint."""

    def setUp(self):
        super().setUp()
        self.slow = self.start_upstream()
        self.slow.delay_all = 0.3
        self.fast = self.start_upstream()

    def test_hedging_at_50ms_keeps_every_get_near_50ms_with_one_endpoint_300ms_slow(self):
        gw = self.start_gateway(with_route(make_config([self.slow.address, self.fast.address]),
                                           hedge={"delay": "50ms", "max_attempts": 2}))
        durations = []
        with Client(gw.port) as c:
            for i in range(10):
                start = time.monotonic()
                resp = c.request("GET", "/ok?i=%d" % i)
                durations.append(time.monotonic() - start)
                self.assertEqual(resp.status, 200, resp)
        self.assertGreater(self.slow.count(), 0, "round robin never reached the slow endpoint")
        # Every GET the slow endpoint got was hedged to the fast one at 50 ms.
        self.assertLess(max(durations), scale(0.2), durations)
        self.assertEqual(self.fast.count(), 10)
        hedges = gw.metric_value("bulwark_route_hedges_total", {"route": "api"})
        self.assertEqual(hedges, self.slow.count())
        self.assertEqual(gw.metric_value("bulwark_route_hedge_wins_total", {"route": "api"}),
                         hedges)
        # The losers' connections were closed, not pooled half-read: the slow endpoint sees
        # a new connection for every request it got.
        self.assertTrue(wait_until(lambda: self.slow.connections_accepted == self.slow.count(),
                                   scale(2), what="slow connections"))

    def test_a_post_is_not_hedged_and_a_fast_answer_costs_no_hedge(self):
        gw = self.start_gateway(with_route(make_config([self.slow.address, self.fast.address]),
                                           hedge={"delay": "50ms", "max_attempts": 3}))
        self.slow.delay_all = 0.15
        statuses = [request(gw.port, "POST", "/echo", body=b"once").status for _ in range(2)]
        self.assertEqual(statuses, [200, 200])
        self.assertEqual(self.slow.count() + self.fast.count(), 2)  # never sent twice
        self.assertEqual(gw.metric_value("bulwark_route_hedges_total", {"route": "api"}), 0)

    def test_the_budget_bounds_hedges_and_the_slow_answer_is_still_served(self):
        # No ratio and a floor of one retry per 10 s window: one hedge, then none.
        route = {"hedge": {"delay": "20ms", "max_attempts": 2},
                 "retry": {"attempts": 1, "budget": {"ratio": 0, "min_per_second": 0.1}}}
        gw = self.start_gateway(with_route(make_config([self.slow.address]), **route))
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(3)]
        self.assertEqual(statuses, [200] * 3)
        self.assertEqual(gw.metric_value("bulwark_route_hedges_total", {"route": "api"}), 1)
        self.assertGreaterEqual(gw.metric_value("bulwark_retry_budget_exhausted_total",
                                                {"target": "backend"}), 2)

    def test_the_first_attempt_may_still_win_and_when_every_attempt_fails_that_is_the_answer(self):
        slower = self.start_upstream()
        slower.delay_all = 1.0
        self.slow.delay_all = 0.15
        gw = self.start_gateway(with_route(make_config([self.slow.address, slower.address]),
                                           hedge={"delay": "50ms", "max_attempts": 2}))
        start = time.monotonic()
        resp = request(gw.port, "GET", "/ok")  # the first attempt goes to self.slow
        self.assertEqual(resp.status, 200, resp)
        self.assertLess(time.monotonic() - start, scale(0.8))
        self.assertEqual(gw.metric_value("bulwark_route_hedges_total", {"route": "api"}), 1)
        self.assertEqual(gw.metric_value("bulwark_route_hedge_wins_total", {"route": "api"}), 0)
        self.assertEqual(self.slow.count(), 1)
        self.assertEqual(slower.count(), 1)  # the cancelled hedge reached it...
        self.assertTrue(wait_until(lambda: slower.completed_count() == 1, scale(2)))

        self.slow.answer_all = (503, [])
        slower.answer_all = (502, [])
        slower.delay_all = 0.1
        resp = request(gw.port, "GET", "/ok")  # to slower first, hedged to slow
        self.assertIn(resp.status, (502, 503), resp)
        self.assertEqual(gw.metric_value("bulwark_route_hedges_total", {"route": "api"}), 2)
        # Whichever attempt failed last is the answer (which one depends on timing).
        self.assertIn(request(gw.port, "GET", "/ok").status, (502, 503))
        self.assertEqual(gw.metric_value("bulwark_endpoint_requests_active",
                                         {"cluster": "backend"}), 0)

    def test_a_hedged_body_is_replayed_byte_for_byte(self):
        gw = self.start_gateway(with_route(make_config([self.slow.address, self.fast.address]),
                                           hedge={"delay": "30ms", "max_attempts": 2}))
        body = bytes(range(256)) * 20
        for _ in range(2):
            resp = request(gw.port, "PUT", "/echo", body=body)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.body, body)
        self.assertGreater(self.slow.count(), 0)
        self.assertEqual(gw.metric_value("bulwark_route_hedges_total", {"route": "api"}),
                         self.slow.count())
        # Both endpoints received the body whole.
        self.assertTrue(wait_until(lambda: self.slow.completed_count("/echo") == self.slow.count(),
                                   scale(2), what="slow bodies"))
        self.assertEqual(self.fast.completed_count("/echo"), 2)


class OverloadTest(GatewayTest):
    def config(self, level):
        config = make_config([self.up.address])
        api = config["routes"][0]
        batch = dict(api, name="batch", match={"path_prefix": "/batch", "host": "*"},
                     priority="low")
        config["routes"] = [batch, api]
        if level:
            config["overload"] = {"force_level": level}
        return config

    def reload(self, level):
        self.gw.write_config(self.config(level))
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual(status, 200, doc)

    def test_forced_levels_shed_as_specified_and_recover(self):
        self.up = self.start_upstream()
        self.gw = self.start_gateway(self.config("critical"))
        with Client(self.gw.port) as c:
            shed = c.request("GET", "/batch")
            self.assertGatewayResponse(shed, 503, "overloaded")
        with Client(self.gw.port) as c:
            resp = c.request("GET", "/ok")
            self.assertEqual(resp.status, 200)
            self.assertEqual((resp.header("connection") or "").lower(), "close")
            self.assertTrue(c.wait_closed(scale(2)), "keep-alive was not turned off")
        self.assertEqual(self.gw.metric_value("bulwark_overload_level", {"level": "critical"}), 1)
        self.assertIsNotNone(self.gw.metric_value("bulwark_resource_level",
                                                  {"resource": "overall"}))

        self.reload("exhausted")
        self.assertGatewayResponse(request(self.gw.port, "GET", "/ok"), 503, "overloaded")
        self.assertEqual(self.up.count("/ok"), 1, "a shed request reached the upstream")

        self.reload(None)
        with Client(self.gw.port) as c:
            self.assertEqual(c.request("GET", "/batch").status, 200)
            resp = c.request("GET", "/ok")  # the same connection: keep-alive is back
            self.assertEqual(resp.status, 200)
        self.assertEqual(self.gw.metric_value("bulwark_overload_level", {"level": "normal"}), 1)
        self.assertEqual(self.gw.metric_value("bulwark_gateway_responses_total",
                                              {"reason": "overloaded"}), 2)


class ChaosTest(GatewayTest):
    """Every policy on, upstreams that reset mid-answer, answer garbage, never answer or storm
    503s: the gateway stays up, every client gets a well-formed answer or a clean close, and
    its descriptors and memory come back to where they were."""

    def fd_count(self, gw):
        return len(os.listdir("/proc/%d/fd" % gw.pid))

    def test_the_gateway_survives_and_gives_back_what_it_took(self):
        from upstream import Blackhole
        flaky = self.start_upstream()
        storm = self.start_upstream()
        storm.answer_all = (503, [])
        hole = Blackhole()
        self.addCleanup(hole.close)
        config = make_config([flaky.address, storm.address, hole.address],
                             route_timeouts={"request": "3s", "per_try": "300ms",
                                             "first_byte": "300ms"},
                             cluster_opts={"connect_timeout": "200ms",
                                           "pool": {"max_per_endpoint": 64, "max_idle": 2,
                                                    "idle_timeout": "60s"}})
        config["listeners"][0]["rate_limit"] = {"per_client": {"rate": "1000/s", "burst": 1000}}
        with_route(config, retry={"attempts": 3, "backoff": FAST_BACKOFF,
                                  "budget": {"ratio": 0.5, "min_per_second": 50}})
        with_cluster(config, max_concurrent_requests=64,
                     circuit_breaker={"failure_rate": "90%", "min_calls": 50,
                                      "open": {"duration": "500ms"}},
                     outlier_detection={"consecutive_5xx": 3, "base_ejection": "500ms"})
        gw = self.start_gateway(config)
        for _ in range(3):
            request(gw.port, "GET", "/ok")
        fds_before, rss_before = self.fd_count(gw), gw.rss_kib()

        paths = ["/ok", "/reset_mid", "/bad", "/reset", "/slow?ms=2000", "/ok?drop=1", "/echo"]
        outcomes = {"answered": 0, "closed": 0}
        problems = []
        lock = threading.Lock()

        def client(seed):
            for i in range(40):
                path = paths[(seed + i) % len(paths)]
                try:
                    method, body = ("PUT", b"z" * 5000) if path == "/echo" else ("GET", None)
                    resp = request(gw.port, method, path, body=body, timeout=scale(10))
                    ok = 100 <= resp.status <= 599 and (resp.status < 500 or resp.status in
                                                        (500, 502, 503, 504))
                    with lock:
                        outcomes["answered"] += 1
                        if not ok:
                            problems.append((path, resp.status))
                except PeerClosed:
                    with lock:
                        outcomes["closed"] += 1  # a stream cut after its head: a clean close
                except Exception as e:  # noqa: BLE001 - any other failure is a finding
                    with lock:
                        problems.append((path, repr(e)))

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scale(120))
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")
        self.assertEqual(problems, [])
        self.assertEqual(outcomes["answered"] + outcomes["closed"], 240, outcomes)
        self.assertGreater(outcomes["closed"], 0, "no stream was cut: /reset_mid not reached")
        self.assertTrue(gw.alive(), gw.stderr()[-2000:])
        # Still serving (a 503 when the breaker or ejection still holds the bad endpoints out).
        self.assertIn(request(gw.port, "GET", "/ok", timeout=scale(5)).status, (200, 503))
        # Descriptors: the client connections are gone, at most max_idle pooled connections per
        # endpoint remain.
        self.assertTrue(wait_until(lambda: self.fd_count(gw) <= fds_before + 2 * 3, scale(10),
                                   interval=0.1, what="descriptors back"),
                        (fds_before, self.fd_count(gw)))
        self.assertLess(gw.rss_kib() - rss_before, 16 * 1024, "RSS grew by more than 16 MiB")
        self.assertEqual(gw.metric_value("bulwark_listener_requests_active"), 0)
        self.assertEqual(gw.metric_value("bulwark_cluster_requests_active"), 0)


class StreamChunksTest(GatewayTest):
    def test_max_chunks_cuts_a_stream(self):
        up = self.start_upstream()
        gw = self.start_gateway(make_config([up.address], stream={"max_chunks": 3}))
        with Client(gw.port, timeout=scale(10)) as c:
            c.send("GET /sse?n=10&gap_ms=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            head = c.read_head()
            self.assertEqual(head.status, 200)
            self.assertTrue(c.wait_closed(scale(5)), "stream not cut after 3 chunks")
        self.assertTrue(wait_until(lambda: gw.metric_value(
            "bulwark_route_stream_aborts_total", {"reason": "stream_max_chunks"}) == 1,
            scale(5), what="stream_max_chunks abort counted"))


class AlertsTest(GatewayTest):
    def test_rules_fire_and_resolve_on_the_gateways_own_signals(self):
        up = self.start_upstream()
        up.answer_all = (500, [])
        config = with_cluster(make_config([up.address]),
                              circuit_breaker={"consecutive_failures": 3,
                                               "open": {"duration": "2s"}})
        config["alerts"] = [
            {"name": "breaker_open", "metric": 'bulwark_breakers_open{cluster="backend"}',
             "op": ">", "threshold": 0, "severity": "critical"},
            {"name": "errors", "metric": "bulwark_requests_5xx_ratio", "op": ">",
             "threshold": 0.5, "for": "0s"},
            {"name": "slow", "metric": 'bulwark_request_duration_p99_seconds{route="api"}',
             "op": ">", "threshold": 10},
        ]
        gw = self.start_gateway(config)

        def states():
            _, doc = gw.admin_json("/alerts")
            self.assertTrue(doc["evaluated"])
            return {r["name"]: r["state"] for r in doc["rules"]}

        self.assertEqual(states(), {"breaker_open": "inactive", "errors": "inactive",
                                    "slow": "inactive"})
        with Client(gw.port) as c:
            for _ in range(3):
                self.assertEqual(c.request("GET", "/ok").status, 500)
        self.assertTrue(wait_until(lambda: states()["breaker_open"] == "firing" and
                                   states()["errors"] == "firing", scale(5),
                                   what="both alerts to fire"))
        self.assertEqual(states()["slow"], "inactive")
        _, doc = gw.admin_json("/alerts")
        errors = [r for r in doc["rules"] if r["name"] == "errors"][0]
        self.assertEqual(errors["value"], 1.0)
        self.assertIn("alert firing", gw.stderr())
        self.assertIn("firing", gw.admin("/").body.decode())
        # The breaker's open time runs out (half-open): the alert resolves with no traffic.
        up.answer_all = None
        self.assertTrue(wait_until(lambda: states()["breaker_open"] == "resolved", scale(6),
                                   what="the breaker alert to resolve"))
        self.assertIn("alert state changed", gw.stderr())


class BlockPatternsTest(GatewayTest):
    def test_attack_shapes_are_refused_before_the_upstream_and_counted(self):
        up = self.start_upstream()
        gw = self.start_gateway(with_route(make_config([up.address]),
                                           filters={"block_patterns": {}}))
        with Client(gw.port) as c:
            sqli = c.request("GET", "/items?id=1+UNION%20ALL/**/SELECT+password+FROM+users")
            xss = c.request("GET", "/search?q=%253Cscript%253Ealert(1)")
            plain = c.request("GET", "/ok?q=rock+or+roll&sort=-created")
        self.assertGatewayResponse(sqli, 400, "blocked_pattern")
        self.assertGatewayResponse(xss, 400, "blocked_pattern")
        self.assertEqual(plain.status, 200)
        # A refusal with an unread body closes the connection.
        with Client(gw.port) as c:
            refused = c.request("POST", "/items?id=1%27%20or%20%271%27=%271", body=b"x" * 100)
            self.assertGatewayResponse(refused, 400, "blocked_pattern")
            self.assertTrue(c.wait_closed(scale(5)))
        self.assertEqual(up.count(), 1, "a blocked request reached the upstream")
        self.assertEqual(gw.metric_value("bulwark_route_blocked_total",
                                         {"route": "api", "pattern": "sqli"}), 2)
        self.assertEqual(gw.metric_value("bulwark_route_blocked_total",
                                         {"route": "api", "pattern": "xss"}), 1)
        self.assertEqual(gw.metric_value("bulwark_gateway_responses_total",
                                         {"reason": "blocked_pattern"}), 3)

    def test_off_by_default(self):
        up = self.start_upstream()
        gw = self.start_gateway(make_config([up.address]))
        self.assertEqual(request(gw.port, "GET", "/ok?id=1+union+select+2").status, 200)


class FaultTest(GatewayTest):
    def test_the_header_aborts_and_the_percentage_aborts_its_share(self):
        up = self.start_upstream()
        fault = {"header": "X-Fault-Drill", "abort": {"status": 502}}
        gw = self.start_gateway(with_route(make_config([up.address]), filters={"fault": fault}))
        with Client(gw.port) as c:
            aborted = c.request("GET", "/ok", headers=[("X-Fault-Drill", "1")])
            passed = c.request("GET", "/ok")
        self.assertGatewayResponse(aborted, 502, "fault_abort")
        self.assertEqual(passed.status, 200)
        self.assertEqual(up.count(), 1)

        shared = {"abort": {"percent": 50, "status": 503}}
        gw2 = self.start_gateway(with_route(make_config([up.address]), filters={"fault": shared}))
        with Client(gw2.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(200)]
        refused = statuses.count(503)
        # Binomial(200, 0.5): 100 ± 30 is more than four standard deviations.
        self.assertTrue(70 <= refused <= 130, refused)
        self.assertEqual(statuses.count(200), 200 - refused)
        self.assertEqual(gw2.metric_value("bulwark_route_faults_total",
                                          {"route": "api", "fault": "abort"}), refused)

    def test_a_delay_holds_the_request_within_its_deadline(self):
        up = self.start_upstream()
        fault = {"header": "x-fault-drill", "delay": {"duration": "300ms"}}
        gw = self.start_gateway(with_route(make_config([up.address]), filters={"fault": fault}))
        with Client(gw.port) as c:
            started = time.monotonic()
            held = c.request("GET", "/ok", headers=[("x-fault-drill", "1")])
            held_for = time.monotonic() - started
            self.assertEqual(c.request("GET", "/ok").status, 200)
        self.assertEqual(held.status, 200)
        self.assertGreaterEqual(held_for, 0.3)
        self.assertEqual(gw.metric_value("bulwark_route_faults_total",
                                         {"route": "api", "fault": "delay"}), 1)

        # A delay longer than the route's deadline answers 504 when the deadline passes.
        config = make_config([up.address], route_timeouts={"request": "200ms"})
        config["routes"][0]["filters"] = {"fault": {"header": "x-fault-drill",
                                                    "delay": {"duration": "5s"}}}
        gw2 = self.start_gateway(config)
        started = time.monotonic()
        late = request(gw2.port, "GET", "/ok", headers=[("x-fault-drill", "1")])
        took = time.monotonic() - started
        self.assertGatewayResponse(late, 504, "request_timeout")
        self.assertGreaterEqual(took, 0.2)
        self.assertLess(took, 4.0)
        self.assertEqual(up.count(), 2, "the held-back request reached the upstream")


if __name__ == "__main__":
    import unittest
    unittest.main()
