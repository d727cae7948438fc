"""Responses the gateway makes itself beyond hygiene: 408 (incl. slowloris), 413 up front and
mid-stream, 502 connect_failure / upstream_reset / bad_response, 503 pool_exhausted /
concurrency_limit / connection_limit, 504 first_byte_timeout / request_timeout /
connect_timeout. Each asserts status, reason header, JSON body and the upstream counters."""

import select
import socket
import threading
import time

from harness import (Client, GatewayTest, PeerClosed, build_request, make_config, request,
                     scale, wait_until)
from upstream import Blackhole, closed_port

H = "Host: gw.test\r\n"


class Background:
    """Runs one request in a thread; result() joins (bounded) and returns the response."""

    def __init__(self, port, path, timeout):
        self.resp = None
        self.error = None
        self.timeout = timeout
        self._t = threading.Thread(target=self._run, args=(port, path), daemon=True)
        self._t.start()

    def _run(self, port, path):
        try:
            self.resp = request(port, "GET", path, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - surfaced by result()
            self.error = e

    def result(self):
        self._t.join(timeout=self.timeout + 5)
        if self.error is not None:
            raise self.error
        return self.resp


class HeaderTimeoutTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        # header_read 2s (make_config default)
        self.gw = self.gateway_for(self.up)

    def test_partial_header_then_silence_408(self):
        with Client(self.gw.port, timeout=scale(10)) as c:
            start = time.monotonic()
            c.send("GET /ok HTTP/1.1\r\n" + H + "X-Partial: yes")
            try:
                r = c.read_response(timeout=scale(6))
            except PeerClosed:
                self.fail("connection closed after %.1fs without the 408 response"
                          % (time.monotonic() - start))
            elapsed = time.monotonic() - start
            self.assertGatewayResponse(r, 408, "header_timeout")
            self.assertTrue(c.wait_closed(scale(2)), "connection not closed after 408")
        self.assertGreater(elapsed, 1.5, "408 before header_read (2s) elapsed")
        self.assertLess(elapsed, scale(2) + 1.5)
        self.assertEqual(self.up.count(), 0)

    def test_connect_and_send_nothing_is_closed(self):
        with Client(self.gw.port, timeout=scale(10)) as c:
            start = time.monotonic()
            # Either a 408 or a silent close is acceptable when no byte was sent; but the
            # connection must not be held open past header_read + margin.
            closed = c.wait_closed(scale(2) + 1.5)
            self.assertTrue(closed, "idle new connection held past header_read")
            self.assertGreater(time.monotonic() - start, 1.5)
            if c.buf:
                self.assertTrue(bytes(c.buf).startswith(b"HTTP/1.1 408"), bytes(c.buf[:200]))

    def test_slowloris_dribble_408_and_others_served(self):
        sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        self.addCleanup(sock.close)
        payload = ("GET /ok HTTP/1.1\r\n" + H + "X-Slow: " + "a" * 200).encode()
        served = []
        errors = []
        stop = threading.Event()

        def others():
            # Meanwhile, other clients get served promptly.
            while not stop.is_set() and len(served) < 5:
                try:
                    t0 = time.monotonic()
                    r = request(self.gw.port, "GET", "/ok", timeout=scale(3))
                    served.append((r.status, time.monotonic() - t0))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                stop.wait(0.3)
        t = threading.Thread(target=others, daemon=True)
        t.start()
        start = time.monotonic()
        got = b""
        closed = False
        i = 0
        deadline = start + scale(2) + 3
        while time.monotonic() < deadline:
            if i < len(payload):
                try:
                    sock.sendall(payload[i:i + 1])
                except OSError:
                    closed = True
                    break
                i += 1
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed = True
                    break
                got += data
                if b"\r\n\r\n" in got:
                    break
        elapsed = time.monotonic() - start
        stop.set()
        t.join(timeout=scale(10))
        self.assertTrue(got or closed, "gateway still reading a dribbled header after %.1fs"
                        % elapsed)
        self.assertLess(elapsed, scale(2) + 1.5, "slowloris not cut within header_read + 1.5s")
        if got:
            self.assertTrue(got.startswith(b"HTTP/1.1 408"), got[:200])
            self.assertIn(b"header_timeout", got)
        self.assertFalse(errors, errors)
        self.assertGreaterEqual(len(served), 3, served)
        for status, took in served:
            self.assertEqual(status, 200)
            self.assertLess(took, scale(1.0))
        # Only the well-behaved requests reached the upstream.
        self.assertEqual(self.up.count(), len(served))


class BodyLimitTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.gateway_for(self.up)  # max_body_bytes 1MiB

    def test_content_length_over_limit_413_up_front(self):
        with Client(self.gw.port) as c:
            c.send("POST /echo HTTP/1.1\r\n" + H + "Content-Length: %d\r\n\r\n"
                   % (1024 * 1024 + 1))
            r = c.read_response(timeout=scale(3))  # without sending any body byte
            self.assertGatewayResponse(r, 413, "body_too_large")
        self.assertEqual(self.up.count(), 0)

    def test_body_at_limit_accepted(self):
        body = b"z" * (1024 * 1024)
        r = request(self.gw.port, "POST", "/echo", body=body, timeout=scale(10))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), len(body))
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(16):
                c.send(b"10000\r\n" + b"q" * 65536 + b"\r\n")
            c.send(b"0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(len(r.body), 1024 * 1024)

    def test_chunked_body_over_limit_413_mid_stream(self):
        completed = self.up.completed_count("/echo")
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n")
            # Exactly the limit, then one byte more: the crossing is the last byte sent, so
            # the gateway has read everything we sent when it answers (no reset races).
            for _ in range(16):
                c.send(b"10000\r\n" + b"q" * 65536 + b"\r\n")
            c.send(b"1\r\nX\r\n")
            r = c.read_response(timeout=scale(5))
            self.assertGatewayResponse(r, 413, "body_too_large")
            self.assertTrue(c.wait_closed(scale(2)), "connection not closed after 413")
        # The upstream never got a complete request, and its connection was aborted.
        self.assertEqual(self.up.completed_count("/echo"), completed)
        rec = self.gw.wait_access(lambda x: x.get("status") == 413)
        self.assertIsNotNone(rec)
        self.assertEqual(rec["reason"], "body_too_large")


class UpstreamFailureTest(GatewayTest):
    def test_connect_refused_502(self):
        gw = self.start_gateway(make_config(["127.0.0.1:%d" % closed_port()]))
        r = request(gw.port, "GET", "/ok", timeout=scale(5))
        self.assertGatewayResponse(r, 502, "connect_failure")
        rec = gw.wait_access(lambda x: x.get("status") == 502)
        self.assertIsNotNone(rec)
        self.assertEqual(rec["reason"], "connect_failure")
        self.assertEqual(rec["cluster"], "backend")

    def test_upstream_reset_before_response_502(self):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        r = request(gw.port, "GET", "/reset", timeout=scale(5))
        self.assertGatewayResponse(r, 502, "upstream_reset")
        self.assertEqual(up.count("/reset"), 1)  # retries are not enabled yet: one attempt
        # The gateway is still fine.
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)

    def test_garbage_response_502(self):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        r = request(gw.port, "GET", "/bad", timeout=scale(5))
        self.assertGatewayResponse(r, 502, "bad_response")
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)

    def test_upstream_status_codes_pass_through(self):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        with Client(gw.port) as c:
            for code in (201, 204, 304, 404, 418, 500, 502, 503):
                r = c.request("GET", "/status?code=%d" % code)
                self.assertEqual(r.status, code, r)
                # The upstream's own 5xx is not dressed up as a gateway refusal.
                self.assertIsNone(r.header("x-bulwark-reason"), r)


