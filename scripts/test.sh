#!/usr/bin/env bash
# The test command: installs what the tests need where it is missing (Mesa's lavapipe Vulkan
# driver, the FashionMNIST package, PostgreSQL, valgrind, Slurm, Chromium and Node with
# playwright-core, an MLflow server in .venv-mlflow), then runs every test, the MLflow tests a
# second time on PostgreSQL, a sweep on a Slurm cluster, and the CPU kernel tests under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || packages+=(mesa-vulkan-drivers libvulkan1)
command -v valgrind >/dev/null || packages+=(valgrind)
command -v slurmctld >/dev/null || packages+=(slurmctld slurmd slurm-client munge)
command -v chromium >/dev/null || packages+=(chromium)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if [ ${#packages[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}"
fi
if [ -x scripts/mlflow-venv.sh ]; then
    scripts/mlflow-venv.sh
fi
# playwright-core drives Debian's Chromium in tests/serve_page.rs; it goes to the user cache, not
# the checkout, and no browser is downloaded.
browser_modules="${ENGINE_BROWSER_MODULES:-${XDG_CACHE_HOME:-$HOME/.cache}/engine-browser/node_modules}"
if [ ! -d "$browser_modules/playwright-core" ] && command -v npm >/dev/null; then
    npm install --silent --prefix "$(dirname "$browser_modules")" playwright-core@1 >/dev/null
fi
export ENGINE_BROWSER_MODULES="$browser_modules"

# Mesa's device-select layer only prints XDG_RUNTIME_DIR errors in tests that open a GPU
# context in-process (the `engine` binary sets this itself).
export NODEVICE_SELECT=1
# `engine --device gpu` refuses a software adapter unless told it is meant; the tests run on
# lavapipe.
export ENGINE_ALLOW_SOFTWARE_GPU=1
cargo test --release "$@"
# The library's workflow without the binary: a tracked run, its evaluation and gate (seconds).
cargo run --release --example tracked_run
# The Kubernetes Indexed Job for sweeps, against the Kubernetes API schema (bundled, offline).
.venv-mlflow/bin/kubernetes-validate --quiet --strict docs/sweeps/k8s-indexed-job.yaml

# The MLflow tests again, against a server backed by a throwaway PostgreSQL cluster, while the
# CPU kernel tests run under valgrind beside them (mostly waiting on servers, they leave a core).
if [ $# -eq 0 ]; then
    cargo test --release --no-run --quiet
    # A sweep submitted as Slurm job arrays to a throwaway single-node cluster, beside them too.
    memcheck_log="$(mktemp)" slurm_log="$(mktemp)"
    scripts/valgrind-kernels.sh >"$memcheck_log" 2>&1 &
    memcheck=$!
    ENGINE_REQUIRE_SLURM=1 scripts/with-slurm.sh cargo test --release --test sweep_slurm >"$slurm_log" 2>&1 &
    slurm=$!
    trap 'kill $memcheck $slurm 2>/dev/null || true; rm -f "$memcheck_log" "$slurm_log"' EXIT
    scripts/with-postgres.sh cargo test --release --test tracking_mlflow --test eval_mlflow \
        --test registry_mlflow --test sweep_mlflow --test sweep_plan_mlflow --test writers_mlflow
    slurm_status=0 memcheck_status=0
    wait $slurm || slurm_status=$?
    wait $memcheck || memcheck_status=$?
    cat "$slurm_log" "$memcheck_log"
    [ $slurm_status -eq 0 ] || { echo "error: the sweep on Slurm failed (above)" >&2; exit $slurm_status; }
    [ $memcheck_status -eq 0 ] || { echo "error: the CPU kernel tests failed under valgrind (above)" >&2; exit $memcheck_status; }
fi
