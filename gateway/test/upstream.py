"""A scripted HTTP/1.1 upstream for the gateway integration tests.

A threaded raw-socket server on 127.0.0.1 with an ephemeral port. What it answers is chosen by
the request path, so that one server can play every kind of peer a test needs:

  /ok                 200, keep-alive, JSON body describing the request it received (method,
                      target, path, query, header list in order, body length, connection number)
                      ?hop=1 also sends hop-by-hop headers in the response
  /echo               echoes the request body; chunked if the request was chunked, else
                      Content-Length
  /slow?ms=N          waits N ms before the response header
  /sse?n=N&gap_ms=M   chunked text/event-stream, one event per chunk; with &gate=1 the server
                      sends event k+1 only after the test calls release_gate() (ordering proof)
  /bytes?n=N          N body bytes generated on the fly; &mode=chunked|cl (default cl),
                      &chunk=BYTES (write/chunk size, default 64 KiB); chunked, the head and
                      the first chunk go out in one send. &lead=K (chunked): a first chunk of
                      K bytes, then with &gate=1 the rest only after release_gate()
  /reset_mid          header (Content-Length 1000000) and 1000 body bytes, then a TCP reset
  /reset              TCP reset before any response byte
  /bad                a garbage status line, then close
  /status?code=N      status N with a short body (none for 1xx/204/304); &te=1 with 204/304:
                      a Transfer-Encoding: chunked head and no body
  /stall_body         header (Content-Length 100000) and 10 bytes, then silence
  /reject_early       413 as soon as the head is read, then close without reading the body
  anything else       200 like /ok
  any path + &drop=1  after the answer the connection is closed without warning (an upstream
                      whose keep-alive timeout just ended)
  any path + &stray=1 50 ms after the answer, stray bytes on the same connection (a body after
                      a HEAD, 204 or 304 answer)

`answer_all = (status, headers)` makes every request, whatever its path, get that status (after
its body was read): a failing endpoint beside a healthy one; None (the default) serves by path.
`delay_all = seconds` makes every request wait that long before it is answered: a slow replica
beside a fast one (0, the default: no delay).

Every request is counted by path when its header has been read (`count()`), and again in
`completed` when its body has been read in full. Nothing here sleeps unboundedly: every wait is
bounded and ends when close() is called.
"""

import json
import socket
import struct
import threading
import time
import urllib.parse

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
    418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class _ConnClosed(Exception):
    pass


