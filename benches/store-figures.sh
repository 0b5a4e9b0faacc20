#!/usr/bin/env bash
# Store-scale figures with one million revocations (issues: performance; backup/restore):
#   benches/store-figures.sh [N]          (N default 1000000; needs cargo build --release, curl, wrk)
# Prints, for a real `revgate serve` on loopback:
#   - import of N records through `revgate import` (admin API): records/s, gateway peak RSS
#   - export of the same store through `revgate export`: records/s
#   - restart with N records: time from exec to the first served request, RSS after it
#   - sweep of N due entries: duration, and the proxy's p99 under load with / without it
# Everything runs on 127.0.0.1 with ports chosen by the OS; all files under a temp dir.
set -euo pipefail
N=${1:-1000000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${REVGATE_BIN:-$here/target/release/revgate}"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/revgate-figures.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PROXY=$(free_port); ADMIN=$(free_port); UP=$(free_port)
ISS="https://issuer.figures.local/"

# An upstream answering 200 to everything (python http.server is enough for p99 probes).
python3 - "$UP" > /dev/null 2>&1 <<'PY' &
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)

cat > "$work/revgate.toml" <<CONF
[server]
listen = "127.0.0.1:$PROXY"
admin_listen = "127.0.0.1:$ADMIN"
[[issuer]]
issuer = "$ISS"
audiences = ["figures"]
jwks_file = "$here/tests/keys/jwks.json"
algorithms = ["RS256"]
[[route]]
prefix = "/"
upstream = "http://127.0.0.1:$UP"
public = true
[store]
path = "$work/store"
sweep_interval = "1h"
CONF

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }
start_gateway() {
  local t0; t0=$(now_ms)
  RUST_LOG=warn "$bin" serve --config "$work/revgate.toml" 2>>"$work/serve.log" &
  GW=$!; pids+=("$GW")
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$PROXY/x"; then break; fi
    sleep 0.01
  done
  STARTUP_MS=$(( $(now_ms) - t0 ))
}
stop_gateway() { kill -TERM "$GW"; wait "$GW" 2>/dev/null || true; }

# 1. N records, expiring in EXPIRE_IN seconds (so the sweep below can purge them all).
EXPIRE_IN=${EXPIRE_IN:-150}
python3 - "$N" "$ISS" "$EXPIRE_IN" > "$work/seed.ndjson" <<'PY'
import sys, datetime
n, iss, exp_in = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
exp = (now + datetime.timedelta(seconds=exp_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
w = sys.stdout.write
for i in range(n):
    k = i % 20
    if k < 16:
        w('{"kind":"jti","issuer":"%s","value":"jti-%09d","revoked_at":"%s","issued_before":null,"expires_at":"%s","reason":null,"source":"admin"}\n' % (iss, i, ts, exp))
    else:
        kind = "sid" if k < 19 else "sub"
        w('{"kind":"%s","issuer":"%s","value":"%s-%09d","revoked_at":"%s","issued_before":"%s","expires_at":"%s","reason":null,"source":"admin"}\n' % (kind, iss, kind, i, ts, ts, exp))
PY
SEEDED_AT=$(date +%s)
echo "records: $N ($(du -h "$work/seed.ndjson" | cut -f1) of NDJSON)"

start_gateway
echo "start (empty store): ${STARTUP_MS} ms, rss $(rss_kb "$GW") kB"
t0=$(now_ms)
"$bin" import "$work/seed.ndjson" --admin "http://127.0.0.1:$ADMIN" > "$work/import.json"
t1=$(now_ms)
echo "import: $N records in $((t1 - t0)) ms = $(( N * 1000 / (t1 - t0 + 1) )) records/s; gateway peak rss $(hwm_kb "$GW") kB; $(tr -d '\n ' < "$work/import.json" | cut -c1-80)"
t0=$(now_ms)
"$bin" export --admin "http://127.0.0.1:$ADMIN" > "$work/export.ndjson"
t1=$(now_ms)
echo "export: $(wc -l < "$work/export.ndjson") records in $((t1 - t0)) ms = $(( N * 1000 / (t1 - t0 + 1) )) records/s"
stop_gateway

start_gateway
echo "restart with $N records: first served request after ${STARTUP_MS} ms; rss $(rss_kb "$GW") kB"
probe() { wrk -t1 -c16 -d"$1" --latency "http://127.0.0.1:$PROXY/x" | awk '/ 99%/ {print $2}'; }
echo "proxy p99 without a sweep: $(probe 5s)"
left=$(( SEEDED_AT + EXPIRE_IN + 2 - $(date +%s) ))
[ "$left" -gt 0 ] && { echo "waiting ${left}s for the entries to fall due"; sleep "$left"; }
( wrk -t1 -c16 -d20s --latency "http://127.0.0.1:$PROXY/x" > "$work/wrk-sweep.txt" ) &
WRK=$!
sleep 1
t0=$(now_ms)
curl -s -X POST "http://127.0.0.1:$ADMIN/v1/sweep" > "$work/sweep.json"
t1=$(now_ms)
wait "$WRK"
echo "sweep: $(cat "$work/sweep.json") in $((t1 - t0)) ms; proxy p99 during the sweep window: $(awk '/ 99%/ {print $2}' "$work/wrk-sweep.txt")"
echo "stats after: $(curl -s "http://127.0.0.1:$ADMIN/v1/stats" | cut -c1-60); rss $(rss_kb "$GW") kB"
stop_gateway
