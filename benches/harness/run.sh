#!/usr/bin/env bash
# JWT reverse-proxy bench: direct upstream vs nginx / HAProxy (plain and jwt_verify)
# vs revgate (or any gateway command), side by side, all on 127.0.0.1.  See README.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
usage: benches/harness/run.sh [options]
  --gateway-cmd 'CMD'   start CMD (bash -c, own session, server CPUs) and bench it too;
                        it gets BENCH_PORT, BENCH_UPSTREAM, BENCH_JWKS, ... (README.md)
                        (default: benches/bench-gateway.sh, this checkout's revgate,
                        named "revgate", or "revgate-nocache" with REVGATE_BENCH_CACHE=off)
  --no-gateway          bench the peers only
  --with-nocache        also bench this checkout's revgate with the verified-token cache
                        off (target gateway-nocache, label "revgate-nocache", port
                        BENCH_GATEWAY2_PORT, default 18091) in the same run
  --gateway-port PORT   port the gateway listens on (default 18090)
  --gateway-name NAME   its label in the table (default "gateway")
  --gateway-algs LIST   algs it verifies (default RS256,ES256,EdDSA)
  --gateway-wait S      seconds to wait for it to answer HTTP (default 60)
  --strict-gateway      abort if the gateway fails the JWT self-check (default: mark it)
  --duration S          measured seconds per load run (default 5)
  --warmup S            unmeasured warm-up seconds before each run (default 1, 0 = none)
  --conns N             concurrent connections (default 64)
  --repeat N            run the whole matrix N times, report medians (default 1)
  --targets LIST        comma list from direct,nginx,haproxy,haproxy-jwt,gateway (default: all)
  --scenarios LIST      comma list from rs256,es256,eddsa (rotating over --rotate tokens)
                        and rs256-single,es256-single,eddsa-single (one token)
                        (default rs256,es256,rs256-single; eddsa is added with a gateway)
  --rotate N            distinct valid tokens rotated per scenario (default 1000)
  --no-pin              do not pin CPUs (default: servers on CPU 0, wrk on CPU 1)
  --skip-selfcheck      skip the JWT self-checks
  -h, --help
EOF
}

# revgate from this checkout (target/release/revgate, REVGATE_BIN overrides) unless told otherwise
DEFAULT_GW_CMD="$REPO_DIR/benches/bench-gateway.sh"
GW_CMD="$DEFAULT_GW_CMD"; GW_NAME=""
GW_ALGS="RS256,ES256,EdDSA"; GW_WAIT=60; STRICT_GW=0
DURATION="${BENCH_DURATION:-5}"; WARMUP="${BENCH_WARMUP:-1}"; CONNS="${BENCH_CONNS:-64}"
REPEAT="${BENCH_REPEAT:-1}"; ROTATE="${BENCH_ROTATE:-1000}"
TARGETS="${BENCH_TARGETS:-direct,nginx,haproxy,haproxy-jwt,gateway}"; SCENARIOS="${BENCH_SCENARIOS:-}"
SELFCHECK=1; NOCACHE=0
GATEWAY2_PORT="${BENCH_GATEWAY2_PORT:-18091}"
while (($#)); do
  case "$1" in
    --gateway-cmd) GW_CMD="$2"; shift 2 ;;
    --no-gateway) GW_CMD=""; shift ;;
    --with-nocache) NOCACHE=1; shift ;;
    --gateway-port) GATEWAY_PORT="$2"; shift 2 ;;
    --gateway-name) GW_NAME="$2"; shift 2 ;;
    --gateway-algs) GW_ALGS="$2"; shift 2 ;;
    --gateway-wait) GW_WAIT="$2"; shift 2 ;;
    --strict-gateway) STRICT_GW=1; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --rotate) ROTATE="$2"; shift 2 ;;
    --no-pin) BENCH_PIN=0; SERVER_CPUS=""; LOADGEN_CPUS=""
              SERVER_THREADS="${BENCH_SERVER_THREADS:-$NCPU}"; WRK_THREADS="${BENCH_WRK_THREADS:-$NCPU}"; shift ;;
    --skip-selfcheck) SELFCHECK=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
if [[ -z "$GW_NAME" ]]; then
  GW_NAME="gateway"
  if [[ "$GW_CMD" == "$DEFAULT_GW_CMD" ]]; then
    GW_NAME="revgate"
    if [[ "${REVGATE_BENCH_CACHE:-on}" == off ]]; then GW_NAME="revgate-nocache"; fi
  fi
