#!/usr/bin/env bash
# Proxied throughput over the edge features the shared harness does not cover (issue 13):
#   plain HTTP/1.1 vs TLS HTTP/1.1 (64 keep-alive connections), HTTP/2 over TLS (64 streams
#   on 8 connections), and the access log on (text, JSON) vs off.
#
#   benches/edge-bench.sh [SECONDS] [REPEAT]        (defaults: 10 s per run, 3 repeats)
#
# Needs: target/release/revgate (cargo build --release; REVGATE_BIN overrides), h2load
# (Debian: nghttp2-client), nginx (the upstream, as in the shared harness: a fixed
# 3-byte body), openssl (test certificate and the bench token), taskset, python3.
# Like the shared harness: gateway and upstream on CPU 0, the load generator on CPU 1,
# one tokio worker (TOKIO_WORKER_THREADS=1). Every request carries an RS256 bearer token
# (verified once, then the verified-token cache, as in the harness' default). Everything
# runs on 127.0.0.1 and stops by itself; the work directory is removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${REVGATE_BIN:-$here/target/release/revgate}"
secs="${1:-10}"
repeat="${2:-3}"
for tool in h2load nginx openssl taskset python3; do
  command -v "$tool" >/dev/null || { echo "edge-bench: $tool is required" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "edge-bench: $bin not found: cargo build --release" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/revgate-edge.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The upstream: nginx answering "ok\n" (the shared harness' upstream).
up_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$up_port; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
CONF
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

# A P-256 certificate for localhost (certbot's default key type since 2.0).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# An RS256 token of the test issuer (tests/keys), valid for an hour.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header='{"alg":"RS256","kid":"rsa-1","typ":"JWT"}'
payload="{\"iss\":\"https://idp.test/\",\"aud\":\"api://one\",\"sub\":\"bench\",\"sid\":\"s-bench\",\"jti\":\"bench-$now\",\"iat\":$now,\"exp\":$((now + 3600))}"
unsigned="$(printf %s "$header" | b64url).$(printf %s "$payload" | b64url)"
sig=$(printf %s "$unsigned" | openssl dgst -sha256 -sign "$here/tests/keys/rsa_private.pem" -binary | b64url)
token="$unsigned.$sig"

# start_gateway TLS(on|off) ACCESS(off|text|json): starts revgate, sets gw_pid and gw_port.
start_gateway() {
  local tls=$1 access=$2 dir="$work/gw"
  rm -rf "$dir" && mkdir -p "$dir"
  local tls_lines="" access_line="access_log = true" format="text"
  [ "$tls" = on ] && tls_lines="tls_cert = \"$work/cert.pem\"
tls_key = \"$work/key.pem\""
  [ "$access" = off ] && access_line="access_log = false"
  [ "$access" = json ] && format="json"
  local filter=info
  [ "$access" = filtered ] && filter="info,revgate::access=off"
  cat > "$dir/revgate.toml" <<CONF
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
log_format = "$format"
$access_line
$tls_lines

[[issuer]]
issuer = "https://idp.test/"
audiences = ["api://one"]
jwks_file = "$here/tests/keys/jwks.json"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:$up_port"

[store]
path = "$dir/store"
CONF
  # The log goes to a file, as journald or a log file would take it.
  : > "$dir/stderr.log"
  TOKIO_WORKER_THREADS=1 RUST_LOG="$filter" taskset -c 0 "$bin" serve --config "$dir/revgate.toml" \
    2>"$dir/stderr.log" >/dev/null &
  gw_pid=$!
  pids+=("$gw_pid")
  gw_port=""
  for _ in $(seq 1 200); do
    # Text (proxy=ADDR) or JSON ("proxy":"ADDR") listening line.
    gw_port=$(sed -n 's/.*revgate listening.*proxy[=":]*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/stderr.log" | head -1 || true)
    [ -n "$gw_port" ] && return 0
    sleep 0.05
  done
  echo "edge-bench: gateway did not start:" >&2; cat "$dir/stderr.log" >&2; exit 1
}

stop_gateway() {
  kill -TERM "$gw_pid" 2>/dev/null || true
  wait "$gw_pid" 2>/dev/null || true
  access_lines=$(grep -c 'revgate::access' "$work/gw/stderr.log" || true)
  rm -rf "$work/gw"
}

# load PROTO(h1|h2) SCHEME: h2load for $secs s after 1 s of warm-up; prints req/s.
load() {
  local proto=$1 scheme=$2 args
  if [ "$proto" = h1 ]; then args=(--h1 -c 64 -m 1); else args=(-c 8 -m 8); fi
  timeout $((secs + 30)) taskset -c 1 h2load -t 1 "${args[@]}" -D "$secs" --warm-up-time=1 \
    -H "authorization: Bearer $token" "$scheme://127.0.0.1:$gw_port/api/x" >"$work/h2load.out" 2>&1 || true
  # Only 2xx answers count: a refused token would measure the refusal path.
  if ! awk '/^status codes:/ { bad = $7 + $9 } END { exit !(bad == 0) }' "$work/h2load.out"; then
    echo "edge-bench: non-2xx answers:" >&2; cat "$work/h2load.out" >&2; exit 1
  fi
  awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$work/h2load.out"
}

variants=(
  "plain h1 off" "plain h1 text" "plain h1 json"
  "tls h1 off" "tls h2 off" "tls h2 text"
)
# EDGE_VARIANTS="plain h1 off;plain h1 text" runs only those (access: off, text, json, or
# filtered = access_log on but RUST_LOG=info,revgate::access=off: the bookkeeping alone).
if [ -n "${EDGE_VARIANTS:-}" ]; then IFS=';' read -r -a variants <<<"$EDGE_VARIANTS"; fi
results="$work/results.tsv"
: > "$results"
echo "edge-bench: $secs s per run, $repeat repeats, revgate $("$bin" --version | awk '{print $2}'), $(h2load --version | head -1)"
for r in $(seq 1 "$repeat"); do
  for v in "${variants[@]}"; do
    read -r kind proto access <<<"$v"
    tls=off scheme=http
    [ "$kind" = tls ] && { tls=on; scheme=https; }
    start_gateway "$tls" "$access"
    rps=$(load "$proto" "$scheme")
    stop_gateway
    printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$proto" "$access" "$rps" "$access_lines" >> "$results"
    printf '  run %d  %-5s %-2s access=%-4s %10s req/s  (%s access lines)\n' "$r" "$kind" "$proto" "$access" "$rps" "$access_lines"
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for kind, proto, access, rps, _ in rows:
    by.setdefault((kind, proto, access), []).append(float(rps or 0))
med = {k: statistics.median(v) for k, v in by.items()}
def spread(v):
    return (max(v) - min(v)) / statistics.median(v) * 100 if statistics.median(v) else 0
print()
print("| listener | protocol | access log | req/s (median) | spread |")
print("|---|---|---|---:|---:|")
for k, v in by.items():
    conns = "64 conns" if k[1] == "h1" else "8 conns x 8 streams"
    print(f"| {k[0]} | {'HTTP/1.1' if k[1] == 'h1' else 'HTTP/2'} ({conns}) | {k[2]} | {med[k]:,.0f} | {spread(v):.0f}% |")
def ratio(a, b):
    return f"{med[a] / med[b]:.2f}" if a in med and b in med and med[b] else "-"
print()
print("TLS h1 / plain h1 (access log off):", ratio(("tls", "h1", "off"), ("plain", "h1", "off")))
print("TLS h2 64 streams on 8 conns / TLS h1 64 conns:", ratio(("tls", "h2", "off"), ("tls", "h1", "off")))
print("TLS h2 / plain h1:", ratio(("tls", "h2", "off"), ("plain", "h1", "off")))
print("access log text / off (plain h1):", ratio(("plain", "h1", "text"), ("plain", "h1", "off")))
print("access log json / off (plain h1):", ratio(("plain", "h1", "json"), ("plain", "h1", "off")))
print("access log text / off (TLS h2):", ratio(("tls", "h2", "text"), ("tls", "h2", "off")))
PY
