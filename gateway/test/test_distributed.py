"""Global rate limits shared through Redis (rate_limit.scope: global): several gateway
processes against one redis-server started by the test on a free loopback port. The limit is
shared, Redis failures fall back as redis.on_failure says within redis.timeout, the breaker
around Redis opens and closes, a flushed script is loaded again, a password is used."""

import threading
import time

from harness import Client, GatewayTest, TestCA, make_config, request, scale, wait_until


def global_config(up, redis, rate="10/s", burst=10, on_failure="local", timeout_ms=50,
                  password=None, key="route", per_client=None):
    config = make_config([up.address])
    config["routes"][0]["rate_limit"] = {"key": key, "rate": rate, "burst": burst,
                                         "scope": "global"}
    if per_client:
        del config["routes"][0]["rate_limit"]
        config["listeners"][0]["rate_limit"] = {"per_client": dict(per_client, scope="global")}
    config["redis"] = {"address": redis.address, "timeout": "%dms" % int(scale(timeout_ms)),
                       "on_failure": on_failure,
                       "circuit_breaker": {"consecutive_failures": 3, "open": {"duration": "1s"},
                                           "half_open": {"probes": 1, "success_threshold": 1}}}
    if password:
        config["redis"]["password"] = password
    return config


def hammer(port, seconds, results, lock):
    """Keep-alive GETs for `seconds`; appends (status, reason, latency) to results."""
    deadline = time.monotonic() + seconds
    with Client(port) as c:
        while time.monotonic() < deadline:
            start = time.monotonic()
            r = c.request("GET", "/ok")
            with lock:
                results.append((r.status, r.header("x-bulwark-reason"), time.monotonic() - start))
            if r.header("connection") == "close":
                return


class SharedLimitTest(GatewayTest):
    def test_two_gateways_share_one_10_per_second_limit(self):
        up = self.start_upstream()
        redis = self.start_redis()
        gws = [self.start_gateway(global_config(up, redis), subdir="gw%d" % i) for i in (1, 2)]
        results, lock = [], threading.Lock()
        seconds = 4.0
        start = time.monotonic()
        threads = [threading.Thread(target=hammer, args=(gw.port, seconds, results, lock))
                   for gw in gws]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + scale(10))
        elapsed = time.monotonic() - start
        statuses = [s for s, _, _ in results]
        self.assertEqual(set(statuses) - {200, 429}, set(), results[:5])
        allowed = statuses.count(200)
        # The burst at once, then 10 per second: about 10 + 10 x elapsed in total, not double.
        expected = 10 + 10 * elapsed
        self.assertGreaterEqual(allowed, expected * 0.9 - 1, (allowed, elapsed))
        self.assertLessEqual(allowed, expected * 1.1 + 1, (allowed, elapsed))
        decided = sum(gw.metric_value("bulwark_global_rate_limit_decisions_total",
                                      {"limit": "api"}) for gw in gws)
        self.assertEqual(decided, len(statuses), "a decision was not made by Redis")
        self.assertGreater(statuses.count(429), 0)
        limited = next(r for r in results if r[0] == 429)
        self.assertEqual(limited[1], "rate_limited")
        # One key for the route, with a TTL: an idle limit costs nothing.
        self.assertEqual(redis.command("KEYS", "bulwark:rl:*"), ["bulwark:rl:{api|api}"])
        self.assertGreater(redis.command("PTTL", "bulwark:rl:{api|api}"), 0)

    def test_a_refusal_carries_the_same_fields_as_a_local_one(self):
        up = self.start_upstream()
        redis = self.start_redis()
        gw = self.start_gateway(global_config(up, redis, rate="2/s", burst=2,
                                              per_client={"rate": "2/s", "burst": 2}))
        with Client(gw.port) as c:
            statuses = [c.request("GET", "/ok").status for _ in range(2)]
            refused = c.request("GET", "/ok")
        self.assertEqual(statuses, [200, 200])
        self.assertGatewayResponse(refused, 429, "rate_limited")
        self.assertEqual(refused.header("retry-after"), "1")
        self.assertEqual(refused.header("ratelimit-limit"), "2")
        self.assertEqual(refused.header("ratelimit-remaining"), "0")
        self.assertEqual(refused.header("ratelimit-reset"), "1")
        self.assertEqual(redis.command("KEYS", "bulwark:rl:*"),
                         ["bulwark:rl:{public/per_client|127.0.0.1}"])


