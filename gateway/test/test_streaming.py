"""Streaming: SSE events reach the client one by one (proved by ordering, not timing), a 1 GiB
answer streams through with flat gateway memory, and the route's stream guards (idle, total,
max bytes, max chunk) and an upstream reset mid-body cut the client connection."""

import threading
import time

from harness import SANITIZED, Client, GatewayTest, build_request, scale


def read_chunk(client, deadline):
    """One chunk of a chunked body from `client`; None at the last chunk."""
    line = client._read_until(b"\r\n", deadline)
    size = int(line.split(b";")[0].strip(), 16)
    if size == 0:
        while client._read_until(b"\r\n", deadline) != b"\r\n":
            pass
        return None
    parts = []
    client._read_exact(size, deadline, parts.append)
    client._read_exact(2, deadline, None)
    return b"".join(parts)


class SseTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.gateway_for(self.up)

    def test_events_arrive_one_by_one(self):
        n = 5
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send(build_request("GET", "/sse?n=%d&gate=1" % n,
                                 [("Accept", "text/event-stream")]))
            head = c.read_head(timeout=scale(5))
            self.assertEqual(head.status, 200, head)
            self.assertTrue(head.header("content-type").startswith("text/event-stream"), head)
            text = b""
            received = 0
            while received < n:
                # The upstream sends event k+1 only after we release it, so event k must
                # reach us while the upstream has sent exactly k events.
                chunk = read_chunk(c, time.monotonic() + scale(5))
                self.assertIsNotNone(chunk, "stream ended after %d events" % received)
                text += chunk
                while b"\n\n" in text:
                    event, text = text.split(b"\n\n", 1)
                    received += 1
                    self.assertEqual(event, b"id: %d\ndata: event %d" % (received, received))
                    self.assertEqual(self.up.sse_sent, received,
                                     "event %d delivered only after the upstream sent more"
                                     % received)
                    self.up.release_gate()
            self.assertIsNone(read_chunk(c, time.monotonic() + scale(5)))
            # Nothing after the last chunk, and the connection is still usable afterwards.
            self.assertFalse(c.wait_closed(0.2), "connection closed after the stream")
            self.assertEqual(bytes(c.buf), b"", "bytes after the last chunk")
            r = c.request("GET", "/ok")
            self.assertEqual(r.status, 200)
        self.assertEqual(self.up.gate_timeouts, 0)

    def test_event_reaches_client_before_the_stream_ends(self):
        # Without gating: the first event must be readable while the upstream still waits
        # (gap of several seconds before the next one).
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send(build_request("GET", "/sse?n=2&gap_ms=%d" % (scale(3) * 1000)))
            head = c.read_head(timeout=scale(5))
            self.assertEqual(head.status, 200)
            t0 = time.monotonic()
            first = read_chunk(c, time.monotonic() + scale(2))
            self.assertEqual(first, b"id: 1\ndata: event 1\n\n")
            self.assertEqual(self.up.sse_sent, 1)
            self.assertLess(time.monotonic() - t0, scale(2))


class LargeBodyTest(GatewayTest):
    def _stream_and_watch_rss(self, path, expected, limit_kib=8 * 1024):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        # Warm up so one-time allocations (pools, buffers) are in the baseline.
        with Client(gw.port) as c:
            self.assertEqual(c.request("GET", "/bytes?n=%d" % (4 << 20)).status, 200)
        base = gw.rss_kib()
        peak = [base]
        done = threading.Event()

        def watch():
            while not done.wait(0.1):
                try:
                    peak[0] = max(peak[0], gw.rss_kib())
                except OSError:
                    return
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        count = [0]

        def sink(b):
            count[0] += len(b)
        try:
            with Client(gw.port, timeout=scale(120)) as c:
                c.send(build_request("GET", path))
                r = c.read_response(sink=sink, timeout=scale(240))
        finally:
            done.set()
            t.join(timeout=5)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(count[0], expected)
        growth = peak[0] - base
        if SANITIZED:
            # ASan keeps freed memory in quarantine (up to 256 MiB) and TSan shadows every
            # allocation, so RSS says nothing about buffering there; the release run checks it.
            return gw
        self.assertLess(growth, limit_kib,
                        "gateway RSS grew by %d KiB while streaming %d bytes (base %d KiB)"
                        % (growth, expected, base))
        return gw

    def test_one_gib_streams_with_flat_memory(self):
        n = (64 << 20) if SANITIZED else (1 << 30)
        gw = self._stream_and_watch_rss("/bytes?n=%d&chunk=%d" % (n, 256 * 1024), n)
        rec = gw.wait_access(lambda x: x.get("path") == "/bytes" and x.get("bytes_out") == n)
        self.assertIsNotNone(rec, "no access log line with bytes_out=%d" % n)

    def test_chunked_large_body_streams_with_flat_memory(self):
        n = (32 << 20) if SANITIZED else (256 << 20)
        self._stream_and_watch_rss("/bytes?n=%d&mode=chunked" % n, n)


