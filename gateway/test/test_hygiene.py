"""Request hygiene over real sockets: every 400 reason, 414 and 431, sent as raw bytes. Each
refusal must carry the reason header and JSON body, and nothing refused may reach the upstream.
Requests whose framing cannot be trusted must also close the connection (RFC 9112 §6.3)."""

import time

from harness import Client, GatewayTest, raw

H = "Host: gw.test\r\n"

# (name, raw request, status, accepted reasons, must close)
CASES = [
    # framing / smuggling
    ("cl_and_te", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, {"smuggling"}, True),
    # A proxy removes what Connection names; naming the framing would strip it upstream.
    ("connection_names_cl", "POST /ok HTTP/1.1\r\n" + H + "Connection: content-length\r\n"
     "Content-Length: 16\r\n\r\nGET /x HTTP/1.1\r\n", 400, {"smuggling"}, True),
    ("connection_names_te", "POST /ok HTTP/1.1\r\n" + H + "Connection: keep-alive, "
     "Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     {"smuggling"}, True),
    ("te_and_cl", "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
     "Content-Length: 5\r\n\r\n0\r\n\r\n", 400, {"smuggling"}, True),
    ("duplicate_cl", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 5\r\n"
     "Content-Length: 5\r\n\r\nhello", 400, {"duplicate_content_length"}, True),
    ("cl_list_same", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 5, 5\r\n\r\nhello",
     400, {"duplicate_content_length"}, True),
    ("cl_list_differs", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 5, 6\r\n\r\nhello",
     400, {"bad_content_length"}, True),
    ("cl_not_number", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: abc\r\n\r\n", 400,
     {"bad_content_length"}, True),
    ("cl_negative", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\n", 400,
     {"bad_content_length"}, True),
    ("cl_plus", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: +5\r\n\r\nhello", 400,
     {"bad_content_length"}, True),
    ("cl_hex", "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 0x5\r\n\r\nhello", 400,
     {"bad_content_length"}, True),
    ("te_gzip", "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\n", 400,
     {"bad_transfer_encoding"}, True),
    ("te_chunked_not_final", "POST /ok HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, {"bad_transfer_encoding"}, True),
    ("te_chunked_twice", "POST /ok HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400, {"bad_transfer_encoding"},
     True),
    ("te_two_fields", "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
     "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400, {"bad_transfer_encoding"}, True),
    ("te_on_http10", "POST /ok HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\n", 400, {"bad_transfer_encoding"}, True),
    # header syntax
    ("obs_fold", "GET /ok HTTP/1.1\r\n" + H + "X-A: one\r\n two\r\n\r\n", 400, {"obs_fold"},
     True),
    ("obs_fold_tab", "GET /ok HTTP/1.1\r\n" + H + "X-A: one\r\n\ttwo\r\n\r\n", 400,
     {"obs_fold"}, True),
    ("space_in_name", "GET /ok HTTP/1.1\r\n" + H + "Bad Name: x\r\n\r\n", 400,
     {"bad_header_name"}, True),
    ("space_before_colon", "GET /ok HTTP/1.1\r\n" + H + "X-A : x\r\n\r\n", 400,
     {"bad_header_name"}, True),
    ("control_in_name", "GET /ok HTTP/1.1\r\n" + H + "X-\x01A: x\r\n\r\n", 400,
     {"bad_header_name"}, True),
    ("nul_in_name", "GET /ok HTTP/1.1\r\n" + H + "X-\x00A: x\r\n\r\n", 400,
     {"bad_header_name", "bad_header_value"}, True),
    ("nul_in_value", "GET /ok HTTP/1.1\r\n" + H + "X-A: a\x00b\r\n\r\n", 400,
     {"bad_header_value"}, True),
    ("bare_cr_in_value", "GET /ok HTTP/1.1\r\n" + H + "X-A: a\rb\r\n\r\n", 400,
     {"bad_header_value"}, True),
    ("control_in_value", "GET /ok HTTP/1.1\r\n" + H + "X-A: a\x01b\r\n\r\n", 400,
     {"bad_header_value"}, True),
    ("del_in_value", "GET /ok HTTP/1.1\r\n" + H + "X-A: a\x7fb\r\n\r\n", 400,
     {"bad_header_value"}, True),
    ("bare_lf_line_end", "GET /ok HTTP/1.1\r\n" + H + "X-A: a\nX-B: b\r\n\r\n", 400,
     {"bad_header_value"}, True),
    # host
    ("missing_host", "GET /ok HTTP/1.1\r\nX-A: b\r\n\r\n", 400, {"missing_host"}, True),
    ("duplicate_host", "GET /ok HTTP/1.1\r\n" + H + "Host: other.test\r\n\r\n", 400,
     {"duplicate_host"}, True),
    ("bad_host", "GET /ok HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, {"bad_host"}, True),
    ("bad_host_port", "GET /ok HTTP/1.1\r\nHost: gw.test:http\r\n\r\n", 400, {"bad_host"},
     True),
    # request target
    ("traversal_plain", "GET /../etc/passwd HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_climb", "GET /ok/a/../../../etc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_backslash", "GET /..\\etc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_encoded", "GET /%2e%2e%2fetc/passwd HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_encoded_upper", "GET /%2E%2E%2Fetc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_dots_encoded", "GET /ok/%2e%2e/%2e%2e/etc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_double_encoded", "GET /%252e%252e%252fetc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("traversal_encoded_backslash", "GET /ok/..%5c..%5cetc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("encoded_backslash", "GET /ok/a%5cb HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("overlong_utf8_dot", "GET /%c0%ae%c0%ae/etc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("overlong_utf8_slash", "GET /ok/..%c0%afetc HTTP/1.1\r\n" + H + "\r\n", 400,
     {"path_traversal"}, False),
    ("encoded_null", "GET /ok/a%00b HTTP/1.1\r\n" + H + "\r\n", 400, {"encoded_null"},
     False),
    ("encoded_null_query", "GET /ok?x=%00 HTTP/1.1\r\n" + H + "\r\n", 400,
     {"encoded_null"}, False),
    ("bad_percent", "GET /ok/a%zzb HTTP/1.1\r\n" + H + "\r\n", 400, {"bad_encoding"},
     False),
    ("truncated_percent", "GET /ok/a%2 HTTP/1.1\r\n" + H + "\r\n", 400, {"bad_encoding"},
     False),
    ("control_in_target", "GET /ok/a\x01b HTTP/1.1\r\n" + H + "\r\n", 400,
     {"bad_characters"}, False),
    ("non_ascii_target", "GET /ok/\xc3\xa9 HTTP/1.1\r\n" + H + "\r\n", 400,
     {"bad_characters"}, False),
    ("relative_target", "GET ok HTTP/1.1\r\n" + H + "\r\n", 400, {"bad_request_target"},
     False),
    ("asterisk_get", "GET * HTTP/1.1\r\n" + H + "\r\n", 400, {"bad_request_target"}, False),
    # not HTTP at all
    ("garbage_line", "HELLO\r\n\r\n", 400, {"malformed"}, True),
]


class HygieneTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        # One gateway for the whole table (each case uses a fresh connection).
        import tempfile
        from harness import Gateway, make_config
        from upstream import ScriptedUpstream
        cls.up = ScriptedUpstream()
        cls.tmpdir = tempfile.mkdtemp(prefix="bulwark-it-hygiene-")
        cls.gw = Gateway(cls.tmpdir, make_config([cls.up.address]))
        try:
            cls.gw.start()
        except BaseException:
            cls.up.close()
            cls.gw.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        import shutil
        cls.gw.stop()
        err = cls.gw.stderr()
        cls.up.close()
        shutil.rmtree(cls.tmpdir, ignore_errors=True)
        if "Sanitizer" in err or "runtime error:" in err:
            raise AssertionError("sanitizer report in bulwark stderr:\n%s" % err[-6000:])

    def test_refusals(self):
        start = self.up.count()
        for name, data, status, reasons, must_close in CASES:
            with self.subTest(case=name):
                before = self.up.count()
                resp, closed = raw(self.gw.port, data.encode("latin-1"))
                self.assertEqual(resp.status, status, (name, resp))
                reason = resp.header("x-bulwark-reason")
                self.assertIn(reason, reasons, (name, resp))
                self.assertGatewayResponse(resp, status, reason)
                if must_close:
                    self.assertTrue(closed, "%s: connection left open after a framing error"
                                    % name)
                # Nothing refused reaches the upstream.
                self.assertEqual(self.up.count(), before, name)
        time.sleep(0.3)  # grace for a late arrival, then the total must still be unchanged
        self.assertEqual(self.up.count(), start)

    def test_bad_chunk_framing_400(self):
        # A chunk framing error is only found while the body streams (the header may already
        # be upstream): the client gets 400 malformed and close, the upstream never gets a
        # complete request.
        completed = self.up.completed_count()
        data = ("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                "zz\r\nhello\r\n0\r\n\r\n")
        resp, closed = raw(self.gw.port, data.encode())
        self.assertGatewayResponse(resp, 400, "malformed")
        self.assertTrue(closed)
        time.sleep(0.3)
        self.assertEqual(self.up.completed_count(), completed)

    def test_refusals_are_logged_and_counted(self):
        resp, _ = raw(self.gw.port, ("GET /../x HTTP/1.1\r\n" + H +
                                     "X-Request-Id: hyg-log-1\r\n\r\n").encode())
        self.assertGatewayResponse(resp, 400, "path_traversal")
        rec = self.gw.wait_access(lambda r: r.get("request_id") == "hyg-log-1")
        self.assertIsNotNone(rec, "no access log line for the refused request")
        self.assertEqual(rec["status"], 400)
        self.assertEqual(rec["reason"], "path_traversal")
        self.assertEqual(rec["attempts"], 0)
        self.assertEqual(rec["endpoint"], "")
        v = self.gw.metric_value("bulwark_gateway_responses_total",
                                 {"code": "400", "reason": "path_traversal"})
        self.assertIsNotNone(v, "bulwark_gateway_responses_total has no path_traversal series")
        self.assertGreaterEqual(v, 1)

    def test_accepted_controls_do_reach_upstream(self):
        # Counterparts of the refusals that must pass: they prove the table is not refusing
        # everything.
        ok = [
            "GET /ok/a/./b/../c HTTP/1.1\r\n" + H + "\r\n",
            "GET /ok HTTP/1.0\r\n\r\n",  # HTTP/1.0 may omit Host
            "GET /ok HTTP/1.1\r\nHost: gw.test:8080\r\n\r\n",
            "GET /ok HTTP/1.1\r\n" + H + "X-A: tab\there \xe9 obs-text\r\n\r\n",
            "POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n0\r\n\r\n",
            "POST /echo HTTP/1.1\r\n" + H + "Content-Length: 3\r\n\r\nabc",
            "GET http://gw.test/ok/abs HTTP/1.1\r\n" + H + "\r\n",
            "GET /ok/%2e%2e-not-a-dot-segment HTTP/1.1\r\n" + H + "\r\n",
        ]
        for data in ok:
            with self.subTest(request=data[:40]):
                before = self.up.count()
                resp, _ = raw(self.gw.port, data.encode("latin-1"))
                self.assertEqual(resp.status, 200, (data, resp))
                self.assertEqual(self.up.count(), before + 1, data)

    def test_uri_too_long_414(self):
        before = self.up.count()
        target = "/ok/" + "a" * 2100
        resp, _ = raw(self.gw.port, ("GET %s HTTP/1.1\r\n%s\r\n" % (target, H)).encode())
        self.assertGatewayResponse(resp, 414, "uri_too_long")
        # Exactly at the limit is fine.
        target = "/ok/" + "a" * (2048 - 4)
        resp, _ = raw(self.gw.port, ("GET %s HTTP/1.1\r\n%s\r\n" % (target, H)).encode())
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(self.up.count(), before + 1)

    def test_too_many_headers_431(self):
        before = self.up.count()
        many = "".join("X-H%d: v\r\n" % i for i in range(100))  # + Host = 101 fields
        resp, _ = raw(self.gw.port, ("GET /ok HTTP/1.1\r\n" + H + many + "\r\n").encode())
        self.assertGatewayResponse(resp, 431, "too_many_headers")
        self.assertEqual(self.up.count(), before)
        # 100 fields are accepted.
        many = "".join("X-H%d: v\r\n" % i for i in range(99))
        resp, _ = raw(self.gw.port, ("GET /ok HTTP/1.1\r\n" + H + many + "\r\n").encode())
        self.assertEqual(resp.status, 200, resp)

    def test_headers_too_large_431(self):
        before = self.up.count()
        big = "X-Big: " + "b" * (9 * 1024) + "\r\n"
        resp, _ = raw(self.gw.port, ("GET /ok HTTP/1.1\r\n" + H + big + "\r\n").encode())
        self.assertGatewayResponse(resp, 431, "headers_too_large")
        self.assertEqual(self.up.count(), before)

    def test_refusal_on_keep_alive_connection_after_good_request(self):
        # A good request, then a smuggling attempt on the same connection: the second is refused
        # and the connection closed; the upstream saw only the first.
        before = self.up.count()
        with Client(self.gw.port) as c:
            r = c.request("GET", "/ok")
            self.assertEqual(r.status, 200)
            c.send("POST /ok HTTP/1.1\r\n" + H + "Content-Length: 4\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"
                   + H + "\r\n")
            r = c.read_response()
            self.assertGatewayResponse(r, 400, "smuggling")
            self.assertTrue(c.wait_closed(2.0), "connection kept after smuggling attempt")
        self.assertEqual(self.up.count(), before + 1)
        self.assertEqual(self.up.count("/smuggled"), 0)
