#!/usr/bin/env bash
# Smoke test of the quickstart: runs scripts/quickstart.sh with QUICKSTART_CHECK=1 (start the
# demo upstream and the gateway, check a proxied answer, an SSE stream, a refused traversal and
# the metrics, stop both) on free loopback ports, so it can run beside other tests.
# usage: tests/quickstart/smoke.sh BULWARK_BINARY
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BULWARK_BINARY" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-python3}

# Three distinct free ports: bound to port 0 together, then released. Another process could
# take one in between; the quickstart then fails to bind and says which port.
read -r port admin_port upstream_port < <("$python" - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)

exec env BULWARK_BIN="$1" QUICKSTART_CHECK=1 QUICKSTART_PORT="$port" \
  QUICKSTART_ADMIN_PORT="$admin_port" QUICKSTART_UPSTREAM_PORT="$upstream_port" \
  QUICKSTART_READY_SECONDS="${QUICKSTART_READY_SECONDS:-30}" \
  timeout -k 5 120 bash "$repo/scripts/quickstart.sh"
