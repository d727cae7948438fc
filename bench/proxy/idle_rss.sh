#!/usr/bin/env bash
# Memory per idle keep-alive connection: bulwark vs HAProxy vs nginx, one worker each, in front of
# the same nginx upstream as bench/proxy/run.sh. For each proxy in turn (one at a time): start it,
# warm it up with a short wrk run (whose connections are then closed), then hold K client
# connections that have each been served one `GET /` (so each is a used keep-alive connection,
# not a fresh accept), and report the growth of the proxy's VmRSS (/proc/PID/status; for nginx,
# the worker process) divided by K. The client is bench/proxy/idle_client.py (Python stdlib,
# non-blocking, at most 64 requests in flight so no proxy needs more than 64 upstream connections);
# it checks that all K connections are still open when the RSS is read.
#
# VmRSS counts the proxy's user-space memory only: socket buffers in the kernel are not in it, and
# state a proxy preallocates at start-up for its configured connection limit (nginx's connection
# and event arrays, HAProxy's fd table) is in the baseline, not in the growth.
#
# Environment:
#   BULWARK_BIN       gateway binary (default: build/release/gateway/bulwark)
#   IDLE_TARGETS      proxies (default "bulwark haproxy nginx")
#   IDLE_CONNECTIONS  K, idle connections per proxy (default 8000)
#   IDLE_DEADLINE     seconds the client may take to open and fill them (default 120)
#   IDLE_RESULTS      results directory (default: build/idle-rss/<UTC timestamp>)
set -euo pipefail

bp_tag=idle-rss
# shellcheck source=bench/proxy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=${BULWARK_BIN:-$bp_repo/build/release/gateway/bulwark}
read -r -a targets <<<"${IDLE_TARGETS:-bulwark haproxy nginx}"
k=${IDLE_CONNECTIONS:-8000}
deadline=${IDLE_DEADLINE:-120}
results=${IDLE_RESULTS:-$bp_repo/build/idle-rss/$(date -u +%Y%m%dT%H%M%SZ)}

need_tools nginx haproxy wrk curl "$python"
[[ $k =~ ^[0-9]+$ ]] && [ "$k" -gt 0 ] || die "IDLE_CONNECTIONS: '$k' is not a count"
check_targets "${targets[@]}"

# The client holds K sockets and the proxy K client plus its upstream sockets (HAProxy asks for
# about twice its maxconn). Raise the soft limit, and as root the hard one, for this script and
# everything it starts.
want=$((4 * k + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
  ulimit -Hn "$want" 2>/dev/null || true
fi
ulimit -Sn "$want" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
[ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge $((2 * k + 256)) ] ||
  die "RLIMIT_NOFILE $(ulimit -Sn) is too low for $k connections (need $((2 * k + 256)))"
bp_nginx_connections=$((k + 1024))
bp_haproxy_maxconn=$((k + 1024))

mkdir -p "$results"
results=$(cd "$results" && pwd)
bp_init

{
  meta_lines
  echo "connections: $k; nofile: $(ulimit -Sn)"
} >"$results/meta.txt"

echo "idle-rss: $k idle keep-alive connections to each of ${targets[*]}; results in $results"
start_upstream
declare -A line_of
for t in "${targets[@]}"; do
  start_target "$t"
  rss_pid=$target_pid
  if [ "$t" = nginx ]; then
    # With master_process on, the connections belong to the worker.
    rss_pid=
    for _ in $(seq 1 100); do
      rss_pid=$(ps -o pid= --ppid "$target_pid" | head -n 1 | tr -d ' ')
      [ -n "$rss_pid" ] && break
      sleep 0.1
    done
    [ -n "$rss_pid" ] || die "nginx: no worker process"
  fi
  wrk -t1 -c8 -d1s "http://127.0.0.1:$target_port/" >"$results/wrk-warmup-$t.txt"
  "$python" "$bp_here/idle_client.py" 127.0.0.1 "$target_port" "$rss_pid" "$k" 64 "$deadline" \
    >"$results/idle-$t.txt" 2>"$results/idle-$t.log" ||
    die "$t: idle client failed: $(cat "$results/idle-$t.log")"
  line_of[$t]=$(cat "$results/idle-$t.txt")
  echo "idle-rss: $t: ${line_of[$t]}"
  bp_stop "$target_pid" 10 || true
done
echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/meta.txt"

{
  echo "$k used keep-alive connections held idle per proxy; $(date -u +%Y-%m-%dT%H:%M:%SZ)," \
    "load avg before $(awk -F': ' '/^load_before/ {print $2}' "$results/meta.txt")"
  echo
  echo "| target | RSS before | RSS with $k idle | growth | per idle connection |"
  echo "|---|---|---|---|---|"
  for t in "${targets[@]}"; do
    label=$t
    [ "$t" = haproxy ] && label=HAProxy
    echo "$label ${line_of[$t]}" | awk '{
      for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      printf "| %s | %s KiB | %s KiB | %s KiB | **%s KiB** |\n", $1, f["rss_before_kib"],
        f["rss_after_kib"], f["growth_kib"], f["per_connection_kib"]
    }'
  done
} | tee "$results/summary.md"
