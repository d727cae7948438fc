#!/usr/bin/env bash
# Side-by-side proxy benchmark: bulwark vs HAProxy vs nginx in front of one nginx upstream.
#
# Everything runs on 127.0.0.1 in one go: an nginx upstream (1 worker, a fixed 1 KiB body,
# keep-alive), three proxies in front of it with ONE worker/thread each and upstream keep-alive
# (bulwark `workers: 1`, HAProxy `nbthread 1`, nginx `worker_processes 1`), then wrk against the
# upstream directly and against each proxy, one after another with the same settings. Prints a
# table (requests/s, p50, p99, proxy CPU per request) and the ratios bulwark/HAProxy and
# bulwark/nginx; raw wrk outputs go to the results directory. Configs: bench/proxy/configs/.
#
# Environment:
#   BULWARK_BIN          gateway binary (default: build/release/gateway/bulwark)
#   BENCH_SKIP_BULWARK   1: leave the bulwark leg out (HAProxy and nginx only)
#   BENCH_DURATION       wrk -d per measured run (default 10s)
#   BENCH_WARMUP         wrk -d of an unrecorded warm-up run before each (default 2s; 0 = none)
#   BENCH_CONNECTIONS    wrk -c (default 50)
#   BENCH_THREADS        wrk -t (default 1)
#   BENCH_ROUNDS         measured runs per target, interleaved; the median is reported (default 3)
#   BENCH_RESULTS        results directory (default: build/bench-proxy/<UTC timestamp>)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${BULWARK_BIN:-$repo/build/release/gateway/bulwark}
skip_bulwark=${BENCH_SKIP_BULWARK:-0}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
connections=${BENCH_CONNECTIONS:-50}
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-1}
results=${BENCH_RESULTS:-$repo/build/bench-proxy/$(date -u +%Y%m%dT%H%M%SZ)}
python=${PYTHON:-python3}

die() {
  echo "bench-proxy: $*" >&2
  exit 1
}

for tool in nginx haproxy wrk curl "$python"; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done
if [ "$skip_bulwark" != 1 ]; then
  [ -x "$bin" ] || die "no gateway binary at $bin (set BULWARK_BIN, or BENCH_SKIP_BULWARK=1)"
fi

