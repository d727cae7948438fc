#!/usr/bin/env python3
"""Holds K used keep-alive connections to one proxy and reports its RSS growth per connection.

usage: idle_client.py HOST PORT PID K [CONCURRENCY] [DEADLINE_S] [SETTLE_S]

Reads VmRSS of PID (the proxy process that owns the connections), then opens K connections,
at most CONCURRENCY (default 64) of them connecting or awaiting an answer at a time, sends one
`GET /` on each and reads the whole answer (Content-Length), and keeps each one open and idle.
When all K have been answered it waits until the RSS stops changing (two reads 0.5 s apart
equal, at most SETTLE_S, default 5 s), reads VmRSS again, checks that every connection is still
open (a non-blocking read must find nothing: no EOF, no stray bytes), prints one line of
key=value pairs and closes everything. Exits 1 on any failure or when DEADLINE_S (default 120 s)
passes.
"""

import errno
import os
import selectors
import socket
import sys
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


class Conn:
    __slots__ = ("sock", "buf", "sent", "done")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent = False
        self.done = False


def answered(buf):
    """True once buf holds a complete answer with a Content-Length body."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = buf[:head_end].decode("latin-1").lower()
    if not head.startswith("http/1.1 200"):
        raise RuntimeError("answer is not 200: %r" % head.split("\r\n")[0])
    length = None
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("answer without content-length")
    return len(buf) >= head_end + 4 + length


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    host, port, pid, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    deadline = time.monotonic() + (float(sys.argv[6]) if len(sys.argv) > 6 else 120.0)
    settle = float(sys.argv[7]) if len(sys.argv) > 7 else 5.0
    request = ("GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host, port)).encode()

    rss_before = rss_kib(pid)
    sel = selectors.DefaultSelector()
    idle = []
    opened = 0
    busy = 0
    started = time.monotonic()
    while len(idle) < k:
        if time.monotonic() > deadline:
            raise RuntimeError("deadline passed with %d of %d connections answered"
                               % (len(idle), k))
        while busy < concurrency and opened < k:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                raise RuntimeError("connect: %s" % os.strerror(err))
            sel.register(sock, selectors.EVENT_WRITE, Conn(sock))
            opened += 1
            busy += 1
        for key, _ in sel.select(timeout=1.0):
            conn = key.data
            if not conn.sent:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise RuntimeError("connect: %s" % os.strerror(err))
                conn.sock.sendall(request)  # 40 bytes into an empty send buffer
                conn.sent = True
                sel.modify(conn.sock, selectors.EVENT_READ, conn)
                continue
            data = conn.sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed before the answer")
            conn.buf += data
            if answered(conn.buf):
                sel.unregister(conn.sock)
                conn.buf = b""
                conn.done = True
                idle.append(conn)
                busy -= 1
    fill_s = time.monotonic() - started

    # Let the proxy finish whatever it does after the last answer, then read the RSS.
    previous = rss_kib(pid)
    settle_end = time.monotonic() + settle
    while time.monotonic() < settle_end:
        time.sleep(0.5)
        current = rss_kib(pid)
        if current == previous:
            break
        previous = current
    rss_after = rss_kib(pid)

    alive = 0
    for conn in idle:
        try:
            data = conn.sock.recv(1)
        except BlockingIOError:
            alive += 1
            continue
        raise RuntimeError("an idle connection %s" % ("was closed" if not data else
                                                      "received stray bytes"))
    for conn in idle:
        conn.sock.close()
    growth = rss_after - rss_before
    print("connections=%d alive=%d rss_before_kib=%d rss_after_kib=%d growth_kib=%d "
          "per_connection_kib=%.2f fill_s=%.1f" % (
              k, alive, rss_before, rss_after, growth, growth / k, fill_s))


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError) as exc:
        print("idle_client: %s" % exc, file=sys.stderr)
        sys.exit(1)
