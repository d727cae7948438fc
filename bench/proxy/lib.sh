# shellcheck shell=bash
# Shared start-up code of the proxy harness (run.sh, profile.sh, idle_rss.sh): an nginx upstream,
# bulwark, HAProxy and nginx in front of it on 127.0.0.1, each process stopped by PID on exit.
# Sourced, not run. The caller sets `set -euo pipefail` and `bp_tag` (the prefix of messages),
# then calls bp_init. Configs: bench/proxy/configs/.
#
# Knobs a caller may set before starting a server:
#   bp_wrap=(CMD ARGS...)        run the next server under CMD (heaptrack, valgrind); empty: none
#   bp_nginx_master=on|off       nginx proxy master_process (off: one process, the worker itself)
#   bp_nginx_connections=N       nginx proxy worker_connections (default 4096)
#   bp_haproxy_maxconn=N         HAProxy global and frontend maxconn (default 4096)
#   bp_wait_tries=N              startup polls, 0.1 s apart (default 100)
# After a start, bp_started_pid is the PID of the server itself (for a wrapped server, not the
# wrapper's) and bp_wrapper_pid the PID that was forked (the same for an unwrapped server).

bp_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bp_repo=$(cd "$bp_here/../.." && pwd)
python=${PYTHON:-python3}
bp_tag=${bp_tag:-bench-proxy}
bp_wrap=()
bp_nginx_master=on
bp_nginx_connections=4096
bp_haproxy_maxconn=4096
bp_wait_tries=100
bp_started_pid=
bp_wrapper_pid=
pids=()

die() {
  echo "$bp_tag: $*" >&2
  exit 1
}

need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
  done
}

# bp_forget PID: drop PID from the processes the exit trap stops (it has exited).
bp_forget() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# bp_wait_exit PID SECONDS: bounded wait for a process that was asked to stop; 1 if it did not.
bp_wait_exit() {
  local pid=$1 tries=$(($2 * 10))
  for _ in $(seq 1 "$tries"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      bp_forget "$pid"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# bp_stop PID [SECONDS]: SIGTERM, a bounded wait for the exit (default 5 s), then SIGKILL.
# Returns 1 if it took SIGKILL.
bp_stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  bp_wait_exit "$pid" "${2:-5}" && return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  bp_forget "$pid"
  return 1
}

bp_on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  # Newest first: wrapped servers before their wrappers, proxies before the upstream.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[$i]}
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -n "${results:-}" ]; then
    # Keep the configs and logs of a failed run for a look.
    cp -r "$tmp" "$results/work" 2>/dev/null || true
    echo "$bp_tag: failed; configs and logs in $results/work" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}

# bp_init: the scratch directory ($tmp) and the traps that stop every started process.
bp_init() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-$bp_tag.XXXXXX")
  trap bp_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

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

# render TEMPLATE OUT KEY=VALUE...: the template with each @KEY@ replaced.
render() {
  local template=$1 out=$2
  shift 2
  local args=() kv
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$template" >"$out"
}

# TLS mode (BENCH_TLS=1): every proxy terminates TLS with the same certificate (a self-signed
# P-256 one made for the run) and OpenSSL's default TLS 1.3 suite; the upstream stays plain.
# bp_scheme is the scheme clients use; the templates' @TLS_*@ placeholders say how each proxy
# enables it (empty without TLS).
bp_tls=${BENCH_TLS:-0}
bp_scheme=http
[ "$bp_tls" = 1 ] && bp_scheme=https

# make_tls_cert: the run's certificate and key ($tmp/tls/cert.pem, key.pem, and both in one file
# for HAProxy).
make_tls_cert() {
  [ "$bp_tls" = 1 ] || return 0
  [ -s "$tmp/tls/both.pem" ] && return 0
  need_tools openssl
  mkdir -p "$tmp/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$tmp/tls/key.pem" -out "$tmp/tls/cert.pem" 2>/dev/null || die "openssl req failed"
  cat "$tmp/tls/cert.pem" "$tmp/tls/key.pem" >"$tmp/tls/both.pem"
}

# tls_args PROXY: sets tls_kv to the KEY=VALUE placeholders of PROXY's template in this mode
# (every placeholder empty without TLS).
tls_kv=()
tls_args() {
  tls_kv=(TLS_LISTENER= TLS_BIND= TLS_LISTEN= TLS_CERTS=)
  [ "$bp_tls" = 1 ] || return 0
  make_tls_cert
  case $1 in
    bulwark) tls_kv=("TLS_LISTENER=tls: {cert: $tmp/tls/cert.pem, key: $tmp/tls/key.pem}") ;;
    haproxy) tls_kv=("TLS_BIND=ssl crt $tmp/tls/both.pem alpn http/1.1") ;;
    nginx)
      tls_kv=("TLS_LISTEN=ssl"
        "TLS_CERTS=ssl_certificate $tmp/tls/cert.pem; ssl_certificate_key $tmp/tls/key.pem; ssl_protocols TLSv1.2 TLSv1.3;")
      ;;
  esac
}

