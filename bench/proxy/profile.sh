#!/usr/bin/env bash
# Data-path profile: what one keep-alive GET costs inside each proxy, in three counts that do not
# depend on how fast the machine is — heap allocations, instructions and system calls per
# request — for bulwark, HAProxy and nginx in one run, each in front of the same nginx upstream
# as bench/proxy/run.sh (one worker/thread each; nginx with `master_process off`, HAProxy `-db`).
# Every figure is measured for two request shapes: wrk's minimal GET / and a realistic request
# (a path with a query and 10 header fields; see lib.sh).
#
#   allocations/request   heaptrack. Two runs of a fresh proxy under heaptrack, each a warm-up
#                         then a load, the second load longer; (allocations of the long run -
#                         allocations of the short run) / (requests of the long run - requests
#                         of the short run). Start-up, warm-up, connection set-up and shutdown
#                         are the same in both runs and cancel out; what is left is the steady
#                         state cost of one request.
#   instructions/request  callgrind, started with --instr-atstart=no; a warm-up runs
#                         uninstrumented, `callgrind_control -i on` just before the measured load
#                         and `-i off` right after it; total Ir (every thread) / requests wrk
#                         completed in that load.
#   syscalls/request      `strace -c -f -p` attached to a running (warmed-up) proxy only for the
#                         measured load; the count of each system call (every thread) / requests
#                         wrk completed. Calls at >= PROFILE_MIN_RATE per request are listed.
#
# heaptrack, callgrind and strace slow the proxy down (callgrind ~50x), so the loads are short
# and counted, not timed; no figure here is a throughput. wrk counts completed answers; at most
# PROFILE_CONNECTIONS requests in flight at the end of a load are not counted.
#
# Environment:
#   BULWARK_BIN                 gateway binary (default: build/release/gateway/bulwark)
#   PROFILE_TARGETS             proxies (default "bulwark haproxy nginx")
#   PROFILE_BULWARK_CONFIG      the gateway's config template (default configs/bulwark.yaml.in)
#   PROFILE_TOOLS               measurements (default "heaptrack callgrind strace")
#   PROFILE_SHAPES              request shapes (default "minimal realistic"; also jwt, lib.sh)
#   PROFILE_CONNECTIONS         wrk -c of every load (default 8; wrk -t1)
#   PROFILE_WARMUP              wrk -d of the warm-up before each heaptrack and strace load (2s)
#   PROFILE_HEAP_SHORT          wrk -d of the short heaptrack load (default 2s)
#   PROFILE_HEAP_LONG           wrk -d of the long heaptrack load (default 6s)
#   PROFILE_CALLGRIND_WARMUP    wrk -d of the uninstrumented warm-up under callgrind (default 3s)
#   PROFILE_CALLGRIND_DURATION  wrk -d of the instrumented load (default 10s)
#   PROFILE_STRACE_DURATION     wrk -d of the traced load (default 4s)
#   PROFILE_MIN_RATE            smallest per-request rate of a listed system call (default 0.05)
#   PROFILE_RESULTS             results directory (default: build/profile-proxy/<UTC timestamp>)
# With the defaults a full run takes about 4 minutes on 2 cores.
set -euo pipefail

bp_tag=profile-proxy
# shellcheck source=bench/proxy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=${BULWARK_BIN:-$bp_repo/build/release/gateway/bulwark}
read -r -a targets <<<"${PROFILE_TARGETS:-bulwark haproxy nginx}"
bulwark_config=${PROFILE_BULWARK_CONFIG:-}
read -r -a tools <<<"${PROFILE_TOOLS:-heaptrack callgrind strace}"
read -r -a shapes <<<"${PROFILE_SHAPES:-minimal realistic}"
connections=${PROFILE_CONNECTIONS:-8}
warmup=${PROFILE_WARMUP:-2s}
heap_short=${PROFILE_HEAP_SHORT:-2s}
heap_long=${PROFILE_HEAP_LONG:-6s}
cg_warmup=${PROFILE_CALLGRIND_WARMUP:-3s}
cg_duration=${PROFILE_CALLGRIND_DURATION:-10s}
strace_duration=${PROFILE_STRACE_DURATION:-4s}
min_rate=${PROFILE_MIN_RATE:-0.05}
results=${PROFILE_RESULTS:-$bp_repo/build/profile-proxy/$(date -u +%Y%m%dT%H%M%SZ)}

