#!/usr/bin/env bash
# RUSTC_WRAPPER used by fuzz/run.sh: adds libFuzzer's coverage instrumentation (LLVM
# SanitizerCoverage, the flags cargo-fuzz uses, no sanitizer: all stable rustc options) to
# the crates under test only: revgate (built with its `fuzzing` feature, so these artifacts
# never replace the ordinary ones) and the fuzz targets. Dependencies stay uninstrumented,
# so the fuzz build reuses the gateway's compiled dependencies in the shared target dir.
rustc=$1
shift
case " $* " in
*" --crate-name revgate "* | *" --crate-name verify_token "* | *" --crate-name logout_token "*)
    exec "$rustc" "$@" \
        -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing
    ;;
esac
exec "$rustc" "$@"