fi
if [[ "$GW_CMD" == "$DEFAULT_GW_CMD" ]]; then
  gw_bin="${REVGATE_BIN:-$REPO_DIR/target/release/revgate}"
  [[ -x "$gw_bin" ]] || die "$gw_bin not found: run 'cargo build --release' first (or --no-gateway)"
fi
if ((NOCACHE)); then
  [[ "$GW_CMD" == "$DEFAULT_GW_CMD" ]] || die "--with-nocache needs the default gateway (this checkout's revgate)"
  [[ "${REVGATE_BENCH_CACHE:-on}" != off ]] || die "--with-nocache: leave REVGATE_BENCH_CACHE unset (the first gateway is the cached one)"
fi
for v in DURATION WARMUP CONNS REPEAT ROTATE GATEWAY_PORT GATEWAY2_PORT GW_WAIT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((DURATION >= 1 && DURATION <= 60)) || die "--duration must be 1..60 s (each load run must stay short)"
((WARMUP <= 10)) || die "--warmup must be 0..10 s"
((CONNS >= 1 && REPEAT >= 1 && ROTATE >= 1)) || die "--conns, --repeat, --rotate must be >= 1"
((WRK_THREADS <= CONNS)) || WRK_THREADS="$CONNS"

# targets: drop gateway when no command was given
declare -A PORT_OF=([direct]="$UPSTREAM_PORT" [nginx]="$NGINX_PROXY_PORT" [haproxy]="$HAPROXY_PLAIN_PORT"
                    [haproxy-jwt]="$HAPROXY_JWT_PORT" [gateway]="$GATEWAY_PORT" [gateway-nocache]="$GATEWAY2_PORT")
TLIST=()
IFS=',' read -ra _t <<<"$TARGETS"
for t in "${_t[@]}"; do
  [[ -n "${PORT_OF[$t]:-}" ]] || die "unknown target '$t'"
  [[ "$t" == gateway && -z "$GW_CMD" ]] && continue
  TLIST+=("$t")
done
[[ -n "$GW_CMD" && " ${TLIST[*]} " != *" gateway "* ]] && TLIST+=(gateway)
[[ "$NOCACHE" == 1 && " ${TLIST[*]} " != *" gateway-nocache "* ]] && TLIST+=(gateway-nocache)
[[ "$NOCACHE" == 0 && " ${TLIST[*]} " == *" gateway-nocache "* ]] && die "target gateway-nocache needs --with-nocache"
((${#TLIST[@]})) || die "no targets"
[[ " ${TLIST[*]} " == *" direct "* ]] || log "note: 'direct' not in targets, the ratio column will be empty"
if [[ -z "$SCENARIOS" ]]; then
  SCENARIOS="rs256,es256,rs256-single"
  [[ -n "$GW_CMD" && ",$GW_ALGS," == *",EdDSA,"* ]] && SCENARIOS="rs256,es256,eddsa,rs256-single"
fi
IFS=',' read -ra SLIST <<<"$SCENARIOS"
for s in "${SLIST[@]}"; do
  [[ "$s" =~ ^(rs256|es256|eddsa)(-single)?$ ]] || die "unknown scenario '$s'"
done

label_of() {
  case "$1" in gateway) echo "$GW_NAME" ;; gateway-nocache) echo revgate-nocache ;; *) echo "$1" ;; esac
}
algname() { case "$1" in rs256*) echo RS256 ;; es256*) echo ES256 ;; eddsa*) echo EdDSA ;; esac; }
supports() {  # TARGET ALG -> does the target verify that alg (plain targets: n/a, always run)
  case "$1" in
    haproxy-jwt) [[ "$2" == RS256 || "$2" == ES256 ]] ;;
    gateway|gateway-nocache) [[ ",$GW_ALGS," == *",$2,"* ]] ;;
    *) true ;;
  esac
}

need_tools
mkdir -p "$WORK/results" "$LOGS" "$RUND"
if [[ -s "$PIDS_FILE" ]]; then  # an earlier run was killed before its cleanup
  log "stale ${PIDS_FILE#"$BENCH_DIR"/} from an earlier run: stopping the processes it recorded"; stop_all
fi
ports=()
for t in "${TLIST[@]}"; do ports+=("${PORT_OF[$t]}"); done
check_ports_free "$UPSTREAM_PORT" "${ports[@]}"

