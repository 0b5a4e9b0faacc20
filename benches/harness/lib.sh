# shellcheck shell=bash
# shellcheck disable=SC2034  # several variables here are used by the scripts that source this file
# Common functions for the JWT proxy bench.  Sourced by run.sh and selfcheck.sh.
# Nothing here hard-codes a machine path: everything is relative to this file.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/../.." && pwd)"       # the revgate checkout (benches/harness/..)
WORK="${BENCH_WORK:-$BENCH_DIR/work}"           # git-ignored
CONF="$WORK/conf"; LOGS="$WORK/logs"; RUND="$WORK/run"
PIDS_FILE="$RUND/pids.$(basename "$0" .sh)"   # "pid name start-time" per process we started

# ---- ports (all on 127.0.0.1) -------------------------------------------------
UPSTREAM_PORT="${BENCH_UPSTREAM_PORT:-18081}"     # nginx, fixed tiny response
NGINX_PROXY_PORT="${BENCH_NGINX_PROXY_PORT:-18082}"
HAPROXY_PLAIN_PORT="${BENCH_HAPROXY_PLAIN_PORT:-18083}"
HAPROXY_JWT_PORT="${BENCH_HAPROXY_JWT_PORT:-18084}"
GATEWAY_PORT="${BENCH_GATEWAY_PORT:-18090}"

ISS="${BENCH_ISS:-https://issuer.bench.local/}"
AUD="${BENCH_AUD:-bench-api}"

# ---- CPU split -----------------------------------------------------------------
# BENCH_PIN=1 (default): servers on CPU 0, load generator on CPU 1 (taskset).
# BENCH_PIN=0: nothing pinned, everybody floats over all CPUs.
BENCH_PIN="${BENCH_PIN:-1}"
NCPU="$(nproc)"
if [[ "$BENCH_PIN" == 1 && "$NCPU" -ge 2 ]]; then
  SERVER_CPUS="${BENCH_SERVER_CPUS:-0}"
  LOADGEN_CPUS="${BENCH_LOADGEN_CPUS:-1}"
else
  BENCH_PIN=0; SERVER_CPUS=""; LOADGEN_CPUS=""
fi
cpu_count() {  # "0" -> 1, "0,1" -> 2, "0-3" -> 4, "" -> nproc
  local spec="$1" n=0 part a b
  [[ -z "$spec" ]] && { echo "$NCPU"; return; }
  IFS=',' read -ra parts <<<"$spec"
  for part in "${parts[@]}"; do
    if [[ "$part" == *-* ]]; then a="${part%-*}"; b="${part#*-}"; n=$((n + b - a + 1)); else n=$((n + 1)); fi
  done
  echo "$n"
}
SERVER_THREADS="${BENCH_SERVER_THREADS:-$(cpu_count "$SERVER_CPUS")}"
WRK_THREADS="${BENCH_WRK_THREADS:-$(cpu_count "$LOADGEN_CPUS")}"
on_server_cpus() { if [[ -n "$SERVER_CPUS" ]]; then taskset -c "$SERVER_CPUS" "$@"; else "$@"; fi; }
on_loadgen_cpus() { if [[ -n "$LOADGEN_CPUS" ]]; then taskset -c "$LOADGEN_CPUS" "$@"; else "$@"; fi; }

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

need_tools() {
  local t missing=()
  for t in nginx haproxy wrk curl python3 taskset setsid timeout; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "missing: ${missing[*]} (run ./setup.sh)"
  python3 -c 'import jwt, cryptography' 2>/dev/null || die "python3 lacks PyJWT/cryptography (run ./setup.sh)"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- config generation -----------------------------------------------------------
nginx_common() {  # $1 = name
  local name="$1"
  mkdir -p "$RUND/nginx-$name"
  # as root, keep workers root too so they can read work/ wherever the checkout lives
  if [[ "$(id -u)" == 0 ]]; then echo "user root;"; fi
  cat <<EOF
worker_processes $SERVER_THREADS;
pid $RUND/nginx-$name.pid;
error_log $LOGS/nginx-$name.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path $RUND/nginx-$name/body;
    proxy_temp_path $RUND/nginx-$name/proxy;
    fastcgi_temp_path $RUND/nginx-$name/fastcgi;
    uwsgi_temp_path $RUND/nginx-$name/uwsgi;
    scgi_temp_path $RUND/nginx-$name/scgi;
EOF
}

gen_configs() {
  mkdir -p "$CONF" "$LOGS" "$RUND"
  # (upstream) nginx returning a fixed 3-byte body
  { nginx_common upstream; cat <<EOF
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
        # the JWKS, for a gateway that prefers fetching it (BENCH_JWKS_URL)
        location = /.well-known/jwks.json { default_type application/json; alias $WORK/jwks.json; }
    }
}
EOF
  } >"$CONF/nginx-upstream.conf"

  # (d) nginx as a plain reverse proxy, keep-alive to the upstream
  { nginx_common proxy; cat <<EOF
    upstream up {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PROXY_PORT backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  } >"$CONF/nginx-proxy.conf"

  local hap_common
  hap_common="$(cat <<EOF
global
    nbthread $SERVER_THREADS
    maxconn 4096
    # no logging: we measure the data path only

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 75s
    option http-keep-alive
    http-reuse always

backend be_upstream
    server up1 127.0.0.1:$UPSTREAM_PORT
EOF
)"
  # (b) HAProxy as a plain reverse proxy
  cat >"$CONF/haproxy-plain.cfg" <<EOF
