#!/usr/bin/env bash
# Side-by-side proxy benchmark: bulwark vs HAProxy vs nginx in front of one nginx upstream.
#
# Everything runs on 127.0.0.1 in one go: an nginx upstream (1 worker, a fixed 1 KiB body,
# keep-alive), three proxies in front of it with ONE worker/thread each and upstream keep-alive
# (bulwark `workers: 1`, HAProxy `nbthread 1`, nginx `worker_processes 1`), then wrk against the
# upstream directly and against each proxy, one after another with the same settings. Every
# scenario (each connection count x each request shape) is measured in its own interleaved
# rounds. Prints a table per scenario (requests/s, p50, p99, user and system CPU per request of
# the measured process) and the ratios bulwark/HAProxy and bulwark/nginx; raw wrk outputs go to
# the results directory. Configs: bench/proxy/configs/; shared start-up code: bench/proxy/lib.sh.
#
# Environment:
#   BULWARK_BIN          gateway binary (default: build/release/gateway/bulwark)
#   BENCH_SKIP_BULWARK   1: leave the bulwark leg out (HAProxy and nginx only)
#   BULWARK_BASELINE_BIN a second gateway binary measured in the same run ("baseline" rows,
#                        e.g. the binary before a change)
#   BENCH_BULWARK_CONFIG the gateway's config template (default configs/bulwark.yaml.in;
#                        configs/bulwark-policies.yaml.in adds breaker, retry and limits)
#   BENCH_BASELINE_CONFIG the baseline gateway's config template (default: the same); with
#                        BULWARK_BASELINE_BIN set to the same binary, one config against another
#   BENCH_DURATION       wrk -d per measured run (default 6s)
#   BENCH_WARMUP         wrk -d of an unrecorded warm-up run before each (default 2s; 0 = none)
#   BENCH_CONNECTIONS    wrk -c, a list: one scenario per value (default "32 256")
#   BENCH_SHAPES         request shapes, a list (default "minimal realistic"): minimal is wrk's
#                        GET /; realistic is a path with a query and 10 header fields (lib.sh);
#                        jwt is realistic with a valid HS256 token (configs/bulwark-jwt.yaml.in)
#   BENCH_THREADS        wrk -t (default 1)
#   BENCH_ROUNDS         measured runs per target, interleaved; the median is reported (default 3)
#   BENCH_RESULTS        results directory (default: build/bench-proxy/<UTC timestamp>)
#   BENCH_TLS            1: every proxy terminates TLS (the same self-signed P-256 certificate,
#                        OpenSSL's default TLS 1.3 suite); wrk speaks https to them (keep-alive:
#                        one handshake per connection). The upstream stays plain HTTP
# With the defaults: 2 connection counts x 2 shapes x 3 rounds x 4 targets x 8 s = about 6.5 min.
set -euo pipefail

bp_tag=bench-proxy
# shellcheck source=bench/proxy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
here=$bp_here
repo=$bp_repo
bin=${BULWARK_BIN:-$repo/build/release/gateway/bulwark}
skip_bulwark=${BENCH_SKIP_BULWARK:-0}
duration=${BENCH_DURATION:-6s}
warmup=${BENCH_WARMUP:-2s}
read -r -a connections_list <<<"${BENCH_CONNECTIONS:-32 256}"
read -r -a shapes <<<"${BENCH_SHAPES:-minimal realistic}"
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-1}
results=${BENCH_RESULTS:-$repo/build/bench-proxy/$(date -u +%Y%m%dT%H%M%SZ)}

need_tools nginx haproxy wrk curl "$python"
if [ "$skip_bulwark" != 1 ]; then
  [ -x "$bin" ] || die "no gateway binary at $bin (set BULWARK_BIN, or BENCH_SKIP_BULWARK=1)"
fi
[ "${#connections_list[@]}" -gt 0 ] || die "BENCH_CONNECTIONS is empty"
for c in "${connections_list[@]}"; do
  [[ $c =~ ^[0-9]+$ ]] && [ "$c" -gt 0 ] || die "BENCH_CONNECTIONS: '$c' is not a count"
done
[ "${#shapes[@]}" -gt 0 ] || die "BENCH_SHAPES is empty"