class EarlyUpstreamAnswerTest(GatewayTest):
    def test_upload_refused_early_gets_the_upstreams_answer(self):
        # The upstream answers 413 after the head and closes without reading the body; the
        # gateway's next body write fails. The client gets the upstream's answer, not a 502.
        up = self.start_upstream()
        gw = self.gateway_for(up, limits={"max_body_bytes": "64MiB"})
        size = 8 << 20
        with Client(gw.port, timeout=scale(10)) as c:
            c.send("POST /reject_early HTTP/1.1\r\n" + H + "Content-Length: %d\r\n\r\n" % size)
            self.assertTrue(wait_until(lambda: up.rejected_early == 1, scale(5), 0.02),
                            "the upstream did not refuse the upload")

            def pump():
                try:
                    for _ in range(size // 65536):
                        c.sock.sendall(b"u" * 65536)
                except OSError:
                    pass  # the gateway closes once it has answered
            t = threading.Thread(target=pump, daemon=True)
            t.start()
            r = c.read_response(timeout=scale(5))
            self.assertEqual(r.status, 413, r)
            self.assertIsNone(r.header("x-bulwark-reason"), r)
            self.assertEqual(r.body, b'{"error":"upload refused"}')
            self.assertEqual(r.header("connection"), "close")
            self.assertTrue(c.wait_closed(scale(5)), "client connection kept with its body unread")
            t.join(timeout=scale(10))
            self.assertFalse(t.is_alive())
        rec = gw.wait_access(lambda x: x.get("path") == "/reject_early")
        self.assertIsNotNone(rec)
        self.assertEqual((rec["status"], rec["reason"]), (413, ""))
        self.assertLess(rec["bytes_in"], size)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)