# wait_http URL PID NAME: bounded wait until URL answers at all (any HTTP status: a gateway
# with authentication answers a bare GET with 401; check_shape checks the real answers), failing
# early if PID exited.
wait_http() {
  local url=$1 pid=$2 name=$3 code
  for _ in $(seq 1 "$bp_wait_tries"); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
    code=$(curl -ks -m 1 -o /dev/null -w '%{http_code}' "$url") || true
    if [ "$code" != 000 ] && [ -n "$code" ]; then return 0; fi
    sleep 0.1
  done
  die "$name did not answer $url within $((bp_wait_tries / 10))s"
}

# bp_child_exe PARENT EXE: bounded wait for the child of PARENT running EXE; prints its PID.
bp_child_exe() {
  local parent=$1 exe=$2 c
  for _ in $(seq 1 "$bp_wait_tries"); do
    for c in $(ps -o pid= --ppid "$parent" 2>/dev/null); do
      if [ "$(readlink -f "/proc/$c/exe" 2>/dev/null)" = "$exe" ]; then
        echo "$c"
        return 0
      fi
    done
    kill -0 "$parent" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# bp_spawn NAME EXE LOG ARGS...: starts EXE ARGS (under bp_wrap if set) in the background;
# sets bp_wrapper_pid and bp_started_pid and records both for the exit trap.
bp_spawn() {
  local name=$1 exe=$2 log=$3
  shift 3
  if [ "${#bp_wrap[@]}" -gt 0 ]; then
    "${bp_wrap[@]}" "$exe" "$@" >"$log" 2>&1 &
  else
    "$exe" "$@" >"$log" 2>&1 &
  fi
  bp_wrapper_pid=$!
  pids+=("$bp_wrapper_pid")
  bp_started_pid=$bp_wrapper_pid
  # heaptrack's launcher is a script that forks the program; valgrind execs in place.
  if [ "${#bp_wrap[@]}" -gt 0 ] && [ "$(basename "${bp_wrap[0]}")" = heaptrack ]; then
    bp_started_pid=$(bp_child_exe "$bp_wrapper_pid" "$(readlink -f "$exe")") ||
      die "$name: no process under ${bp_wrap[0]} (see $log)"
    pids+=("$bp_started_pid")
  fi
}

# The upstream's 1 KiB body: 1023 letters and a newline (nginx turns the escaped \n into one;
# the backslash is doubled for sed).
bp_body=$(head -c 1023 /dev/zero | tr '\0' 'a')'\\n'

start_nginx() {  # start_nginx NAME TEMPLATE PORT  (the upstream must be named "upstream")
  local name=$1 template=$2 port=$3 dir=$tmp/$1 scheme=http
  mkdir -p "$dir"
  # The upstream stays plain; the nginx proxy terminates TLS in TLS mode.
  tls_args "$([ "$name" = upstream ] && echo none || echo nginx)"
  [ "$name" != upstream ] && scheme=$bp_scheme
  render "$template" "$dir/nginx.conf" DIR="$dir" PORT="$port" UPSTREAM_PORT="$upstream_port" \
    BODY="$bp_body" MASTER_PROCESS="$bp_nginx_master" WORKER_CONNECTIONS="$bp_nginx_connections" \
    "${tls_kv[@]}"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -t -q 2>"$dir/check.log" ||
    { cat "$dir/check.log" >&2; die "$name: invalid nginx config"; }
  bp_spawn "$name" "$(command -v nginx)" "$dir/stdout.log" \
    -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
  wait_http "$scheme://127.0.0.1:$port/" "$bp_started_pid" "$name"
}

# start_upstream: the nginx upstream on a free port (upstream_port, upstream_pid); never wrapped.
start_upstream() {
  read -r upstream_port < <(free_ports 1)
  local saved=("${bp_wrap[@]}") master=$bp_nginx_master
  bp_wrap=()
  bp_nginx_master=on
  start_nginx upstream "$bp_here/configs/upstream-nginx.conf.in" "$upstream_port"
  upstream_pid=$bp_started_pid
  bp_wrap=("${saved[@]}")
  bp_nginx_master=$master
}

start_nginx_proxy() {  # start_nginx_proxy [PORT]: sets nginx_port, nginx_pid
  nginx_port=${1:-$(free_ports 1)}
  start_nginx nginx "$bp_here/configs/nginx-proxy.conf.in" "$nginx_port"
  nginx_pid=$bp_started_pid
}

start_haproxy() {  # start_haproxy [PORT]: sets haproxy_port, haproxy_pid (foreground, -db)
  haproxy_port=${1:-$(free_ports 1)}
  mkdir -p "$tmp/haproxy"
  tls_args haproxy
  render "$bp_here/configs/haproxy.cfg.in" "$tmp/haproxy/haproxy.cfg" PORT="$haproxy_port" \
    UPSTREAM_PORT="$upstream_port" MAXCONN="$bp_haproxy_maxconn" "${tls_kv[@]}"
  haproxy -c -q -f "$tmp/haproxy/haproxy.cfg" || die "haproxy: invalid config"
  bp_spawn haproxy "$(command -v haproxy)" "$tmp/haproxy/haproxy.log" \
    -f "$tmp/haproxy/haproxy.cfg" -db
  haproxy_pid=$bp_started_pid
  wait_http "$bp_scheme://127.0.0.1:$haproxy_port/" "$haproxy_pid" haproxy
}

# meta_lines [MEMORY]: the lines every results directory's meta.txt starts with (date, host,
# load, commit, peer versions, the gateway binary when it is a target); MEMORY=1 adds the RAM.
meta_lines() {
  local host="$(uname -sr), $(nproc) cpus"
  [ "${1:-0}" = 1 ] && host+=", $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $host"
  echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git -C "$bp_repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "haproxy: $(haproxy -v | head -n 1 | awk '{print $3}')"
  if [[ " ${targets[*]} " == *" bulwark "* ]]; then
    echo "bulwark: $("$bin" --version) ($bin, built $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ))"
  fi
}

# check_targets NAME...: every name is a proxy the scripts know, and the gateway binary exists.
check_targets() {
  local t
  for t in "$@"; do
    case $t in
      bulwark) [ -x "$bin" ] || die "no gateway binary at $bin (set BULWARK_BIN)" ;;
      haproxy | nginx) ;;
      *) die "unknown target $t (bulwark, haproxy, nginx)" ;;
    esac
  done
}