class RedisFailureTest(GatewayTest):
    def statuses_for(self, port, n):
        out = []
        with Client(port) as c:
            for _ in range(n):
                start = time.monotonic()
                r = c.request("GET", "/ok", timeout=scale(5))
                out.append((r.status, r.header("x-bulwark-reason"), time.monotonic() - start))
        return out

    def test_redis_killed_with_local_keeps_answering_and_uses_redis_again_when_back(self):
        up = self.start_upstream()
        redis = self.start_redis()
        gw = self.start_gateway(global_config(up, redis, rate="1000/s", burst=1000))
        self.assertEqual([s for s, _, _ in self.statuses_for(gw.port, 5)], [200] * 5)
        port = redis.port
        redis.stop()
        answers = self.statuses_for(gw.port, 30)
        self.assertEqual({s for s, _, _ in answers}, {200}, answers)
        self.assertLess(max(t for _, _, t in answers), scale(0.1), answers)
        self.assertGreater(gw.metric_value("bulwark_global_rate_limit_fallbacks_total",
                                           {"mode": "local"}), 0)
        redis.start(port)
        before = gw.metric_value("bulwark_global_rate_limit_decisions_total")

        def redis_decides_again():
            self.statuses_for(gw.port, 1)
            return gw.metric_value("bulwark_global_rate_limit_decisions_total") > before
        self.assertTrue(wait_until(redis_decides_again, scale(10), interval=0.1,
                                   what="Redis to decide again"))

    def test_with_deny_no_redis_is_503_limiter_unavailable(self):
        up = self.start_upstream()
        redis = self.start_redis()
        gw = self.start_gateway(global_config(up, redis, on_failure="deny"))
        redis.stop()
        resp = request(gw.port, "GET", "/ok")
        self.assertGatewayResponse(resp, 503, "limiter_unavailable")
        self.assertEqual(up.count(), 0)

    def test_a_stalled_redis_costs_at_most_the_timeout_and_opens_the_breaker(self):
        up = self.start_upstream()
        redis = self.start_redis()
        gw = self.start_gateway(global_config(up, redis, rate="1000/s", burst=1000,
                                              on_failure="allow", timeout_ms=20))
        self.assertEqual([s for s, _, _ in self.statuses_for(gw.port, 3)], [200] * 3)
        redis.pause()  # accepts nothing, answers nothing
        try:
            answers = self.statuses_for(gw.port, 10)
            self.assertEqual({s for s, _, _ in answers}, {200}, answers)
            # Each waited at most the timeout (20 ms) and a little; once the breaker opened,
            # not at all.
            self.assertLess(max(t for _, _, t in answers), scale(0.1), answers)
            self.assertEqual(gw.metric_value("bulwark_breaker_state",
                                             {"breaker": "redis", "state": "open"}), 1)
        finally:
            redis.resume()
        before = gw.metric_value("bulwark_global_rate_limit_decisions_total")
        self.assertTrue(wait_until(
            lambda: (self.statuses_for(gw.port, 1) and
                     gw.metric_value("bulwark_global_rate_limit_decisions_total") > before),
            scale(10), interval=0.1, what="the breaker to close"))
        self.assertEqual(gw.metric_value("bulwark_breaker_state",
                                         {"breaker": "redis", "state": "closed"}), 1)

    def test_a_flushed_script_is_loaded_again(self):
        up = self.start_upstream()
        redis = self.start_redis()
        gw = self.start_gateway(global_config(up, redis, rate="1000/s", burst=1000))
        self.statuses_for(gw.port, 2)
        loads = gw.metric_value("bulwark_redis_script_loads_total")
        self.assertEqual(redis.command("SCRIPT", "FLUSH"), "OK")
        self.assertEqual([s for s, _, _ in self.statuses_for(gw.port, 3)], [200] * 3)
        self.assertGreater(gw.metric_value("bulwark_redis_script_loads_total"), loads)
        self.assertEqual(gw.metric_value("bulwark_global_rate_limit_decisions_total"), 5)
        self.assertEqual(gw.metric_value("bulwark_global_rate_limit_fallbacks_total"), 0)
        _, stats = gw.admin_json("/stats")
        self.assertEqual(stats["redis"]["address"], redis.address)
        self.assertEqual(stats["redis"]["connections_up"], 1)
        self.assertEqual(stats["redis"]["breaker"], "closed")
        self.assertGreater(stats["redis"]["round_trip_p99_ms"], 0)