need_tools nginx haproxy wrk curl "$python"
for tool in "${tools[@]}"; do
  case $tool in
    heaptrack) need_tools heaptrack heaptrack_print ;;
    callgrind) need_tools valgrind callgrind_control ;;
    strace) need_tools strace ;;
    *) die "unknown tool $tool (heaptrack, callgrind, strace)" ;;
  esac
done
check_targets "${targets[@]}"

mkdir -p "$results"
results=$(cd "$results" && pwd)
bp_init
# One process per proxy (the nginx worker is the process measured), and room for a slow start
# under valgrind.
bp_nginx_master=off
bp_wait_tries=900

log() { echo "profile-proxy: $(date -u +%H:%M:%S) $*"; }

# load OUT DURATION SHAPE: one wrk run against the current target; fails on errors.
load() {
  local out=$1 duration=$2
  shape_args "$3" "http://127.0.0.1:$target_port"
  wrk -t1 -c"$connections" -d"$duration" --timeout 30s "${shape_hdrs[@]}" "$shape_url" >"$out"
  local n
  n=$(wrk_requests "$out")
  [ "$n" -gt 0 ] || die "no request completed in $out"
  if grep -q -e '^ *Non-2xx' -e '^ *Socket errors' "$out"; then
    die "errors in $out: $(grep -e 'Non-2xx' -e 'Socket errors' "$out" | tr -s ' ')"
  fi
  echo "$(date -u +%H:%M:%S) $(basename "$out"): $n requests, load avg" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/runs.txt"
}

# stop_wrapped: stops the current target and waits for its wrapper to finish its output.
stop_wrapped() {
  bp_stop "$target_pid" 60 || log "$1: needed SIGKILL; its output may be incomplete"
  if [ "$bp_wrapper_pid" != "$target_pid" ]; then
    bp_wait_exit "$bp_wrapper_pid" 600 || die "$1: ${bp_wrap_name} did not finish within 600s"
  fi
}

measure_heaptrack() {  # measure_heaptrack TARGET SHAPE
  local t=$1 shape=$2 leg duration base file
  for leg in short long; do
    duration=$heap_short
    [ "$leg" = long ] && duration=$heap_long
    base=$results/heaptrack-$t-$shape-$leg
    rm -f "$base".*
    bp_wrap=(heaptrack -o "$base")
    bp_wrap_name=heaptrack
    start_target "$t"
    bp_wrap=()
    check_shape "$t" "$shape" "http://127.0.0.1:$target_port"
    load "$results/wrk-heaptrack-$t-$shape-$leg-warmup.txt" "$warmup" "$shape"
    load "$results/wrk-heaptrack-$t-$shape-$leg-load.txt" "$duration" "$shape"
    stop_wrapped "$t"
    file=$(ls "$base".zst "$base".gz 2>/dev/null | head -n 1) || true
    [ -n "$file" ] || die "$t: heaptrack wrote no $base.zst"
    heaptrack_print -f "$file" --print-peaks=0 --print-allocators=0 --print-temporary=0 \
      --print-leaks=0 >"$base.txt" 2>&1 || die "$t: heaptrack_print failed (see $base.txt)"
    log "heaptrack $t $shape $leg: $(grep -m1 'calls to allocation functions' "$base.txt")"
  done
}