class OverloadTest(GatewayTest):
    def test_pool_exhausted_503(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, cluster_opts={
            "pool": {"max_per_endpoint": 1, "max_idle": 1, "idle_timeout": "60s"}})
        slow = Background(gw.port, "/slow?ms=%d" % (scale(2) * 1000), scale(10))
        self.assertTrue(up.slow_waiting.wait(scale(5)), "slow request never reached upstream")
        before = up.count()
        r = request(gw.port, "GET", "/ok", timeout=scale(5))
        self.assertGatewayResponse(r, 503, "pool_exhausted")
        self.assertEqual(up.count(), before, "a refused request reached the upstream")
        self.assertEqual(slow.result().status, 200)
        # The slot is free again.
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)

    def test_concurrency_limit_503(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, limits={"max_concurrent_requests": 1})
        slow = Background(gw.port, "/slow?ms=%d" % (scale(2) * 1000), scale(10))
        self.assertTrue(up.slow_waiting.wait(scale(5)), "slow request never reached upstream")
        before = up.count()
        r = request(gw.port, "GET", "/ok", timeout=scale(5))
        self.assertGatewayResponse(r, 503, "concurrency_limit")
        self.assertEqual(up.count(), before)
        self.assertEqual(slow.result().status, 200)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)

    def test_connection_limit_503_then_close(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, limits={"max_connections": 1})
        with Client(gw.port) as held:
            self.assertEqual(held.request("GET", "/ok").status, 200)
            before = up.count()
            with Client(gw.port) as c:
                c.send(build_request("GET", "/ok"))
                r = c.read_response(timeout=scale(3))
                self.assertGatewayResponse(r, 503, "connection_limit")
                self.assertTrue(c.wait_closed(scale(2)))
            rec = gw.wait_access(lambda x: x.get("reason") == "connection_limit")
            self.assertIsNotNone(rec, "connection_limit refusal not in the access log")
            self.assertEqual(rec["status"], 503)
            self.assertEqual(rec["request_id"], r.header("x-request-id"))
            self.assertEqual(up.count(), before)
            # The held connection still works.
            self.assertEqual(held.request("GET", "/ok").status, 200)
        # Once it is gone a new connection is accepted (the count is released on close).
        ok = wait_until(lambda: request(gw.port, "GET", "/ok").status == 200, scale(3), 0.1)
        self.assertTrue(ok)


