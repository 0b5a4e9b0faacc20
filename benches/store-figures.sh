#!/usr/bin/env bash
# Store-scale figures (issue 14, targets 2 and 4):
#   benches/store-figures.sh [N] [CSV]     (N default 1000000; needs cargo build --release,
#                                           curl, nginx)
# For a real `revgate serve` on loopback, default `cache_bytes`, with N revocations of
# random 128-bit values (80 % jti / 15 % sid / 5 % sub), prints:
#   - import of N records through `revgate import` (admin API): records/s, gateway peak RSS
#   - export of the same store through `revgate export`: records/s
#   - restart with N records: time from exec to the first served request (which carries a
#     revoked token and must be refused), RSS after it
#   - lookup time in the store (hit, miss), store size on disk
#   - sweep of N due entries: duration, and the proxy's p99 under a paced load (open loop,
#     PACED_RATE requests/s with valid tokens) without and during the sweep
# and appends one row to CSV when given (benches/store-scale.sh). Ports chosen by the OS;
# every file under a temp dir in ${TMPDIR:-/tmp}, removed at the end.
# Knobs: EXPIRE_IN (seconds from seeding until the records fall due; default 60 + N/10000:
# import, export and restart must finish before), PACED_RATE (default 2000), PACED_SECS
# (default 8), REVGATE_BIN, STORE_PROBE.
set -euo pipefail
N=${1:-1000000}
CSV=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${REVGATE_BIN:-$here/target/release/revgate}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for tool in curl nginx python3; do
  command -v "$tool" >/dev/null || { echo "store-figures: $tool is required" >&2; exit 1; }