mkdir -p "$results"
results=$(cd "$results" && pwd)
bp_init

# The URL of a target: the upstream is plain HTTP, the proxies speak $bp_scheme.
url_of() {
  if [ "$1" = upstream ]; then
    echo "http://127.0.0.1:${port_of[$1]}"
  else
    echo "$bp_scheme://127.0.0.1:${port_of[$1]}"
  fi
}

start_upstream
targets=(upstream)
declare -A port_of pid_of
port_of[upstream]=$upstream_port
pid_of[upstream]=$upstream_pid
if [ "$skip_bulwark" != 1 ]; then
  bulwark_config=${BENCH_BULWARK_CONFIG:-$here/configs/bulwark.yaml.in}
  start_bulwark
  targets+=(bulwark)
  port_of[bulwark]=$bulwark_port
  pid_of[bulwark]=$bulwark_pid
  if [ -n "${BULWARK_BASELINE_BIN:-}" ]; then
    # A second gateway binary (e.g. the previous release) measured in the same run.
    measured_bin=$bin
    bin=$BULWARK_BASELINE_BIN
    bulwark_config=${BENCH_BASELINE_CONFIG:-$bulwark_config}
    start_bulwark baseline
    bin=$measured_bin
    targets+=(baseline)
    port_of[baseline]=$bulwark_port
    pid_of[baseline]=$bulwark_pid
  fi
fi
start_haproxy
start_nginx_proxy
targets+=(haproxy nginx)
port_of[haproxy]=$haproxy_port
pid_of[haproxy]=$haproxy_pid
port_of[nginx]=$nginx_port
pid_of[nginx]=$nginx_pid

# Every target must answer every shape with 200 and the full 1 KiB body before anything is
# measured.
for t in "${targets[@]}"; do
  for shape in "${shapes[@]}"; do check_shape "$t" "$shape" "$(url_of "$t")"; done
done

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
  echo "load: wrk -t$threads -d$duration --latency (warm-up $warmup, not recorded)" \
    "x $rounds round(s)"
  echo "clk_tck: $(getconf CLK_TCK)"
  echo "rounds: $rounds"
  echo "targets: ${targets[*]}"
  echo "connections: ${connections_list[*]}"
  echo "shapes: ${shapes[*]}"
} >"$results/meta.txt"

echo "bench-proxy: wrk -t$threads -d$duration --latency, $rounds round(s), -c ${connections_list[*]}," \
  "shapes ${shapes[*]}: ${targets[*]}"
echo "bench-proxy: results in $results"
# Within a scenario, rounds interleave the targets (upstream, bulwark, haproxy, nginx, upstream,
# ...) so a change in background load hits every target alike; the summary takes the median
# round of each.
for connections in "${connections_list[@]}"; do
  for shape in "${shapes[@]}"; do
    scenario=$shape-c$connections
    for round in $(seq 1 "$rounds"); do
      for t in "${targets[@]}"; do
        shape_args "$shape" "$(url_of "$t")"
        if [ "$warmup" != 0 ] && [ "$warmup" != 0s ]; then
          wrk -t"$threads" -c"$connections" -d"$warmup" "${shape_hdrs[@]}" "$shape_url" >/dev/null
        fi
        out=$results/wrk-$scenario-$t-r$round.txt
        load_before=$(cut -d' ' -f1-3 /proc/loadavg)
        read -r user_before sys_before < <(cpu_ticks "${pid_of[$t]}")
        wrk -t"$threads" -c"$connections" -d"$duration" --latency "${shape_hdrs[@]}" "$shape_url" \
          >"$out"
        read -r user_after sys_after < <(cpu_ticks "${pid_of[$t]}")
        {
          echo "load_before: $load_before"
          echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)"
          echo "cpu_user_ticks: $((user_after - user_before))"
          echo "cpu_sys_ticks: $((sys_after - sys_before))"
        } >"$results/run-$scenario-$t-r$round.txt"
        echo "bench-proxy: $scenario round $round/$rounds $t:" \
          "$(awk '/^Requests\/sec/ {print $2}' "$out") req/s"
      done
    done
  done
done

"$python" "$here/summarize.py" "$results" | tee "$results/summary.md"
