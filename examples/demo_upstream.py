#!/usr/bin/env python3
"""A small HTTP/1.1 upstream for trying the gateway: the quickstart runs it on 127.0.0.1:9001.

Python 3 standard library only. Connections are kept alive (HTTP/1.1), one thread per
connection.

Endpoints (GET unless noted; HEAD works wherever GET does):
  /              JSON hello: method, path, and the X-Request-Id, X-Forwarded-For and
                 X-Forwarded-Proto headers the gateway added. POST: also the body length.
  /slow?ms=N     answers after N milliseconds (default 1000, at most 60000)
  /stream?n=N    Server-Sent Events: N events (default 5, at most 10000), gap_ms apart
                 (default 200), sent with chunked transfer encoding as they are produced
  /v1/chat/completions
                 POST or GET: an LLM-style token stream (SSE, chunked), n tokens (default 20)
                 gap_ms apart (default 50), ending with "data: [DONE]"
  /status/N      an empty answer with status N (100 < N < 600, not 1xx)
  /healthz       {"status":"ok"}
Anything else is a JSON 404.

usage: demo_upstream.py [--host 127.0.0.1] [--port 9001] [--quiet]
"""

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_MAX_BODY = 16 * 1024 * 1024


def _int_param(query, name, default, low, high):
    """The integer query parameter `name`, clamped to [low, high]; default if absent/invalid."""
    try:
        value = int(query.get(name, [default])[0])
    except ValueError:
        return default
    return max(low, min(high, value))


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive by default, like a real upstream
    quiet = False

    def version_string(self):
        return "demo-upstream/1"

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        if not self.quiet:
            sys.stderr.write("demo-upstream: %s %s\n" % (self.address_string(), fmt % args))

    # --- request plumbing -------------------------------------------------------------------

    def _read_body(self):
        """Reads a Content-Length or chunked request body; returns its length in bytes."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ConnectionError("body ended early")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return total
                total += size
                if total > _MAX_BODY:
                    raise ConnectionError("body too large")
                self.rfile.read(size)
                self.rfile.readline(8)  # CRLF after the chunk data
        length = int(self.headers.get("Content-Length", "0") or "0")
        if length > _MAX_BODY:
            raise ConnectionError("body too large")
        if length:
            self.rfile.read(length)
        return length

    def _send_json(self, status, payload):
        body = (json.dumps(payload, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data):
        """Writes one chunk and flushes it, so each event leaves as soon as it exists."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- endpoints --------------------------------------------------------------------------

    def _hello(self, body_bytes):
        self._send_json(200, {
            "hello": "from the demo upstream",
            "method": self.command,
            "path": self.path,
            "x_request_id": self.headers.get("X-Request-Id"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            "host": self.headers.get("Host"),
            "body_bytes": body_bytes,
        })

    def _stream(self, query):
        n = _int_param(query, "n", 5, 0, 10000)
        gap_ms = _int_param(query, "gap_ms", 200, 0, 600000)
        self._start_sse()
        if self.command == "HEAD":
            return
        for i in range(1, n + 1):
            if i > 1:
                time.sleep(gap_ms / 1000.0)
            event = json.dumps({"seq": i, "of": n, "time": round(time.time(), 3)})
            self._chunk(b"id: %d\nevent: tick\ndata: %s\n\n" % (i, event.encode()))
        self._end_chunks()

    def _completion(self, query):
        n = _int_param(query, "n", 20, 0, 100000)
        gap_ms = _int_param(query, "gap_ms", 50, 0, 600000)
        words = "the gateway streams every token to the client as soon as it arrives".split()
        self._start_sse()
        if self.command == "HEAD":
            return
        for i in range(n):
            if i:
                time.sleep(gap_ms / 1000.0)
            delta = {"choices": [{"index": 0, "delta": {"content": words[i % len(words)] + " "}}]}
            self._chunk(b"data: %s\n\n" % json.dumps(delta).encode())
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunks()

    def _dispatch(self):
        try:
            body_bytes = self._read_body() if self.command in ("POST", "PUT", "PATCH") else 0
        except (ConnectionError, ValueError):
            self.close_connection = True
            self._send_json(400, {"error": "bad request body"})
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        if path == "/":
            self._hello(body_bytes)
        elif path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path == "/flaky":
            # A backend that is down: the gateway's circuit breaker opens in front of it.
            self._send_json(503, {"error": "flaky backend is down"})
        elif path == "/slow":
            ms = _int_param(query, "ms", 1000, 0, 60000)
            time.sleep(ms / 1000.0)
            self._send_json(200, {"slept_ms": ms})
        elif path == "/stream":
            self._stream(query)
        elif path == "/v1/chat/completions":
            self._completion(query)
        elif path.startswith("/status/"):
            try:
                code = int(path[len("/status/"):])
            except ValueError:
                code = 0
            if not 200 <= code <= 599:
                self._send_json(400, {"error": "status must be 200..599"})
                return
            self.send_response(code)
            if code not in (204, 304):  # these never have a body, nor a Content-Length
                self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send_json(404, {"error": "not found", "path": path})

    def _guarded(self):
        try:
            self._dispatch()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client (or the gateway) went away mid-answer

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _guarded  # noqa: N815


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True  # do not wait for open keep-alive connections on exit
    allow_reuse_address = True


def _stop(signum, frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args()
    DemoHandler.quiet = args.quiet
    signal.signal(signal.SIGTERM, _stop)  # a plain kill stops it as cleanly as Ctrl-C
    signal.signal(signal.SIGINT, _stop)
    server = DemoServer((args.host, args.port), DemoHandler)
    print("demo-upstream: listening on http://%s:%d" % (args.host, server.server_address[1]),
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
