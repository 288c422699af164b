#!/usr/bin/env bash
# The model pipeline: train -> evaluate -> quality gate -> register (Staging) -> promote
# (Production + alias champion), against the MLflow server in MLFLOW_TRACKING_URI.
#
#   scripts/pipeline.sh [--threshold 0.88] [--metric test_accuracy] [--name fashion-mlp]
#                       [--output DIR] [-- extra `engine train` flags]
#
# Exit codes: 0 promoted, 1 the gate failed (the registry is untouched), other: an error.
set -euo pipefail

engine="${ENGINE:-target/release/engine}"
threshold="${GATE_THRESHOLD:-0.88}"
metric="${GATE_METRIC:-test_accuracy}"
name="${MODEL_NAME:-fashion-mlp}"
output="${PIPELINE_OUTPUT:-pipeline-output}"
train_flags=()
while [ $# -gt 0 ]; do
    case "$1" in
        --threshold) threshold="$2"; shift 2 ;;
        --metric) metric="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        --) shift; train_flags=("$@"); break ;;
        *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the MLflow server}"

# A field of the JSON object an engine command prints as its last line.
field() { tail -n 1 | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p"; }

echo "== train"
run_id=$("$engine" train --json --output-dir "$output/train" "${train_flags[@]}" | tee /dev/stderr | field run_id)
[ -n "$run_id" ] || { echo "training did not report a run id" >&2; exit 3; }

echo "== evaluate"
"$engine" eval --run-id "$run_id" --log-mlflow --json --output-dir "$output/eval" > /dev/null

echo "== gate"
set +e
gate=$("$engine" gate --run-id "$run_id" --metric "$metric" --threshold "$threshold" --json)
status=$?
set -e
value=$(echo "$gate" | field value)
if [ "$status" -eq 0 ]; then
    decision=passed
    echo "== register"
    version=$("$engine" register --run-id "$run_id" --name "$name" --json | field version)
    echo "== promote"
    "$engine" promote --name "$name" --version "$version" | head -n 1
    production="$name version $version"
elif [ "$status" -eq 1 ]; then
    decision=failed
    production="unchanged"
else
    exit "$status"
fi

cat <<SUMMARY

pipeline summary
  run id      $run_id
  metric      $metric = $value
  threshold   $threshold
  decision    $decision
  production  $production
  reports     $output/eval
SUMMARY
[ "$decision" = passed ]
