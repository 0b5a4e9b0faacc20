#!/usr/bin/env bash
# Builds the fuzz targets on stable Rust and runs each for SECONDS (default 20):
#   fuzz/run.sh [SECONDS]
# libFuzzer comes from libfuzzer-sys; coverage from rustc's SanitizerCoverage passes, added
# by fuzz/rustc-sancov.sh to revgate and the targets only (no sanitizer, no nightly, no
# cargo-fuzz needed). The build shares the gateway's target directory and its compiled
# dependencies. Exits non-zero on any finding; the crashing input is kept in
# fuzz/artifacts/<target>/ (replay: target/debug/<target> fuzz/artifacts/<target>/crash-*).
# The corpus grows in fuzz/corpus/<target>/ (not committed); fuzz/seeds/ holds valid tokens.
set -euo pipefail
secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export RUSTC_WRAPPER="$here/rustc-sancov.sh"
cd "$here"
cargo build --locked --bins
status=0
for t in verify_token logout_token; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$CARGO_TARGET_DIR/fuzz-$t.log"
    echo "== fuzz $t for ${secs}s"
    if "$CARGO_TARGET_DIR/debug/$t" -max_total_time="$secs" -print_final_stats=1 \
        -max_len=12288 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz: target=$t seconds=$secs executions=${runs:-?} result=$result (log: $log)"
done
exit $status
