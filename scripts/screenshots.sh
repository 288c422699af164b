#!/usr/bin/env bash
# Screenshots of the MLflow UI showing engine runs (docs/screenshots/): a throwaway MLflow server
# gets a tracked run, its evaluation and a learning-rate sweep, then headless Chromium captures
# the runs table, a run's system metrics, the model page and the sweep's charts.
#
#   scripts/screenshots.sh        # needs .venv-mlflow (scripts/mlflow-venv.sh), chromium and npm
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ENGINE_MLFLOW_VENV:-.venv-mlflow}"
out=docs/screenshots
chrome="$(command -v chromium || command -v chromium-browser)"
work="$(mktemp -d)"
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
uri="http://127.0.0.1:$port"
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

MLFLOW_DISABLE_TELEMETRY=true "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$work/mlflow.db" \
    --artifacts-destination "$work/artifacts" --host 127.0.0.1 --port "$port" --workers 1 >"$work/server.log" 2>&1 &
server=$!
until curl -sf "$uri/health" >/dev/null; do sleep 1; done

cargo build --release --quiet
engine=./target/release/engine
export MLFLOW_TRACKING_URI="$uri" ENGINE_LOCAL_STORE="$work/store" MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=1
run_id="$($engine train --device cpu --epochs 5 --train-limit 20000 --experiment fashion-mnist \
    --run-name baseline --description "784-512-512-10 MLP, SGD with cosine schedule" --tag team=vision \
    --output-dir "$work/out" --json | tail -1 | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')"
$engine eval --device cpu --run-id "$run_id" --log-mlflow --output-dir "$work/eval" >/dev/null
$engine sweep --device cpu --lr 0.1,0.03,0.01 --epochs 4 --train-limit 10000 --hidden 128 \
    --experiment lr-study --run-name lr-sweep --output-dir "$work/sweep" >/dev/null

api() { curl -sf "$uri/api/2.0/mlflow/$1"; }
field() { "$venv/bin/python" -c "import json,sys; print(eval('json.load(sys.stdin)$1'))"; }
exp_id="$(api "experiments/get-by-name?experiment_name=fashion-mnist" | field '["experiment"]["experiment_id"]')"
sweep_id="$(api "experiments/get-by-name?experiment_name=lr-study" | field '["experiment"]["experiment_id"]')"
model_id="$(api "runs/get?run_id=$run_id" | field '["run"]["data"]["tags"]' | tr "'" '"' |
    "$venv/bin/python" -c 'import json,sys; print([t["value"] for t in json.load(sys.stdin) if t["key"]=="engine.model_id"][0])')"

# playwright-core drives the browser; it is fetched into the scratch directory, not the checkout.
npm install --silent --prefix "$work/node" playwright-core@1 >/dev/null
mkdir -p "$out"
CHROME="$chrome" NODE_PATH="$work/node/node_modules" node scripts/screenshots.cjs "$out" \
    "runs-table.png=$uri/#/experiments/$exp_id/runs" \
    "system-metrics.png=$uri/#/experiments/$exp_id/runs/$run_id/system-metrics" \
    "model-page.png=$uri/#/experiments/$exp_id/models/$model_id" \
    "sweep-charts.png=$uri/#/experiments/$sweep_id/runs?compareRunsMode=CHART"
