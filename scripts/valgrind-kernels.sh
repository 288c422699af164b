#!/usr/bin/env bash
# The CPU kernel tests under valgrind's memcheck: the matmul, convolution, pooling, optimizer and
# unsafe-code tests, with any invalid read or write, use of uninitialised memory or leak of
# engine code failing the run. Takes a few minutes (valgrind runs code 20-50x slower).
#
#   scripts/valgrind-kernels.sh      # needs valgrind (apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

# The test executables, as cargo built them for `cargo test --release`.
binary() {
    cargo test --release --no-run --message-format=json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m.get("profile", {}).get("test")][-1])'
}

# Errors in the engine's code fail the run (exit 99); the Rust runtime's own allocations at exit
# are not leaks of ours, so only definite leaks count.
memcheck() {
    echo "valgrind: $(basename "$1") $2"
    RAYON_NUM_THREADS=2 valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite "$1" --test-threads=1 $2
}

memcheck "$(binary --lib)" backend::cpu
# The naive reference dominates the mostly-zero test here; the soundness tests cover that path.
memcheck "$(binary --test matmul)" "--skip=mostly_zero_inputs_match_naive"
memcheck "$(binary --test soundness)" cpu_
memcheck "$(binary --test nn_optim)" ""
