#!/usr/bin/env bash
# The engine on a GPU beside PyTorch CUDA eager, in one run and one table: the training epoch
# (cold and warm), square matmuls (GFLOP/s, fp32; PyTorch with TF32 off), row softmax (GB/s),
# and the dispatches, compute passes, submits and new bind groups of a training step.
#
# It builds nothing where it runs: the bench binaries are built and gathered beforehand.
#
#   scripts/gpu-bench.sh --collect DIR   on a build machine: `cargo bench --no-run` of the
#                                        `train` and `gpu_report` benches, stripped into DIR/bin,
#                                        with libvulkan.so.1 (DIR/lib), the PyTorch anchor and
#                                        FashionMNIST (DIR/data) where this machine has them
#   scripts/gpu-bench.sh [--small] [DIR] on the GPU machine, from DIR; without DIR and without
#                                        the variables below, the binaries are built here first
#
# --small (or ENGINE_GPU_BENCH_SMALL=1): sizes a CPU adapter such as lavapipe runs in seconds
# (1024 images, one hidden layer of 64, matmul 256³ and 512³, softmax 512x1000); PyTorch's
# figures are of other sizes, so it is not run.
#
# Variables: ENGINE_TRAIN_BENCH and ENGINE_GPU_REPORT (the binaries), ENGINE_DATA_DIR
# (FashionMNIST's .gz files), ENGINE_TORCH_ANCHOR (torch_gpu_anchor.py), ENGINE_TORCH_JSON (a
# result of that anchor to compare with instead of running it), PYTHON (default python3).
# Each part has its own time limit, so the whole run ends within 10 minutes.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
small=${ENGINE_GPU_BENCH_SMALL:-0}
bundle=""
collect=""
while [ $# -gt 0 ]; do
    case "$1" in
        --small) small=1 ;;
        --collect) collect=${2:?--collect needs a directory}; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) bundle=$1 ;;
    esac
    shift
done

# The `train` and `gpu_report` bench binaries, built now (nothing is rebuilt when they are
# current) with the release profile, whose library `cargo build/test --release` share; prints
# "train PATH" and "gpu_report PATH".
build_benches() {
    (cd "$repo" && cargo bench --no-run --profile release --message-format=json --bench train --bench gpu_report) |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' |
        while read -r exe; do
            case "$(basename "$exe")" in
                train-*) echo "train $exe" ;;
                gpu_report-*) echo "gpu_report $exe" ;;
            esac
        done
}

