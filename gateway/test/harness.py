"""Harness for the gateway integration tests: runs the real `bulwark` binary and real peers on
127.0.0.1 with ephemeral ports, and speaks raw HTTP/1.1 to them.

  Gateway        writes a config, starts `bulwark --config F --ready-file R`, waits (bounded)
                 for the ready file, exposes the ports, admin helpers, the captured stderr and
                 access log; stop() sends SIGTERM, waits bounded, then SIGKILL — always by PID.
  Client         one raw client connection: send bytes, read one full response (Content-Length,
                 chunked or close-delimited) with a deadline; tells whether the peer closed.
  Nginx          nginx as an upstream (daemon off, master_process off) on a free port.
  GatewayTest    unittest.TestCase base class whose helpers register every process and socket
                 for cleanup, so that nothing outlives a test whatever fails.

Environment: BULWARK_BIN (path of the binary, required), BULWARK_SANITIZED=1 (a sanitizer build:
sizes shrink and time bounds grow, see scale()/SANITIZED).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from upstream import HeaderAccess, closed_port

BIN = os.environ.get("BULWARK_BIN", "")
SANITIZED = os.environ.get("BULWARK_SANITIZED", "") not in ("", "0")
TIME_SCALE = 4.0 if SANITIZED else 1.0


def scale(seconds):
    """A time bound, raised for sanitizer builds."""
    return seconds * TIME_SCALE


def free_port():
    """A port that was free a moment ago (bind to 0, close). Callers retry on bind failure."""
    return closed_port()


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls `predicate` until true or `timeout` seconds have passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---- YAML ------------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z0-9_./:\-][A-Za-z0-9_./:\- ]*$")


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not s.endswith(" ") and ": " not in s:
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts/lists/scalars (enough for gateway configs)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                inner = to_yaml(v, indent + 2).split("\n")
                inner[0] = pad + "- " + inner[0][indent + 2:]
                out.append("\n".join(inner))
            elif isinstance(v, list):
                out.append("%s- %s" % (pad, json.dumps(v)))
            else:
                out.append("%s- %s" % (pad, _scalar(v)))
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)


def make_config(endpoints, routes=None, clusters=None, limits=None, timeouts=None,
                route_timeouts=None, stream=None, cluster_opts=None, drain_timeout="5s",
                listeners=None, workers=1):
    """A config dict: one listener `public` (port 0), one route `api` on `/` to cluster
    `backend` with `endpoints`, unless routes/clusters/listeners are given explicitly."""
    lim = {"max_header_bytes": "8KiB", "max_headers": 100, "max_uri_bytes": "2KiB",
           "max_body_bytes": "1MiB", "max_connections": 10000, "max_concurrent_requests": 1000}
    lim.update(limits or {})
    tmo = {"header_read": "2s", "idle": "60s", "request": "30s"}
    tmo.update(timeouts or {})
    if listeners is None:
        listeners = [{"name": "public", "listen": "127.0.0.1:0", "limits": lim, "timeouts": tmo}]
    if routes is None:
        # Sanitizer builds run several times slower: the default deadlines grow with them so
        # that only the tests that set their own timeouts see timeouts.
        fb = "%ds" % int(scale(5))
        rt = {"request": "%ds" % int(scale(30)), "per_try": fb, "first_byte": fb,
              "stream_idle": "%ds" % int(scale(30)), "stream_total": "10m"}
        rt.update(route_timeouts or {})
        st = {"max_chunk_bytes": "64KiB", "max_bytes": "2GiB"}
        st.update(stream or {})
        routes = [{"name": "api", "match": {"path_prefix": "/", "host": "*"},
                   "cluster": "backend", "timeouts": rt, "stream": st}]
    if clusters is None:
        cl = {"name": "backend", "endpoints": list(endpoints), "lb": "round_robin",
              "connect_timeout": "1s",
              "pool": {"max_per_endpoint": 64, "max_idle": 16, "idle_timeout": "60s"}}
        cl.update(cluster_opts or {})
        clusters = [cl]
    return {"workers": workers, "admin": {"listen": "127.0.0.1:0"},
            "shutdown": {"drain_timeout": drain_timeout}, "listeners": listeners,
            "routes": routes, "clusters": clusters}


# ---- HTTP client -----------------------------------------------------------------------------
class Response(HeaderAccess):
    def __init__(self, status, reason, version, headers, body, head_raw):
        self.status = status
        self.reason_phrase = reason
        self.version = version
        self.headers = headers  # list of (name, value)
        self.body = body
        self.head_raw = head_raw
        self.body_complete = True
        self.body_len = len(body) if body is not None else 0


    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (
            self.status, self.reason_phrase, self.headers, (self.body or b"")[:300])


class PeerClosed(Exception):
    """The peer closed the connection before a complete response."""


class Client:
    """One raw HTTP/1.1 client connection to 127.0.0.1:port."""

    def __init__(self, port, timeout=5.0, host="127.0.0.1", source=None):
        """`source`: the local address to connect from (another loopback client, 127.0.0.2)."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method, path, headers=None, body=None, host="gw.test", head=None,
                timeout=None):
        """Sends a well-formed request (Content-Length body) and reads the response."""
        self.send(build_request(method, path, headers, body, host))
        return self.read_response(head=(method == "HEAD") if head is None else head,
                                  timeout=timeout)

    # -- reading --
    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise PeerClosed()
        self.buf += data

    def _read_until(self, sep, deadline):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            start = max(0, len(self.buf) - len(sep))
            self._fill(deadline)

    def _read_exact(self, n, deadline, sink):
        while n > 0:
            if not self.buf:
                self._fill(deadline)
            k = min(n, len(self.buf))
            if sink is not None:
                sink(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k

    def read_head(self, timeout=None):
        deadline = self._deadline(timeout)
        head = self._read_until(b"\r\n\r\n", deadline)
        lines = head[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip(" \t")))
        return Response(int(m.group(2)), m.group(3) or "", m.group(1), headers, b"", head)

    def read_body(self, resp, timeout=None, sink=None, head=False, on_chunk=None):
        """Reads the body of `resp`. sink(bytes) receives body bytes instead of resp.body
        (for large bodies); on_chunk(bytes) is called once per chunk of a chunked body."""
        deadline = self._deadline(timeout)
        parts = []
        collect = parts.append if sink is None else sink
        status = resp.status
        count = [0]

        def counting(b):
            count[0] += len(b)
            collect(b)

        if head or status < 200 or status in (204, 304):
            pass
        elif "chunked" in (resp.header("Transfer-Encoding") or "").lower():
            while True:
                line = self._read_until(b"\r\n", deadline)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                if on_chunk is not None:
                    chunk = []
                    self._read_exact(size, deadline, chunk.append)
                    data = b"".join(chunk)
                    counting(data)
                    on_chunk(data)
                else:
                    self._read_exact(size, deadline, counting)
                self._read_exact(2, deadline, None)
        elif resp.header("Content-Length") is not None:
            self._read_exact(int(resp.header("Content-Length")), deadline, counting)
        else:
            try:
                while True:
                    if self.buf:
                        counting(bytes(self.buf))
                        self.buf.clear()
                    self._fill(deadline)
            except PeerClosed:
                pass
        resp.body = b"".join(parts) if sink is None else b""
        resp.body_len = count[0]
        return resp

    def read_response(self, timeout=None, head=False, sink=None):
        deadline = self._deadline(timeout)
        resp = self.read_head(timeout=max(0.0, deadline - time.monotonic()))
        while 100 <= resp.status < 200 and resp.status != 101:
            resp = self.read_head(timeout=max(0.0, deadline - time.monotonic()))
        return self.read_body(resp, timeout=max(0.0, deadline - time.monotonic()), head=head,
                              sink=sink)

    def read_partial_body(self, resp, timeout=None):
        """Reads body bytes until the peer closes or `timeout`; returns (bytes_read, closed)."""
        deadline = self._deadline(timeout)
        n = 0
        try:
            while True:
                if self.buf:
                    n += len(self.buf)
                    self.buf.clear()
                self._fill(deadline)
        except PeerClosed:
            return n, True
        except socket.timeout:
            return n, False

    def wait_closed(self, timeout=None):
        """True when the peer closes (EOF or reset) within `timeout`; any bytes received before
        that are kept in self.buf."""
        deadline = self._deadline(timeout)
        if self.eof:
            return True
        try:
            while True:
                self._fill(deadline)
        except PeerClosed:
            return True
        except socket.timeout:
            return False


