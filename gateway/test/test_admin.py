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


def admin_request(port, path, method="GET", token=None, timeout=5.0):
    """A request to the admin listener, with `Authorization: Bearer <token>` when given."""
    from harness import Client, build_request
    headers = [("Connection", "close")]
    if token is not None:
        headers.append(("Authorization", "Bearer %s" % token))
    with Client(port, timeout=timeout) as c:
        c.send(build_request(method, path, headers, None, host="127.0.0.1"))
        return c.read_response(head=(method == "HEAD"))


class AdminTokenTest(GatewayTest):
    """admin.token: POST needs the bearer token on loopback; off loopback every endpoint does;
    401 with the Bearer challenge otherwise; /config hides it; a reload may rotate it."""

    TOKEN = "0123456789abcdef-first"

    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        old = os.environ.get("ADMIN_TOKEN")
        os.environ["ADMIN_TOKEN"] = self.TOKEN
        self.addCleanup(lambda: os.environ.pop("ADMIN_TOKEN") if old is None
                        else os.environ.__setitem__("ADMIN_TOKEN", old))

    def config(self, listen="127.0.0.1:0", token="${ADMIN_TOKEN}"):
        config = make_config([self.up.address])
        config["admin"] = {"listen": listen, "token": token}
        return config

    def test_on_loopback_reads_are_open_and_reload_needs_the_token(self):
        gw = self.start_gateway(self.config())
        self.assertEqual(admin_request(gw.admin_port, "/stats").status, 200)
        r = admin_request(gw.admin_port, "/reload", method="POST")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("www-authenticate"), 'Bearer realm="bulwark-admin"')
        self.assertEqual(r.json(), {"error": "missing bearer token"})
        r = admin_request(gw.admin_port, "/reload", method="POST", token="wrong")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("www-authenticate"),
                         'Bearer realm="bulwark-admin", error="invalid_token"')
        status, stats = gw.admin_json("/stats")
        self.assertEqual(stats["generation"], 1)  # nothing was reloaded
        r = admin_request(gw.admin_port, "/reload", method="POST", token=self.TOKEN)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"result": "ok", "generation": 2})
        status, cfg = gw.admin_json("/config")
        self.assertEqual(cfg["admin"]["token"], "<redacted>")
        self.assertNotIn(self.TOKEN, json.dumps(cfg))

    def test_off_loopback_every_endpoint_needs_the_token(self):
        # Bound to every interface, reached through loopback.
        gw = self.start_gateway(self.config(listen="0.0.0.0:0"))
        for path in ("/healthz", "/readyz", "/metrics", "/stats", "/clusters", "/config", "/",
                     "/no-such-page"):
            r = admin_request(gw.admin_port, path)
            self.assertEqual(r.status, 401, (path, r))
            self.assertEqual(r.header("www-authenticate"), 'Bearer realm="bulwark-admin"')
        r = admin_request(gw.admin_port, "/stats", token="wrong")
        self.assertEqual(r.status, 401, r)
        r = admin_request(gw.admin_port, "/stats", token=self.TOKEN)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(admin_request(gw.admin_port, "/healthz", token=self.TOKEN).json(),
                         {"status": "alive"})
        # The start-up log reminds that the admin API is reachable off loopback.
        self.assertIn("admin.listen", gw.stderr())

    def test_a_reload_rotates_the_token(self):
        config = self.config(token="0123456789abcdef-first")
        gw = self.start_gateway(config)
        config["admin"]["token"] = "0123456789abcdef-second"
        gw.write_config(config)
        r = admin_request(gw.admin_port, "/reload", method="POST", token=self.TOKEN)
        self.assertEqual(r.status, 200, r)
        r = admin_request(gw.admin_port, "/reload", method="POST", token=self.TOKEN)
        self.assertEqual(r.status, 401, r)
        r = admin_request(gw.admin_port, "/reload", method="POST",
                          token="0123456789abcdef-second")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["generation"], 3)

    def test_off_loopback_a_reload_cannot_drop_the_token(self):
        config = self.config(listen="0.0.0.0:0")
        gw = self.start_gateway(config)
        # The file now says loopback without a token: loads fine, but the running listener
        # stays where it is until a restart.
        config["admin"] = {"listen": "127.0.0.1:0"}
        gw.write_config(config)
        r = admin_request(gw.admin_port, "/reload", method="POST", token=self.TOKEN)
        self.assertEqual(r.status, 400, r)
        self.assertIn("admin.token", r.json()["errors"][0])
        self.assertEqual(admin_request(gw.admin_port, "/stats").status, 401)
