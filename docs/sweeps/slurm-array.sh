#!/usr/bin/env bash
# One sweep over a Slurm job array. Plan once (creates the parent run on the MLflow server):
#
#   engine sweep --lr 1e-1,1e-2,1e-3 --batch-size 64,128 --epochs 10 \
#       --experiment lr-study --run-name lr-sweep --plan plan.json
#
# then submit one array task per point (6 here) and summarize once they are done:
#
#   sbatch --array=0-5 docs/sweeps/slurm-array.sh plan.json
#   sbatch --dependency=afterany:<job id> --wrap "engine sweep --plan plan.json --summarize"
#
#SBATCH --job-name=engine-sweep
#SBATCH --cpus-per-task=4
#SBATCH --time=01:00:00
set -euo pipefail
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:?set the MLflow server every node reaches}"
export RAYON_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
engine sweep --plan "${1:-plan.json}" --index "$SLURM_ARRAY_TASK_ID"
