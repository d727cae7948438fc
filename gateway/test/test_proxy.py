"""Proxying basics: GET/HEAD/POST through nginx and the scripted upstream, keep-alive on both
sides, forwarding headers, hop-by-hop stripping, path normalisation, routing, load balancing."""

import re
import socket
import threading

from harness import (Client, GatewayTest, build_request, make_config, request, scale,
                     wait_until)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
              "proxy-authenticate", "proxy-authorization")


def header_names(pairs):
    return [k.lower() for k, _ in pairs]


class NginxUpstreamTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.nginx = self.start_nginx()
        self.gw = self.start_gateway(make_config([self.nginx.address]))

    def test_get_static_file(self):
        r = request(self.gw.port, "GET", "/index.html")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"<html><body>hello from nginx</body></html>\n")
        self.assertTrue(r.header("x-request-id"), r)
        self.assertIsNone(r.header("x-bulwark-reason"), r)

    def test_head_has_length_but_no_body(self):
        with Client(self.gw.port) as c:
            r = c.request("HEAD", "/big")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("content-length"), str(self.nginx.BIG_BYTES), r)
            # The connection stays usable: no body bytes were sent after the HEAD header.
            r2 = c.request("GET", "/index.html")
            self.assertEqual(r2.status, 200, r2)
            self.assertEqual(r2.body, b"<html><body>hello from nginx</body></html>\n")

    def test_large_static_file_is_byte_exact(self):
        r = request(self.gw.port, "GET", "/big", timeout=scale(20))
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), self.nginx.BIG_BYTES)
        self.assertEqual(r.body, bytes(range(256)) * (self.nginx.BIG_BYTES // 256))

    def test_missing_file_status_passes_through(self):
        r = request(self.gw.port, "GET", "/nope.html")
        self.assertEqual(r.status, 404, r)
        # nginx's 404, not the gateway's no_route.
        self.assertIsNone(r.header("x-bulwark-reason"), r)

    def test_keep_alive_many_requests_one_connection(self):
        with Client(self.gw.port) as c:
            for i in range(20):
                path = "/big" if i % 5 == 4 else "/index.html"
                r = c.request("GET", path, timeout=scale(10))
                self.assertEqual(r.status, 200, (i, r))
                self.assertNotIn("close", (r.header("connection") or "").lower(), r)

    def test_forwarding_headers_seen_by_nginx(self):
        r = request(self.gw.port, "GET", "/hdr?a=1&b=%2F",
                    headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Request-Id", "trace-42")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(
            r.body.decode(),
            "xff=203.0.113.9, 127.0.0.1;proto=http;rid=trace-42;uri=/hdr?a=1&b=%2F;"
            "host=gw.test\n")
        self.assertEqual(r.header("x-request-id"), "trace-42")


class ScriptedUpstreamTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.gw = self.gateway_for(self.up)

    def seen(self, resp):
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    def test_post_body_reaches_upstream_and_back(self):
        body = bytes(range(256)) * 1000
        r = request(self.gw.port, "POST", "/echo", body=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        self.assertEqual(self.up.last_request("/echo").body, body)

    def test_chunked_request_body_is_streamed_as_chunked(self):
        with Client(self.gw.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"hello world")
        req = self.up.last_request("/echo")
        self.assertTrue(req.chunked, req.headers)
        self.assertEqual(req.body, b"hello world")

    def test_empty_lines_before_a_request_line_are_ignored(self):
        # RFC 9112 §2.2: a CRLF after a body (some clients add one) is not a malformed request.
        with Client(self.gw.port) as c:
            c.send(b"\r\nGET /ok HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            c.send(b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\nhi\r\n"
                   b"\n\r\nGET /ok?second=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"hi"))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["query"], "second=1")
        self.assertEqual(self.up.count("/ok"), 2)

    def test_chunked_response_framing_keeps_connection_in_sync(self):
        # Exactly one last-chunk per chunked answer: anything after it would be read as the
        # start of the next response on the keep-alive connection.
        with Client(self.gw.port) as c:
            for i in range(3):
                r = c.request("GET", "/bytes?n=%d&mode=chunked&chunk=1000" % (2500 + i))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("transfer-encoding"), "chunked", r)
                self.assertEqual(len(r.body), 2500 + i)
                self.assertFalse(c.wait_closed(0.2), "connection closed after a chunked answer")
                self.assertEqual(bytes(c.buf), b"", "bytes after the last chunk")
            r = c.request("GET", "/ok")
            self.assertEqual(r.status, 200, r)

    def test_chunked_request_framing_to_upstream_is_exact(self):
        # What the upstream receives for a chunked request: the header, the chunks and one
        # last-chunk — nothing a keep-alive upstream would read as the next request.
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(5)
        gw = self.start_gateway(make_config(["127.0.0.1:%d" % listener.getsockname()[1]]),
                                subdir="gw-raw")
        with Client(gw.port) as c:
            c.send(b"POST /u HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n0\r\n\r\n")
            conn, _ = listener.accept()
            self.addCleanup(conn.close)
            conn.settimeout(0.5)
            got = b""
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    got += data
            except socket.timeout:
                pass
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"POST /u HTTP/1.1\r\n"), got)
        self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
        self.assertEqual(body, b"5\r\nhello\r\n0\r\n\r\n")

    def test_keep_alive_reuses_upstream_connection(self):
        with Client(self.gw.port) as c:
            conn_ids = [self.seen(c.request("GET", "/ok"))["conn_id"] for _ in range(10)]
        self.assertEqual(len(set(conn_ids)), 1, conn_ids)
        self.assertEqual(self.up.connections_accepted, 1)
        # A second client connection is served from the same pooled upstream connection.
        doc = self.seen(request(self.gw.port, "GET", "/ok"))
        self.assertEqual(doc["conn_id"], conn_ids[0])

    def test_x_forwarded_for_added_and_appended(self):
        doc = self.seen(request(self.gw.port, "GET", "/ok"))
        hdrs = {k.lower(): v for k, v in doc["headers"]}
        self.assertEqual(hdrs["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(hdrs["x-forwarded-proto"], "http")
        doc = self.seen(request(self.gw.port, "GET", "/ok",
                                headers=[("X-Forwarded-For", "10.1.1.1, 10.2.2.2")]))
        xff = [v for k, v in doc["headers"] if k.lower() == "x-forwarded-for"]
        self.assertEqual(xff, ["10.1.1.1, 10.2.2.2, 127.0.0.1"])

    def test_x_forwarded_for_keeps_every_line(self):
        doc = self.seen(request(self.gw.port, "GET", "/ok",
                                headers=[("X-Forwarded-For", "10.1.1.1"),
                                         ("X-Forwarded-For", "10.2.2.2")]))
        xff = [v for k, v in doc["headers"] if k.lower() == "x-forwarded-for"]
        self.assertEqual(xff, ["10.1.1.1, 10.2.2.2, 127.0.0.1"])

    def test_http10_without_host_gets_one_upstream(self):
        with Client(self.gw.port) as c:
            c.send("GET /ok HTTP/1.0\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        hosts = [v for k, v in self.seen(r)["headers"] if k.lower() == "host"]
        self.assertEqual(len(hosts), 1)
        self.assertTrue(hosts[0].startswith("127.0.0.1:"), hosts)

    def test_http10_head_of_a_chunked_answer_has_no_transfer_encoding(self):
        with Client(self.gw.port) as c:
            c.send("HEAD /bytes?n=100&mode=chunked HTTP/1.0\r\nHost: gw.test\r\n\r\n")
            r = c.read_response(head=True)
            self.assertEqual(r.status, 200, r)
            self.assertIsNone(r.header("transfer-encoding"), r)
            self.assertTrue(c.wait_closed(scale(2)))
            self.assertEqual(bytes(c.buf), b"", "bytes after a HEAD answer")
        with Client(self.gw.port) as c:  # HTTP/1.1 keeps it: it describes the GET answer
            r = c.request("HEAD", "/bytes?n=100&mode=chunked")
            self.assertEqual(r.header("transfer-encoding"), "chunked", r)

    def test_stray_bytes_after_a_bodiless_answer_never_answer_the_next_request(self):
        # The upstream sends a body 50 ms after its HEAD answer, when the connection is
        # already back in the pool: it is checked before reuse and replaced.
        for method, path in (("HEAD", "/ok?stray=1"), ("GET", "/status?code=204&stray=1")):
            strays = self.up.strays_sent
            with Client(self.gw.port) as c:
                r = c.request(method, path)
                self.assertIn(r.status, (200, 204), r)
            self.assertTrue(wait_until(lambda: self.up.strays_sent == strays + 1, scale(5), 0.02))
            conns = self.up.connections_accepted
            r = request(self.gw.port, "GET", "/ok")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.seen(r)["path"], "/ok")
            self.assertEqual(self.up.connections_accepted, conns + 1,
                             "the connection with stray bytes was used again")

    def test_no_body_answers_with_transfer_encoding_keep_the_connection_in_sync(self):
        # RFC 9112 allows Transfer-Encoding on a 304; the answer still has no body, and the
        # next answer on the connection must start right after the head.
        with Client(self.gw.port) as c:
            for code in (304, 204):
                c.send(build_request("GET", "/status?code=%d&te=1" % code))
                r = c.read_response(head=True)
                self.assertEqual(r.status, code, r)
                r = c.request("GET", "/ok")
                self.assertEqual(r.status, 200, r)

    def test_head_refusal_has_no_body(self):
        with Client(self.gw.port) as c:
            c.send(build_request("HEAD", "/a/%2e%2e/%2e%2e/etc"))
            r = c.read_response(head=True)
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.header("x-bulwark-reason"), "path_traversal")
            self.assertTrue(int(r.header("content-length")) > 0, r)
            # A refusal that keeps the connection (404) must not leave a body behind.
        routes = [{"name": "api", "match": {"path_prefix": "/ok"}, "cluster": "backend"}]
        gw = self.start_gateway(make_config([self.up.address], routes=routes))
        with Client(gw.port) as c:
            c.send(build_request("HEAD", "/nowhere"))
            r = c.read_response(head=True)
            self.assertEqual(r.status, 404, r)
            r = c.request("GET", "/ok")
            self.assertEqual(r.status, 200, r)

    def test_x_forwarded_proto_is_overwritten(self):
        doc = self.seen(request(self.gw.port, "GET", "/ok",
                                headers=[("X-Forwarded-Proto", "https")]))
        protos = [v for k, v in doc["headers"] if k.lower() == "x-forwarded-proto"]
        self.assertEqual(protos, ["http"])

    def test_request_id_kept_when_valid(self):
        rid = "Abc-123._:z" + "x" * 117  # 128 chars, every allowed character class
        self.assertEqual(len(rid), 128)
        r = request(self.gw.port, "GET", "/ok", headers=[("X-Request-Id", rid)])
        doc = self.seen(r)
        ids = [v for k, v in doc["headers"] if k.lower() == "x-request-id"]
        self.assertEqual(ids, [rid])
        self.assertEqual(r.header("x-request-id"), rid)

    def test_request_id_replaced_when_invalid(self):
        for bad in ("has space", "x" * 129, "semi;colon", "slash/y", "é"):
            r = request(self.gw.port, "GET", "/ok",
                        headers=[("X-Request-Id", bad.encode().decode("latin-1"))])
            doc = self.seen(r)
            ids = [v for k, v in doc["headers"] if k.lower() == "x-request-id"]
            self.assertEqual(len(ids), 1, (bad, ids))
            self.assertRegex(ids[0], UUID4, bad)
            self.assertEqual(r.header("x-request-id"), ids[0], bad)

    def test_request_id_generated_when_absent_and_unique(self):
        seen = set()
        with Client(self.gw.port) as c:
            for _ in range(5):
                r = c.request("GET", "/ok")
                doc = self.seen(r)
                rid = [v for k, v in doc["headers"] if k.lower() == "x-request-id"][0]
                self.assertRegex(rid, UUID4)
                self.assertEqual(r.header("x-request-id"), rid)
                seen.add(rid)
        self.assertEqual(len(seen), 5)

    def test_hop_by_hop_request_headers_stripped(self):
        r = request(self.gw.port, "GET", "/ok", headers=[
            ("Connection", "keep-alive, X-Named-Hop"), ("X-Named-Hop", "secret"),
            ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"), ("Trailer", "X-Foo"), ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("X-End-To-End", "kept")])
        doc = self.seen(r)
        names = header_names(doc["headers"])
        for h in HOP_BY_HOP + ("x-named-hop",):
            self.assertNotIn(h, names, doc["headers"])
        self.assertIn("x-end-to-end", names)

    def test_hop_by_hop_response_headers_stripped(self):
        r = request(self.gw.port, "GET", "/ok?hop=1")
        self.assertEqual(r.status, 200, r)
        names = header_names(r.headers)
        for h in ("x-secret-hop", "keep-alive", "proxy-authenticate", "proxy-connection",
                  "trailer"):
            self.assertNotIn(h, names, r.headers)
        self.assertNotIn("x-secret-hop", (r.header("connection") or "").lower(), r.headers)
        self.assertEqual(r.header("x-end-to-end"), "kept")

    def test_host_forwarded_as_received(self):
        doc = self.seen(request(self.gw.port, "GET", "/ok", host="Service.Example:8443"))
        hosts = [v for k, v in doc["headers"] if k.lower() == "host"]
        self.assertEqual(hosts, ["Service.Example:8443"])

    def test_normalised_path_and_query_forwarded(self):
        cases = [
            ("/ok/./a/../b//c?q=1&x=%2F", "/ok/b/c?q=1&x=%2F"),
            ("//ok///x", "/ok/x"),
            ("/ok/%2e/y/%2E%2E/z", "/ok/z"),
            ("/ok/sp%20ace?", "/ok/sp%20ace?"),
            ("/ok/a/b/..", "/ok/a/"),
        ]
        for sent, expected in cases:
            doc = self.seen(request(self.gw.port, "GET", sent))
            # "?" with an empty query may be forwarded as "?" or dropped; the path is exact.
            if expected.endswith("?"):
                self.assertIn(doc["target"], (expected, expected[:-1]), sent)
            else:
                self.assertEqual(doc["target"], expected, sent)

    def test_access_log_records_proxied_request(self):
        r = request(self.gw.port, "GET", "/ok/logged?x=1", headers=[("X-Request-Id", "log-1")])
        self.assertEqual(r.status, 200)
        rec = self.gw.wait_access(lambda x: x.get("request_id") == "log-1")
        self.assertIsNotNone(rec, "no access log line for log-1")
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["path"], "/ok/logged")
        self.assertEqual(rec["status"], 200)
        self.assertEqual(rec["route"], "api")
        self.assertEqual(rec["cluster"], "backend")
        self.assertEqual(rec["endpoint"], self.up.address)
        self.assertEqual(rec["attempts"], 1)
        self.assertEqual(rec["reason"], "")
        self.assertEqual(rec["bytes_out"], len(r.body))
        self.assertTrue(rec["client"].startswith("127.0.0.1:"), rec)


class RoutingTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.a = self.start_upstream()
        self.b = self.start_upstream()
        cfg = make_config([], routes=[
            {"name": "exact", "match": {"path_prefix": "/v1", "host": "api.example.com"},
             "cluster": "a"},
            {"name": "wild", "match": {"path_prefix": "/v1", "host": "*.example.com"},
             "cluster": "b"},
            {"name": "post_only", "match": {"path_prefix": "/submit", "methods": ["POST", "PUT"]},
             "cluster": "a"},
            {"name": "static", "match": {"path_prefix": "/static/"}, "cluster": "b"},
        ], clusters=[
            {"name": "a", "endpoints": [self.a.address]},
            {"name": "b", "endpoints": [self.b.address]},
        ])
        self.gw = self.start_gateway(cfg)

    def where(self, method, path, host):
        before = (self.a.count(), self.b.count())
        r = request(self.gw.port, method, path, host=host, body=b"x" if method == "POST" else None)
        after = (self.a.count(), self.b.count())
        return r, (after[0] - before[0], after[1] - before[1])

    def test_exact_host_case_insensitive_port_ignored(self):
        for host in ("api.example.com", "API.Example.COM", "api.example.com:8080"):
            r, d = self.where("GET", "/v1/items", host)
            self.assertEqual(r.status, 200, (host, r))
            self.assertEqual(d, (1, 0), host)

    def test_wildcard_host(self):
        r, d = self.where("GET", "/v1/items", "eu.example.com")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(d, (0, 1))

    def test_prefix_is_a_plain_string_prefix(self):
        r, d = self.where("GET", "/v1x/anything", "api.example.com")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(d, (1, 0))

    def test_prefix_matched_after_normalisation(self):
        r, d = self.where("GET", "/static/../v1/x", "api.example.com")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(d, (1, 0))
        self.assertEqual(self.a.last_request().target, "/v1/x")

    def test_no_route_404(self):
        for host, path in (("other.test", "/v1/items"), ("api.example.com", "/v2"),
                           ("example.com", "/v1")):
            r, d = self.where("GET", path, host)
            self.assertGatewayResponse(r, 404, "no_route")
            self.assertEqual(d, (0, 0))

    def test_method_not_allowed_405_with_allow(self):
        r, d = self.where("GET", "/submit/form", "any.test")
        self.assertGatewayResponse(r, 405, "method_not_allowed")
        allow = sorted(x.strip() for x in (r.header("allow") or "").split(","))
        self.assertEqual(allow, ["POST", "PUT"], r)
        self.assertEqual(d, (0, 0))
        r, d = self.where("POST", "/submit/form", "any.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(d, (1, 0))


class LoadBalancingTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.a = self.start_upstream()
        self.b = self.start_upstream()

    def test_round_robin_alternates(self):
        gw = self.start_gateway(make_config([self.a.address, self.b.address]))
        ports = []
        with Client(gw.port) as c:
            for _ in range(10):
                r = c.request("GET", "/ok")
                self.assertEqual(r.status, 200, r)
                ports.append(r.json()["upstream_port"])
        self.assertEqual(self.a.count(), 5)
        self.assertEqual(self.b.count(), 5)
        for i in range(1, len(ports)):
            self.assertNotEqual(ports[i], ports[i - 1], ports)

    def test_least_request_avoids_busy_endpoint(self):
        gw = self.start_gateway(make_config([self.a.address, self.b.address],
                                            cluster_opts={"lb": "least_request"}))
        slow_result = {}

        def slow():
            try:
                slow_result["r"] = request(gw.port, "GET", "/slow?ms=%d" % (scale(3) * 1000),
                                           timeout=scale(10))
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                slow_result["e"] = e
        t = threading.Thread(target=slow)
        t.start()
        try:
            busy_up = wait_until(
                lambda: self.a if self.a.count("/slow") else (self.b if self.b.count("/slow")
                                                              else None), scale(5))
            self.assertIsNotNone(busy_up, "the slow request never reached an upstream")
            idle_up = self.b if busy_up is self.a else self.a
            with Client(gw.port) as c:
                for _ in range(6):
                    r = c.request("GET", "/ok")
                    self.assertEqual(r.status, 200, r)
            self.assertEqual(idle_up.count("/ok"), 6)
            self.assertEqual(busy_up.count("/ok"), 0)
        finally:
            t.join(timeout=scale(15))
        self.assertEqual(slow_result.get("r").status if "r" in slow_result else slow_result,
                         200)


def _localhost_addresses(port):
    """What the system resolver gives for localhost, as the gateway asks (AI_ADDRCONFIG)."""
    infos = socket.getaddrinfo("localhost", port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_ADDRCONFIG)
    return sorted({info[4][0] for info in infos})


class HostnameEndpointTest(GatewayTest):
    """An endpoint given by name (`localhost:<port>`): looked up at start, each address an
    endpoint of its own, labelled "localhost:<port> (<address>)". No other name is looked up:
    names that need a DNS server stay out of the suite (the failure paths are unit-tested)."""

    def test_localhost_resolves_and_proxies(self):
        up = self.start_upstream()
        name = "localhost:%d" % up.port
        addresses = _localhost_addresses(up.port)
        opts = {"dns_refresh": "1s"}
        if any(":" in a for a in addresses):
            # The scripted upstream listens on 127.0.0.1 only: a refused ::1 is retried on the
            # other address.
            routes = make_config([name])["routes"]
            routes[0]["retry"] = {"attempts": 3, "on": ["connect-failure"]}
        else:
            routes = None
        gw = self.start_gateway(make_config([name], routes=routes, cluster_opts=opts))
        for _ in range(4):
            r = request(gw.port, "GET", "/ok")
            self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(up.count("/ok"), 4)

        status, clusters = gw.admin_json("/clusters")
        self.assertEqual(status, 200)
        backend = clusters[0]
        self.assertEqual(backend["dns"], [{"name": name, "addresses": addresses,
                                           "last_error": "", "consecutive_failures": 0}])
        labels = sorted(e["address"] for e in backend["endpoints"])
        self.assertEqual(labels, sorted("%s (%s)" % (name, a) for a in addresses))

        v4 = "%s (127.0.0.1)" % name
        self.assertIn(v4, labels)
        self.assertGreaterEqual(gw.metric_value("bulwark_endpoint_requests_total",
                                                {"cluster": "backend", "endpoint": v4}), 4)
        self.assertEqual(gw.metric_value("bulwark_dns_addresses",
                                         {"cluster": "backend", "endpoint": name}),
                         len(addresses))
        # Looked up again every second; the same answer builds no new snapshot.
        self.assertTrue(wait_until(
            lambda: (gw.metric_value("bulwark_dns_resolutions_total",
                                     {"endpoint": name, "result": "success"}) or 0) >= 2,
            scale(5), what="a second lookup"))
        self.assertEqual(gw.metric_value("bulwark_dns_changes_total", {"endpoint": name}), 1)
        self.assertEqual(gw.metric_value("bulwark_dns_resolutions_total",
                                         {"endpoint": name, "result": "failure"}), 0)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        # /config shows the endpoints as written.
        status, cfg = gw.admin_json("/config")
        self.assertEqual(cfg["clusters"][0]["endpoints"], [name])
        self.assertEqual(cfg["clusters"][0]["dns_refresh"], "1s")

    def test_reload_keeps_endpoint_state_by_address(self):
        up = self.start_upstream()
        name = "localhost:%d" % up.port
        config = make_config([name, up.address])
        gw = self.start_gateway(config)
        self.assertEqual(request(gw.port, "GET", "/ok").status, 200)
        status, clusters = gw.admin_json("/clusters")
        before = {e["address"]: e["requests_total"] for e in clusters[0]["endpoints"]}
        self.assertIn(up.address, before)  # the IP literal is labelled as written
        self.assertIn("%s (127.0.0.1)" % name, before)
        config["clusters"][0]["dns_refresh"] = "2s"
        gw.write_config(config)
        status, body = gw.admin_json("/reload", method="POST")
        self.assertEqual(status, 200, body)
        status, clusters = gw.admin_json("/clusters")
        after = {e["address"]: e["requests_total"] for e in clusters[0]["endpoints"]}
        self.assertEqual(after, before)