# start_bulwark [NAME]: sets bulwark_port, bulwark_pid (binary: $bin; config template:
# $bulwark_config, default configs/bulwark.yaml.in)
# start_redis: a redis-server of the run's own (no persistence) on a free port, for configs
# that mention @REDIS_PORT@ (global rate limits); sets redis_port. Started once per run.
start_redis() {
  [ -n "${redis_port:-}" ] && return 0
  need_tools redis-server
  redis_port=$(free_ports 1)
  mkdir -p "$tmp/redis"
  bp_spawn redis redis-server "$tmp/redis/stderr.log" --port "$redis_port" --bind 127.0.0.1 \
    --save "" --appendonly no --dir "$tmp/redis"
  for _ in $(seq 1 "$bp_wait_tries"); do
    "$python" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
      "$redis_port" 2>/dev/null && return 0
    sleep 0.1
  done
  die "redis-server did not start"
}

start_bulwark() {
  local dir=$tmp/${1:-bulwark}
  mkdir -p "$dir"
  rm -f "$dir/ready.json"
  local template=${bulwark_config:-$bp_here/configs/bulwark.yaml.in}
  if grep -q '@REDIS_PORT@' "$template"; then start_redis; fi
  tls_args bulwark
  render "$template" "$dir/bulwark.yaml" \
    UPSTREAM_PORT="$upstream_port" REDIS_PORT="${redis_port:-0}" "${tls_kv[@]}"
  "$bin" --check-config --config "$dir/bulwark.yaml" >/dev/null || die "bulwark: invalid config"
  bp_spawn bulwark "$bin" "$dir/stderr.log" --config "$dir/bulwark.yaml" \
    --ready-file "$dir/ready.json"
  bulwark_pid=$bp_started_pid
  for _ in $(seq 1 "$bp_wait_tries"); do
    [ -s "$dir/ready.json" ] && break
    kill -0 "$bulwark_pid" 2>/dev/null || die "bulwark exited during startup (see $dir/stderr.log)"
    sleep 0.1
  done
  [ -s "$dir/ready.json" ] || die "bulwark wrote no ready file within $((bp_wait_tries / 10))s"
  bulwark_port=$("$python" -c \
    'import json, sys; print(json.load(open(sys.argv[1]))["listeners"]["bench"])' \
    "$dir/ready.json")
  wait_http "$bp_scheme://127.0.0.1:$bulwark_port/" "$bulwark_pid" bulwark
}

