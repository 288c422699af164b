#!/usr/bin/env bash
# Load benchmark of `engine serve` beside `mlflow models serve` on the same model directory,
# with wrk, in the three cases of MLflow's serving anchor (5 s warm-up, then DURATION seconds):
#   single: one image per request, 8 connections (wrk -t2 -c8)
#   latency: one image per request, 1 connection (wrk -t1 -c1)
#   batch64: 64 images per request, 8 connections (wrk -t2 -c8)
#
#   scripts/serve-bench.sh [MODEL_DIR]
#
# Without MODEL_DIR, the default 784-512-512-10 MLP is trained for one epoch first. Needs wrk
# (apt-get install wrk), a release build (cargo build --release) and the MLflow venv
# (scripts/mlflow-venv.sh; its numpy writes the request bodies, seeded like the anchor's).
# Environment: SERVERS ("engine mlflow"), DURATION (20), WARMUP (5), ENGINE
# (target/release/engine), ENGINE_MLFLOW_VENV (.venv-mlflow), BENCH_DIR (a new temp directory),
# ENGINE_PORT (5101), MLFLOW_PORT (5102), and any `engine serve` flags in ENGINE_SERVE_FLAGS.
# Prints a Markdown table; raw wrk output and one JSON line per case stay in BENCH_DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
engine="${ENGINE:-$here/../target/release/engine}"
venv="${ENGINE_MLFLOW_VENV:-$here/../.venv-mlflow}"
servers="${SERVERS:-engine mlflow}"
duration="${DURATION:-20}"
warmup="${WARMUP:-5}"
work="${BENCH_DIR:-$(mktemp -d -t engine-serve-bench.XXXXXX)}"
engine_port="${ENGINE_PORT:-5101}"
mlflow_port="${MLFLOW_PORT:-5102}"
model="${1:-}"

command -v wrk > /dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
[ -x "$engine" ] || { echo "no $engine: cargo build --release" >&2; exit 2; }
[ -x "$venv/bin/python" ] || { echo "no MLflow venv at $venv: scripts/mlflow-venv.sh" >&2; exit 2; }
mkdir -p "$work/payloads" "$work/wrk"
results="$work/results.jsonl"
: > "$results"

if [ -z "$model" ]; then
    echo "== training the default model (one epoch) into $work/train" >&2
    ENGINE_TRACKING=none ENGINE_LOCAL_STORE="$work/store" "$engine" train --device cpu --epochs 1 \
        --output-dir "$work/train" > /dev/null
    model="$work/train/model"
fi

# The anchor's bodies: seeded uniform [0, 1) pixels rounded to 4 decimals, compact JSON.
"$venv/bin/python" - "$work/payloads" <<'EOF'
import json, sys
import numpy as np
rng = np.random.default_rng(42)
for name, n in [("single", 1), ("batch64", 64)]:
    x = np.round(rng.random((n, 784)), 4).tolist()
    open(f"{sys.argv[1]}/{name}.json", "w").write(json.dumps({"inputs": x}, separators=(",", ":")))
EOF

server_pid=""
stop_server() {
    [ -n "$server_pid" ] || return 0
    # The server runs in a process group of its own (setsid): stop the whole group.
    kill -TERM -- "-$server_pid" 2> /dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2> /dev/null || break; sleep 0.2; done
    kill -KILL -- "-$server_pid" 2> /dev/null || true
    server_pid=""
}
trap stop_server EXIT

wait_ready() {
    for _ in $(seq 1 360); do
        curl -s -o /dev/null "http://127.0.0.1:$1/ping" && return 0
        kill -0 "$server_pid" 2> /dev/null || break
        sleep 0.5
    done
    echo "the server on port $1 did not start; its log:" >&2
    tail -20 "$work/$2.log" >&2
    exit 1
}

