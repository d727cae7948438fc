"""Lifecycle: SIGHUP reloads under continuous load with zero failed requests, SIGTERM/SIGINT
drain (in-flight request completes, new connections refused, /readyz 503, exit 0), the drain
timeout, and the access log format."""

import json
import signal
import socket
import threading
import time

from harness import Client, GatewayTest, build_request, make_config, request, scale, wait_until
from test_errors import Background

ACCESS_KEYS = ["time", "request_id", "client", "method", "path", "status", "route", "cluster",
               "endpoint", "attempts", "duration_ms", "bytes_in", "bytes_out", "reason"]


def reload_config(a, b, generation):
    """Route `gen<generation>` → cluster b, everything else → cluster a."""
    return make_config([], routes=[
        {"name": "gen%d" % generation, "match": {"path_prefix": "/gen%d" % generation},
         "cluster": "b"},
        {"name": "api", "match": {"path_prefix": "/"}, "cluster": "a"},
    ], clusters=[{"name": "a", "endpoints": [a.address]},
                 {"name": "b", "endpoints": [b.address]}])


class ReloadTest(GatewayTest):
    def test_sighup_reload_under_load_loses_nothing(self):
        a = self.start_upstream()
        b = self.start_upstream()
        gw = self.start_gateway(reload_config(a, b, 0))
        gen0 = gw.metric_value("bulwark_config_generation")
        ok0 = gw.metric_value("bulwark_config_reloads_total", {"result": "success"}) or 0.0
        stop = threading.Event()
        results = {"ok": 0, "fail": []}
        lock = threading.Lock()

        def load(worker):
            c = Client(gw.port, timeout=scale(5))
            try:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        if i % 3 == 0:
                            r = c.request("POST", "/echo", body=b"w%d-%d" % (worker, i))
                            good = r.status == 200 and r.body == b"w%d-%d" % (worker, i)
                        else:
                            r = c.request("GET", "/ok")
                            good = r.status == 200
                    except Exception as e:  # noqa: BLE001 - a failed request is the finding
                        with lock:
                            results["fail"].append("worker %d req %d: %r" % (worker, i, e))
                        c.close()
                        c = Client(gw.port, timeout=scale(5))
                        continue
                    with lock:
                        if good:
                            results["ok"] += 1
                        else:
                            results["fail"].append("worker %d req %d: %r" % (worker, i, r))
            finally:
                c.close()

        threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        try:
            for g in range(1, 6):
                time.sleep(0.2)  # let traffic flow between reloads
                gw.write_config(reload_config(a, b, g))
                gw.signal(signal.SIGHUP)
                served = wait_until(
                    lambda: request(gw.port, "GET", "/gen%d/x" % g).json().get(
                        "upstream_port") == b.port, scale(5), 0.05)
                self.assertTrue(served, "route gen%d not serving after SIGHUP %d" % (g, g))
                # The previous generation's route is gone (falls through to cluster a).
                r = request(gw.port, "GET", "/gen%d/x" % (g - 1))
                self.assertEqual(r.json()["upstream_port"], a.port)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=scale(10))
        self.assertEqual(results["fail"], [])
        self.assertGreater(results["ok"], 50)
        self.assertEqual(gw.metric_value("bulwark_config_generation"), gen0 + 5)
        self.assertEqual(gw.metric_value("bulwark_config_reloads_total", {"result": "success"}),
                         ok0 + 5)

    def test_sighup_with_broken_file_keeps_serving(self):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        gw.write_config("listeners: [\n")
        gw.signal(signal.SIGHUP)
        failed = wait_until(lambda: gw.metric_value("bulwark_config_reloads_total",
                                                    {"result": "failure"}) == 1.0, scale(5))
        self.assertTrue(failed, "failed reload not counted")
        self.assertTrue(gw.alive())
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        # The error is logged, naming the file and position.
        self.assertRegex(gw.stderr(), r"reload failed.*%s:\d+:\d+: " % gw.config_path)

    def test_in_flight_request_finishes_on_old_config(self):
        a = self.start_upstream()
        b = self.start_upstream()
        gw = self.start_gateway(reload_config(a, b, 0))
        slow = Background(gw.port, "/slow?ms=%d" % (scale(1.5) * 1000), scale(10))
        self.assertTrue(a.slow_waiting.wait(scale(5)))
        # New config sends everything to b.
        gw.write_config(make_config([b.address]))
        gw.signal(signal.SIGHUP)
        self.assertTrue(wait_until(
            lambda: request(gw.port, "GET", "/ok").json()["upstream_port"] == b.port, scale(5)))
        r = slow.result()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"slow done\n")


