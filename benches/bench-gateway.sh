#!/usr/bin/env bash
# Gateway entry point for the shared harness:
#   ../shared/bench/run.sh --gateway-cmd benches/bench-gateway.sh --repeat 3
# Turns the harness's BENCH_* variables into a revgate config and store, loads the
# revoked jti and sid lists into the store (offline bulk import, before the port opens,
# so the self-check never races the load), and runs `revgate serve` sized to BENCH_WORKERS.
#
# Knobs: REVGATE_BIN (default target/release/revgate), REVGATE_BENCH_CACHE=off to turn
# the verified-token cache off (raw verification), REVGATE_BENCH_ADMIN_PORT
# (default BENCH_PORT+1000), REVGATE_BENCH_REDIS_URL to run the gateway as a node of a
# cluster on that Redis (SPEC §8; the request path must not notice).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${REVGATE_BIN:-$here/target/release/revgate}"
[ -x "$bin" ] || { echo "bench-gateway: $bin not found: run cargo build --release first" >&2; exit 1; }
: "${BENCH_LISTEN:?}" "${BENCH_PORT:?}" "${BENCH_UPSTREAM:?}" "${BENCH_JWKS:?}" "${BENCH_ISS:?}" "${BENCH_AUD:?}"
work="${BENCH_WORK:-${TMPDIR:-/tmp}/revgate-bench}/revgate"
rm -rf "$work"
mkdir -p "$work"
admin_port="${REVGATE_BENCH_ADMIN_PORT:-$((BENCH_PORT + 1000))}"
cache_line=""
if [ "${REVGATE_BENCH_CACHE:-on}" = "off" ]; then
  cache_line="verified_token_cache = 0"
fi

cat > "$work/revgate.toml" <<CONF
[server]
listen       = "$BENCH_LISTEN"
admin_listen = "127.0.0.1:$admin_port"

[[issuer]]
issuer     = "$BENCH_ISS"
audiences  = ["$BENCH_AUD"]
jwks_file  = "$BENCH_JWKS"
algorithms = ["RS256", "ES256", "EdDSA"]

[auth]
$cache_line

[[route]]
prefix   = "/"
upstream = "$BENCH_UPSTREAM"

[store]
path = "$work/store"
CONF
if [ -n "${REVGATE_BENCH_REDIS_URL:-}" ]; then
  printf '\n[cluster]\nredis_url = "%s"\nnode_id = "bench"\n' "$REVGATE_BENCH_REDIS_URL" >> "$work/revgate.toml"
fi

now=$(date -u +%FT%TZ)
until=$(date -u -d '+1 day' +%FT%TZ)
{
  if [ -n "${BENCH_REVOKED_JTI:-}" ] && [ -f "$BENCH_REVOKED_JTI" ]; then
    awk -v iss="$BENCH_ISS" -v now="$now" -v until="$until" 'NF {
      printf "{\"kind\":\"jti\",\"issuer\":\"%s\",\"value\":\"%s\",\"revoked_at\":\"%s\",\"issued_before\":null,\"expires_at\":\"%s\",\"reason\":\"bench\",\"source\":\"admin\"}\n", iss, $1, now, until }' "$BENCH_REVOKED_JTI"
  fi
  if [ -n "${BENCH_REVOKED_SID:-}" ] && [ -f "$BENCH_REVOKED_SID" ]; then
    awk -v iss="$BENCH_ISS" -v now="$now" -v until="$until" 'NF {
      printf "{\"kind\":\"sid\",\"issuer\":\"%s\",\"value\":\"%s\",\"revoked_at\":\"%s\",\"issued_before\":\"%s\",\"expires_at\":\"%s\",\"reason\":\"bench\",\"source\":\"admin\"}\n", iss, $1, now, now, until }' "$BENCH_REVOKED_SID"
  fi
} > "$work/seed.ndjson"
"$bin" import "$work/seed.ndjson" --offline --config "$work/revgate.toml" > "$work/import.json"

export TOKIO_WORKER_THREADS="${BENCH_WORKERS:-1}"
export RUST_LOG="${RUST_LOG:-warn}"
exec "$bin" serve --config "$work/revgate.toml"
