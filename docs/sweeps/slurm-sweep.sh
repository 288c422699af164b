#!/usr/bin/env bash
# Runs a planned sweep (`engine sweep ... --plan FILE`) on Slurm to its end: each rung as a job
# array of slurm-array.sh (one task per entry of the rung), waited for; then `--promote` ranks the
# rung from what its runs logged to MLflow and writes the next rung into the plan, until it
# prints 0 (a grid or random search has one rung); then `--summarize` ends the parent run and
# prints the comparison. Extra arguments go to sbatch (e.g. --partition, --cpus-per-task).
#
#   docs/sweeps/slurm-sweep.sh plan.json [SBATCH OPTIONS...]
set -euo pipefail
plan="${1:?usage: slurm-sweep.sh PLAN [SBATCH OPTIONS...]}"
shift
engine="${ENGINE:-engine}"
here="$(cd "$(dirname "$0")" && pwd)"
entries="$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(len(p["schedule"]["rungs"][-1]))' "$plan")"
while [ "$entries" -gt 0 ]; do
    job="$(sbatch --parsable --array="0-$((entries - 1))" --output=/dev/null "$@" "$here/slurm-array.sh" "$plan")"
    # Until every task ended (a failed task is ranked last by --promote, or reported by --summarize).
    while [ -n "$(squeue -h -j "${job%%;*}" -o %i 2>/dev/null)" ]; do sleep 1; done
    entries="$("$engine" sweep --plan "$plan" --promote)"
done
"$engine" sweep --plan "$plan" --summarize