mkdir -p "$results"
results=$(cd "$results" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-bench-proxy.XXXXXX")
pids=()

stop_all() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    # Keep the configs and logs of a failed run for a look.
    cp -r "$tmp" "$results/work" 2>/dev/null || true
    echo "bench-proxy: failed; configs and logs in $results/work" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports, bound together so they are distinct, then released for the servers.
free_ports() {
  "$python" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r upstream_port haproxy_port nginx_port < <(free_ports 3)

# render TEMPLATE OUT KEY=VALUE...: the template with each @KEY@ replaced.
render() {
  local template=$1 out=$2
  shift 2
  local args=() kv
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$template" >"$out"
}

# wait_http URL PID NAME: bounded wait until URL answers 200, failing early if PID exited.
wait_http() {
  local url=$1 pid=$2 name=$3
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
    if curl -fs -m 1 -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  die "$name did not answer $url within 10s"
}

start_nginx() {  # start_nginx NAME TEMPLATE PORT
  local name=$1 template=$2 port=$3 dir=$tmp/$1
  mkdir -p "$dir"
  render "$template" "$dir/nginx.conf" DIR="$dir" PORT="$port" UPSTREAM_PORT="$upstream_port" \
    BODY="$body"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -t -q 2>"$dir/check.log" ||
    { cat "$dir/check.log" >&2; die "$name: invalid nginx config"; }
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/" "$!" "$name"
}

# The upstream's 1 KiB body: 1023 letters and a newline (nginx turns the escaped \n into one;
# the backslash is doubled for sed).
body=$(head -c 1023 /dev/zero | tr '\0' 'a')'\\n'

start_nginx upstream "$here/configs/upstream-nginx.conf.in" "$upstream_port"
start_nginx nginx "$here/configs/nginx-proxy.conf.in" "$nginx_port"

mkdir -p "$tmp/haproxy"
render "$here/configs/haproxy.cfg.in" "$tmp/haproxy/haproxy.cfg" PORT="$haproxy_port" \
  UPSTREAM_PORT="$upstream_port"
haproxy -c -q -f "$tmp/haproxy/haproxy.cfg" || die "haproxy: invalid config"
haproxy -f "$tmp/haproxy/haproxy.cfg" -db >"$tmp/haproxy/haproxy.log" 2>&1 &
pids+=($!)
haproxy_pid=$!
wait_http "http://127.0.0.1:$haproxy_port/" "$haproxy_pid" haproxy

upstream_pid=${pids[0]}
nginx_pid=${pids[1]}
targets=(upstream)
declare -A url pid_of
url[upstream]=http://127.0.0.1:$upstream_port/
pid_of[upstream]=$upstream_pid

if [ "$skip_bulwark" != 1 ]; then
  mkdir -p "$tmp/bulwark"
  render "$here/configs/bulwark.yaml.in" "$tmp/bulwark/bulwark.yaml" UPSTREAM_PORT="$upstream_port"
  "$bin" --check-config --config "$tmp/bulwark/bulwark.yaml" >/dev/null ||
    die "bulwark: invalid config"
  "$bin" --config "$tmp/bulwark/bulwark.yaml" --ready-file "$tmp/bulwark/ready.json" \
    >"$tmp/bulwark/stdout.log" 2>"$tmp/bulwark/stderr.log" &
  pids+=($!)
  bulwark_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$tmp/bulwark/ready.json" ] && break
    kill -0 "$bulwark_pid" 2>/dev/null || die "bulwark exited during startup"
    sleep 0.1
  done
  [ -s "$tmp/bulwark/ready.json" ] || die "bulwark wrote no ready file within 10s"
  bulwark_port=$("$python" -c \
    'import json, sys; print(json.load(open(sys.argv[1]))["listeners"]["bench"])' \
    "$tmp/bulwark/ready.json")
  wait_http "http://127.0.0.1:$bulwark_port/" "$bulwark_pid" bulwark
  targets+=(bulwark)
  url[bulwark]=http://127.0.0.1:$bulwark_port/
  pid_of[bulwark]=$bulwark_pid
fi
targets+=(haproxy nginx)
url[haproxy]=http://127.0.0.1:$haproxy_port/
pid_of[haproxy]=$haproxy_pid
url[nginx]=http://127.0.0.1:$nginx_port/
pid_of[nginx]=$nginx_pid

# Every target must answer 200 with the full 1 KiB body before anything is measured.
for t in "${targets[@]}"; do
  got=$(curl -s -m 2 -o /dev/null -w '%{http_code} %{size_download}' "${url[$t]}")
  [ "$got" = "200 1024" ] || die "$t answered '$got' (want '200 1024') at ${url[$t]}"
done

# cpu_ticks PID: user+system clock ticks of PID and its direct children (nginx's worker).
cpu_ticks() {
  local total=0 p stat rest
  local -a f
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "host: $(uname -sr), $(nproc) cpus, $mem"
  echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "wrk: $(wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}')"
  echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "haproxy: $(haproxy -v | head -n 1 | awk '{print $3}')"
  if [ "$skip_bulwark" != 1 ]; then
    echo "bulwark: $("$bin" --version) ($bin, built $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ))"
  fi
  echo "load: wrk -t$threads -c$connections -d$duration --latency (warm-up $warmup, not recorded)" \
    "x $rounds round(s)"
  echo "clk_tck: $(getconf CLK_TCK)"
} >"$results/meta.txt"

echo "bench-proxy: wrk -t$threads -c$connections -d$duration --latency, $rounds round(s):" \
  "${targets[*]}"
echo "bench-proxy: results in $results"
# Rounds interleave the targets (upstream, bulwark, haproxy, nginx, upstream, ...) so a change in
# background load hits every target alike; the summary takes the median round of each.
for round in $(seq 1 "$rounds"); do
  for t in "${targets[@]}"; do
    if [ "$warmup" != 0 ] && [ "$warmup" != 0s ]; then
      wrk -t"$threads" -c"$connections" -d"$warmup" "${url[$t]}" >/dev/null
    fi
    out=$results/wrk-$t-r$round.txt
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    ticks_before=$(cpu_ticks "${pid_of[$t]}")
    wrk -t"$threads" -c"$connections" -d"$duration" --latency "${url[$t]}" >"$out"
    ticks_after=$(cpu_ticks "${pid_of[$t]}")
    {
      echo "load_before: $load_before"
      echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)"
      echo "cpu_ticks: $((ticks_after - ticks_before))"
    } >"$results/run-$t-r$round.txt"
    echo "bench-proxy: round $round/$rounds $t: $(awk '/^Requests\/sec/ {print $2}' "$out") req/s"
  done
done

"$python" "$here/summarize.py" "$results" "$rounds" "${targets[@]}" | tee "$results/summary.md"
