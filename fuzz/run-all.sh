#!/usr/bin/env bash
# Run every moq-proto fuzz target, one after another, for N seconds each.
#
#   fuzz/run-all.sh [SECONDS]        # default 60
#
# Extra `cargo fuzz` options go in FUZZ_ARGS (e.g. FUZZ_ARGS="--sanitizer none").
# Logs go to fuzz/target/run-all/<target>.log; crashing inputs to
# fuzz/artifacts/<target>/. Exits non-zero if any target failed.
set -uo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")"

# Stable rustc accepts the nightly-only flags cargo-fuzz passes with this set.
export RUSTC_BOOTSTRAP=1

logs=target/run-all
mkdir -p "$logs"

# -a: debug assertions and overflow checks, so arithmetic overflow is a finding.
# shellcheck disable=SC2086
if ! cargo fuzz build -a ${FUZZ_ARGS:-}; then
    echo "build failed" >&2
    exit 2
fi

failed=()
for target in $(cargo fuzz list); do
    echo "=== $target (${seconds}s)"
    # Targets with committed seeds start from them (read-only; new units go to corpus/).
    dirs=()
    if [[ -d "seeds/$target" ]]; then
        mkdir -p "corpus/$target"
        dirs=("corpus/$target" "seeds/$target")
    fi
    # shellcheck disable=SC2086
    if cargo fuzz run -a ${FUZZ_ARGS:-} "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$logs/$target.log" 2>&1; then
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$logs/$target.log" || true
    else
        echo "!!! $target FAILED, see $logs/$target.log and artifacts/$target/"
        grep -E -m5 'panicked at|Test unit written|^SUMMARY' "$logs/$target.log" || true
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "failed targets: ${failed[*]}" >&2
    exit 1
fi
echo "all targets passed"