class StreamGuardTest(GatewayTest):
    def guarded(self, route_timeouts=None, stream=None):
        self.up = self.start_upstream()
        self.gw = self.gateway_for(self.up, route_timeouts=route_timeouts, stream=stream)
        return self.gw

    def cut(self, path, within):
        """Requests `path`; expects a 200 header then a close within `within` seconds.
        Returns the body bytes received."""
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send(build_request("GET", path))
            head = c.read_head(timeout=scale(5))
            self.assertEqual(head.status, 200, head)
            t0 = time.monotonic()
            n, closed = c.read_partial_body(head, timeout=within)
            self.assertTrue(closed, "connection not closed within %.1fs (got %d body bytes)"
                            % (within, n))
            return n, time.monotonic() - t0

    def assert_abort_recorded(self, reason):
        rec = self.gw.wait_access(lambda x: x.get("reason") == reason)
        self.assertIsNotNone(rec, "no access log line with reason %s" % reason)
        self.assertEqual(rec["route"], "api")
        v = self.gw.metric_value("bulwark_route_stream_aborts_total",
                                 {"route": "api", "reason": reason})
        if reason != "upstream_reset":
            self.assertIsNotNone(v, "no bulwark_route_stream_aborts_total{reason=%s}" % reason)
            self.assertGreaterEqual(v, 1)
        return rec

    def test_stream_idle_timeout_closes(self):
        self.guarded(route_timeouts={"stream_idle": "500ms"})
        n, took = self.cut("/stall_body", scale(0.5) + 2)
        self.assertEqual(n, 10)
        self.assertGreater(took, 0.3)
        self.assert_abort_recorded("stream_idle_timeout")

    def test_stream_total_timeout_closes(self):
        self.guarded(route_timeouts={"stream_total": "1s", "stream_idle": "5s"})
        n, took = self.cut("/sse?n=100&gap_ms=100", scale(1) + 2)
        self.assertGreater(n, 0)
        self.assertLess(n, 100 * len(b"id: 100\ndata: event 100\n\n"))
        self.assert_abort_recorded("stream_total_timeout")

    def test_stream_max_bytes_closes(self):
        self.guarded(stream={"max_bytes": "1MiB"})
        n, _ = self.cut("/bytes?n=%d&mode=chunked" % (8 << 20), scale(5))
        self.assertLessEqual(n, (1 << 20) + 64 * 1024 + 16,
                             "far more than stream.max_bytes reached the client")
        self.assert_abort_recorded("stream_max_bytes")

    def test_stream_max_chunk_closes_mid_stream(self):
        self.guarded(stream={"max_chunk_bytes": "64KiB"})
        # A 1000-byte chunk, then (once the client holds the head) a 200000-byte one.
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send(build_request(
                "GET", "/bytes?n=%d&mode=chunked&chunk=200000&lead=1000&gate=1" % (1 << 20)))
            head = c.read_head(timeout=scale(5))
            self.assertEqual(head.status, 200, head)
            self.up.release_gate()
            n, closed = c.read_partial_body(head, timeout=scale(5))
            self.assertTrue(closed, "connection not closed after an oversized chunk")
            # Raw bytes: the 1000-byte chunk and its framing, nothing of the oversized one.
            self.assertGreaterEqual(n, 1000)
            self.assertLess(n, 1100)
        self.assertEqual(self.up.gate_timeouts, 0)
        rec = self.assert_abort_recorded("stream_max_chunk")
        self.assertEqual(rec["bytes_out"], 1000)

    def test_oversized_first_chunk_is_a_502(self):
        # The head and an oversized first chunk arrive together: nothing has reached the client,
        # so it gets a 502 that says why instead of a cut 200.
        self.guarded(stream={"max_chunk_bytes": "64KiB"})
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send(build_request("GET", "/bytes?n=%d&mode=chunked&chunk=200000" % (1 << 20)))
            head = c.read_head(timeout=scale(5))
            self.assertEqual(head.status, 502, head)
            self.assertEqual(head.header("x-bulwark-reason"), "stream_max_chunk")
        self.assert_abort_recorded("stream_max_chunk")

    def test_upstream_reset_mid_body_truncates_and_closes(self):
        self.guarded()
        with Client(self.gw.port, timeout=scale(10)) as c:
            c.send(build_request("GET", "/reset_mid"))
            head = c.read_head(timeout=scale(5))
            self.assertEqual(head.status, 200, head)
            n, closed = c.read_partial_body(head, timeout=scale(5))
            self.assertTrue(closed, "client connection not closed after upstream reset")
            self.assertLessEqual(n, 1000)
            self.assertLess(n, int(head.header("content-length") or 1 << 40))
        rec = self.assert_abort_recorded("upstream_reset")
        self.assertEqual(rec["status"], 200)