class DrainTest(GatewayTest):
    def test_sigterm_drains_in_flight_and_exits_zero(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, drain_timeout="10s")
        idle = Client(gw.port, timeout=scale(5))
        self.addCleanup(idle.close)
        self.assertEqual(idle.request("GET", "/ok").status, 200)
        # The in-flight request, on its own connection.
        inflight = Client(gw.port, timeout=scale(10))
        self.addCleanup(inflight.close)
        inflight.send(build_request("GET", "/slow?ms=%d" % (scale(2) * 1000)))
        self.assertTrue(up.slow_waiting.wait(scale(5)))
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)

        # /readyz says draining (if the admin listener is still up while draining).
        ready = None
        deadline = time.monotonic() + scale(1)
        while time.monotonic() < deadline:
            try:
                r = gw.admin("/readyz", timeout=1)
            except OSError:
                break
            if r.status == 503:
                ready = r
                break
            time.sleep(0.02)
        if ready is not None:
            self.assertEqual(ready.json(), {"status": "draining"})
            self.assertEqual(ready.header("Retry-After"), "1")

        # New connections are refused. A probe that the kernel accepted just before the worker
        # began draining is a connection like any other and may still be served (with
        # Connection: close); those are counted below.
        served_probes = []

        def refused():
            s = socket.socket()
            s.settimeout(1)
            try:
                s.connect(("127.0.0.1", gw.port))
                s.sendall(build_request("GET", "/ok"))
                data = s.recv(100)
                if data.startswith(b"HTTP/1.1 200"):
                    served_probes.append(1)
                    return False
                return True
            except OSError:
                return True
            finally:
                s.close()
        self.assertTrue(wait_until(refused, scale(2), 0.05), "new connections still served")
        # Idle keep-alive connection closed.
        self.assertTrue(idle.wait_closed(scale(2)), "idle keep-alive connection kept open")
        # The in-flight request completes, with Connection: close.
        r = inflight.read_response(timeout=scale(10))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"slow done\n")
        self.assertIn("close", (r.header("connection") or "").lower(), r)
        code = gw.wait(scale(10))
        self.assertEqual(code, 0, gw.stderr()[-3000:])
        self.assertLess(time.monotonic() - t0, scale(2) + 5)
        # Only the two requests (and probes accepted before the drain) reached the upstream.
        self.assertEqual(up.count(), 2 + len(served_probes))

    def test_sighup_during_drain_is_ignored(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, drain_timeout="10s")
        slow = Background(gw.port, "/slow?ms=%d" % (scale(1.5) * 1000), scale(10))
        self.assertTrue(up.slow_waiting.wait(scale(5)))
        gw.signal(signal.SIGTERM)
        self.assertTrue(wait_until(lambda: '"msg":"draining"' in gw.stderr(), scale(5), 0.02))
        gw.signal(signal.SIGHUP)  # e.g. logrotate: must neither reload nor kill the drain
        self.assertEqual(slow.result().status, 200)
        self.assertEqual(gw.wait(scale(10)), 0, gw.stderr()[-3000:])

    def test_drain_timeout_bounds_exit(self):
        up = self.start_upstream()
        gw = self.gateway_for(up, drain_timeout="1s")
        slow = Background(gw.port, "/slow?ms=%d" % 20000, scale(25))
        self.assertTrue(up.slow_waiting.wait(scale(5)))
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        code = gw.wait(scale(1) + 5)
        took = time.monotonic() - t0
        self.assertIsNotNone(code, "still running 6 s after SIGTERM with drain_timeout 1s")
        self.assertEqual(code, 0, gw.stderr()[-3000:])
        self.assertGreater(took, 0.8)
        try:
            slow.result()  # cut: whatever the client saw, it must end now
        except Exception:  # noqa: BLE001 - a closed connection is the expected outcome
            pass

    def test_sigint_drains_and_exits_zero(self):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        gw.signal(signal.SIGINT)
        self.assertEqual(gw.wait(scale(10)), 0, gw.stderr()[-3000:])


class AccessLogTest(GatewayTest):
    def test_every_line_is_json_with_all_keys(self):
        up = self.start_upstream()
        gw = self.gateway_for(up)
        with Client(gw.port) as c:
            c.request("GET", "/ok/a?q=1", headers=[("X-Request-Id", "al-1")])
            c.request("POST", "/echo", body=b"12345", headers=[("X-Request-Id", "al-2")])
            c.request("GET", "/status?code=503", headers=[("X-Request-Id", "al-3")])
        request(gw.port, "GET", "/../x", headers=[("X-Request-Id", "al-4")])
        request(gw.port, "GET", "/q\"uote", headers=[("X-Request-Id", "al-5")])
        self.assertIsNotNone(gw.wait_access(lambda r: r.get("request_id") == "al-5"))
        gw.stop()  # flushes the log
        with open(gw.access_path, "rb") as f:
            lines = f.read().decode("utf-8").splitlines()
        self.assertGreaterEqual(len(lines), 5)
        recs = {}
        for line in lines:
            rec = json.loads(line)  # every line is valid JSON
            self.assertEqual(list(rec.keys()), ACCESS_KEYS, line)
            self.assertRegex(rec["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            for k in ("status", "attempts", "bytes_in", "bytes_out"):
                self.assertIsInstance(rec[k], int, (k, line))
            self.assertIsInstance(rec["duration_ms"], (int, float))
            recs[rec["request_id"]] = rec
        self.assertEqual(recs["al-1"]["path"], "/ok/a")
        self.assertEqual(recs["al-2"]["method"], "POST")
        self.assertEqual(recs["al-2"]["bytes_in"], 5)
        self.assertEqual(recs["al-2"]["bytes_out"], 5)
        self.assertEqual(recs["al-3"]["status"], 503)
        self.assertEqual(recs["al-3"]["reason"], "")  # the upstream's 503, not the gateway's
        self.assertEqual(recs["al-4"]["status"], 400)
        self.assertEqual(recs["al-4"]["reason"], "path_traversal")
        self.assertEqual(recs["al-4"]["route"], "")
        self.assertEqual(recs["al-4"]["attempts"], 0)
        self.assertIn(recs["al-5"]["status"], (200, 400))
