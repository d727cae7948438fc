"""Admin listener: /healthz, /readyz, /metrics (checked by promtool), /stats, /clusters,
/config, /alerts, the HTML page, and POST /reload with a good and a broken file."""

import json
import os
import shutil
import subprocess

from harness import GatewayTest, make_config, request, scale

PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool"
                                        if os.path.exists("/usr/bin/promtool") else "")


class AdminTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.gateway_for(self.up)

    def test_healthz(self):
        r = self.gw.admin("/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("application/json"), r)
        self.assertEqual(r.json(), {"status": "alive"})

    def test_readyz(self):
        r = self.gw.admin("/readyz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "ready"})

    def test_head_and_unknown_paths(self):
        r = self.gw.admin("/healthz", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(self.gw.admin("/no-such-page").status, 404)
        r = self.gw.admin("/healthz", method="POST")
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.header("allow") or "")

    def test_metrics_pass_promtool_and_count_traffic(self):
        for path in ("/ok", "/ok", "/status?code=503", "/../x"):
            request(self.gw.port, "GET", path)
        text = self.gw.metrics()
        r = self.gw.admin("/metrics")
        self.assertTrue(r.header("content-type").startswith("text/plain"), r)
        self.assertIn("bulwark_route_requests_total", text)
        ok = self.gw.metric_value("bulwark_route_requests_total", {"route": "api",
                                                                   "class": "2xx"})
        self.assertEqual(ok, 2.0, text)
        self.assertEqual(self.gw.metric_value("bulwark_route_requests_total",
                                              {"route": "api", "class": "5xx"}), 1.0)
        self.assertEqual(self.gw.metric_value("bulwark_gateway_responses_total",
                                              {"code": "400", "reason": "path_traversal"}), 1.0)
        for name in ("bulwark_listener_connections_total", "bulwark_config_generation",
                     "bulwark_draining", "bulwark_endpoint_connections_opened_total",
                     "bulwark_route_request_duration_seconds_bucket"):
            self.assertIn(name, text)
        self.assertEqual(self.gw.metric_value("bulwark_draining"), 0.0)
        if not PROMTOOL:
            self.skipTest("promtool is not installed: exposition format not checked")
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=scale(30))
        # promtool exits 1 for lint warnings too; only hard errors (exit > 1 or a parse error)
        # mean invalid exposition, but lint problems are reported as failures as well.
        self.assertEqual(p.returncode, 0, "promtool check metrics:\n%s%s" % (p.stdout,
                                                                            p.stderr))

    def test_stats_clusters_config_alerts_are_json(self):
        request(self.gw.port, "GET", "/ok")
        for path in ("/stats", "/clusters", "/config", "/alerts"):
            r = self.gw.admin(path)
            self.assertEqual(r.status, 200, (path, r))
            self.assertTrue(r.header("content-type").startswith("application/json"), (path, r))
            json.loads(r.body.decode())
        clusters = json.dumps(self.gw.admin_json("/clusters")[1])
        self.assertIn("backend", clusters)
        self.assertIn(self.up.address, clusters)
        cfg = self.gw.admin_json("/config")[1]
        self.assertIn("routes", cfg)
        self.assertIn("api", json.dumps(cfg["routes"]))

    def test_status_page_is_html(self):
        r = self.gw.admin("/")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/html"), r)
        self.assertIn(b"backend", r.body)

    def test_reload_ok(self):
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["result"], "ok")
        gen = doc["generation"]
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual(doc["generation"], gen + 1)
        self.assertEqual(self.gw.metric_value("bulwark_config_generation"), gen + 1)
        self.assertEqual(request(self.gw.port, "GET", "/ok").status, 200)

    def test_reload_changes_routes(self):
        other = self.start_upstream()
        cfg = make_config([self.up.address], routes=[
            {"name": "api", "match": {"path_prefix": "/"}, "cluster": "backend"},
        ], clusters=[{"name": "backend", "endpoints": [other.address]}])
        self.gw.write_config(cfg)
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual((status, doc["result"]), (200, "ok"), doc)
        r = request(self.gw.port, "GET", "/ok")
        self.assertEqual(r.json()["upstream_port"], other.port)

    def test_reload_broken_file_keeps_old_config(self):
        self.gw.write_config(
            "workers: 1\nadmin: {listen: 127.0.0.1:0}\nlisteners:\n"
            "  - {name: public, listen: 127.0.0.1:0}\nroutes:\n"
            "  - {name: api, cluster: nowhere}\nclusters:\n"
            "  - {name: backend, endpoints: [%s]}\n" % self.up.address)
        gen_before = self.gw.metric_value("bulwark_config_generation")
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual(status, 400, doc)
        self.assertEqual(doc["result"], "error")
        self.assertTrue(doc["errors"], doc)
        self.assertRegex(doc["errors"][0], r"^%s:6:\d+: routes\[0\]\.cluster: no cluster "
                         r"named 'nowhere'" % self.gw.config_path.replace(".", r"\."))
        # Old config keeps serving.
        self.assertEqual(request(self.gw.port, "GET", "/ok").status, 200)
        self.assertEqual(self.gw.metric_value("bulwark_config_generation"), gen_before)
        self.assertEqual(self.gw.metric_value("bulwark_config_reloads_total",
                                              {"result": "failure"}), 1.0)
        self.assertEqual(self.gw.metric_value("bulwark_config_last_reload_success"), 0.0)
        # YAML that does not parse at all.
        self.gw.write_config("listeners: [\n")
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual((status, doc["result"]), (400, "error"), doc)
        self.assertEqual(request(self.gw.port, "GET", "/ok").status, 200)