first_dataset_dir() {
    for dir in "${ENGINE_DATA_DIR:-}" "${XDG_CACHE_HOME:-$HOME/.cache}/engine/fashion-mnist" /usr/share/datasets/fashion-mnist; do
        if [ -n "$dir" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
            echo "$dir"
            return
        fi
    done
}

if [ -n "$collect" ]; then
    mkdir -p "$collect/bin" "$collect/lib" "$collect/data"
    while read -r name exe; do
        strip -o "$collect/bin/$name" "$exe" 2>/dev/null || cp "$exe" "$collect/bin/$name"
    done < <(build_benches)
    [ -x "$collect/bin/train" ] && [ -x "$collect/bin/gpu_report" ] || { echo "gpu-bench: the benches did not build" >&2; exit 1; }
    loader=$(ldconfig -p 2>/dev/null | sed -n 's/.*libvulkan\.so\.1 .*=> //p' | head -n 1)
    if [ -n "$loader" ]; then cp -L "$loader" "$collect/lib/libvulkan.so.1"; else echo "gpu-bench: no libvulkan.so.1 here to take along" >&2; fi
    anchor=${ENGINE_TORCH_ANCHOR:-$repo/../shared/anchors/gpu/torch_gpu_anchor.py}
    if [ -f "$anchor" ]; then cp "$anchor" "$collect/torch_gpu_anchor.py"; else echo "gpu-bench: no PyTorch anchor at $anchor" >&2; fi
    data=$(first_dataset_dir)
    if [ -n "$data" ]; then cp "$data"/*-ubyte.gz "$collect/data/"; else echo "gpu-bench: no FashionMNIST here to take along" >&2; fi
    echo "gpu-bench: $(du -sh "$collect" | cut -f1) in $collect; run there: scripts/gpu-bench.sh $collect"
    exit 0
fi

if [ -n "$bundle" ]; then
    : "${ENGINE_TRAIN_BENCH:=$bundle/bin/train}" "${ENGINE_GPU_REPORT:=$bundle/bin/gpu_report}"
    : "${ENGINE_TORCH_ANCHOR:=$bundle/torch_gpu_anchor.py}"
    [ -f "$bundle/data/train-images-idx3-ubyte.gz" ] && : "${ENGINE_DATA_DIR:=$bundle/data}"
    # The bundle's Vulkan loader only where the system has none.
    if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && [ -f "$bundle/lib/libvulkan.so.1" ]; then
        export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
if [ -z "${ENGINE_TRAIN_BENCH:-}" ] || [ -z "${ENGINE_GPU_REPORT:-}" ]; then
    echo "gpu-bench: building the bench binaries (cargo bench --no-run)" >&2
    while read -r name exe; do
        case "$name" in
            train) : "${ENGINE_TRAIN_BENCH:=$exe}" ;;
            gpu_report) : "${ENGINE_GPU_REPORT:=$exe}" ;;
        esac
    done < <(build_benches)
fi
for bin in "${ENGINE_TRAIN_BENCH:-}" "${ENGINE_GPU_REPORT:-}"; do
    [ -x "$bin" ] || { echo "gpu-bench: no bench binary at '$bin'" >&2; exit 1; }
done
# NVIDIA's container toolkit puts the Vulkan ICD where the loader does not look.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ] && ! grep -qsl nvidia /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; then
    export VK_DRIVER_FILES=$nvidia_icd
fi
data_dir=$(first_dataset_dir)
[ -n "$data_dir" ] && export ENGINE_DATA_DIR=$data_dir

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the engine -----------------------------------------------------------------------------
if [ "$small" = 1 ]; then
    train_args=(3 gpu limit=1024 hidden=64)
else
    train_args=(3 gpu)
fi
echo "gpu-bench: engine training (${train_args[*]})" >&2
engine_train_ok=1
timeout 220 "$ENGINE_TRAIN_BENCH" "${train_args[@]}" >"$work/train.txt" 2>"$work/train.err" || engine_train_ok=0
echo "gpu-bench: engine kernels" >&2
engine_kernels_ok=1
report_args=()
[ "$small" = 1 ] && report_args=(--small)
timeout 120 "$ENGINE_GPU_REPORT" "${report_args[@]}" >"$work/kernels.txt" 2>"$work/kernels.err" || engine_kernels_ok=0

# `key value` lines: epoch_1 (cold), warm (mean of the later epochs), the last epoch's counts
# per step, kernels.
awk '
    $1 == "epoch" { n++; t[n] = $3; for (i = 1; i < NF; i++) if ($i ~ /\/step$/) c[$i] = $(i + 1) }
    END {
        if (n >= 1) print "epoch_1", t[1]
        for (i = 2; i <= n; i++) warm += t[i]
        if (n >= 2) print "warm", warm / (n - 1)
        for (k in c) print k, c[k]
    }' "$work/train.txt" >"$work/engine.txt"
grep -E '^(matmul|softmax)_' "$work/kernels.txt" >>"$work/engine.txt" || true
adapter=$(sed -n 's/^adapter //p' "$work/kernels.txt")

# --- PyTorch --------------------------------------------------------------------------------
torch_note=""
torch_json=""
if [ -n "${ENGINE_TORCH_JSON:-}" ]; then
    torch_json=$ENGINE_TORCH_JSON
    torch_note="PyTorch: recorded in $ENGINE_TORCH_JSON"
elif [ "$small" = 1 ]; then
    torch_note="PyTorch: not run with --small (its figures are of the full sizes)"
elif ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    torch_note="PyTorch: not run, '$python' cannot import torch with CUDA"
elif [ ! -f "${ENGINE_TORCH_ANCHOR:=$repo/../shared/anchors/gpu/torch_gpu_anchor.py}" ]; then
    torch_note="PyTorch: not run, no anchor at $ENGINE_TORCH_ANCHOR (set ENGINE_TORCH_ANCHOR)"
elif [ -z "$data_dir" ]; then
    torch_note="PyTorch: not run, no FashionMNIST .gz files (set ENGINE_DATA_DIR)"
else
    echo "gpu-bench: PyTorch anchor" >&2
    if OUT=$work timeout 200 "$python" "$ENGINE_TORCH_ANCHOR" "$data_dir" >"$work/torch.txt" 2>&1; then
        torch_json=$work/torch_gpu_anchor.json
        torch_note="PyTorch: $ENGINE_TORCH_ANCHOR, in this run"
    else
        torch_note="PyTorch: the anchor failed: $(tail -n 1 "$work/torch.txt")"
    fi
fi
if [ -n "$torch_json" ]; then
    # The same keys as the engine's: epoch_1, warm, matmul_SIZE, softmax_ROWSxCOLS.
    "$python" - "$torch_json" >"$work/torch_values.txt" <<'EOF' || torch_note="$torch_note (unreadable)"
import json, sys
r = json.load(open(sys.argv[1]))
epochs = r.get("train_preloaded_bs128", {}).get("epoch_s", [])
if epochs:
    print("epoch_1", epochs[0])
if len(epochs) > 1:
    print("warm", sum(epochs[1:]) / (len(epochs) - 1))
for shape, v in r.get("matmul_fp32_notf32", {}).items():
    m, k, n = shape.split("x")
    if m == k == n:
        print(f"matmul_{m}", v["gflops"])
for shape, v in r.get("softmax", {}).items():
    print(f"softmax_{shape}", v["GBps"])
print("device", f"{r.get('device', '?')}, torch {r.get('torch', '?')}".replace(" ", "_"))
EOF
fi

# --- the table ------------------------------------------------------------------------------
value() { [ -f "$1" ] && awk -v k="$2" '$1 == k { print $2; exit }' "$1" || true; }
row() { # label, key, decimals
    local e t ratio="" fmt="%.${3}f"
    e=$(value "$work/engine.txt" "$2")
    t=$(value "$work/torch_values.txt" "$2")
    [ -n "$e" ] && [ -n "$t" ] && ratio=$(awk -v e="$e" -v t="$t" 'BEGIN { if (t > 0) printf "%.2f", e / t }')
    [ -n "$e" ] && e=$(printf "$fmt" "$e") || e="failed"
    [ -n "$t" ] && t=$(printf "$fmt" "$t") || t="-"
    printf "| %-34s | %10s | %10s | %8s |\n" "$1" "$e" "$t" "$ratio"
}
echo
echo "engine on ${adapter:-an unknown adapter}$([ "$small" = 1 ] && echo ', small sizes')"
echo "$torch_note$([ -s "$work/torch_values.txt" ] && echo " ($(value "$work/torch_values.txt" device | tr _ ' '))")"
echo
printf "| %-34s | %10s | %10s | %8s |\n" "measure" "engine" "PyTorch" "ratio"
printf "| %-34s | %10s | %10s | %8s |\n" "----------------------------------" "---------:" "---------:" "-------:"
row "epoch 1, cold (s)" epoch_1 3
row "warm epoch, mean of the later (s)" warm 3
while read -r key _; do
    case "$key" in
        matmul_*) row "matmul ${key#matmul_}x${key#matmul_}x${key#matmul_} (GFLOP/s)" "$key" 1 ;;
        softmax_*) row "row softmax ${key#softmax_} (GB/s)" "$key" 1 ;;
    esac
done < <(grep -E '^(matmul|softmax)_' "$work/engine.txt")
[ "$engine_kernels_ok" = 1 ] || row "kernels (gpu_report)" none 0
row "dispatches per step" dispatches/step 2
row "compute passes per step" passes/step 2
row "submits per step" submits/step 3
row "bind groups made per step" new_bind_groups/step 2
echo
echo "ratio: engine / PyTorch (times: lower is better; rates: higher is better)"
status=0
if [ "$engine_train_ok" = 0 ]; then
    echo "engine training failed: $(grep -v XDG_RUNTIME_DIR "$work/train.err" | tail -n 3)"
    status=1
fi
if [ "$engine_kernels_ok" = 0 ]; then
    echo "engine kernels failed: $(grep -v XDG_RUNTIME_DIR "$work/kernels.err" | tail -n 3)"
    status=1
fi
exit $status
