"""JWT authentication (routes[].auth.jwt) end to end: keys made with the openssl command line, a
JWK Set written from them, tokens signed here (HS256 with hmac, RS256 and ES256 through
`openssl dgst -sign`). Asserts 401 with WWW-Authenticate without a token, 403 with the reason of
each refusal and nothing upstream, what the upstream sees of an accepted request (the claim
headers, no token, the other cookies), a reload that brings a new key, --check-config naming a
bad key file, /config hiding the secret, and bulwark_auth_results_total."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Client, GatewayTest, make_config, request, scale, to_yaml

SECRET = "an-hs256-secret-of-at-least-32-bytes!"
ISSUER = "https://idp.example"


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True,
                          timeout=60).stdout


def der_ecdsa_to_raw(der, size=32):
    """A DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as JOSE's r||s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        value = der[i + 2:i + 2 + n].lstrip(b"\x00")
        out += value.rjust(size, b"\x00")
        i += 2 + n
    return out


class Keys:
    """An RSA and a P-256 key pair made with the openssl command line in `folder`."""

    def __init__(self, folder, name):
        self.rsa = os.path.join(folder, name + "-rsa.pem")
        self.ec = os.path.join(folder, name + "-ec.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", self.rsa)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", self.ec)
        self.name = name

    def jwks(self):
        modulus = openssl("rsa", "-in", self.rsa, "-noout", "-modulus").decode()
        n = bytes.fromhex(modulus.strip().split("=", 1)[1])
        # The public key's DER (SubjectPublicKeyInfo) ends with the point 04||x||y.
        spki = openssl("pkey", "-in", self.ec, "-pubout", "-outform", "DER")
        x, y = spki[-64:-32], spki[-32:]
        return [
            {"kty": "RSA", "kid": self.name + "-rsa", "use": "sig", "n": b64url(n),
             "e": b64url((65537).to_bytes(3, "big"))},
            {"kty": "EC", "kid": self.name + "-ec", "crv": "P-256", "x": b64url(x),
             "y": b64url(y)},
        ]

    def sign(self, alg, signing_input):
        key = self.rsa if alg == "RS256" else self.ec
        sig = openssl("dgst", "-sha256", "-sign", key, data=signing_input.encode())
        return sig if alg == "RS256" else der_ecdsa_to_raw(sig)


def claims(**extra):
    now = int(time.time())
    out = {"iss": ISSUER, "aud": "api", "sub": "user-42", "iat": now - 5, "exp": now + 300}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def hs256(payload, header=None, secret=SECRET):
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}))
    signing_input = head + "." + b64url(json.dumps(payload))
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def signed(keys, alg, payload, kid=None):
    header = {"alg": alg, "kid": kid or "%s-%s" % (keys.name, "rsa" if alg == "RS256" else "ec")}
    signing_input = b64url(json.dumps(header)) + "." + b64url(json.dumps(payload))
    return signing_input + "." + b64url(keys.sign(alg, signing_input))


def bearer(token):
    return [("Authorization", "Bearer " + token)]