trap 'stop_all' EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- tokens: enough valid ones to rotate over ROTATE distinct tokens
MINT_N=$((ROTATE * 6 / 5 + 20))
python3 "$BENCH_DIR/mint.py" --out "$WORK" -n "$MINT_N" --iss "$ISS" --aud "$AUD" >&2
for a in rs256 es256 eddsa; do
  v=$(wc -l <"$WORK/tokens/${a}_valid.txt")
  ((v >= ROTATE)) || log "warning: only $v valid $a tokens (wanted $ROTATE)"
done

# ---- servers
gen_configs
start_upstream || die "upstream did not start"
for t in "${TLIST[@]}"; do
  case "$t" in
    nginx) start_nginx_proxy || die "nginx proxy did not start" ;;
    haproxy) start_haproxy_plain || die "haproxy (plain) did not start" ;;
    haproxy-jwt) start_haproxy_jwt || die "haproxy-jwt did not start" ;;
  esac
done
GW_STATUS=""
if [[ -n "$GW_CMD" ]]; then
  export BENCH_PORT="$GATEWAY_PORT" BENCH_LISTEN="127.0.0.1:$GATEWAY_PORT"
  export BENCH_UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
  export BENCH_JWKS="$WORK/jwks.json" BENCH_JWKS_URL="http://127.0.0.1:$UPSTREAM_PORT/.well-known/jwks.json"
  export BENCH_ISS="$ISS" BENCH_AUD="$AUD"
  export BENCH_REVOKED_JTI="$WORK/revoked_jti.txt" BENCH_REVOKED_SID="$WORK/revoked_sid.txt"
  export BENCH_KEYS_DIR="$WORK/keys" BENCH_WORKERS="$SERVER_THREADS" BENCH_WORK="$WORK"
  start_bg gateway bash -c "$GW_CMD"
  wait_http "$GATEWAY_PORT" "$GW_WAIT" gateway || die "gateway did not answer on 127.0.0.1:$GATEWAY_PORT (log: work/logs/gateway.out)"
  if ((NOCACHE)); then
    BENCH_PORT="$GATEWAY2_PORT" BENCH_LISTEN="127.0.0.1:$GATEWAY2_PORT" REVGATE_BENCH_CACHE=off \
      start_bg gateway-nocache bash -c "$GW_CMD"
    wait_http "$GATEWAY2_PORT" "$GW_WAIT" gateway-nocache || die "gateway-nocache did not answer on 127.0.0.1:$GATEWAY2_PORT (log: work/logs/gateway-nocache.out)"
  fi
fi

# ---- correctness before speed
if ((SELFCHECK)); then
  if [[ " ${TLIST[*]} " == *" haproxy-jwt "* ]]; then
    jwt_selfcheck "http://127.0.0.1:$HAPROXY_JWT_PORT" "RS256,ES256" haproxy-jwt || die "haproxy-jwt failed its self-check"
  fi
  if [[ -n "$GW_CMD" ]]; then
    if ! jwt_selfcheck "http://127.0.0.1:$GATEWAY_PORT" "$GW_ALGS" "$GW_NAME"; then
      ((STRICT_GW)) && die "$GW_NAME failed its self-check"
      GW_STATUS="FAILED-SELFCHECK"; log "$GW_NAME failed the self-check: benchmarking anyway, marked in the table"
    fi
  fi
  if ((NOCACHE)); then
    jwt_selfcheck "http://127.0.0.1:$GATEWAY2_PORT" "$GW_ALGS" revgate-nocache || die "revgate-nocache failed its self-check"
  fi
fi
tok="$(head -n 1 "$WORK/tokens/rs256_valid.txt")"
for t in direct nginx haproxy; do
  [[ " ${TLIST[*]} " == *" $t "* ]] || continue
  c="$(http_code "http://127.0.0.1:${PORT_OF[$t]}" "$tok")"
  [[ "$c" == 200 ]] || die "$t answered $c to a plain request"
done

# ---- load
TS="$(date +%Y%m%d-%H%M%S)"
RAW="$WORK/results/$TS.tsv"
printf 'rep\tscenario\ttarget\trps\tp50_us\tp90_us\tp99_us\tmax_us\tnon2xx\tsock_err\trequests\tnote\n' >"$RAW"
if ((BENCH_PIN)); then CPU_NOTE="servers on CPU $SERVER_CPUS ($SERVER_THREADS worker/thread each), wrk on CPU $LOADGEN_CPUS (-t$WRK_THREADS)"
else CPU_NOTE="no pinning: servers $SERVER_THREADS workers/threads, wrk -t$WRK_THREADS, all floating over $NCPU CPUs"; fi
log "matrix: ${#SLIST[@]} scenarios x ${#TLIST[@]} targets x $REPEAT repeat(s), ${WARMUP}s+${DURATION}s each; $CPU_NOTE"

