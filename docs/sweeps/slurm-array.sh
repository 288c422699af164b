#!/usr/bin/env bash
# One array task of a sweep on Slurm: entry $SLURM_ARRAY_TASK_ID of the plan's current rung (a
# grid or random search has one rung holding every point). Plan once (creates the parent run on
# the MLflow server), e.g. a grid of 6 points or successive halving over 27 trials:
#
#   engine sweep --lr 1e-1,1e-2,1e-3 --batch-size 64,128 --epochs 10 \
#       --experiment lr-study --run-name lr-sweep --plan plan.json
#   engine sweep --search halving --trials 27 --eta 3 --epochs 9 \
#       --space 'lr=loguniform(1e-3,0.3)' --space 'dropout=uniform(0,0.4)' --plan plan.json
#
# then let slurm-sweep.sh submit each rung as an array of this script, promote, and summarize:
#
#   docs/sweeps/slurm-sweep.sh plan.json
#
# or by hand, for a grid: `sbatch --array=0-5 docs/sweeps/slurm-array.sh plan.json`, then
# `engine sweep --plan plan.json --summarize` once the array is done. The plan file (and, for
# halving, the checkpoints written beside it) must be on storage every node shares.
#SBATCH --job-name=engine-sweep
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
set -euo pipefail
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:?set the MLflow server every node reaches}"
export RAYON_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
"${ENGINE:-engine}" sweep --plan "${1:-plan.json}" --index "$SLURM_ARRAY_TASK_ID"