$hap_common

frontend fe_plain
    bind 127.0.0.1:$HAPROXY_PLAIN_PORT
    default_backend be_upstream
EOF

  # (c) HAProxy verifying the JWT (RS256/ES256 via jwt_verify) + jti/sid blocklist maps.
  #     HAProxy 2.6 has no EdDSA in jwt_verify, so EdDSA tokens are refused (401).
  cat >"$CONF/haproxy-jwt.cfg" <<EOF
$hap_common

frontend fe_jwt
    bind 127.0.0.1:$HAPROXY_JWT_PORT
    # token, header fields (no sample => variable unset => denied below)
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request set-var(txn.kid) var(txn.bearer),jwt_header_query('\$.kid')
    # signature: alg + kid must name a key we know, then jwt_verify with that key only
    http-request set-var(txn.sig) str(ok) if { var(txn.alg) -m str RS256 } { var(txn.kid) -m str bench-rs256 } { var(txn.bearer),jwt_verify("RS256","$WORK/keys/rs256_public.pem") -m int 1 }
    http-request set-var(txn.sig) str(ok) if { var(txn.alg) -m str ES256 } { var(txn.kid) -m str bench-es256 } { var(txn.bearer),jwt_verify("ES256","$WORK/keys/es256_public.pem") -m int 1 }
    http-request deny status 401 content-type text/plain string "invalid token" unless { var(txn.sig) -m str ok }
    # claims: exp in the future, iss, aud
    http-request set-var(txn.now) date()
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request deny status 401 content-type text/plain string "expired" unless { var(txn.exp),sub(txn.now) -m int gt 0 }
    http-request deny status 401 content-type text/plain string "bad iss" unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str "$ISS" }
    http-request deny status 401 content-type text/plain string "bad aud" unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str "$AUD" }
    # revocation blacklists (map files: "<id> 1"), jti and sid
    http-request deny status 401 content-type text/plain string "revoked" if { var(txn.bearer),jwt_payload_query('\$.jti'),map($WORK/revoked_jti.map) -m found }
    http-request deny status 401 content-type text/plain string "revoked" if { var(txn.bearer),jwt_payload_query('\$.sid'),map($WORK/revoked_sid.map) -m found }
    default_backend be_upstream
EOF
}

# ---- process control ------------------------------------------------------------
# start_bg NAME CMD...: start in its own session (PGID == PID), on the server CPUs;
# the PID is appended to $PIDS_FILE and later killed by PID only (never by name).
start_bg() {
  local name="$1"; shift
  mkdir -p "$LOGS" "$RUND"
  if [[ -n "$SERVER_CPUS" ]]; then
    setsid taskset -c "$SERVER_CPUS" "$@" >"$LOGS/$name.out" 2>&1 </dev/null &
  else
    setsid "$@" >"$LOGS/$name.out" 2>&1 </dev/null &
  fi
  local pid=$!
  echo "$pid $name $(proc_start "$pid")" >>"$PIDS_FILE"
  log "started $name (pid $pid)"
}

# start time (clock ticks since boot) of a PID: with the PID it identifies "our" process,
# so a recorded PID that was reused by someone else is never signalled.
proc_start() {  # prints "" for a gone or zombie process
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  s="${s##*) }"
  # shellcheck disable=SC2086
  set -- $s
  [[ "$1" == Z || "$1" == X ]] || echo "${20}"
}
ours() { [[ -n "$1" && -n "$2" && "$(proc_start "$1")" == "$2" ]]; }

wait_http() {  # PORT TIMEOUT_S NAME: any HTTP answer counts as ready
  local port="$1" t="$2" name="$3" i
  for ((i = 0; i < t * 10; i++)); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null; then return 0; fi
    if ! pid_alive_name "$name"; then
      log "$name exited early; last log lines:"; tail -n 20 "$LOGS/$name.out" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$name not answering on 127.0.0.1:$port after ${t}s"; tail -n 20 "$LOGS/$name.out" >&2 || true
  return 1
}

pid_alive_name() {
  local pid name start
  while read -r pid name start; do
    [[ "$name" == "$1" ]] && ours "$pid" "$start" && return 0
  done <"$PIDS_FILE"
  return 1
}