run_wrk() {  # URL TOKFILE LIMIT SECONDS -> prints the BENCH_RESULT line (or nothing)
  local pre=(timeout -k 5 $(($4 + 20)))
  [[ -n "$LOADGEN_CPUS" ]] && pre+=(taskset -c "$LOADGEN_CPUS")
  "${pre[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$4s" --timeout 5s \
    -s "$BENCH_DIR/rotate.lua" "$1/" -- "$2" "$3" 2>>"$LOGS/wrk.err" | grep '^BENCH_RESULT' || true
}

for ((rep = 1; rep <= REPEAT; rep++)); do
  for s in "${SLIST[@]}"; do
    alg="$(algname "$s")"; base="${s%-single}"
    limit="$ROTATE"; [[ "$s" == *-single ]] && limit=1
    tokfile="$WORK/tokens/${base}_valid.txt"
    # odd repeats run the targets in order, even repeats in reverse: the host's slow
    # throughput drift then biases no target systematically
    order=("${TLIST[@]}")
    if ((rep % 2 == 0)); then order=(); for ((i = ${#TLIST[@]} - 1; i >= 0; i--)); do order+=("${TLIST[$i]}"); done; fi
    for t in "${order[@]}"; do
      note=""
      [[ "$t" == gateway && -n "$GW_STATUS" ]] && note="$GW_STATUS"
      if ! supports "$t" "$alg"; then
        printf '%s\t%s\t%s\t\t\t\t\t\t\t\t\tn/a (no %s)\n' "$rep" "$s" "$(label_of "$t")" "$alg" >>"$RAW"; continue
      fi
      if [[ "$t" == gateway* ]] && ! pid_alive_name "$t"; then
        printf '%s\t%s\t%s\t\t\t\t\t\t\t\t\tgateway exited\n' "$rep" "$s" "$(label_of "$t")" >>"$RAW"; continue
      fi
      url="http://127.0.0.1:${PORT_OF[$t]}"
      ((WARMUP > 0)) && run_wrk "$url" "$tokfile" "$limit" "$WARMUP" >/dev/null
      line="$(run_wrk "$url" "$tokfile" "$limit" "$DURATION")"
      if [[ -z "$line" ]]; then
        printf '%s\t%s\t%s\t\t\t\t\t\t\t\t\twrk failed (work/logs/wrk.err)\n' "$rep" "$s" "$(label_of "$t")" >>"$RAW"; continue
      fi
      declare -A R=()
      for kv in ${line#BENCH_RESULT }; do R[${kv%%=*}]="${kv#*=}"; done
      rps="$(awk -v r="${R[requests]}" -v d="${R[duration_us]}" 'BEGIN { printf "%.1f", r / (d / 1e6) }')"
      serr=$((R[connect_err] + R[read_err] + R[write_err] + R[timeout_err]))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$s" "$(label_of "$t")" "$rps" \
        "${R[p50_us]}" "${R[p90_us]}" "${R[p99_us]}" "${R[max_us]}" "${R[non2xx]}" "$serr" "${R[requests]}" "$note" >>"$RAW"
      log "rep $rep $s $(label_of "$t"): $rps req/s p50 ${R[p50_us]}us p99 ${R[p99_us]}us non2xx ${R[non2xx]} sockerr $serr"
      unset R
    done
  done
done

# ---- report
HEADER="$(printf '%s\n%s\n' \
  "JWT proxy bench $TS: $(nproc) CPUs, ${CONNS} conns, ${DURATION}s runs (+${WARMUP}s warm-up), $REPEAT repeat(s), rotating $ROTATE tokens (-single: 1 token)" \
  "$CPU_NOTE; haproxy $(haproxy -v 2>/dev/null | awk 'NR==1{print $3}'), nginx $(nginx -v 2>&1 | sed 's|.*/||'), wrk $(wrk --version 2>&1 | awk 'NR==1{print $2}')")"
python3 "$BENCH_DIR/report.py" --baselines direct,haproxy,haproxy-jwt --header "$HEADER" "$RAW" | tee "$WORK/results/$TS.txt"
log "raw results: work/results/$TS.tsv, table: work/results/$TS.txt"
