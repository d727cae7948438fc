"""TLS: termination on a listener (Python's ssl client and curl; a client capped at TLS 1.1
refused; SNI choosing the certificate; a client that never finishes its handshake cut at the
deadline; client certificates and the forwarded subject; certificates rotated by a reload) and
TLS to an upstream (an nginx https upstream: the right CA, a wrong CA answered 502
upstream_tls, the SNI nginx saw, the connection kept alive and sessions resumed). A test CA is
made by the suite with the openssl command line."""

import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings

from harness import (Client, GatewayTest, PeerClosed, TestCA, make_config, request, scale,
                     wait_until)


class TlsClient(Client):
    """A Client whose connection is TLS (Python's ssl module)."""

    def __init__(self, port, context, server_hostname="localhost", timeout=5.0):
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(self.raw, server_hostname=server_hostname)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False


def tls_listener(tls):
    config = {"name": "public", "listen": "127.0.0.1:0", "tls": tls,
              "limits": {"max_connections": 1000, "max_concurrent_requests": 1000},
              "timeouts": {"header_read": "2s", "idle": "60s", "request": "30s"}}
    return [config]


class TlsTerminationTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.ca = TestCA(self.tmp)
        self.cert, self.key = self.ca.issue("localhost", dns=["localhost"], ips=["127.0.0.1"])
        self.up = self.start_upstream()

    def client_context(self, **kw):
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def gateway(self, **tls):
        spec = {"cert": self.cert, "key": self.key}
        spec.update(tls)
        return self.start_gateway(make_config([self.up.address], listeners=tls_listener(spec)))

    def test_python_and_curl_get_answers_over_tls_and_the_upstream_learns_it_was_https(self):
        gw = self.gateway()
        with TlsClient(gw.port, self.client_context()) as c:
            self.assertEqual(c.sock.version(), "TLSv1.3")
            self.assertEqual(c.sock.selected_alpn_protocol(), None)
            for _ in range(3):  # keep-alive over one TLS connection
                resp = c.request("GET", "/ok")
                self.assertEqual(resp.status, 200, resp)
        seen = self.up.last_request("/ok")
        self.assertEqual(seen.header("x-forwarded-proto"), "https")
        self.assertEqual(self.up.connections_accepted, 1)
        out = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", self.ca.cert, "-o",
                              "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                              "https://localhost:%d/ok" % gw.port],
                             capture_output=True, timeout=30)
        self.assertEqual(out.stdout.decode(), "200 0", out.stderr)
        self.assertEqual(gw.metric_value("bulwark_listener_tls_handshakes_total",
                                         {"result": "ok"}), 2)
        self.assertEqual(gw.metric_value("bulwark_listener_tls_connections_total",
                                         {"version": "TLSv1.3"}), 2)
        _, stats = gw.admin_json("/stats")
        self.assertEqual(stats["listeners"][0]["tls"]["handshakes"]["ok"], 2)
        self.assertEqual(stats["listeners"][0]["tls"]["TLSv1.3"], 2)
        self.assertIn("<h2>TLS</h2>", gw.admin("/").body.decode())

    def test_alpn_selects_http11_and_tls12_can_be_the_minimum(self):
        gw = self.gateway(min_version="1.2")
        ctx = self.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with TlsClient(gw.port, ctx) as c:
            self.assertEqual(c.sock.version(), "TLSv1.2")
            self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
            self.assertEqual(c.request("GET", "/ok").status, 200)

    def test_a_client_capped_below_the_minimum_is_refused(self):
        gw = self.gateway(min_version="1.3")
        ctx = self.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with self.assertRaises(ssl.SSLError):
            TlsClient(gw.port, ctx)
        # TLS 1.1 (allowed by this client at security level 0): refused by the gateway.
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the point of this client
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            TlsClient(gw.port, old)
        self.assertTrue(wait_until(
            lambda: gw.metric_value("bulwark_listener_tls_handshakes_total",
                                    {"result": "protocol_version"}) == 2, scale(5)))
        self.assertEqual(self.up.count(), 0)

    def test_sni_picks_the_certificate(self):
        other_cert, other_key = self.ca.issue("other.test", dns=["other.test", "*.other.test"])
        gw = self.gateway(certificates=[{"cert": other_cert, "key": other_key}])
        for name, cn in [("localhost", "localhost"), ("other.test", "other.test"),
                         ("api.other.test", "other.test")]:
            ctx = self.client_context()
            with TlsClient(gw.port, ctx, server_hostname=name) as c:
                subject = dict(x[0] for x in c.sock.getpeercert()["subject"])
                self.assertEqual(subject["commonName"], cn, name)
                self.assertEqual(c.request("GET", "/ok", host=name).status, 200)

    def test_a_client_that_never_finishes_its_handshake_is_cut_at_the_deadline(self):
        gw = self.gateway(handshake_timeout="300ms")
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=scale(5)) as s:
            s.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
            try:
                data = s.recv(1024)
            except ConnectionResetError:
                data = b""
        elapsed = time.monotonic() - start
        self.assertEqual(data, b"")
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, scale(2))
        self.assertTrue(wait_until(
            lambda: gw.metric_value("bulwark_listener_tls_handshakes_total",
                                    {"result": "timeout"}) == 1, scale(5)))

    def test_client_certificates_are_required_and_their_subject_forwarded(self):
        client_ca = TestCA(self.tmp, "Client CA")
        cert, key = client_ca.issue("alice", client=True)
        gw = self.gateway(client_ca=client_ca.cert, require_client_cert=True)
        bare = self.client_context()
        with self.assertRaises((ssl.SSLError, ConnectionResetError, PeerClosed)):
            with TlsClient(gw.port, bare) as c:  # TLS 1.3: refused after the handshake
                c.request("GET", "/ok")
        ctx = self.client_context()
        ctx.load_cert_chain(cert, key)
        with TlsClient(gw.port, ctx) as c:
            resp = c.request("GET", "/ok", headers=[("X-Client-Cert-Subject", "CN=mallory")])
            self.assertEqual(resp.status, 200)
        seen = self.up.last_request("/ok")
        self.assertEqual(seen.header("x-client-cert-subject"), "CN=alice")
        self.assertEqual([v for n, v in seen.headers if n.lower() == "x-client-cert-subject"],
                         ["CN=alice"])
        self.assertGreaterEqual(gw.metric_value("bulwark_listener_tls_handshakes_total",
                                                {"result": "client_certificate"}), 1)

    def test_a_reload_rotates_the_certificate_without_dropping_connections(self):
        gw = self.gateway()
        kept = TlsClient(gw.port, self.client_context())
        self.addCleanup(kept.close)
        self.assertEqual(kept.request("GET", "/ok").status, 200)
        new_ca = TestCA(self.tmp, "Second CA")
        cert, key = new_ca.issue("localhost", dns=["localhost"])
        config = make_config([self.up.address],
                             listeners=tls_listener({"cert": cert, "key": key}))
        gw.write_config(config)
        status, doc = gw.admin_json("/reload", method="POST")
        self.assertEqual(status, 200, doc)
        ctx = ssl.create_default_context(cafile=new_ca.cert)
        with TlsClient(gw.port, ctx) as c:  # only the new CA trusts the new certificate
            self.assertEqual(c.request("GET", "/ok").status, 200)
        self.assertEqual(kept.request("GET", "/ok").status, 200)  # the old connection lives on

    def test_the_admin_listener_speaks_tls_when_it_has_a_certificate(self):
        config = make_config([self.up.address])
        config["admin"]["tls"] = {"cert": self.cert, "key": self.key}
        gw = self.start_gateway(config)
        with TlsClient(gw.admin_port, self.client_context()) as c:
            resp = c.request("GET", "/healthz")
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(c.request("GET", "/stats").status, 200)
        with self.assertRaises((PeerClosed, OSError, ValueError)):
            with Client(gw.admin_port) as c:  # plain HTTP gets no answer
                c.request("GET", "/healthz", timeout=scale(2))

    def test_bad_certificate_files_are_config_errors_naming_the_file(self):
        bad = os.path.join(self.tmp, "not-a-cert.pem")
        with open(bad, "w") as f:
            f.write("hello\n")
        config = make_config([self.up.address],
                             listeners=tls_listener({"cert": bad, "key": self.key}))
        path = os.path.join(self.tmp, "bad.yaml")
        from harness import to_yaml
        with open(path, "w") as f:
            f.write(to_yaml(config))
        out = subprocess.run([os.environ["BULWARK_BIN"], "--check-config", "--config", path],
                             capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("listeners[0].tls.cert: no PEM certificate in " + bad,
                      out.stderr.decode())
        other_cert, _ = self.ca.issue("other.test", dns=["other.test"])
        config["listeners"][0]["tls"] = {"cert": other_cert, "key": self.key}
        with open(path, "w") as f:
            f.write(to_yaml(config))
        out = subprocess.run([os.environ["BULWARK_BIN"], "--check-config", "--config", path],
                             capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("does not belong to the certificate", out.stderr.decode())


class UpstreamTlsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.ca = TestCA(self.tmp)
        cert, key = self.ca.issue("localhost", dns=["localhost"])
        self.nginx = self.start_nginx(tls=(cert, key))

    def gateway(self, subdir="gw", pool_max_idle=16, **tls):
        config = make_config(["127.0.0.1:%d" % self.nginx.port])
        config["clusters"][0]["pool"]["max_idle"] = pool_max_idle
        spec = {"sni": "localhost", "ca_file": self.ca.cert}
        spec.update(tls)
        config["clusters"][0]["tls"] = spec
        return self.start_gateway(config, subdir=subdir)

    def test_the_right_ca_gets_answers_over_one_kept_alive_tls_connection(self):
        # The endpoint by hostname: SNI and verification default to it.
        config = make_config(["localhost:%d" % self.nginx.port])
        config["clusters"][0]["tls"] = {"ca_file": self.ca.cert}
        gw = self.start_gateway(config)
        with Client(gw.port) as c:
            bodies = [c.request("GET", "/tls").body.decode() for _ in range(5)]
        for b in bodies:
            self.assertTrue(b.startswith("sni=localhost;"), b)
        conns = {b.split(";")[1] for b in bodies}
        self.assertEqual(len(conns), 1, bodies)  # nginx's connection number never changed
        self.assertEqual(gw.metric_value("bulwark_cluster_tls_handshakes_total",
                                         {"cluster": "backend", "result": "ok"}), 1)

    def test_a_new_connection_resumes_the_session(self):
        gw = self.gateway(pool_max_idle=0)  # no idle connection kept: one per request
        resumed = []
        with Client(gw.port) as c:
            for _ in range(4):
                resp = c.request("GET", "/tls")
                self.assertEqual(resp.status, 200)
                resumed.append(resp.body.decode().strip().split(";")[2])
        self.assertEqual(resumed[0], "reused=.")
        self.assertEqual(resumed[1:], ["reused=r"] * 3)  # nginx: "r" for a resumed session
        self.assertEqual(gw.metric_value("bulwark_cluster_tls_handshakes_total",
                                         {"cluster": "backend", "result": "resumed"}), 3)

    def test_a_wrong_ca_is_502_upstream_tls(self):
        wrong = TestCA(self.tmp, "Wrong CA")
        gw = self.gateway(ca_file=wrong.cert)
        resp = request(gw.port, "GET", "/tls")
        self.assertGatewayResponse(resp, 502, "upstream_tls")
        self.assertEqual(gw.metric_value("bulwark_cluster_tls_handshakes_total",
                                         {"cluster": "backend", "result": "verify_failed"}), 1)
        self.assertTrue(wait_until(lambda: "certificate verify failed" in gw.stderr() or
                                   "unable to get local issuer" in gw.stderr(), scale(5)))

    def test_a_wrong_name_is_refused_and_verify_false_accepts_it(self):
        gw = self.gateway(sni="elsewhere.test")
        self.assertGatewayResponse(request(gw.port, "GET", "/tls"), 502, "upstream_tls")
        relaxed = self.gateway(subdir="relaxed", sni="elsewhere.test", verify=False)
        self.assertEqual(request(relaxed.port, "GET", "/tls").status, 200)