run_case() { # server port case threads connections payload
    local server=$1 port=$2 case=$3 threads=$4 conns=$5 payload=$6 out
    local url="http://127.0.0.1:$port/invocations" body="$work/payloads/$payload.json"
    wrk -t"$threads" -c"$conns" -d"${warmup}s" --latency --timeout 10s -s "$here/serve-bench.lua" "$url" -- "$body" > /dev/null
    local before after
    before=$(cut -d' ' -f1 /proc/loadavg)
    out="$work/wrk/$server-$case.txt"
    wrk -t"$threads" -c"$conns" -d"${duration}s" --latency --timeout 10s -s "$here/serve-bench.lua" "$url" -- "$body" > "$out"
    after=$(cut -d' ' -f1 /proc/loadavg)
    "$venv/bin/python" - "$out" "$server" "$case" "$conns" "$payload" "$before" "$after" >> "$results" <<'EOF'
import json, re, sys
path, server, case, conns, payload, before, after = sys.argv[1:]
text = open(path).read()
summary = json.loads(next(l[5:] for l in text.splitlines() if l.startswith("JSON ")))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
rps = summary["requests"] / (summary["duration_us"] / 1e6)
images = 64 if payload == "batch64" else 1
errors = sum(summary[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
print(json.dumps({"server": server, "case": case, "conns": int(conns), "rps": rps, "images_per_s": rps * images,
                  "p50_ms": summary["lat_p50_us"] / 1e3, "p99_ms": summary["lat_p99_us"] / 1e3,
                  "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors,
                  "load_before": float(before), "load_after": float(after)}))
EOF
    tail -n 1 "$results" >&2
}

start_server() { # server port log
    case $1 in
        engine)
            # shellcheck disable=SC2086 # ENGINE_SERVE_FLAGS is a list of flags
            setsid "$engine" serve --model-uri "$model" --port "$2" ${ENGINE_SERVE_FLAGS:-} > "$work/$3.log" 2>&1 < /dev/null &
            ;;
        mlflow)
            # `mlflow models serve` runs `uvicorn` by name.
            PATH="$venv/bin:$PATH" MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true setsid "$venv/bin/mlflow" models serve \
                -m "$model" --env-manager local -h 127.0.0.1 -p "$2" > "$work/$3.log" 2>&1 < /dev/null &
            ;;
        *) echo "unknown server $1 (engine or mlflow)" >&2; exit 2 ;;
    esac
    server_pid=$!
    wait_ready "$2" "$3"
}

# The engine starts afresh for each case (in a second), so that its log's batch sizes are the
# case's; MLflow takes ~10 s to start and serves all three.
cases=("single 2 8 single" "latency 1 1 single" "batch64 2 8 batch64")
for server in $servers; do
    port=$engine_port
    if [ "$server" = mlflow ]; then
        port=$mlflow_port
        start_server mlflow "$port" mlflow
    fi
    echo "== $server on port $port" >&2
    for spec in "${cases[@]}"; do
        read -r case threads conns payload <<< "$spec"
        if [ "$server" = engine ]; then start_server engine "$port" "engine-$case"; fi
        run_case "$server" "$port" "$case" "$threads" "$conns" "$payload"
        if [ "$server" = engine ]; then stop_server; fi
    done
    stop_server
done

"$venv/bin/python" - "$results" "$work" <<'EOF'
import json, os, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["server"], r["case"]): r for r in rows}
names = {"single": "1 image, 8 conns", "latency": "1 image, 1 conn", "batch64": "64 images, 8 conns"}

def batch(case):
    """Images per forward pass, from the engine's log of the case."""
    path = os.path.join(sys.argv[2], f"engine-{case}.log")
    text = open(path).read() if os.path.exists(path) else ""
    m = re.search(r"batches in all: .* ([\d.]+) per batch \(largest (\d+)\)", text)
    return f"{m.group(1)} (max {m.group(2)})" if m else ""

print("| case | server | req/s | images/s | p50 ms | p99 ms | errors | load (1 min) | images per forward pass | vs mlflow |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |")
for case in names:
    for server in ("engine", "mlflow"):
        r = by.get((server, case))
        if r is None:
            continue
        theirs = by.get(("mlflow", case))
        ratio = f"{r['images_per_s'] / theirs['images_per_s']:.1f}x" if server == "engine" and theirs else ""
        print(f"| {names[case]} | {server} | {r['rps']:,.0f} | {r['images_per_s']:,.0f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['non2xx'] + r['socket_errors']} | {r['load_before']:.1f} -> {r['load_after']:.1f} | "
              f"{batch(case) if server == 'engine' else ''} | {ratio} |")
EOF
echo "raw results: $work" >&2