class _Reader:
    """Buffered reads from a socket with a bounded wait on each recv."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(256 * 1024)
        if not data:
            raise _ConnClosed()
        self.buf += data

    def read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise _ConnClosed()
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class HeaderAccess:
    """Case-insensitive lookups over `self.headers`, a list of (name, value); shared by the
    upstream's Request and the harness's Response."""

    def header(self, name):
        """The first value of header `name` (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Request(HeaderAccess):
    def __init__(self, method, target, version, headers, conn_id):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (name, value) in order, as received
        self.conn_id = conn_id
        parsed = urllib.parse.urlsplit(target)
        self.path = parsed.path
        self.query = parsed.query
        self.params = dict(urllib.parse.parse_qsl(parsed.query))
        self.body = b""
        self.chunked = False



class ScriptedUpstream:
    def __init__(self, host="127.0.0.1"):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(256)
        self._listener.settimeout(0.2)
        self.host = host
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = {}
        self.completed = {}
        self.requests = []  # every Request, in arrival order
        self.connections_accepted = 0
        self._conns = set()
        self._threads = []
        self.gate = threading.Semaphore(0)
        self.sse_sent = 0
        self.gate_timeouts = 0
        self.dropped = 0  # connections closed after an answer because of &drop=1
        self.rejected_early = 0  # /reject_early connections closed
        self.strays_sent = 0  # bodies sent after bodiless answers because of &stray=1
        self.slow_waiting = threading.Event()  # set when a /slow request is waiting
        self.answer_all = None  # (status, [(name, value)]): every request gets this answer
        self.delay_all = 0.0  # seconds every request waits before its answer
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    # ---- introspection -------------------------------------------------------------------------
    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def count(self, path=None):
        """Requests whose header was received (for `path`, or in total)."""
        with self._lock:
            if path is None:
                return sum(self._counts.values())
            return self._counts.get(path, 0)

    def completed_count(self, path=None):
        with self._lock:
            if path is None:
                return sum(self.completed.values())
            return self.completed.get(path, 0)

    def last_request(self, path=None):
        with self._lock:
            for r in reversed(self.requests):
                if path is None or r.path == path:
                    return r
        return None

    def release_gate(self):
        self.gate.release()

    def _pass_gate(self, conn):
        """Waits for release_gate(); False (and a reset) if the test never opens it."""
        if self.gate.acquire(timeout=15):
            return True
        with self._lock:
            self.gate_timeouts += 1
        self._rst(conn)
        return False

    # ---- lifecycle -----------------------------------------------------------------------------
    def close(self):
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept_thread.join(timeout=5)
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- server --------------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                conn_id = self.connections_accepted
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn, conn_id), daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()

    def _serve(self, conn, conn_id):
        conn.settimeout(60)
        reader = _Reader(conn)
        try:
            while not self._stop.is_set():
                head = reader.read_until(b"\r\n\r\n", limit=256 * 1024)
                lines = head[:-4].decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name, value.strip(" \t")))
                req = Request(parts[0], parts[1], parts[2], headers, conn_id)
                with self._lock:
                    self._counts[req.path] = self._counts.get(req.path, 0) + 1
                    self.requests.append(req)
                if req.path == "/reject_early":
                    # Refuses an upload at once and closes without reading it: the unread
                    # body makes the kernel reset the connection.
                    self._send(conn, req, 413, b'{"error":"upload refused"}',
                               headers=[("Connection", "close")])
                    conn.close()
                    with self._lock:
                        self.rejected_early += 1
                    return
                self._read_body(reader, req)
                with self._lock:
                    self.completed[req.path] = self.completed.get(req.path, 0) + 1
                keep = self._dispatch(conn, req)
                if req.params.get("stray") == "1":
                    # A body after an answer that has none (HEAD, 204, 304), a moment later.
                    if not self._wait(0.05):
                        return
                    conn.sendall(b"stray bytes after a bodiless answer")
                    with self._lock:
                        self.strays_sent += 1
                conn_hdr = (req.header("Connection") or "").lower()
                if req.params.get("drop") == "1":
                    # Like an upstream whose keep-alive timeout ends just after answering: the
                    # connection closes without a Connection: close in the answer.
                    with self._lock:
                        self.dropped += 1
                    return
                if not keep or "close" in conn_hdr or req.version == "HTTP/1.0":
                    return
        except (_ConnClosed, OSError, socket.timeout):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _read_body(self, reader, req):
        te = (req.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            req.chunked = True
            body = bytearray()
            while True:
                line = reader.read_until(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers up to the empty line
                    while reader.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += reader.read_exact(size)
                reader.read_exact(2)
            req.body = bytes(body)
        else:
            cl = req.header("Content-Length")
            if cl:
                req.body = reader.read_exact(int(cl))

    # ---- responses -----------------------------------------------------------------------------
    @staticmethod
    def _head(status, headers):
        lines = ["HTTP/1.1 %d %s" % (status, _REASONS.get(status, "Status"))]
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, conn, req, status, body, headers=(), content_type="application/json"):
        hdrs = [("Content-Type", content_type)] + list(headers)
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            hdrs.append(("Content-Length", str(len(body))))
        data = self._head(status, hdrs)
        if req.method != "HEAD" and not no_body:
            data += body
        conn.sendall(data)

    @staticmethod
    def _rst(conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _wait(self, seconds):
        """Sleeps up to `seconds`; False when the server is closing."""
        return not self._stop.wait(seconds)

    def _dispatch(self, conn, req):
        if self.delay_all and not self._wait(self.delay_all):
            return False
        forced = self.answer_all
        if forced is not None:
            self._send(conn, req, forced[0], b'{"forced":true}', headers=forced[1])
            return True
        p = req.path
        if p == "/echo":
            if req.chunked:
                data = self._head(200, [("Content-Type", "application/octet-stream"),
                                        ("Transfer-Encoding", "chunked")])
                # Chunks of at most 16 KiB, below any stream.max_chunk_bytes in the tests.
                for i in range(0, len(req.body), 16384):
                    piece = req.body[i:i + 16384]
                    data += b"%x\r\n" % len(piece) + piece + b"\r\n"
                conn.sendall(data + b"0\r\n\r\n")
            else:
                self._send(conn, req, 200, req.body, content_type="application/octet-stream")
            return True
        if p == "/slow":
            self.slow_waiting.set()
            if not self._wait(int(req.params.get("ms", "1000")) / 1000.0):
                return False
            self._send(conn, req, 200, b"slow done\n", content_type="text/plain")
            return True
        if p == "/sse":
            return self._sse(conn, req)
        if p == "/bytes":
            return self._bytes(conn, req)
        if p == "/reset_mid":
            conn.sendall(self._head(200, [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", "1000000")]) + b"x" * 1000)
            self._wait(0.2)
            self._rst(conn)
            return False
        if p == "/reset":
            self._rst(conn)
            return False
        if p == "/bad":
            conn.sendall(b"HTTP/1.1 OK garbage\r\nX: y\r\n\r\n")
            conn.close()
            return False
        if p == "/status":
            code = int(req.params.get("code", "200"))
            if req.params.get("te") == "1" and code in (204, 304):
                # Transfer-Encoding on a bodiless answer (allowed for 304): no body follows.
                conn.sendall(self._head(code, [("Transfer-Encoding", "chunked")]))
                return True
            self._send(conn, req, code, b'{"status":%d}' % code)
            return True
        if p == "/stall_body":
            conn.sendall(self._head(200, [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", "100000")]) + b"y" * 10)
            # Silence until the peer closes or the server stops.
            conn.settimeout(0.2)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    if conn.recv(4096) == b"":
                        break
                except socket.timeout:
                    continue
            return False
        # /ok and anything else
        doc = {
            "method": req.method, "target": req.target, "path": req.path, "query": req.query,
            "version": req.version, "headers": req.headers, "body_len": len(req.body),
            "conn_id": req.conn_id, "upstream_port": self.port,
        }
        extra = []
        if req.params.get("hop") == "1":
            extra = [("Connection", "X-Secret-Hop"), ("X-Secret-Hop", "1"),
                     ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic"),
                     ("Proxy-Connection", "keep-alive"), ("Trailer", "X-T"),
                     ("X-End-To-End", "kept")]
        self._send(conn, req, 200, json.dumps(doc).encode(), headers=extra)
        return True

    def _sse(self, conn, req):
        n = int(req.params.get("n", "3"))
        gap = int(req.params.get("gap_ms", "0")) / 1000.0
        gated = req.params.get("gate") == "1"
        with self._lock:
            self.sse_sent = 0
        conn.sendall(self._head(200, [("Content-Type", "text/event-stream"),
                                      ("Cache-Control", "no-cache"),
                                      ("Transfer-Encoding", "chunked")]))
        for k in range(1, n + 1):
            event = b"id: %d\ndata: event %d\n\n" % (k, k)
            # Counted before the send: the gateway may relay the event to the client before
            # sendall() returns here, and the test reads the counter on receipt.
            with self._lock:
                self.sse_sent = k
            conn.sendall(b"%x\r\n" % len(event) + event + b"\r\n")
            if k == n:
                break
            if gated and not self._pass_gate(conn):
                return False
            if gap and not self._wait(gap):
                return False
        conn.sendall(b"0\r\n\r\n")
        return True

    def _bytes(self, conn, req):
        n = int(req.params.get("n", "1024"))
        chunk = int(req.params.get("chunk", str(64 * 1024)))
        mode = req.params.get("mode", "cl")
        block = bytes((i * 7) & 0xFF for i in range(min(chunk, n) or 1))
        if mode == "chunked":
            head = self._head(200, [("Content-Type", "application/octet-stream"),
                                    ("Transfer-Encoding", "chunked")])
            if req.method == "HEAD":
                conn.sendall(head)
                return True
            framed = b"%x\r\n" % len(block) + block + b"\r\n"
            left = n
            lead = min(int(req.params.get("lead", "0")), len(block))
            if lead:
                conn.sendall(head + b"%x\r\n" % lead + block[:lead] + b"\r\n")
                left -= lead
                if req.params.get("gate") == "1" and not self._pass_gate(conn):
                    return False
            elif left >= len(block) and len(block) > 0:
                # The head and the first chunk in one send: they reach the gateway together.
                conn.sendall(head + framed)
                left -= len(block)
            else:
                conn.sendall(head)
            while left >= len(block) and len(block) > 0:
                conn.sendall(framed)
                left -= len(block)
            if left:
                conn.sendall(b"%x\r\n" % left + block[:left] + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        else:
            conn.sendall(self._head(200, [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(n))]))
            if req.method == "HEAD":
                return True
            left = n
            mv = memoryview(block)
            while left > 0:
                k = min(left, len(block))
                conn.sendall(mv[:k])
                left -= k
        return True


def closed_port():
    """A 127.0.0.1 port that was just bound and closed: connecting to it is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Blackhole:
    """A 127.0.0.1 port where a TCP connect hangs: a listener that never accepts, whose accept
    queue is filled first so that the kernel drops further SYNs. Lets connect_timeout be tested
    without leaving the loopback network."""

    def __init__(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers = []
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._fillers.append(s)
        time.sleep(0.1)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def connect_hangs(self, timeout=0.5):
        """True when a fresh connect does not complete within `timeout` (self-check)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", self.port))
            return False
        except (socket.timeout, TimeoutError):
            return True
        except OSError:
            return False
        finally:
            s.close()

    def close(self):
        for s in self._fillers:
            s.close()
        self._listener.close()