done
# STORE_PROBE: an already built benches/store_probe.rs (else it is built here).
probe=${STORE_PROBE:-}
[ -n "$probe" ] || probe=$(cd "$here" && cargo bench --bench store_probe --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys,json
for l in sys.stdin:
    j=json.loads(l)
    if j.get("executable"): print(j["executable"])' | tail -1)
[ -x "$probe" ] || { echo "store-figures: cannot build benches/store_probe.rs" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/revgate-figures.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PROXY=$(free_port); ADMIN=$(free_port); UP=$(free_port)
ISS="https://issuer.figures.local/"
AUD="figures"
PACED_RATE=${PACED_RATE:-2000}
PACED_SECS=${PACED_SECS:-8}

# The upstream: nginx answering "ok\n" (as in the shared harness).
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

cat > "$work/revgate.toml" <<CONF
[server]
listen = "127.0.0.1:$PROXY"
admin_listen = "127.0.0.1:$ADMIN"
[[issuer]]
issuer = "$ISS"
audiences = ["$AUD"]
jwks_file = "$here/tests/keys/jwks.json"
algorithms = ["RS256"]
[[route]]
prefix = "/"
upstream = "http://127.0.0.1:$UP"
[store]
path = "$work/store"
sweep_interval = "1h"
CONF

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }
# Starts the gateway and waits for its first served request, which carries $1 (a token);
# FIRST_STATUS is the status of that first answer, STARTUP_MS the time from exec to it.
start_gateway() {
  local t0 code=000; t0=$(now_ms)
  RUST_LOG=warn "$bin" serve --config "$work/revgate.toml" 2>>"$work/serve.log" &
  GW=$!; pids+=("$GW")
  for _ in $(seq 1 6000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "http://127.0.0.1:$PROXY/x" || true)
    [ "$code" != 000 ] && break
    kill -0 "$GW" 2>/dev/null || { cat "$work/serve.log" >&2; echo "gateway exited" >&2; exit 1; }
    sleep 0.005
  done
  STARTUP_MS=$(( $(now_ms) - t0 ))
  FIRST_STATUS=$code
}
stop_gateway() { kill -TERM "$GW"; wait "$GW" 2>/dev/null || true; }

# 1. N records, all falling due EXPIRE_IN seconds after seeding.
EXPIRE_IN=${EXPIRE_IN:-$(( 60 + N / 10000 ))}
"$probe" seed "$N" "$ISS" "$EXPIRE_IN" "$work/seed.ndjson"
SEEDED_AT=$(date +%s)
REVOKED_JTI=$(head -1 "$work/seed.ndjson" | python3 -c 'import sys,json; print(json.load(sys.stdin)["value"])')
REVOKED=$("$probe" token "$ISS" "$AUD" "$REVOKED_JTI")
VALID=$("$probe" token "$ISS" "$AUD" "never-revoked-$(date +%s%N)")
echo "records: $N random values ($(du -h "$work/seed.ndjson" | cut -f1) of NDJSON); $(uptime)"

start_gateway "$VALID"
echo "start (empty store): ${STARTUP_MS} ms (status $FIRST_STATUS), rss $(rss_kb "$GW") kB"
t0=$(now_ms)
"$bin" import "$work/seed.ndjson" --admin "http://127.0.0.1:$ADMIN" --output json > "$work/import.json"
t1=$(now_ms)
IMPORT_RPS=$(( N * 1000 / (t1 - t0 + 1) )); IMPORT_HWM=$(hwm_kb "$GW")
echo "import: $N records in $((t1 - t0)) ms = $IMPORT_RPS records/s; gateway peak rss $IMPORT_HWM kB; $(tr -d '\n ' < "$work/import.json" | cut -c1-100)"
[ "$(python3 -c 'import sys,json; print(json.load(open(sys.argv[1]))["imported"])' "$work/import.json")" = "$N" ] \
  || { echo "not every record was imported (raise EXPIRE_IN?)" >&2; exit 1; }
t0=$(now_ms)
"$bin" export --admin "http://127.0.0.1:$ADMIN" > "$work/export.ndjson"
t1=$(now_ms)
EXPORT_RPS=$(( N * 1000 / (t1 - t0 + 1) ))
echo "export: $(wc -l < "$work/export.ndjson") records in $((t1 - t0)) ms = $EXPORT_RPS records/s"
rm -f "$work/export.ndjson"
stop_gateway
DISK=$(du -sb "$work/store" | cut -f1)
LOOKUP=$("$probe" lookup "$work/store" "$work/seed.ndjson")
echo "store on disk: $DISK bytes ($(( DISK / N )) per record); lookup: $LOOKUP"

start_gateway "$REVOKED"
RESTART_MS=$STARTUP_MS; RESTART_RSS=$(rss_kb "$GW")
echo "restart with $N records: first served request after ${RESTART_MS} ms, status $FIRST_STATUS (a revoked token); rss $RESTART_RSS kB"
[ "$FIRST_STATUS" = 401 ] || { echo "the first request after the restart was not refused" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VALID" "http://127.0.0.1:$PROXY/x")" = 200 ] \
  || { echo "a valid token is refused after the restart" >&2; exit 1; }
paced() { "$probe" paced "http://127.0.0.1:$PROXY/x" "$PACED_RATE" "$1" "$ISS" "$AUD"; }
BASE=$(paced "$PACED_SECS")
echo "paced load ${PACED_RATE}/s, no sweep: $BASE"
left=$(( SEEDED_AT + EXPIRE_IN + 2 - $(date +%s) ))
[ "$left" -gt 0 ] && { echo "waiting ${left}s for the entries to fall due"; sleep "$left"; }
( paced $(( PACED_SECS * 4 )) > "$work/paced-sweep.txt" ) &
LOAD=$!
sleep 2
t0=$(now_ms)
curl -s -X POST "http://127.0.0.1:$ADMIN/v1/sweep" > "$work/sweep.json"
t1=$(now_ms)
SWEEP_MS=$((t1 - t0))
wait "$LOAD"
DURING=$(cat "$work/paced-sweep.txt")
echo "sweep: $(cat "$work/sweep.json") in $SWEEP_MS ms"
echo "paced load ${PACED_RATE}/s over a window holding the sweep: $DURING"
echo "stats after: $(curl -s "http://127.0.0.1:$ADMIN/v1/stats" | tr -d '\n ' | cut -c1-80); rss $(rss_kb "$GW") kB; $(uptime)"
stop_gateway
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
if [ -n "$CSV" ]; then
  [ -s "$CSV" ] || echo "n,import_rps,import_peak_rss_kb,export_rps,restart_ms,restart_rss_kb,disk_bytes,sweep_ms,p99_base_ms,p99_sweep_ms,lookup_hit_ns,lookup_miss_ns,load1" > "$CSV"
  echo "$N,$IMPORT_RPS,$IMPORT_HWM,$EXPORT_RPS,$RESTART_MS,$RESTART_RSS,$DISK,$SWEEP_MS,$(field p99_ms "$BASE"),$(field p99_ms "$DURING"),$(field hit_ns "$LOOKUP"),$(field miss_ns "$LOOKUP"),$(cut -d' ' -f1 /proc/loadavg)" >> "$CSV"
fi
