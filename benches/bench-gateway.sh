#!/usr/bin/env bash
# Gateway entry point for the harness (benches/harness/run.sh starts it by default):
#   benches/harness/run.sh --with-nocache --repeat 3
# Turns the harness's BENCH_* variables into a revgate config and store, loads the
# revoked jti and sid lists into the store (offline bulk import, before the port opens,
# so the self-check never races the load), and runs `revgate serve` sized to BENCH_WORKERS.
#
# Knobs: REVGATE_BIN (default target/release/revgate), REVGATE_BENCH_CACHE=off to turn
# the verified-token cache off (raw verification), REVGATE_BENCH_ADMIN_PORT
# (default BENCH_PORT+1000), REVGATE_BENCH_PUBLIC=1 to make the route public (no token
# decision: the forwarding path alone), REVGATE_BENCH_WRAP to run the gateway under a
# command (benches/profile-request.sh: `valgrind --tool=callgrind ...`),
# REVGATE_BENCH_REDIS_URL to run the gateway as a node of a cluster on that Redis (SPEC §8;
# the request path must not notice). RUST_LOG defaults to `warn`, which leaves the access
# lines out, as HAProxy's configs here log nothing; RUST_LOG=info keeps them (the default
# of a deployment).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${REVGATE_BIN:-$here/target/release/revgate}"
[ -x "$bin" ] || { echo "bench-gateway: $bin not found: run cargo build --release first" >&2; exit 1; }
: "${BENCH_LISTEN:?}" "${BENCH_PORT:?}" "${BENCH_UPSTREAM:?}" "${BENCH_JWKS:?}" "${BENCH_ISS:?}" "${BENCH_AUD:?}"
# one directory per port: run.sh --with-nocache starts a second instance beside the first
work="${BENCH_WORK:-${TMPDIR:-/tmp}/revgate-bench}/revgate-$BENCH_PORT"
rm -rf "$work"
mkdir -p "$work"
admin_port="${REVGATE_BENCH_ADMIN_PORT:-$((BENCH_PORT + 1000))}"
cache_line=""
public_line=""
if [ "${REVGATE_BENCH_PUBLIC:-0}" = 1 ]; then
  public_line="public   = true"
fi
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
$public_line

[store]
path = "$work/store"
CONF
if [ -n "${REVGATE_BENCH_REDIS_URL:-}" ]; then
  printf '\n[cluster]\nredis_url = "%s"\nnode_id = "bench-%s"\n' "$REVGATE_BENCH_REDIS_URL" "$BENCH_PORT" >> "$work/revgate.toml"
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
# shellcheck disable=SC2086  # the wrapper is a command line, split on purpose
exec ${REVGATE_BENCH_WRAP:-} "$bin" serve --config "$work/revgate.toml"