# start_target NAME: start_bulwark / start_haproxy / start_nginx_proxy; sets target_port and
# target_pid.
start_target() {
  case $1 in
    bulwark) start_bulwark; target_port=$bulwark_port; target_pid=$bulwark_pid ;;
    haproxy) start_haproxy; target_port=$haproxy_port; target_pid=$haproxy_pid ;;
    nginx) start_nginx_proxy; target_port=$nginx_port; target_pid=$nginx_pid ;;
    *) die "unknown target $1" ;;
  esac
}

# Request shapes. "minimal" is wrk's own GET / (a request line and Host). "realistic" is what a
# browser or an API SDK sends: a path with a query and ten header fields (~640 bytes in all).
bp_realistic_path='/api/v1/items?page=2&sort=desc'
bp_realistic_headers=(
  'Host: api.example.com'
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'
  'Accept: application/json, text/plain, */*'
  'Accept-Language: en-US,en;q=0.9,de;q=0.8'
  'Accept-Encoding: gzip, deflate, br'
  'Cookie: session_id=5f2c9a7e1b3d4f6a8c0e2b4d6f8a1c3e; theme=dark; locale=en-US; _ga=GA1.2.1736271845.1700000000'
  'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiIsInNjb3BlIjoicmVhZCJ9.Qm9ndXM'
  'X-Api-Key: 7d3f9b2e6a1c4e8f0b5d7a9c2e4f6b8d'
  'Referer: https://app.example.com/dashboard/items?view=list'
  'Cache-Control: no-cache'
)

# "jwt" is the realistic request with a valid HS256 token (signed with bp_jwt_secret, the
# secret of configs/bulwark-jwt.yaml.in; iss, aud and sub set, exp an hour ahead) in place of
# the bogus one: against a gateway without auth it is an ordinary request of the same size.
bp_jwt_secret='bench-hs256-secret-of-thirty-two-bytes-or-more'
bp_jwt_token=''

# jwt_token: mints bp_jwt_token once per run.
jwt_token() {
  [ -n "$bp_jwt_token" ] && return 0
  bp_jwt_token=$("$python" - "$bp_jwt_secret" <<'EOF'
import base64, hashlib, hmac, json, sys, time
def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
claims = {"iss": "https://idp.bench", "aud": "bench", "sub": "42", "scope": "read",
          "exp": int(time.time()) + 3600}
body = b64(json.dumps(claims, separators=(",", ":")).encode())
signing_input = f"{head}.{body}".encode()
mac = hmac.new(sys.argv[1].encode(), signing_input, hashlib.sha256).digest()
print(f"{head}.{body}.{b64(mac)}")
EOF
)
}

# shape_args SHAPE BASE_URL: sets shape_url and shape_hdrs (an array of wrk/curl -H arguments).
shape_args() {
  local shape=$1 base=$2 h
  shape_hdrs=()
  case $shape in
    minimal) shape_url=$base/ ;;
    realistic | jwt)
      [ "$shape" = jwt ] && jwt_token
      shape_url=$base$bp_realistic_path
      for h in "${bp_realistic_headers[@]}"; do
        if [ "$shape" = jwt ] && [[ $h == Authorization:* ]]; then
          h="Authorization: Bearer $bp_jwt_token"
        fi
        shape_hdrs+=(-H "$h")
      done
      ;;
    *) die "unknown request shape $shape (minimal, realistic, jwt)" ;;
  esac
}

# check_shape NAME SHAPE BASE_URL: the target answers the shape with 200 and the full 1 KiB body.
check_shape() {
  local got
  shape_args "$2" "$3"
  got=$(curl -ks -m 2 -o /dev/null -w '%{http_code} %{size_download}' "${shape_hdrs[@]}" \
    "$shape_url")
  [ "$got" = "200 1024" ] || die "$1 answered '$got' (want '200 1024') at $shape_url ($2)"
}

# wrk_requests FILE: the number of requests a wrk output reports.
wrk_requests() {
  awk '/^ *[0-9]+ requests in/ {print $1; found = 1} END {if (!found) print 0}' "$1"
}

# cpu_ticks PID: "USER SYSTEM" clock ticks of PID and its direct children (nginx's worker).
cpu_ticks() {
  local user=0 sys=0 p stat rest
  local -a f
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    user=$((user + f[11]))
    sys=$((sys + f[12]))
  done
  echo "$user $sys"
}

# rss_kib PID: VmRSS of PID in KiB.
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}
