"""Runs each vtc/*.vtc through varnishtest against a real gateway: the .vtc file's server s1 is
the gateway's only endpoint, its clients talk to the gateway. varnishtest scripts both peers
byte by byte, which suits framing checks. One gateway per file (macros: s1_addr, s1_port,
gw_sock)."""

import glob
import os
import shutil
import subprocess

from harness import GatewayTest, free_port, make_config, scale

VARNISHTEST = shutil.which("varnishtest") or (
    "/usr/bin/varnishtest" if os.path.exists("/usr/bin/varnishtest") else "")
HERE = os.path.dirname(os.path.abspath(__file__))


class VarnishtestTest(GatewayTest):
    def run_vtc(self, name):
        if not VARNISHTEST:
            self.skipTest("varnishtest is not installed")
        path = os.path.join(HERE, "vtc", name)
        last = None
        # The s1 port is picked before varnishtest binds it; retry if another process took it.
        for attempt in range(3):
            s1_port = free_port()
            gw = self.start_gateway(make_config(["127.0.0.1:%d" % s1_port]),
                                    subdir="gw-%s-%d" % (name, attempt))
            p = subprocess.run(
                [VARNISHTEST, "-t", str(int(scale(30))), "-Ds1_addr=127.0.0.1",
                 "-Ds1_port=%d" % s1_port, "-Dgw_sock=127.0.0.1 %d" % gw.port, path],
                capture_output=True, text=True, timeout=scale(60))
            gw.stop()
            if p.returncode == 0:
                return
            last = p
            if "Address already in use" not in p.stdout + p.stderr:
                break
        self.fail("varnishtest %s failed (exit %d):\n%s%s\n-- bulwark stderr --\n%s"
                  % (name, last.returncode, last.stdout[-6000:], last.stderr[-2000:],
                     gw.stderr()[-3000:]))

    def test_all_vtc_files_are_listed(self):
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "vtc", "*.vtc")))
        self.assertEqual(files, ["chunks.vtc", "framing.vtc", "smuggling.vtc"])

    def test_framing(self):
        self.run_vtc("framing.vtc")

    def test_smuggling(self):
        self.run_vtc("smuggling.vtc")

    def test_chunks(self):
        self.run_vtc("chunks.vtc")
