"""Command line: --version, --check-config (ok, diagnostics with file:line:col, missing file),
and a run that refuses a broken config."""

import os
import re
import subprocess

from harness import BIN, GatewayTest, make_config, to_yaml, scale

VALID = """\
workers: 1
admin: {listen: 127.0.0.1:0}
listeners:
  - name: public
    listen: 127.0.0.1:0
routes:
  - name: api
    match: {path_prefix: /}
    cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
"""

# Line 9, column 5: `timeoutz` (block style) — and line 5, column 16: `header_reed` (flow).
TYPO = """\
workers: 1
admin: {listen: 127.0.0.1:0}
listeners:
  - name: public
    timeouts: {header_reed: 2s}
    listen: 127.0.0.1:0
routes:
  - name: api
    timeoutz: {request: 1s}
    cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
"""


class CliTest(GatewayTest):
    def run_bin(self, *args, timeout=None):
        if not BIN:
            self.skipTest("BULWARK_BIN is not set")
        return subprocess.run([BIN, *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout or scale(20))

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_version(self):
        r = self.run_bin("--version")
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout.strip(), r"^bulwark \d+\.\d+\.\d+\S*$")

    def test_check_config_ok(self):
        path = self.write("ok.yaml", VALID)
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("configuration ok: %s" % path, r.stdout)

    def test_check_config_generated_config_ok(self):
        # The configs the other modules generate must pass the validator too.
        path = self.write("gen.yaml", to_yaml(make_config(["127.0.0.1:9001"])) + "\n")
        r = self.run_bin("--check-config", "--config", path)
        with open(path) as f:
            self.assertEqual(r.returncode, 0, (r, f.read()))

    def test_every_example_config_is_valid(self):
        examples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "examples")
        names = sorted(n for n in os.listdir(examples) if n.endswith(".yaml"))
        self.assertIn("resilience.yaml", names)
        for name in names:
            r = self.run_bin("--check-config", "--config", os.path.join(examples, name))
            self.assertEqual(r.returncode, 0, (name, r))

    def test_check_config_typo_reports_position_path_and_hint(self):
        path = self.write("typo.yaml", TYPO)
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertNotIn("configuration ok", r.stdout)
        lines = [l for l in r.stderr.splitlines() if l.startswith(path + ":")]
        self.assertEqual(len(lines), 2, r.stderr)
        # Both errors, in file order.
        self.assertEqual(
            lines[0],
            "%s:5:16: listeners[0].timeouts.header_reed: unknown key 'header_reed'; "
            "did you mean 'header_read'?" % path)
        self.assertEqual(
            lines[1],
            "%s:9:5: routes[0].timeoutz: unknown key 'timeoutz'; did you mean 'timeouts'?"
            % path)

    def test_check_config_bad_value(self):
        path = self.write("bad.yaml", VALID.replace("    listen: 127.0.0.1:0\n",
                                                    "    listen: 127.0.0.1:0\n"
                                                    "    timeouts: {header_read: 10}\n"))
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, re.escape(path) +
                         r":6:29: listeners\[0\]\.timeouts\.header_read: expected a positive "
                         r"duration")

    def test_check_config_missing_file(self):
        path = os.path.join(self.tmp, "does-not-exist.yaml")
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("does-not-exist.yaml", r.stderr)
        self.assertNotIn("configuration ok", r.stdout)

    def test_run_with_broken_config_exits_nonzero(self):
        path = self.write("typo.yaml", TYPO)
        r = self.run_bin("--config", path)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("header_reed", r.stderr)

    def test_unknown_option(self):
        r = self.run_bin("--no-such-option")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertTrue(r.stderr.strip(), r)

    def test_busy_port_names_the_address_and_exits_one(self):
        # A socket bound without SO_REUSEPORT holds the port: the gateway cannot share it.
        import socket
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            path = self.write("busy.yaml", VALID.replace(
                "    listen: 127.0.0.1:0", "    listen: 127.0.0.1:%d" % port))
            r = self.run_bin("--config", path)
            self.assertEqual(r.returncode, 1, r)
            self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use" % port,
                          r.stderr)
            self.assertNotIn(".hpp", r.stderr)  # no library source locations for users
        finally:
            holder.close()

    def test_check_config_prints_security_warnings_and_still_passes(self):
        risky = """\
workers: 1
admin: {listen: "0.0.0.0:0", token: short}
listeners:
  - name: public
    listen: 0.0.0.0:0
    limits: {max_body_bytes: 2GiB}
routes:
  - name: api
    cluster: backend
    retry: {budget: {ratio: 1.5}}
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
    tls: {verify: false}
"""
        path = self.write("risky.yaml", risky)
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("configuration ok: %s" % path, r.stdout)
        lines = [l for l in r.stderr.splitlines() if l.startswith(path + ": warning: ")]
        paths = [l[len(path + ": warning: "):].split(":", 1)[0] for l in lines]
        self.assertEqual(paths, ["admin.listen", "admin.token", "listeners[0].listen",
                                 "listeners[0].limits.max_body_bytes",
                                 "routes[0].retry.budget.ratio", "clusters[0].tls.verify"],
                         r.stderr)
        # The defaults on loopback warn of nothing.
        r = self.run_bin("--check-config", "--config", self.write("ok.yaml", VALID))
        self.assertEqual(r.returncode, 0, r)
        self.assertNotIn("warning", r.stderr)

    def test_admin_off_loopback_without_a_token_is_an_error(self):
        path = self.write("open.yaml", VALID.replace("admin: {listen: 127.0.0.1:0}",
                                                     "admin: {listen: 0.0.0.0:9901}"))
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("%s:2:17: admin.listen: an admin listener off loopback needs a token"
                      % path, r.stderr)

    def test_start_up_logs_the_warnings(self):
        config = make_config(["127.0.0.1:9001"])
        config["routes"][0]["retry"] = {"budget": {"ratio": 1}}
        gw = self.start_gateway(config)
        self.assertTrue(gw.alive())
        err = gw.stderr()
        self.assertIn("configuration warning", err)
        self.assertIn("routes[0].retry.budget.ratio", err)

    def test_hostname_endpoints_are_checked_without_a_lookup(self):
        path = self.write("names.yaml", VALID.replace(
            "endpoints: [127.0.0.1:9001]", "endpoints: [api.example.com:443, localhost:9001]"))
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 0, r)
        path = self.write("bad-name.yaml", VALID.replace(
            "endpoints: [127.0.0.1:9001]", "endpoints: [\"api example:443\"]"))
        r = self.run_bin("--check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("clusters[0].endpoints[0]: expected host:port with an IP address or a "
                      "DNS name as the host, got 'api example:443'", r.stderr)