class AuthTest(GatewayTest):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("the openssl command line is not installed (Debian: openssl)")
        cls.keydir = tempfile.mkdtemp(prefix="bulwark-auth-keys-")
        cls.keys = Keys(cls.keydir, "k1")
        cls.other = Keys(cls.keydir, "k2")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.keydir, ignore_errors=True)

    def write_jwks(self, keys_list, name="jwks.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump({"keys": [k for keys in keys_list for k in keys.jwks()]}, f)
        return path

    def auth_config(self, jwks_path, **jwt):
        spec = {"issuer": ISSUER, "audiences": ["api"], "algorithms": ["RS256", "ES256", "HS256"],
                "jwks_file": jwks_path, "secret": SECRET, "required_claims": ["sub"],
                "forward_claims": {"sub": "X-User-Id"}, "cookie": "session"}
        spec.update(jwt)
        cfg = make_config([self.up.address])
        cfg["routes"][0]["auth"] = {"jwt": spec}
        return cfg

    def setUp(self):
        super().setUp()
        self.up = self.start_upstream()
        self.jwks = self.write_jwks([self.keys])
        self.gw = self.start_gateway(self.auth_config(self.jwks))

    def get(self, headers=None, path="/ok"):
        return request(self.gw.port, "GET", path, headers=headers)

    def test_no_token_is_401_with_a_bearer_challenge(self):
        resp = self.get([("Authorization", "Basic dXNlcjpwYXNz")])
        self.assertGatewayResponse(resp, 401, "jwt_missing")
        self.assertEqual(resp.header("WWW-Authenticate"), 'Bearer realm="api"')
        self.assertEqual(self.up.count(), 0)

    def test_a_valid_token_reaches_the_upstream_as_claims_without_the_token(self):
        token = hs256(claims())
        resp = self.get(bearer(token) + [("X-User-Id", "spoofed"), ("X-Keep", "1")])
        self.assertEqual(resp.status, 200, resp)
        seen = self.up.last_request()
        self.assertEqual(seen.header_all("X-User-Id"), ["user-42"])
        self.assertIsNone(seen.header("Authorization"))
        self.assertEqual(seen.header("X-Keep"), "1")
        for alg in ("RS256", "ES256"):
            resp = self.get(bearer(signed(self.keys, alg, claims(sub="pk-" + alg))))
            self.assertEqual(resp.status, 200, (alg, resp))
            self.assertEqual(self.up.last_request().header("X-User-Id"), "pk-" + alg)

    def test_a_token_in_the_cookie_is_stripped_and_the_other_cookies_go_on(self):
        token = signed(self.keys, "ES256", claims())
        resp = self.get([("Cookie", "theme=dark; session=%s; lang=en" % token)])
        self.assertEqual(resp.status, 200, resp)
        seen = self.up.last_request()
        self.assertEqual(seen.header_all("Cookie"), ["theme=dark; lang=en"])
        self.assertEqual(seen.header("X-User-Id"), "user-42")

    def test_refused_tokens_get_403_with_their_reason_and_never_reach_the_upstream(self):
        good = hs256(claims())
        head, payload, _ = good.split(".")
        cases = [
            (hs256(claims(exp=int(time.time()) - 120)), "jwt_expired"),
            (hs256(claims(nbf=int(time.time()) + 600)), "jwt_not_yet_valid"),
            (hs256(claims(iss="https://evil.example")), "jwt_issuer"),
            (hs256(claims(aud=["web", "mobile"])), "jwt_audience"),
            (hs256(claims(sub=None)), "jwt_missing_claim"),
            (hs256(claims(), secret="another-secret-of-at-least-32-bytes!!"), "jwt_signature"),
            (b64url('{"alg":"none"}') + "." + payload + ".", "jwt_algorithm"),
            (hs256(claims(), header={"alg": "HS256", "kid": "k1-rsa"}), "jwt_algorithm"),
            (signed(self.other, "RS256", claims()), "jwt_unknown_key"),
            (head + "." + payload, "jwt_malformed"),
            ("not-a-token", "jwt_malformed"),
            (head + "*." + payload + ".x", "jwt_malformed"),
        ]
        for token, reason in cases:
            resp = self.get(bearer(token))
            self.assertGatewayResponse(resp, 403, reason)
            self.assertIsNone(resp.header("WWW-Authenticate"))
        self.assertEqual(self.up.count(), 0)
        # Each result is counted.
        self.assertEqual(self.gw.metric_value("bulwark_auth_results_total",
                                              {"route": "api", "result": "jwt_algorithm"}), 2)
        self.assertEqual(self.gw.metric_value("bulwark_auth_results_total",
                                              {"route": "api", "result": "jwt_malformed"}), 3)
        self.assertEqual(self.gw.metric_value("bulwark_gateway_responses_total",
                                              {"code": "403", "reason": "jwt_expired"}), 1)

    def test_oversized_tokens_are_malformed(self):
        self.gw.write_config(self.auth_config(self.jwks, max_token_bytes=256))
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual((status, doc["result"]), (200, "ok"), doc)
        big = hs256(claims(pad="x" * 400))
        self.assertGatewayResponse(self.get(bearer(big)), 403, "jwt_malformed")
        self.assertEqual(self.get(bearer(hs256(claims()))).status, 200)

    def test_results_are_counted(self):
        self.assertEqual(self.gw.metric_value("bulwark_auth_results_total",
                                              {"route": "api", "result": "ok"}), 0)
        with Client(self.gw.port) as c:
            for _ in range(3):
                self.assertEqual(c.request("GET", "/ok", headers=bearer(hs256(claims()))).status,
                                 200)
            self.assertEqual(c.request("GET", "/ok").status, 401)
        self.assertEqual(self.gw.metric_value("bulwark_auth_results_total",
                                              {"route": "api", "result": "ok"}), 3)
        self.assertEqual(self.gw.metric_value("bulwark_auth_results_total",
                                              {"route": "api", "result": "jwt_missing"}), 1)
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=self.gw.metrics(),
                               capture_output=True, text=True, timeout=scale(30))
            self.assertEqual(p.returncode, 0, "promtool check metrics:\n%s%s" % (p.stdout,
                                                                                p.stderr))

    def test_a_reload_reads_the_key_file_again(self):
        token = signed(self.other, "RS256", claims())
        self.assertGatewayResponse(self.get(bearer(token)), 403, "jwt_unknown_key")
        # The key set now holds both key pairs; the config file itself is unchanged.
        self.write_jwks([self.keys, self.other])
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual((status, doc["result"]), (200, "ok"), doc)
        self.assertEqual(self.get(bearer(token)).status, 200)
        # A key file that became unusable fails the reload; the keys in force stay.
        with open(self.jwks, "w") as f:
            f.write('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}')
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual((status, doc["result"]), (400, "error"), doc)
        self.assertIn("keys[0]: RSA key of 17 bits", doc["errors"][0])
        self.assertIn(self.jwks, doc["errors"][0])
        self.assertEqual(self.get(bearer(token)).status, 200)

    def test_a_reload_that_drops_a_key_refuses_its_tokens_even_after_they_were_cached(self):
        token = signed(self.keys, "ES256", claims())
        for _ in range(3):  # the second and third are served from the verified-token cache
            self.assertEqual(self.get(bearer(token)).status, 200)
        self.write_jwks([self.other])  # k1 revoked
        status, doc = self.gw.admin_json("/reload", method="POST")
        self.assertEqual((status, doc["result"]), (200, "ok"), doc)
        self.assertGatewayResponse(self.get(bearer(token)), 403, "jwt_unknown_key")
        self.assertEqual(self.get(bearer(signed(self.other, "ES256", claims()))).status, 200)

    def test_config_hides_the_secret(self):
        status, doc = self.gw.admin_json("/config")
        self.assertEqual(status, 200)
        jwt = doc["routes"][0]["auth"]["jwt"]
        self.assertEqual(jwt["secret"], "<redacted>")
        self.assertEqual(jwt["strip_token"], True)
        self.assertEqual(jwt["max_token_bytes"], 8192)
        self.assertEqual(jwt["jwks_file"], self.jwks)
        self.assertNotIn(SECRET, self.gw.admin("/config").body.decode())

    def test_check_config_names_a_bad_key_file(self):
        path = os.path.join(self.tmp, "check.yaml")

        def check(cfg):
            with open(path, "w") as f:
                f.write(to_yaml(cfg) + "\n")
            return subprocess.run([BIN, "--check-config", "--config", path],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=scale(20))

        missing = os.path.join(self.tmp, "nowhere", "jwks.json")
        r = check(self.auth_config(missing))
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"%s:\d+:\d+: routes\[0\]\.auth\.jwt\.jwks_file: cannot read "
                         r"'%s'" % (path.replace(".", r"\."), missing.replace(".", r"\.")))
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"keys": [self.keys.jwks()[0], {"kty": "EC", "crv": "P-256", "x": "AA"}]},
                      f)
        r = check(self.auth_config(bad))
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("'%s' is not a usable JWK Set: keys[1]: missing 'y'" % bad, r.stderr)
        r = check(self.auth_config(self.jwks))
        self.assertEqual(r.returncode, 0, r)