class RedisAuthTest(GatewayTest):
    def test_a_password_protected_redis_is_used_and_a_wrong_password_falls_back(self):
        up = self.start_upstream()
        redis = self.start_redis(password="s3cret-pass")
        gw = self.start_gateway(global_config(up, redis, rate="1000/s", burst=1000,
                                              password="s3cret-pass"), subdir="good")
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        self.assertEqual(gw.metric_value("bulwark_global_rate_limit_decisions_total"), 1)
        status, config = gw.admin_json("/config")
        self.assertNotIn("s3cret-pass", str(config))

        bad = self.start_gateway(global_config(up, redis, rate="1000/s", burst=1000,
                                               password="wrong"), subdir="bad")
        self.assertTrue(wait_until(
            lambda: bad.metric_value("bulwark_redis_errors_total", {"kind": "auth"}) > 0,
            scale(5), what="an auth error"))
        self.assertEqual(request(bad.port, "GET", "/ok").status, 200)  # the local limiter
        self.assertGreater(bad.metric_value("bulwark_global_rate_limit_fallbacks_total",
                                            {"mode": "local"}), 0)


class RedisTlsTest(GatewayTest):
    def test_redis_over_tls_with_the_right_ca_and_not_with_a_wrong_one(self):
        ca = TestCA(self.tmp)
        cert, key = ca.issue("localhost", dns=["localhost"], ips=["127.0.0.1"])
        redis = self.start_redis(tls=(cert, key, ca.cert))
        self.assertEqual(redis.command("PING"), "PONG")
        up = self.start_upstream()
        config = global_config(up, redis, rate="1/s", burst=5)  # the key lives a second
        config["redis"]["tls"] = {"ca_file": ca.cert, "sni": "localhost"}
        gw = self.start_gateway(config, subdir="good")
        self.assertTrue(wait_until(
            lambda: gw.metric_value("bulwark_redis_connections_up") == 1, scale(5),
            what="the TLS connection to Redis"))
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        self.assertEqual(gw.metric_value("bulwark_global_rate_limit_decisions_total"), 1)
        self.assertEqual(redis.command("KEYS", "bulwark:rl:*"), ["bulwark:rl:{api|api}"])

        wrong = TestCA(self.tmp, "Wrong CA")
        config["redis"]["tls"] = {"ca_file": wrong.cert, "sni": "localhost"}
        bad = self.start_gateway(config, subdir="bad")
        self.assertTrue(wait_until(
            lambda: bad.metric_value("bulwark_redis_errors_total", {"kind": "tls"}) > 0,
            scale(5), what="a TLS error"))
        self.assertEqual(request(bad.port, "GET", "/ok").status, 200)  # the local limiter
        self.assertGreater(bad.metric_value("bulwark_global_rate_limit_fallbacks_total",
                                            {"mode": "local"}), 0)
