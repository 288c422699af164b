#!/usr/bin/env bash
# The model pipeline: train -> evaluate -> quality gate (a threshold, and no worse than the
# champion in production) -> register (Staging) -> promote (Production + alias champion),
# against the MLflow server in MLFLOW_TRACKING_URI. Each run writes into a directory of its own
# under --output.
#
#   scripts/pipeline.sh [--threshold 0.88] [--metric test_accuracy] [--name fashion-mlp]
#                       [--tolerance 0.005] [--no-baseline] [--output DIR]
#                       [-- extra `engine train` flags]
#
# Exit codes, with a one-line summary either way:
#   0  promoted
#   1  the gate failed: below the threshold (the registry is untouched)
#   3  not promoted: worse than the champion by more than the tolerance (the registry is untouched)
#   2  could not run: setup, training, evaluation or the server failed (nothing was decided)
set -uo pipefail

engine="${ENGINE:-target/release/engine}"
threshold="${GATE_THRESHOLD:-0.88}"
metric="${GATE_METRIC:-test_accuracy}"
name="${MODEL_NAME:-fashion-mlp}"
tolerance="${GATE_TOLERANCE:-0.005}"
output="${PIPELINE_OUTPUT:-pipeline-output}"
baseline=yes
train_flags=()

# Ends the pipeline with `code` and the one-line summary.
finish() {
    local code="$1"; shift
    echo "pipeline: $* (exit $code)"
    exit "$code"
}
cannot() { finish 2 "could not run: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --threshold) threshold="$2"; shift 2 ;;
        --metric) metric="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --tolerance) tolerance="$2"; shift 2 ;;
        --no-baseline) baseline=no; shift ;;
        --output) output="$2"; shift 2 ;;
        --) shift; train_flags=("$@"); break ;;
        *) cannot "unknown option $1 (see the header of $0)" ;;
    esac
done
[ -n "${MLFLOW_TRACKING_URI:-}" ] || cannot "set MLFLOW_TRACKING_URI to the MLflow server"
[ -x "$engine" ] || cannot "no engine at $engine (cargo build --release, or set ENGINE)"
if command -v curl >/dev/null && ! curl -sf --max-time 10 "${MLFLOW_TRACKING_URI%/}/health" >/dev/null; then
    cannot "the MLflow server at $MLFLOW_TRACKING_URI does not answer"
fi

# A field of the JSON object an engine command prints as its last line.
field() { tail -n 1 | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p"; }

run_dir="$output/$(date -u +%Y%m%dT%H%M%SZ)-$$"
echo "== train (into $run_dir)"
run_id=$("$engine" train --json --output-dir "$run_dir/train" "${train_flags[@]}" | tee /dev/stderr | field run_id)
[ -n "$run_id" ] || cannot "training did not finish (see above)"

echo "== evaluate"
"$engine" eval --run-id "$run_id" --log-mlflow --json --output-dir "$run_dir/eval" >/dev/null ||
    cannot "the evaluation of run $run_id failed (see above)"

echo "== gate"
gate_flags=(--run-id "$run_id" --metric "$metric" --threshold "$threshold" --json)
[ "$baseline" = no ] || gate_flags+=(--baseline "models:/$name@champion" --tolerance "$tolerance")
gate=$("$engine" gate "${gate_flags[@]}")
status=$?
value=$(echo "$gate" | field value)
case "$status" in
    0) ;;
    1)
        if [ "$(echo "$gate" | field failed_check)" = baseline ]; then
            finish 3 "not promoted: run $run_id is worse than the champion of $name ($metric = $value); reports in $run_dir/eval"
        fi
        finish 1 "gate failed: run $run_id has $metric = $value, below $threshold; reports in $run_dir/eval" ;;
    *) cannot "the gate could not decide on run $run_id (see above)" ;;
esac

echo "== register"
version=$("$engine" register --run-id "$run_id" --name "$name" --json | field version)
[ -n "$version" ] || cannot "registering run $run_id as $name failed (see above)"
echo "== promote"
"$engine" promote --name "$name" --version "$version" || cannot "promoting $name version $version failed (see above)"
finish 0 "promoted $name version $version from run $run_id ($metric = $value); reports in $run_dir/eval"
