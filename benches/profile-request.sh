#!/usr/bin/env bash
# CPU instructions and heap allocations per proxied request, under valgrind: repeatable on
# a busy machine, where wall-clock throughput is not (issue 14).
#
#   benches/profile-request.sh [N1 N2]          (defaults: 2000 and 12000 requests)
#
# Runs `revgate serve` (release build, as the harness configures it: benches/bench-gateway.sh,
# one tokio worker, the revoked lists in the store, the verified-token cache on unless
# REVGATE_BENCH_CACHE=off) under `valgrind --tool=callgrind` and then `--tool=dhat`, in front
# of the harness's nginx upstream, and sends N1, then (a fresh gateway) N2 HTTP/1.1 requests
# with an RS256 bearer token from `h2load --h1` over PROFILE_CONNS (64) keep-alive connections.
# What a run costs besides its requests (start-up, the 64 connections, the first
# verification) is the same in both runs, so
#     per request = (total(N2) - total(N1)) / (N2 - N1)
# for the instructions executed by the gateway's runtime thread (`--separate-threads`: one
# tokio worker runs every request; the background threads' work follows wall-clock time,
# so it is shown apart) and for the heap blocks (and bytes) the process allocated. The
# access log is on, as by default: set
# PROFILE_RUST_LOG=warn to leave its lines out (what `RUST_LOG=warn` does to a deployment).
#
# PROFILE_TOOLS=strace counts the system calls per request the same way (`strace -f -c`).
#
# Knobs: REVGATE_BIN (default target/release/revgate), PROFILE_TOOLS ("callgrind dhat"),
# PROFILE_CONNS (64), PROFILE_ALG (rs256|es256|eddsa), PROFILE_ROUTE (token|public),
# PROFILE_RUST_LOG (info), PROFILE_KEEP=1 keeps the work directory (callgrind.N2.out-01: open
# it with callgrind_annotate --inclusive=yes to see where the instructions go).
# Needs: valgrind, h2load (Debian: nghttp2-client), nginx, python3 with PyJWT
# (benches/harness/setup.sh). Loopback only; everything it starts is stopped by its PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n1="${1:-2000}"
n2="${2:-12000}"
((n2 > n1)) || { echo "profile-request: N2 must be larger than N1" >&2; exit 1; }
for tool in h2load nginx python3; do
  command -v "$tool" >/dev/null || { echo "profile-request: $tool is required" >&2; exit 1; }
