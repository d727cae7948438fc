#!/usr/bin/env bash
# Runs the gateway in front of the demo upstream: examples/demo_upstream.py on 127.0.0.1:9001,
# bulwark with examples/quickstart.yaml on 127.0.0.1:8080 (admin on 127.0.0.1:9901). Waits until
# the gateway is ready, prints commands to try and stays in the foreground until Ctrl-C; both
# processes are stopped on exit.
#
# QUICKSTART_CHECK=1 makes it a self-test instead: it runs those commands itself, checks the
# answers, stops both processes and exits 0 (all good) or 1.
#
# Environment:
#   BULWARK_BIN                 gateway binary (default: build/release/gateway/bulwark)
#   QUICKSTART_PORT             gateway listener port (default 8080)
#   QUICKSTART_ADMIN_PORT       admin listener port   (default 9901)
#   QUICKSTART_UPSTREAM_PORT    demo upstream port    (default 9001)
#   QUICKSTART_CHECK            1: check and exit instead of staying in the foreground
#   QUICKSTART_READY_SECONDS    how long to wait for readiness (default 20)
#   PYTHON                      Python 3 interpreter (default python3)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BULWARK_BIN:-$repo/build/release/gateway/bulwark}
port=${QUICKSTART_PORT:-8080}
admin_port=${QUICKSTART_ADMIN_PORT:-9901}
upstream_port=${QUICKSTART_UPSTREAM_PORT:-9001}
check=${QUICKSTART_CHECK:-0}
ready_seconds=${QUICKSTART_READY_SECONDS:-20}
python=${PYTHON:-python3}

die() {
  echo "quickstart: $*" >&2
  exit 1
}

[ -x "$bin" ] || die "no gateway binary at $bin (build it with 'make build', or set BULWARK_BIN)"
command -v curl >/dev/null || die "curl is needed (scripts/install-deps.sh installs it)"
command -v "$python" >/dev/null || die "$python is needed (scripts/install-deps.sh installs it)"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-quickstart.XXXXXX")
upstream_pid=""
gateway_pid=""

# Stops one process by PID: SIGTERM (the gateway drains), then SIGKILL if it is still there
# after a few seconds.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$gateway_pid"
  stop_pid "$upstream_pid"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; then
    echo "--- gateway log (last 30 lines)" >&2
    tail -n 30 "$workdir/bulwark.log" >&2 2>/dev/null || true
    echo "--- demo upstream log (last 10 lines)" >&2
    tail -n 10 "$workdir/upstream.log" >&2 2>/dev/null || true
  fi
  rm -rf "$workdir"
  exit "$rc"
}
trap cleanup EXIT
if [ "$check" = 1 ]; then
  trap 'exit 130' INT
else
  trap 'echo; exit 0' INT  # Ctrl-C is the normal way to end the interactive quickstart
fi
trap 'exit 143' TERM

# The example file names the default ports; other ports are substituted into a copy.
config=$workdir/quickstart.yaml
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$port/" \
    -e "s/127\.0\.0\.1:9901/127.0.0.1:$admin_port/" \
    -e "s/127\.0\.0\.1:9001/127.0.0.1:$upstream_port/" \
    "$repo/examples/quickstart.yaml" >"$config"

"$bin" --check-config --config "$config" >/dev/null || die "examples/quickstart.yaml is invalid"

"$python" "$repo/examples/demo_upstream.py" --host 127.0.0.1 --port "$upstream_port" \
  >"$workdir/upstream.log" 2>&1 &
upstream_pid=$!

# The access log (stdout) goes to the terminal in interactive mode, so each request shows up.
if [ "$check" = 1 ]; then
  "$bin" --config "$config" >"$workdir/access.log" 2>"$workdir/bulwark.log" &
else
  "$bin" --config "$config" 2>"$workdir/bulwark.log" &
fi
gateway_pid=$!

# Bounded wait: both processes alive, the upstream answering and the gateway ready.
ready=0
deadline=$((SECONDS + ready_seconds))
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$upstream_pid" 2>/dev/null || die "the demo upstream exited (port $upstream_port taken?)"
  kill -0 "$gateway_pid" 2>/dev/null || die "the gateway exited (port $port or $admin_port taken?)"
  if curl -fs -m 1 -o /dev/null "http://127.0.0.1:$upstream_port/healthz" &&
     curl -fs -m 1 -o /dev/null "http://127.0.0.1:$admin_port/readyz"; then
    ready=1
    break
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || die "not ready after ${ready_seconds}s"

gw="http://127.0.0.1:$port"
admin="http://127.0.0.1:$admin_port"

if [ "$check" != 1 ]; then
  cat <<EOF

bulwark $("$bin" --version | sed 's/^bulwark //') is running in front of the demo upstream.
  gateway   $gw          (pid $gateway_pid; its access log follows below)
  admin     $admin          status page: $admin/
  upstream  http://127.0.0.1:$upstream_port          (pid $upstream_pid; examples/demo_upstream.py)
  logs      $workdir/bulwark.log

Try, in another terminal:
EOF
  try() { printf '  %-62s # %s\n' "$1" "$2"; }
  try "curl -i $gw/" "JSON hello; see x-request-id"
  try "curl -N $gw/stream?n=5" "5 Server-Sent Events"
  try "curl -N '$gw/stream?n=3&gap_ms=3000'" "stream_idle guard cuts it"
  try "curl -i '$gw/slow?ms=3000'" "504 first_byte_timeout"
  try "curl -i --path-as-is $gw/%2e%2e/etc/passwd" "400 path_traversal"
  try "curl -i -X DELETE $gw/" "405 method_not_allowed"
  try "for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} ' $gw/flaky; done" \
    "503 x3 upstream, then circuit_open"
  try "curl -s $admin/metrics | grep bulwark_route" "Prometheus metrics"
  try "curl -s $admin/stats" "counters (JSON)"
  try "curl -s $admin/clusters" "endpoints and their state"
  try "curl -s $admin/config" "effective config"
  try "$admin/" "status page (browser)"
  cat <<EOF