def build_request(method, path, headers=None, body=None, host="gw.test"):
    lines = ["%s %s HTTP/1.1" % (method, path)]
    names = set()
    if host is not None:
        lines.append("Host: %s" % host)
    for k, v in (headers or []):
        names.add(k.lower())
        lines.append("%s: %s" % (k, v))
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        if "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body or b"")


def request(port, method, path, headers=None, body=None, host="gw.test", timeout=5.0):
    """One request on a fresh connection."""
    with Client(port, timeout=timeout) as c:
        return c.request(method, path, headers=headers, body=body, host=host)


def raw(port, data, timeout=5.0, head=False):
    """Sends raw bytes on a fresh connection and reads one response. Returns (response, closed)
    where closed says whether the gateway closed the connection after the response (checked
    for up to 1 s)."""
    with Client(port, timeout=timeout) as c:
        c.send(data)
        resp = c.read_response(head=head)
        closed = c.wait_closed(timeout=1.0)
        return resp, closed


def http_get(port, path, method="GET", body=None, timeout=5.0):
    """A plain request to the admin listener (Connection: close)."""
    with Client(port, timeout=timeout) as c:
        c.send(build_request(method, path, [("Connection", "close")], body, host="127.0.0.1"))
        return c.read_response(head=(method == "HEAD"))


