#!/usr/bin/env bash
# A screenshot of `engine ui` (docs/screenshots/ui-runs-table.png): a throwaway project gets a few
# runs recorded offline (an MLP, a CNN, a learning-rate sweep), then `engine ui` serves them and
# headless Chromium captures the runs table.
#
#   scripts/ui-screenshot.sh      # needs .venv-mlflow (scripts/mlflow-venv.sh), chromium and npm
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
venv="$(cd "${ENGINE_MLFLOW_VENV:-.venv-mlflow}" && pwd)"
chrome="$(command -v chromium || command -v chromium-browser)"
work="$(mktemp -d)"
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ui=""
trap '[ -n "$ui" ] && kill -INT "$ui" 2>/dev/null && wait "$ui" 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet
engine="$repo/target/release/engine"
mkdir "$work/project" && cd "$work/project"
unset MLFLOW_TRACKING_URI ENGINE_LOCAL_STORE
$engine train --device cpu --epochs 4 --train-limit 20000 --run-name mlp-baseline \
    --description "784-512-512-10 MLP, SGD with cosine schedule" --output-dir runs/mlp >/dev/null
$engine train --device cpu --model cnn --epochs 1 --train-limit 6000 --run-name cnn --output-dir runs/cnn >/dev/null
$engine sweep --device cpu --lr 0.1,0.03,0.01 --epochs 3 --train-limit 10000 --hidden 128 \
    --run-name lr-sweep --output-dir runs/sweep >/dev/null

MLFLOW_DISABLE_TELEMETRY=true $engine ui --port "$port" --mlflow "$venv/bin/mlflow" >"$work/ui.log" 2>&1 &
ui=$!
until grep -qs '^MLflow UI: ' "$work/ui.log"; do
    kill -0 "$ui" 2>/dev/null || { cat "$work/ui.log"; exit 1; }
    sleep 1
done
uri="http://127.0.0.1:$port"
exp_id="$(curl -sf "$uri/api/2.0/mlflow/experiments/get-by-name?experiment_name=fashion-mnist" |
    "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["experiment"]["experiment_id"])')"

# playwright-core drives the browser; it is fetched into the scratch directory, not the checkout.
npm install --silent --prefix "$work/node" playwright-core@1 >/dev/null
mkdir -p "$repo/docs/screenshots"
CHROME="$chrome" NODE_PATH="$work/node/node_modules" node "$repo/scripts/screenshots.cjs" "$repo/docs/screenshots" \
    "ui-runs-table.png=$uri/#/experiments/$exp_id/runs"