measure_callgrind() {  # measure_callgrind TARGET SHAPE
  local t=$1 shape=$2 out=$results/callgrind-$t-$shape.out
  rm -f "$out"
  bp_wrap=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$out")
  bp_wrap_name=valgrind
  start_target "$t"
  bp_wrap=()
  check_shape "$t" "$shape" "http://127.0.0.1:$target_port"
  load "$results/wrk-callgrind-$t-$shape-warmup.txt" "$cg_warmup" "$shape"
  callgrind_control -i on "$target_pid" >>"$results/callgrind_control.log" 2>&1 ||
    die "$t: callgrind_control -i on failed (see $results/callgrind_control.log)"
  load "$results/wrk-callgrind-$t-$shape-load.txt" "$cg_duration" "$shape"
  callgrind_control -i off "$target_pid" >>"$results/callgrind_control.log" 2>&1 ||
    die "$t: callgrind_control -i off failed (see $results/callgrind_control.log)"
  stop_wrapped "$t"
  [ -s "$out" ] || die "$t: callgrind wrote no $out"
  log "callgrind $t $shape: $(grep -m1 -e '^summary:' -e '^totals:' "$out")"
}

# all_traced PID TRACER: every thread of PID is traced by TRACER.
all_traced() {
  local task tracer
  for task in /proc/"$1"/task/*; do
    tracer=$(awk '/^TracerPid:/ {print $2}' "$task/status" 2>/dev/null) || return 1
    [ "$tracer" = "$2" ] || return 1
  done
}

measure_strace() {  # measure_strace TARGET SHAPE (the target runs unwrapped)
  local t=$1 shape=$2 out=$results/strace-$t-$shape.txt spid
  check_shape "$t" "$shape" "http://127.0.0.1:$target_port"
  load "$results/wrk-strace-$t-$shape-warmup.txt" "$warmup" "$shape"
  strace -c -f -p "$target_pid" -o "$out" 2>"$results/strace-$t-$shape.log" &
  spid=$!
  pids+=("$spid")
  for _ in $(seq 1 100); do
    all_traced "$target_pid" "$spid" && break
    kill -0 "$spid" 2>/dev/null || die "strace exited (see $results/strace-$t-$shape.log)"
    sleep 0.1
  done
  all_traced "$target_pid" "$spid" || die "strace did not attach to every thread of $t in 10s"
  load "$results/wrk-strace-$t-$shape-load.txt" "$strace_duration" "$shape"
  kill -INT "$spid"
  bp_wait_exit "$spid" 30 || die "strace did not detach within 30s"
  log "strace $t $shape: $(tail -n 1 "$out" | tr -s ' ')"
}

{
  meta_lines 1
  echo "tools: heaptrack $(heaptrack --version 2>/dev/null | awk '{print $2}');" \
    "$(valgrind --version 2>/dev/null); strace $(strace -V 2>/dev/null | awk 'NR == 1 {print $4}')"
  echo "load: wrk -t1 -c$connections; heaptrack warm-up $warmup + $heap_short / $heap_long;" \
    "callgrind warm-up $cg_warmup + $cg_duration; strace warm-up $warmup + $strace_duration"
  echo "targets: ${targets[*]}"
  echo "shapes: ${shapes[*]}"
  echo "tools_run: ${tools[*]}"
  echo "min_rate: $min_rate"
} >"$results/meta.txt"

log "${targets[*]} x ${shapes[*]} x ${tools[*]}; results in $results"
start_upstream

for tool in "${tools[@]}"; do
  for t in "${targets[@]}"; do
    if [ "$tool" = strace ]; then
      start_target "$t"
      for shape in "${shapes[@]}"; do measure_strace "$t" "$shape"; done
      bp_stop "$target_pid" 10 || true
    else
      for shape in "${shapes[@]}"; do "measure_$tool" "$t" "$shape"; done
    fi
  done
done

echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/meta.txt"
"$python" "$bp_here/profile_summary.py" "$results" | tee "$results/summary.md"
