#!/usr/bin/env bash
# The engine on a GPU beside PyTorch CUDA eager, in one run and one table: `engine train --device
# gpu` end to end (a short run), the training epoch (cold and warm), square matmuls (GFLOP/s,
# fp32; PyTorch with TF32 off), row softmax (GB/s), the dispatches, compute passes, submits and
# new bind groups of a training step, the time to open the GPU (every kernel's pipeline is
# built then) with an empty and with a filled pipeline cache, and the kernels that take most of
# a step's GPU time (one short epoch with ENGINE_GPU_PROFILE=1).
#
#   scripts/gpu-bench.sh --collect DIR   on a build machine: a bundle for a bare GPU machine, at
#                                        most 60 MB: the `engine` binary and the `train` and
#                                        `gpu_report` benches (release, stripped, gzipped) in
#                                        DIR/bin; the Vulkan loader and the glvnd libraries the
#                                        NVIDIA driver needs (libvulkan.so.1, libGLdispatch.so.0,
#                                        libGLX.so.0, libEGL.so.1: from this system, else from
#                                        Debian's packages) in DIR/lib; FashionMNIST in DIR/data;
#                                        the PyTorch anchor; this script
#   scripts/gpu-bench.sh [--small] [DIR] on the GPU machine, from DIR, within 8 minutes; without
#                                        DIR and without the variables below, the binaries are
#                                        built here first
#
# With DIR the bundle's libraries come first on LD_LIBRARY_PATH, before any the system has. An
# NVIDIA Vulkan driver file (nvidia_icd*.json) is looked for where drivers and containers put it
# and given to the loader (VK_DRIVER_FILES, and VK_ICD_FILENAMES for older loaders). The run
# prints the loader it used and the adapters, and refuses a software adapter such as lavapipe.
#
# --small (or ENGINE_GPU_BENCH_SMALL=1): allows a software adapter (ENGINE_ALLOW_SOFTWARE_GPU=1)
# at sizes lavapipe runs in seconds (1024 images, one hidden layer of 64, matmul 256³ and 512³,
# softmax 512x1000); PyTorch's figures are of other sizes, so it is not run.
#
# Variables: ENGINE (the engine binary), ENGINE_TRAIN_BENCH and ENGINE_GPU_REPORT (the benches),
# ENGINE_DATA_DIR (FashionMNIST's .gz files), ENGINE_TORCH_ANCHOR (torch_gpu_anchor.py),
# ENGINE_TORCH_JSON (a result of that anchor to compare with instead of running it),
# ENGINE_GPU_ADAPTER (which adapter, see `engine devices`), PYTHON (default python3).
# Each part has its own time limit (the adapters 30 s, engine train 60 s, the training bench
# 140 s, the profiled epoch 40 s, the kernels 90 s, PyTorch 120 s), so a run from a bundle ends
# within 8 minutes.
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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The release binaries, built now (nothing is rebuilt when they are current; the benches with the
# release profile, whose library `cargo build/test --release` share); prints "NAME PATH" for
# engine, train and gpu_report.
build_binaries() {
    # Not with the variables cargo gives a process it runs (this script run by a test): cargo
    # compares them with those some build scripts watch (ring's), and would rebuild everything.
    local unset=() name
    for name in $(compgen -e); do
        case "$name" in
            OUT_DIR | CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_NAME | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_BIN_*) unset+=(-u "$name") ;;
        esac
    done
    (cd "$repo" && env "${unset[@]}" cargo build --release --bin engine --message-format=json &&
        env "${unset[@]}" cargo bench --no-run --profile release --message-format=json --bench train --bench gpu_report) |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' |
        while read -r exe; do
            case "$(basename "$exe")" in
                engine) echo "engine $exe" ;;
                train-*) echo "train $exe" ;;
                gpu_report-*) echo "gpu_report $exe" ;;
            esac
        done
}