stop_all() {
  [[ -f "$PIDS_FILE" ]] || return 0
  local pid name start i alive
  while read -r pid name start; do
    ours "$pid" "$start" || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done <"$PIDS_FILE"
  for ((i = 0; i < 50; i++)); do
    alive=0
    while read -r pid name start; do ours "$pid" "$start" && alive=1; done <"$PIDS_FILE"
    ((alive)) || break
    sleep 0.1
  done
  while read -r pid name start; do
    if ours "$pid" "$start"; then
      log "killing $name (pid $pid) with SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$PIDS_FILE"
  rm -f "$PIDS_FILE"
}

check_ports_free() {
  local p
  for p in "$@"; do port_busy "$p" && die "port 127.0.0.1:$p is already in use (stale run? see $PIDS_FILE)"; done
  return 0
}

start_upstream()      { start_bg upstream nginx -p "$RUND/nginx-upstream" -e "$LOGS/nginx-upstream.stderr.log" -c "$CONF/nginx-upstream.conf" -g 'daemon off;'; wait_http "$UPSTREAM_PORT" 10 upstream; }
start_nginx_proxy()   { start_bg nginx-proxy nginx -p "$RUND/nginx-proxy" -e "$LOGS/nginx-proxy.stderr.log" -c "$CONF/nginx-proxy.conf" -g 'daemon off;'; wait_http "$NGINX_PROXY_PORT" 10 nginx-proxy; }
start_haproxy_plain() { haproxy -c -q -f "$CONF/haproxy-plain.cfg" || die "haproxy-plain.cfg invalid"; start_bg haproxy-plain haproxy -db -f "$CONF/haproxy-plain.cfg"; wait_http "$HAPROXY_PLAIN_PORT" 10 haproxy-plain; }
start_haproxy_jwt()   { haproxy -c -q -f "$CONF/haproxy-jwt.cfg" || die "haproxy-jwt.cfg invalid"; start_bg haproxy-jwt haproxy -db -f "$CONF/haproxy-jwt.cfg"; wait_http "$HAPROXY_JWT_PORT" 10 haproxy-jwt; }

# ---- JWT self-check -------------------------------------------------------------
# jwt_selfcheck URL ALGS LABEL  (ALGS e.g. "RS256,ES256" or "RS256,ES256,EdDSA")
# Runs every case of work/cases.tsv plus samples of the rotation files.
# Cases needing an alg the target does not support: a 200-expecting case is
# skipped, a 401-expecting one must still be 401.  Returns non-zero on any failure;
# a 200 for a token that must be rejected is reported as "LET THROUGH".
http_code() {  # URL TOKEN ('-' = no Authorization header)
  if [[ "$2" == "-" ]]; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1/" 2>/dev/null
  else
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $2" "$1/" 2>/dev/null
  fi
}

jwt_selfcheck() {
  local url="$1" algs=",$2," label="$3" name expect need token code
  local pass=0 fail=0 skip=0 leaked=0 alg f n
  while IFS=$'\t' read -r name expect need token; do
    [[ -n "$name" ]] || continue
    if [[ "$need" != any && "$algs" != *",$need,"* && "$expect" == 200 ]]; then skip=$((skip + 1)); continue; fi
    code="$(http_code "$url" "$token")"
    if [[ "$code" == "$expect" ]]; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1))
      if [[ "$expect" != 200 && "$code" =~ ^2 ]]; then leaked=$((leaked + 1)); log "$label: LET THROUGH  $name -> $code (want $expect)"
      else log "$label: FAIL  $name -> $code (want $expect)"; fi
    fi
  done <"$WORK/cases.tsv"
  # samples of the rotation files: valid ones must pass, revoked ones must not
  for alg in rs256 es256 eddsa; do
    case "$alg" in rs256) n=RS256 ;; es256) n=ES256 ;; eddsa) n=EdDSA ;; esac
    for f in valid revoked; do
      [[ -f "$WORK/tokens/${alg}_$f.txt" ]] || continue
      [[ "$f" == valid && "$algs" != *",$n,"* ]] && continue
      expect=200; [[ "$f" == revoked ]] && expect=401
      while read -r token; do
        code="$(http_code "$url" "$token")"
        if [[ "$code" == "$expect" ]]; then pass=$((pass + 1)); else
          fail=$((fail + 1))
          if [[ "$expect" == 401 && "$code" =~ ^2 ]]; then leaked=$((leaked + 1)); log "$label: LET THROUGH  ${alg}_$f sample -> $code (want $expect)"
          else log "$label: FAIL  ${alg}_$f sample -> $code (want $expect)"; fi
        fi
      done < <(awk 'NR % 97 == 1' "$WORK/tokens/${alg}_$f.txt" | head -n 12)
    done
  done
  log "$label self-check: $pass passed, $fail failed, $skip skipped (alg not supported), $leaked bad tokens let through"
  ((fail == 0))
}