# ---- the gateway process -----------------------------------------------------------------------
class Gateway:
    """One running `bulwark`. Create with a config dict or YAML text, then start()."""

    def __init__(self, workdir, config, access_log=True):
        self.dir = workdir
        self.config_path = os.path.join(workdir, "bulwark.yaml")
        self.ready_path = os.path.join(workdir, "ready.json")
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.stdout_path = os.path.join(workdir, "stdout.log")
        self.access_path = os.path.join(workdir, "access.log")
        self.access_log = access_log
        self.proc = None
        self.ready = None
        self.exit_code = None
        self.write_config(config)

    def config_text(self, config):
        if isinstance(config, str):
            return config
        cfg = dict(config)
        if self.access_log:
            cfg.setdefault("logging", {"level": "info",
                                       "access": {"path": self.access_path, "format": "json"}})
        return to_yaml(cfg) + "\n"

    def write_config(self, config):
        """Rewrites the config file atomically (for reloads)."""
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config_text(config))
        os.replace(tmp, self.config_path)

    def start(self, timeout=None, extra_args=()):
        if not BIN:
            raise unittest.SkipTest("BULWARK_BIN is not set")
        if os.path.exists(self.ready_path):
            os.unlink(self.ready_path)
        self._stderr = open(self.stderr_path, "ab")
        self._stdout = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--config", self.config_path, "--ready-file", self.ready_path, *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr)
        deadline = time.monotonic() + (timeout or scale(10))
        while time.monotonic() < deadline:
            if os.path.exists(self.ready_path):
                try:
                    with open(self.ready_path) as f:
                        self.ready = json.load(f)
                    break
                except (OSError, ValueError):
                    pass
            if self.proc.poll() is not None:
                raise AssertionError("bulwark exited with %s before it was ready; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr()[-4000:]))
            time.sleep(0.02)
        else:
            self.kill()
            raise AssertionError("bulwark not ready within the time bound; stderr:\n%s"
                                 % self.stderr()[-4000:])
        return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def port(self):
        """The port of the first listener (`public` unless the config names it otherwise)."""
        listeners = self.ready["listeners"]
        return listeners.get("public", next(iter(listeners.values())))

    def listener_port(self, name):
        return self.ready["listeners"][name]

    @property
    def admin_port(self):
        return self.ready["admin"]

    def admin(self, path, method="GET", timeout=5.0):
        return http_get(self.admin_port, path, method=method, timeout=timeout)

    def admin_json(self, path, method="GET"):
        resp = self.admin(path, method=method)
        return resp.status, json.loads(resp.body.decode())

    def metrics(self):
        return self.admin("/metrics").body.decode()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM, bounded wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout or scale(15))
            except subprocess.TimeoutExpired:
                self.kill()
        self.exit_code = self.proc.returncode
        self._close_files()
        return self.exit_code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._close_files()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _close_files(self):
        for f in (getattr(self, "_stderr", None), getattr(self, "_stdout", None)):
            if f is not None and not f.closed:
                f.close()

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def access_lines(self):
        """The access log, parsed (raises on a line that is not JSON)."""
        try:
            with open(self.access_path, "rb") as f:
                data = f.read().decode("utf-8")
        except OSError:
            return []
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def wait_access(self, predicate, timeout=None):
        """Waits (bounded) for an access log record matching predicate; returns it or None."""
        found = []

        def check():
            try:
                for rec in self.access_lines():
                    if predicate(rec):
                        found.append(rec)
                        return True
            except ValueError:
                return False
            return False
        wait_until(check, timeout or scale(5), interval=0.05)
        return found[0] if found else None

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metric_value(self, name, labels=None):
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        found = False
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
            if not m or m.group(1) != name:
                continue
            lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(lab.get(k) == v for k, v in (labels or {}).items()):
                total += float(m.group(4))
                found = True
        return total if found else None