done
bin="${REVGATE_BIN:-$here/../target/release/revgate}"
[ -x "$bin" ] || { echo "profile-request: $bin not found: cargo build --release" >&2; exit 1; }
export REVGATE_BIN="$bin"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BENCH_WORK=$(mktemp -d "${TMPDIR:-/tmp}/revgate-profile.XXXXXX")
export BENCH_WORK BENCH_PIN=0
BENCH_UPSTREAM_PORT=$(free_port)
BENCH_GATEWAY_PORT=$(free_port)
export BENCH_UPSTREAM_PORT BENCH_GATEWAY_PORT
# shellcheck source=harness/lib.sh
source "$here/harness/lib.sh"
cleanup() {
  stop_all
  if [ "${PROFILE_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_tools
python3 "$BENCH_DIR/mint.py" --out "$WORK" -n 20 --padding 1000 --iss "$ISS" --aud "$AUD" >&2
gen_configs
start_upstream || die "upstream did not start"

alg="${PROFILE_ALG:-rs256}"
token=$(head -n 1 "$WORK/tokens/${alg}_valid.txt")
conns="${PROFILE_CONNS:-64}"
route_mode="${PROFILE_ROUTE:-token}"

export BENCH_PORT="$GATEWAY_PORT" BENCH_LISTEN="127.0.0.1:$GATEWAY_PORT"
export BENCH_UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT" BENCH_JWKS="$WORK/jwks.json"
export BENCH_ISS="$ISS" BENCH_AUD="$AUD" BENCH_WORKERS=1
export BENCH_REVOKED_JTI="$WORK/revoked_jti.txt" BENCH_REVOKED_SID="$WORK/revoked_sid.txt"
export REVGATE_BENCH_ADMIN_PORT
REVGATE_BENCH_ADMIN_PORT=$(free_port)
export RUST_LOG="${PROFILE_RUST_LOG:-info}"
[ "$route_mode" = public ] && export REVGATE_BENCH_PUBLIC=1

# stop_named NAME: SIGTERM to the process group of NAME (started by start_bg), then wait
# (bounded: valgrind writes its output at exit) until it is gone; SIGKILL after the bound.
stop_named() {
  local want=$1 pid name start i
  [[ -f "$PIDS_FILE" ]] || return 0
  while read -r pid name start; do
    [[ "$name" == "$want" ]] && ours "$pid" "$start" || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
      ours "$pid" "$start" || break
      sleep 0.1
    done
    if ours "$pid" "$start"; then
      log "killing $name (pid $pid) with SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done <"$PIDS_FILE"
  grep -v " $want " "$PIDS_FILE" >"$PIDS_FILE.tmp" || true
  mv "$PIDS_FILE.tmp" "$PIDS_FILE"
}

# one_run TOOL N: a fresh gateway under valgrind TOOL, N requests, then SIGTERM; prints the
# totals "instructions" (callgrind) or "blocks bytes" (dhat).
one_run() {
  local tool=$1 n=$2 out="$WORK/$1.$2.out" log="$WORK/$1.$2.log"
  case "$tool" in
    strace) export REVGATE_BENCH_WRAP="strace -f -qq -c -o $out" ;;
    callgrind) export REVGATE_BENCH_WRAP="valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$out --log-file=$log" ;;
    *) export REVGATE_BENCH_WRAP="valgrind --tool=$tool --$tool-out-file=$out --log-file=$log" ;;
  esac
  start_bg gateway "$here/bench-gateway.sh"
  wait_http "$GATEWAY_PORT" 300 gateway || die "gateway did not start under valgrind ($LOGS/gateway.out)"
  local report="$WORK/h2load.$tool.$n.txt"
  timeout -k 5 1800 h2load --h1 -n "$n" -c "$conns" -m 1 -H "authorization: Bearer $token" \
    "http://127.0.0.1:$GATEWAY_PORT/" >"$report" 2>&1 || die "h2load failed: $(tail -n 5 "$report")"
  grep -q "status codes: $n 2xx" "$report" || die "not every request got a 2xx: $(grep 'status codes' "$report")"
  stop_named gateway
  case "$tool" in
    callgrind)
      # thread 1 runs the tokio runtime (one worker: the single-threaded scheduler), so
      # every request's work; the others are sled's and the runtime's background threads,
      # whose work follows wall-clock time rather than requests.
      local main all f t
      main=$(awk '/^(summary|totals):/ { print $2; exit }' "$out-01")
      all=0
      for f in "$out"-*; do
        t=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
        all=$((all + ${t:-0}))
      done
      echo "$main $all"
      ;;
    dhat) sed -n 's/.*Total: *\([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\2 \1/p' "$log" | tr -d , | head -n 1 ;;
    strace) awk '$NF == "total" { print $(NF - 2) }' "$out" ;;
  esac
}

for tool in ${PROFILE_TOOLS:-callgrind dhat}; do
  case "$tool" in strace) need=strace ;; *) need=valgrind ;; esac
  command -v "$need" >/dev/null || die "$need is required for PROFILE_TOOLS=$tool"
done
log "revgate: $bin; $alg token, route $route_mode, RUST_LOG=$RUST_LOG, cache ${REVGATE_BENCH_CACHE:-on}, $conns connections, N = $n1 and $n2"
for tool in ${PROFILE_TOOLS:-callgrind dhat}; do
  a=$(one_run "$tool" "$n1")
  b=$(one_run "$tool" "$n2")
  [ -n "$a" ] && [ -n "$b" ] || die "$tool: no totals in its output (see $WORK)"
  case "$tool" in
    callgrind)
      read -r am aa <<<"$a"
      read -r bm ba <<<"$b"
      awk -v am="$am" -v bm="$bm" -v aa="$aa" -v ba="$ba" -v n1="$n1" -v n2="$n2" 'BEGIN {
        printf "instructions per request: %.0f on the runtime thread (totals: %.0f after %d requests, %.0f after %d); %.0f with every thread\n", (bm - am) / (n2 - n1), am, n1, bm, n2, (ba - aa) / (n2 - n1) }'
      ;;
    strace)
      awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" 'BEGIN { printf "system calls per request: %.2f\n", (b - a) / n }'
      [ "${PROFILE_KEEP:-0}" = 1 ] && log "by call: $WORK/strace.$n2.out"
      ;;
    dhat)
      read -r ab abytes <<<"$a"
      read -r bb bbytes <<<"$b"
      awk -v ab="$ab" -v bb="$bb" -v ay="$abytes" -v by="$bbytes" -v n="$((n2 - n1))" 'BEGIN {
        printf "heap allocations per request: %.1f blocks, %.0f bytes\n", (bb - ab) / n, (by - ay) / n }'
      ;;
  esac
done