Ctrl-C stops the gateway and the demo upstream.

EOF
  # Returns when either process exits or a signal arrives (the trap then stops both).
  set +e
  wait -n "$gateway_pid" "$upstream_pid"
  rc=$?
  set -e
  echo "quickstart: a process exited (status $rc); stopping" >&2
  exit 1
fi

# --- QUICKSTART_CHECK=1: run the commands above and check each answer ---------------------
failures=0
pass() { echo "ok    $*"; }
fail() {
  echo "FAIL  $*" >&2
  failures=$((failures + 1))
}
# status_of FILE: the status code on the last status line of a curl -D header dump.
status_of() { awk 'toupper($1) ~ /^HTTP\// {code = $2} END {print code}' "$1"; }
# header_of FILE NAME: the value of header NAME (case-insensitive) in a curl -D header dump.
header_of() {
  awk -v name="$2" 'BEGIN {name = tolower(name)}
    {sub(/\r$/, "")} tolower($0) ~ "^" name ":" {sub(/^[^:]*:[ \t]*/, ""); print; exit}' "$1"
}

# 1. GET / through the gateway: 200, JSON, request id and X-Forwarded-For reach the upstream.
rid=quickstart-check-1
h=$workdir/h1
b=$workdir/b1
if curl -s -m 5 -D "$h" -o "$b" -H "X-Request-Id: $rid" "$gw/"; then
  status=$(status_of "$h")
  if [ "$status" = 200 ] &&
     "$python" - "$b" "$rid" <<'EOF'
import json, sys
body = json.load(open(sys.argv[1]))
assert body["x_request_id"] == sys.argv[2], body
assert "127.0.0.1" in (body["x_forwarded_for"] or ""), body
EOF
  then
    pass "GET / -> 200 JSON, upstream saw X-Request-Id $rid and X-Forwarded-For 127.0.0.1"
  else
    fail "GET / -> status $status, body: $(head -c 300 "$b")"
  fi
  got=$(header_of "$h" x-request-id)
  if [ "$got" = "$rid" ]; then
    pass "GET / -> x-request-id $rid in the answer"
  else
    fail "GET / -> x-request-id header '$got', want $rid"
  fi
else
  fail "GET / -> curl failed"
fi

# 2. /stream?n=5: all five events arrive through the gateway.
h=$workdir/h2
b=$workdir/b2
if curl -s -N -m 10 -D "$h" -o "$b" "$gw/stream?n=5"; then
  status=$(status_of "$h")
  events=$(grep -c '^data: ' "$b" || true)
  if [ "$status" = 200 ] && [ "$events" = 5 ]; then
    pass "GET /stream?n=5 -> 200, 5 SSE events"
  else
    fail "GET /stream?n=5 -> status $status, $events events"
  fi
else
  fail "GET /stream?n=5 -> curl failed (exit $?)"
fi

# 3. An encoded traversal is refused by the gateway and never reaches the upstream.
h=$workdir/h3
b=$workdir/b3
if curl -s -m 5 --path-as-is -D "$h" -o "$b" "$gw/%2e%2e/etc/passwd"; then
  status=$(status_of "$h")
  reason=$(header_of "$h" x-bulwark-reason)
  if [ "$status" = 400 ] && [ "$reason" = path_traversal ]; then
    pass "GET /%2e%2e/etc/passwd -> 400, x-bulwark-reason: path_traversal"
  else
    fail "GET /%2e%2e/etc/passwd -> status $status, x-bulwark-reason '$reason'"
  fi
else
  fail "GET /%2e%2e/etc/passwd -> curl failed"
fi

# 4. A circuit breaker opens: three 503s from the upstream, then the gateway's own 503
#    circuit_open, with the upstream no longer called.
statuses=""
for i in 1 2 3; do
  statuses="$statuses$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$gw/flaky" || true) "
done
h=$workdir/h5
curl -s -m 5 -D "$h" -o /dev/null "$gw/flaky" || true
status=$(status_of "$h")
reason=$(header_of "$h" x-bulwark-reason)
if [ "$statuses" = "503 503 503 " ] && [ "$status" = 503 ] && [ "$reason" = circuit_open ]; then
  pass "GET /flaky x4 -> 503 503 503 from the upstream, then 503 circuit_open (breaker open)"
else
  fail "GET /flaky x4 -> '$statuses' then $status '$reason', want 503 x3 then circuit_open"
fi
if curl -fs -m 5 "$admin/clusters" | grep -q '"breaker":"open"'; then
  pass "admin /clusters -> the flaky cluster's breaker is open"
else
  fail "admin /clusters -> no open breaker"
fi

# 5. Admin: metrics count the routed requests; the other pages answer.
b=$workdir/b4
if curl -fs -m 5 -o "$b" "$admin/metrics" && grep -q '^bulwark_route_requests_total' "$b"; then
  pass "admin /metrics -> has bulwark_route_requests_total"
else
  fail "admin /metrics -> no bulwark_route_requests_total series"
fi
for page in / /stats /clusters /config /healthz /readyz; do
  code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$admin$page" || true)
  if [ "$code" = 200 ]; then pass "admin $page -> 200"; else fail "admin $page -> $code"; fi
done

if [ "$failures" -ne 0 ]; then
  echo "quickstart check: $failures failure(s)" >&2
  exit 1
fi
echo "quickstart check: all passed"