class DeadPooledConnectionTest(GatewayTest):
    def test_every_pooled_connection_dead_still_gets_an_answer(self):
        # Two pooled connections that the upstream closed right after answering. A GET that
        # finds them dead before any answer byte is sent again on a NEW connection (not on the
        # next, equally dead, pooled one) and never left without an answer.
        up = self.start_upstream()
        gw = self.gateway_for(up)
        warm = [Background(gw.port, "/slow?ms=300&drop=1", scale(10)) for _ in range(2)]
        for w in warm:
            self.assertEqual(w.result().status, 200)
        self.assertTrue(wait_until(lambda: up.dropped == 2, scale(5), 0.01))
        r = request(gw.port, "GET", "/ok", timeout=scale(5))
        self.assertEqual(r.status, 200, r)
        rec = gw.wait_access(lambda x: x.get("path") == "/ok")
        self.assertIsNotNone(rec)
        self.assertIn(rec["attempts"], (1, 2), rec)  # 1 when the pool's liveness peek ran


class TimeoutTest(GatewayTest):
    def test_first_byte_timeout_504(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, route_timeouts={"first_byte": "300ms"})
        start = time.monotonic()
        r = request(gw.port, "GET", "/slow?ms=%d" % (scale(3) * 1000), timeout=scale(5))
        elapsed = time.monotonic() - start
        self.assertGatewayResponse(r, 504, "first_byte_timeout")
        self.assertGreater(elapsed, 0.25)
        self.assertLess(elapsed, scale(0.3) + 1.0)
        rec = gw.wait_access(lambda x: x.get("status") == 504)
        self.assertIsNotNone(rec)
        self.assertEqual(rec["reason"], "first_byte_timeout")

    def test_first_byte_falls_back_to_per_try(self):
        up = self.start_upstream()
        routes = [{"name": "api", "match": {"path_prefix": "/"}, "cluster": "backend",
                   "timeouts": {"request": "30s", "per_try": "400ms"}}]
        gw = self.start_gateway(make_config([up.address], routes=routes))
        start = time.monotonic()
        r = request(gw.port, "GET", "/slow?ms=%d" % (scale(3) * 1000), timeout=scale(5))
        self.assertGatewayResponse(r, 504, "first_byte_timeout")
        self.assertLess(time.monotonic() - start, scale(0.4) + 1.0)

    def test_request_timeout_504(self):
        # The whole-request deadline is shorter than the first-byte one: request_timeout.
        up = self.start_upstream()
        routes = [{"name": "api", "match": {"path_prefix": "/"}, "cluster": "backend",
                   "timeouts": {"request": "400ms", "first_byte": "10s"}}]
        gw = self.start_gateway(make_config([up.address], routes=routes))
        start = time.monotonic()
        r = request(gw.port, "GET", "/slow?ms=%d" % (scale(3) * 1000), timeout=scale(5))
        self.assertGatewayResponse(r, 504, "request_timeout")
        self.assertLess(time.monotonic() - start, scale(0.4) + 1.0)

    def test_connect_timeout_504(self):
        hole = Blackhole()
        self.addCleanup(hole.close)
        if not hole.connect_hangs():
            self.skipTest("this kernel completes connects to a full accept queue")
        gw = self.start_gateway(make_config([hole.address], cluster_opts={
            "connect_timeout": "300ms"}))
        start = time.monotonic()
        r = request(gw.port, "GET", "/ok", timeout=scale(5))
        elapsed = time.monotonic() - start
        self.assertGatewayResponse(r, 504, "connect_timeout")
        self.assertGreater(elapsed, 0.25)
        self.assertLess(elapsed, scale(0.3) + 1.0)