first_dataset_dir() {
    local cache=${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}
    for dir in "${ENGINE_DATA_DIR:-}" "${cache:+$cache/engine/fashion-mnist}" /usr/share/datasets/fashion-mnist; do
        if [ -n "$dir" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
            echo "$dir"
            return
        fi
    done
}

# The Debian package of a library the bundle takes along.
debian_package() {
    case "$1" in
        libvulkan.so.1) echo libvulkan1 ;;
        libGLdispatch.so.0) echo libglvnd0 ;;
        libGLX.so.0) echo libglx0 ;;
        libEGL.so.1) echo libegl1 ;;
    esac
}

# Under pipefail a reader that stops early (`head -n 1`, awk's `exit`) can fail its writer with
# SIGPIPE, and set -e would end the script without a word: such lookups end in `|| true`.
if [ -n "$collect" ]; then
    mkdir -p "$collect/bin" "$collect/lib" "$collect/data"
    while read -r name exe; do
        strip -o "$work/$name" "$exe" 2>/dev/null || cp "$exe" "$work/$name"
        gzip -c "$work/$name" >"$collect/bin/$name.gz"
    done < <(build_binaries)
    for name in engine train gpu_report; do
        [ -s "$collect/bin/$name.gz" ] || { echo "gpu-bench: $name did not build" >&2; exit 1; }
    done
    for lib in libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0 libEGL.so.1; do
        path=$(ldconfig -p 2>/dev/null | awk -v lib="$lib" '$1 == lib && /x86-64/ { print $NF; exit }') || true
        package=$(debian_package "$lib")
        if [ -z "$path" ] && command -v apt-get >/dev/null &&
            (cd "$work" && apt-get download "$package" >/dev/null 2>&1); then
            dpkg -x "$work/${package}"_*.deb "$work/root"
            path=$(find "$work/root" -name "$lib" | head -n 1) || true
        fi
        if [ -n "$path" ]; then cp -L "$path" "$collect/lib/$lib"; else echo "gpu-bench: no $lib here or from apt-get download $package" >&2; fi
    done
    cp "$0" "$collect/gpu-bench.sh" # the bundle runs itself: DIR/gpu-bench.sh DIR
    anchor=${ENGINE_TORCH_ANCHOR:-$repo/../shared/anchors/gpu/torch_gpu_anchor.py}
    if [ -f "$anchor" ]; then cp "$anchor" "$collect/torch_gpu_anchor.py" && chmod u+w "$collect/torch_gpu_anchor.py"; else echo "gpu-bench: no PyTorch anchor at $anchor" >&2; fi
    data=$(first_dataset_dir)
    if [ -n "$data" ]; then cp "$data"/*-ubyte.gz "$collect/data/"; else echo "gpu-bench: no FashionMNIST here to take along" >&2; fi
    megabytes=$(du -sm "$collect" | cut -f1)
    echo "gpu-bench: $megabytes MB in $collect; run there: scripts/gpu-bench.sh $collect"
    if [ "$megabytes" -gt 60 ]; then
        echo "gpu-bench: the bundle is past 60 MB" >&2
        exit 1
    fi
    exit 0
fi

if [ -n "$bundle" ]; then
    bundle=$(cd "$bundle" && pwd)
    mkdir -p "$work/bin"
    for packed in "$bundle"/bin/*.gz; do
        [ -f "$packed" ] || continue
        gzip -dc "$packed" >"$work/bin/$(basename "$packed" .gz)"
        chmod +x "$work/bin/$(basename "$packed" .gz)"
    done
    : "${ENGINE:=$work/bin/engine}" "${ENGINE_TRAIN_BENCH:=$work/bin/train}" "${ENGINE_GPU_REPORT:=$work/bin/gpu_report}"
    : "${ENGINE_TORCH_ANCHOR:=$bundle/torch_gpu_anchor.py}"
    [ -f "$bundle/data/train-images-idx3-ubyte.gz" ] && : "${ENGINE_DATA_DIR:=$bundle/data}"
    # The bundle's loader and glvnd libraries before any other, the system's included.
    export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [ -z "${ENGINE:-}" ] || [ -z "${ENGINE_TRAIN_BENCH:-}" ] || [ -z "${ENGINE_GPU_REPORT:-}" ]; then
    echo "gpu-bench: building the engine and the bench binaries" >&2
    while read -r name exe; do
        case "$name" in
            engine) : "${ENGINE:=$exe}" ;;
            train) : "${ENGINE_TRAIN_BENCH:=$exe}" ;;
            gpu_report) : "${ENGINE_GPU_REPORT:=$exe}" ;;
        esac
    done < <(build_binaries)
fi
for bin in "${ENGINE:-}" "${ENGINE_TRAIN_BENCH:-}" "${ENGINE_GPU_REPORT:-}"; do
    [ -x "$bin" ] || { echo "gpu-bench: no binary at '$bin'" >&2; exit 1; }
done

# The NVIDIA Vulkan driver file, where the loader may not look (NVIDIA's container toolkit puts
# it under /usr/local/nvidia), and the directory of the driver library it names.
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    nvidia_icd=""
    for dir in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/etc/vulkan/icd.d \
        /usr/local/nvidia/share/vulkan/icd.d /usr/local/nvidia/etc/vulkan/icd.d /opt/nvidia/share/vulkan/icd.d; do
        for file in "$dir"/nvidia_icd*.json; do
            [ -f "$file" ] && { nvidia_icd=$file; break 2; }
        done
    done
    [ -n "$nvidia_icd" ] || nvidia_icd=$(find /usr /etc /opt -maxdepth 7 -name 'nvidia_icd*.json' 2>/dev/null | head -n 1) || true
    if [ -n "$nvidia_icd" ]; then
        export VK_DRIVER_FILES=$nvidia_icd VK_ICD_FILENAMES=$nvidia_icd
        driver=$(sed -n 's/.*"library_path" *: *"\([^"]*\)".*/\1/p' "$nvidia_icd" | head -n 1) || true
        if [ -n "$driver" ] && [ "${driver#*/}" = "$driver" ] && ! ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$driver "; then
            for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib64/nvidia /usr/lib/x86_64-linux-gnu/nvidia; do
                [ -f "$dir/$driver" ] && { export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$dir"; break; }
            done
        fi
    fi
fi
data_dir=$(first_dataset_dir)
[ -n "$data_dir" ] && export ENGINE_DATA_DIR=$data_dir
if [ "$small" = 1 ]; then
    export ENGINE_ALLOW_SOFTWARE_GPU=1
else
    unset ENGINE_ALLOW_SOFTWARE_GPU
fi

# --- the adapter ----------------------------------------------------------------------------
# The loader wgpu opened (it is loaded at run time, so ldd does not show it) and the adapters.
loader=$(LD_DEBUG=libs timeout 30 "$ENGINE" devices 2>&1 >"$work/devices.txt" |
    sed -n 's/.*calling init: \(.*libvulkan\.so\.1\)$/\1/p' | head -n 1) || true
echo "gpu-bench: Vulkan loader ${loader:-not loaded}${VK_DRIVER_FILES:+, driver file $VK_DRIVER_FILES}"
sed 's/^/gpu-bench: /' "$work/devices.txt"

# --- the engine -----------------------------------------------------------------------------
# `engine train --device gpu`, short, first: it refuses a software adapter (unless --small) and
# names the adapters when ENGINE_GPU_ADAPTER names none, and then nothing else is run.
if [ "$small" = 1 ]; then
    engine_args=(--epochs 1 --train-limit 1024 --hidden 64)
    train_args=(3 gpu limit=1024 hidden=64)
    profile_args=(1 gpu limit=512 hidden=64)
else
    engine_args=(--epochs 1)
    train_args=(3 gpu)
    profile_args=(1 gpu limit=6400)
fi
echo "gpu-bench: engine train --device gpu ${engine_args[*]}" >&2
engine_ok=1
(cd "$work" && env -u MLFLOW_TRACKING_URI ENGINE_LOCAL_STORE="$work/store" timeout 60 "$ENGINE" train --device gpu \
    "${engine_args[@]}" --no-system-metrics --json --output-dir "$work/engine-train") >"$work/engine.json" 2>"$work/engine.err" || engine_ok=0
if [ "$engine_ok" = 1 ]; then
    summary=$(tail -n 1 "$work/engine.json")
    field() { echo "$summary" | sed -n "s/.*\"$1\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" | tr -d '"'; }
    echo "gpu-bench: engine train --device gpu: test accuracy $(field test_accuracy) on $(field device)"
else
    echo "gpu-bench: engine train --device gpu failed: $(grep -v XDG_RUNTIME_DIR "$work/engine.err" | tail -n 3)"
    if grep -q ENGINE_ALLOW_SOFTWARE_GPU "$work/engine.err"; then
        echo "gpu-bench: not measuring a software adapter (--small allows one, at small sizes)"
        exit 1
    elif grep -q 'names no GPU adapter\|no GPU adapter found' "$work/engine.err"; then
        exit 1
    fi
fi

echo "gpu-bench: engine training (${train_args[*]})" >&2
engine_train_ok=1
# A pipeline cache of this run's own: empty for the training bench, filled for the profiled one.
export XDG_CACHE_HOME="$work/cache"
timeout 140 "$ENGINE_TRAIN_BENCH" "${train_args[@]}" >"$work/train.txt" 2>"$work/train.err" || engine_train_ok=0
echo "gpu-bench: engine kernel times (${profile_args[*]}, ENGINE_GPU_PROFILE=1)" >&2
ENGINE_GPU_PROFILE=1 timeout 40 "$ENGINE_TRAIN_BENCH" "${profile_args[@]}" >"$work/profile.txt" 2>"$work/profile.err" || true
echo "gpu-bench: engine kernels" >&2
engine_kernels_ok=1
report_args=()
[ "$small" = 1 ] && report_args=(--small)
timeout 90 "$ENGINE_GPU_REPORT" "${report_args[@]}" >"$work/kernels.txt" 2>"$work/kernels.err" || engine_kernels_ok=0

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
# open_cold, open_warm, and kernel_NAME SHARE for the five kernels with most of the GPU time.
awk '$1 == "open" { print "open_cold", $2 }' "$work/train.txt" >>"$work/engine.txt"
awk '$1 == "open" { print "open_warm", $2 }
    $1 == "kernel" && n++ < 5 { sub("%", "", $3); print "kernel_" $2, $3 }' "$work/profile.txt" >>"$work/engine.txt"
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
    if OUT=$work timeout 120 "$python" "$ENGINE_TORCH_ANCHOR" "$data_dir" >"$work/torch.txt" 2>&1; then
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
row "GPU open, empty pipeline cache (s)" open_cold 3
row "GPU open, filled pipeline cache (s)" open_warm 3
while read -r key _; do
    row "${key#kernel_} (% of a step's GPU time)" "$key" 1
done < <(grep -E '^kernel_' "$work/engine.txt")
echo
echo "ratio: engine / PyTorch (times: lower is better; rates: higher is better)"
grep -q '^kernel_' "$work/engine.txt" ||
    echo "no kernel times: $(grep -v XDG_RUNTIME_DIR "$work/profile.err" | tail -n 2 | tr '\n' ' ')"
status=0
[ "$engine_ok" = 1 ] || status=1
if [ "$engine_train_ok" = 0 ]; then
    echo "engine training failed: $(grep -v XDG_RUNTIME_DIR "$work/train.err" | tail -n 3)"
    status=1
fi
if [ "$engine_kernels_ok" = 0 ]; then
    echo "engine kernels failed: $(grep -v XDG_RUNTIME_DIR "$work/kernels.err" | tail -n 3)"
    status=1
fi
exit $status