# ---- nginx -------------------------------------------------------------------------------------
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "")


class Nginx:
    """nginx as an upstream: / serves files from www/ (index.html, big.bin), /big is a large
    static file, /hdr echoes forwarding headers as text. Killed by PID."""

    BIG_BYTES = 4 * 1024 * 1024

    def __init__(self, workdir, tls=None):
        """`tls`: (cert, key) files: the server speaks HTTPS, and /tls answers with the SNI it
        got, its connection number and whether the TLS session was resumed."""
        self.tls = tls
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(os.path.join(self.dir, "www"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        with open(os.path.join(self.dir, "www", "index.html"), "w") as f:
            f.write("<html><body>hello from nginx</body></html>\n")
        with open(os.path.join(self.dir, "www", "big.bin"), "wb") as f:
            f.write(bytes(range(256)) * (self.BIG_BYTES // 256))
        self.proc = None
        self.port = None

    def _conf(self, port):
        d = self.dir
        return """daemon off;
master_process off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  default_type application/octet-stream;
  keepalive_requests 10000;
  server {
    listen 127.0.0.1:%(port)d%(ssl)s;
    %(certs)s
    root %(d)s/www;
    location /tls {
      default_type text/plain;
      return 200 "sni=$ssl_server_name;conn=$connection;reused=$ssl_session_reused\\n";
    }
    location / { }
    location /big { alias %(d)s/www/big.bin; }
    location /hdr {
      default_type text/plain;
      return 200 "xff=$http_x_forwarded_for;proto=$http_x_forwarded_proto;%(rid)s";
    }
  }
}
""" % {"d": d, "port": port, "ssl": " ssl" if self.tls else "",
       "certs": ("ssl_certificate %s; ssl_certificate_key %s; keepalive_timeout 60s;"
                 % self.tls) if self.tls else "",
       "rid": "rid=$http_x_request_id;uri=$request_uri;host=$http_host\\n"}

    def start(self):
        if not NGINX:
            raise unittest.SkipTest("nginx is not installed")
        last = ""
        for _ in range(5):
            port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self._conf(port))
            log = open(os.path.join(self.dir, "logs", "stderr.log"), "ab")
            self.proc = subprocess.Popen([NGINX, "-c", conf, "-p", self.dir],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()

            def up():
                if self.proc.poll() is not None:
                    return True
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return True
                except OSError:
                    return False
            wait_until(up, 10)
            if self.proc.poll() is None:
                self.port = port
                return self
            with open(os.path.join(self.dir, "logs", "error.log"), errors="replace") as f:
                last = f.read()
        raise AssertionError("nginx did not start: %s" % last[-2000:])

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


# ---- a test CA (openssl command line) ------------------------------------------------------------
OPENSSL = shutil.which("openssl") or ""


class TestCA:
    """A certificate authority made for one test with the openssl command line: issue() makes a
    certificate (and key) for DNS names and IP addresses, signed by the CA."""

    def __init__(self, workdir, name="Bulwark Test CA"):
        if not OPENSSL:
            raise unittest.SkipTest("the openssl command line is not installed")
        self.dir = os.path.join(workdir, "ca-" + re.sub(r"\W+", "-", name).lower())
        os.makedirs(self.dir, exist_ok=True)
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2",
                  "-subj", "/CN=" + name)

    def _run(self, *args):
        r = subprocess.run([OPENSSL] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise AssertionError("openssl %s: %s" % (args[0], r.stderr.decode(errors="replace")))
        return r.stdout

    def issue(self, name, dns=(), ips=(), client=False):
        """(cert, key) files for CN=name with the given subjectAltNames."""
        base = os.path.join(self.dir, re.sub(r"\W+", "-", name))
        key, csr, cert, ext = base + ".key", base + ".csr", base + ".pem", base + ".ext"
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        sans = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                  "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key


# ---- redis ---------------------------------------------------------------------------------------
REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else "")


class Redis:
    """A redis-server of the test's own on a free loopback port (no persistence), killed by PID.
    `command()` speaks RESP to it directly (for SCRIPT FLUSH, DEBUG SLEEP, reading keys)."""

    def __init__(self, workdir, password=None, tls=None):
        """`tls`: (cert, key, ca) files: Redis speaks only TLS (no client certificates asked)."""
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.password = password
        self.tls = tls
        self.proc = None
        self.port = None

    def start(self, port=None):
        if not REDIS_SERVER:
            raise unittest.SkipTest("redis-server is not installed")
        for _ in range(5):
            p = port or free_port()
            args = [REDIS_SERVER, "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                    "--logfile", os.path.join(self.dir, "redis.log")]
            if self.password:
                args += ["--requirepass", self.password]
            if self.tls:
                args[1:3] = ["--port", "0", "--tls-port", str(p), "--tls-cert-file", self.tls[0],
                             "--tls-key-file", self.tls[1], "--tls-auth-clients", "no"]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def up():
                if self.proc.poll() is not None:
                    return True
                try:
                    return self.command("PING") in ("PONG", "NOAUTH Authentication required.")
                except OSError:
                    return False
            self.port = p
            wait_until(up, 10)
            if self.proc.poll() is None:
                return self
            if port:
                break
        raise AssertionError("redis-server did not start")

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def command(self, *args, timeout=5.0):
        """Sends one command (AUTH first when the server has a password); returns the reply as
        str / int / list / None, or the error text."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as raw:
            s = raw
            if self.tls:
                import ssl
                s = ssl.create_default_context(cafile=self.tls[2]).wrap_socket(
                    raw, server_hostname="localhost")
            f = s.makefile("rb")
            cmds = ([("AUTH", self.password)] if self.password else []) + [args]
            data = b""
            for cmd in cmds:
                data += b"*%d\r\n" % len(cmd)
                for a in cmd:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    data += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(data)
            reply = None
            for _ in cmds:
                reply = _read_resp(f)
            f.close()
            if s is not raw:
                s.close()
            return reply

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)


def _read_resp(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2].decode()
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_resp(f) for _ in range(n)]
    raise OSError("not RESP: %r" % line)


# The "error" field of a gateway-made answer: the status's reason phrase.
_PHRASES = {
    400: ("Bad Request",), 404: ("Not Found",), 405: ("Method Not Allowed",),
    408: ("Request Timeout",), 413: ("Content Too Large", "Payload Too Large"),
    414: ("URI Too Long",), 431: ("Request Header Fields Too Large",),
    502: ("Bad Gateway",), 503: ("Service Unavailable",), 504: ("Gateway Timeout",),
}


# ---- test base -----------------------------------------------------------------------------------
class GatewayTest(unittest.TestCase):
    """Base class: temp dir per test, and helpers that register every process for cleanup."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulwark-it-")
        self.addCleanup(self._cleanup_tmp)

    def _cleanup_tmp(self):
        # Keep the directory of a failed test when asked to (BULWARK_KEEP_TMP=1).
        if os.environ.get("BULWARK_KEEP_TMP"):
            print("kept", self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_upstream(self):
        from upstream import ScriptedUpstream
        up = ScriptedUpstream()
        self.addCleanup(up.close)
        return up

    def start_nginx(self, tls=None):
        ng = Nginx(self.tmp, tls)
        self.addCleanup(ng.stop)
        return ng.start()

    def start_redis(self, password=None, tls=None):
        r = Redis(self.tmp, password, tls)
        self.addCleanup(r.stop)
        return r.start()

    def start_gateway(self, config, subdir="gw", access_log=True):
        d = os.path.join(self.tmp, subdir)
        os.makedirs(d, exist_ok=True)
        gw = Gateway(d, config, access_log=access_log)
        self.addCleanup(self._stop_gateway, gw)
        return gw.start()

    def _stop_gateway(self, gw):
        gw.stop()
        # A crash or sanitizer report must not go unnoticed.
        err = gw.stderr()
        if "ERROR: AddressSanitizer" in err or "WARNING: ThreadSanitizer" in err or \
                "runtime error:" in err:
            raise AssertionError("sanitizer report in bulwark stderr:\n%s" % err[-6000:])

    def gateway_for(self, upstream, **kw):
        """A gateway with the default config in front of one upstream."""
        return self.start_gateway(make_config([upstream.address], **kw))

    # -- assertions --
    def assertGatewayResponse(self, resp, status, reason):
        """A response the gateway made itself: status, x-bulwark-reason, x-request-id,
        content-type and the JSON body fields."""
        self.assertEqual(resp.status, status, resp)
        self.assertEqual(resp.header("x-bulwark-reason"), reason, resp)
        rid = resp.header("x-request-id")
        self.assertTrue(rid, "no x-request-id: %r" % resp)
        self.assertTrue((resp.header("content-type") or "").startswith("application/json"),
                        resp)
        body = resp.json()
        self.assertEqual(body.get("reason"), reason, body)
        self.assertEqual(body.get("request_id"), rid, body)
        self.assertIn(body.get("error"), _PHRASES.get(status, (body.get("error"),)), body)
        if status == 503:
            self.assertEqual(resp.header("Retry-After"), "1", resp)
        return body
