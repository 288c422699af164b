#!/usr/bin/env bash
# Creates the Python virtualenv holding the MLflow server that the tracking tests start
# (tests/common/mlflow.rs), with safetensors and NumPy for the test that reads our weights from
# Python, onnx and onnxruntime (~110 MB) for the tests that load our model.onnx with stock MLflow,
# and kubernetes-validate for the sweep's Kubernetes Job file. Idempotent: does nothing when the
# right MLflow is already there.
#
#   scripts/mlflow-venv.sh            # -> <repo>/.venv-mlflow
#   scripts/mlflow-venv.sh /some/dir  # -> /some/dir (then export ENGINE_MLFLOW_VENV=/some/dir)
#
# MLFLOW_VERSION overrides the pinned version (3.18.0 does not resolve from PyPI at the moment:
# its wheel pins mlflow-skinny/mlflow-tracing 3.18.0, which are not published).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${ENGINE_MLFLOW_VENV:-$repo/.venv-mlflow}}"
version="${MLFLOW_VERSION:-3.17.2}"
python="${PYTHON:-python3}"

installed() {
    [ -x "$venv/bin/mlflow" ] && [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import importlib.metadata as m; [m.version(p) for p in ("safetensors", "onnx", "onnxruntime", "psycopg2-binary", "kubernetes-validate")]; print(m.version("mlflow"))' 2>/dev/null)" = "$version" ]
}

if installed; then
    echo "mlflow $version already installed in $venv"
    exit 0
fi

if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "error: $python cannot create virtualenvs; install python3-venv (apt-get install python3-venv)" >&2
    exit 1
fi

echo "creating $venv with mlflow==$version (a few minutes, ~960 MB)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$version" safetensors numpy onnx onnxruntime psycopg2-binary kubernetes-validate

if ! installed; then
    echo "error: mlflow $version did not install into $venv" >&2
    exit 1
fi
echo "mlflow $version installed in $venv ($("$venv/bin/mlflow" --version))"
