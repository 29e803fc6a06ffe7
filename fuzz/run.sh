#!/usr/bin/env bash
# Fuzzes the frame reader and the cluster wire decoders with libFuzzer for a bounded time each,
# on stable Rust: the targets are built with the sanitizer-coverage passes cargo-fuzz would use
# (no nightly, no cargo-fuzz needed). A crash fails the run and leaves its input in
# fuzz/artifacts/. Inputs that once crashed live in fuzz/regressions/<target>/ and are replayed
# first, so a fixed crash stays fixed.
#
#   bash fuzz/run.sh            # 60 s per target
#   FUZZ_SECONDS=600 bash fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# An explicit target keeps the instrumentation out of build scripts and proc macros.
target=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --bins --target "$target"
mkdir -p artifacts corpus/frames corpus/wire
for name in frames wire; do
    regressions=(regressions/"$name"/*)
    if [ -e "${regressions[0]}" ]; then
        echo "replaying ${#regressions[@]} $name regression input(s)"
        ./target/"$target"/release/"$name" "${regressions[@]}"
    fi
    echo "fuzzing $name for ${seconds}s"
    ./target/"$target"/release/"$name" -max_total_time="$seconds" -max_len=4096 \
        -artifact_prefix=artifacts/ -print_final_stats=1 corpus/"$name"
done
