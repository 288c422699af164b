//! The model directory as a Python user meets it. `model.onnx` passes `onnx.checker` (full
//! check) and onnxruntime gives the engine's probabilities on all 10,000 test images, for both
//! normalisations and for a model exported from an older directory; the MLmodel has the keys and
//! flavor fields `mlflow.onnx.save_model` writes. A registered champion loads with stock
//! `mlflow.pyfunc.load_model` and serves with `mlflow models serve`, predicting what
//! `engine eval` predicts, and `engine export` gives back its ONNX file.
//!
//! A tiny CNN, trained once for the CNN tests and tracked on the same server: its graph passes
//! the full check with the documented `Conv`/`MaxPool` nodes, and onnxruntime and a NumPy
//! rewrite of PyTorch's `nn.Sequential` forward pass, fed `model.safetensors` by name (PyTorch
//! itself has no wheel here), give the engine's probabilities; registered, it loads with
//! `mlflow.pyfunc` and predicts `engine eval`'s classes, and its LoggedModel says `engine-cnn`.
//!
//! Python is the MLflow venv's (tests/common/mlflow.rs), which `scripts/mlflow-venv.sh` gives
//! onnx and onnxruntime: without it the tests are skipped, unless `ENGINE_REQUIRE_MLFLOW=1`.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/library.rs"]
mod library;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli::text;
use engine::data::{self, Dataset, IMAGE_PIXELS, Normalization};
use engine::experiment::RunSpec;
use engine::nn::Architecture;
use engine::train::TrainConfig;
use engine::{Device, Tensor, model};
use library::{finished_run, on_server, tiny_spec};

/// The largest difference allowed between the engine's and onnxruntime's probabilities.
const TOLERANCE: f32 = 1e-5;

/// The venv's Python, if it has onnx and onnxruntime; `None` (skipped) when not required.
fn python() -> Option<PathBuf> {
    let python = mlflow::mlflow_or_skip()?.with_file_name("python");
    let probe = Command::new(&python).args(["-c", "import onnx, onnxruntime"]).output();
    match probe {
        Ok(o) if o.status.success() => Some(python),
        _ if mlflow::mlflow_required() => {
            panic!(
                "ENGINE_REQUIRE_MLFLOW=1 but {} lacks onnx or onnxruntime: rerun scripts/mlflow-venv.sh",
                python.display()
            )
        }
        _ => {
            eprintln!("SKIPPED: {} lacks onnx or onnxruntime (rerun scripts/mlflow-venv.sh)", python.display());
            None
        }
    }
}

/// Runs a Python script with `args`; its stdout.
fn run_python(python: &Path, script: &str, args: &[&Path], tracking_uri: Option<&str>) -> String {
    let mut command = Command::new(python);
    command.arg("-c").arg(script).args(args).env("MLFLOW_DISABLE_TELEMETRY", "true").env("DO_NOT_TRACK", "true");
    if let Some(uri) = tracking_uri {
        command.env("MLFLOW_TRACKING_URI", uri);
    }
    let output = command.output().expect("python runs");
    assert!(output.status.success(), "python failed:\n{}", text(&output));
    cli::stdout(&output)
}

fn engine(args: &[&str], store: &Path, tracking_uri: Option<&str>) -> Output {
    let output = cli::engine(args, store, tracking_uri);
    assert!(output.status.success(), "engine {args:?} failed:\n{}", text(&output));
    output
}

/// The test set, and the pixels of its first `count` images in a file for Python (one byte per
/// pixel, 784 per image).
fn test_images(dir: &Path, count: usize) -> (Dataset, PathBuf) {
    let test = data::load(None).expect("FashionMNIST is installed").test;
    let path = dir.join("test-images.u8");
    std::fs::write(&path, &test.pixels[..count * IMAGE_PIXELS]).unwrap();
    (test, path)
}

/// `[count, 10]` probabilities of the model in `dir` on the first `count` test images, as
/// `engine eval` computes them.
fn engine_probabilities(dir: &Path, test: &Dataset, count: usize) -> Vec<f32> {
    let (network, meta) = model::load_model_dir(dir, &Device::Cpu).unwrap();
    let indices: Vec<usize> = (0..count).collect();
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    data::gather_batch(
        test,
        &indices,
        &engine::backend::ChannelAffine::new(&meta.input_contract().affine(meta.normalize)).unwrap(),
        &mut inputs,
        &mut labels,
    );
    engine::no_grad(|| {
        let x = Tensor::from_vec(inputs, &[count, IMAGE_PIXELS], &Device::Cpu)?;
        network.forward(&x)?.softmax()?.to_vec()
    })
    .unwrap()
}

/// The largest difference between two sets of probabilities of the same shape.
fn max_difference(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
}

/// The classes `engine eval` predicted into `eval_dir`.
fn eval_classes(eval_dir: &Path) -> Vec<usize> {
    cli::eval_predictions(eval_dir).into_iter().map(|(class, _)| class).collect()
}

fn argmax_rows(probabilities: &[f32]) -> Vec<usize> {
    probabilities
        .chunks(data::CLASSES)
        .map(|row| row.iter().enumerate().fold(0, |best, (i, &p)| if p > row[best] { i } else { best }))
        .collect()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Checks each ONNX file, runs it on the test images (`argv[1]`) and writes its probabilities
/// beside it (`.probabilities.f32`); then saves the first one with `mlflow.onnx.save_model` and
/// prints both MLmodels and file lists as JSON.
const ONNX_SCRIPT: &str = r#"
import json, os, sys, tempfile
import numpy as np, onnx, onnxruntime as ort, yaml
import mlflow.onnx
from mlflow.models import infer_signature

x = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255
models = sys.argv[3:]
for path in models:
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("pixels", ["N", 784], "tensor(float)"), inp
    assert (out.name, out.shape, out.type) == ("probabilities", ["N", 10], "tensor(float)"), out
    p = session.run(None, {"pixels": x})[0]
    p.astype("<f4").tofile(path + ".probabilities.f32")

reference = os.path.join(tempfile.mkdtemp(), "saved")
signature = infer_signature(x[:1], {"probabilities": p[:1]})
mlflow.onnx.save_model(onnx.load(models[0]), reference, input_example=x[:1], signature=signature,
                       save_as_external_data=False)
ours = sys.argv[2]
load = lambda d: yaml.safe_load(open(os.path.join(d, "MLmodel")))
print(json.dumps({"reference": load(reference), "ours": load(ours),
                  "reference_files": sorted(os.listdir(reference)), "our_files": sorted(os.listdir(ours))}))
"#;

#[test]
fn onnx_runtime_reproduces_the_engine_and_the_layout_matches_mlflow() {
    let Some(python) = python() else { return };
    let dir = mlflow::scratch_dir("engine-onnx");
    let store = dir.join("store");
    let (test, images) = test_images(&dir, 10_000);

    let meanstd = dir.join("meanstd");
    finished_run(&tiny_spec(&store, &meanstd));
    let unit = dir.join("unit");
    let mut unit_spec = tiny_spec(&store, &unit);
    unit_spec.config.normalize = Normalization::Unit;
    finished_run(&unit_spec);

    // A directory as older versions wrote it: no ONNX, no input contract; export fills the gap.
    let old = dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    for file in model::ENGINE_FILES {
        std::fs::copy(meanstd.join("model").join(file), old.join(file)).unwrap();
    }
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(old.join(model::METADATA_FILE)).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("input");
    std::fs::write(old.join(model::METADATA_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
    let exported = dir.join("exported/old.onnx");
    engine(&["export", "--model-uri", old.to_str().unwrap(), "--output", exported.to_str().unwrap()], &store, None);
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(meanstd.join("model/model.onnx")).unwrap(),
        "exporting an older directory gives the ONNX a new one holds"
    );

    let onnx_files = [meanstd.join("model/model.onnx"), unit.join("model/model.onnx"), exported.clone()];
    let meanstd_model = meanstd.join("model");
    let mut args = vec![images.as_path(), &meanstd_model];
    args.extend(onnx_files.iter().map(PathBuf::as_path));
    let layouts: serde_json::Value = serde_json::from_str(&run_python(&python, ONNX_SCRIPT, &args, None)).unwrap();

    let eval = |model_dir: &Path| {
        let out = model_dir.join("eval");
        let (model, out_str) = (model_dir.join("model"), out.to_str().unwrap());
        engine(&["eval", "--model-uri", model.to_str().unwrap(), "--output-dir", out_str], &store, None);
        (engine_probabilities(&model, &test, test.len()), eval_classes(&out))
    };
    let (meanstd_engine, unit_engine) = (eval(&meanstd), eval(&unit));
    for (onnx, (probabilities, predictions)) in onnx_files.iter().zip([&meanstd_engine, &unit_engine, &meanstd_engine])
    {
        let theirs = read_f32(&onnx.with_extension("onnx.probabilities.f32"));
        let max_diff = max_difference(probabilities, &theirs);
        eprintln!("{}: max |onnxruntime - engine| = {max_diff:e} over {} images", onnx.display(), test.len());
        assert!(max_diff <= TOLERANCE, "{}: probabilities differ by {max_diff}", onnx.display());
        assert_eq!(&argmax_rows(&theirs), predictions, "{}: classes differ from engine eval's", onnx.display());
    }

    let (reference, ours) = (&layouts["reference"], &layouts["ours"]);
    for key in reference.as_object().unwrap().keys() {
        assert!(ours.get(key).is_some(), "our MLmodel lacks {key}: {ours}");
    }
    for flavor in ["onnx", "python_function"] {
        let keys =
            |m: &serde_json::Value| m["flavors"][flavor].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(ours), keys(reference), "{flavor} flavor fields");
    }
    for (flavor, field) in [("onnx", "data"), ("onnx", "providers"), ("python_function", "loader_module")]
        .into_iter()
        .chain([("python_function", "data"), ("python_function", "env")])
    {
        assert_eq!(ours["flavors"][flavor][field], reference["flavors"][flavor][field], "{flavor}.{field}");
    }
    assert_eq!(ours["signature"], reference["signature"]);
    assert_eq!(ours["saved_input_example_info"], reference["saved_input_example_info"]);
    assert_eq!(ours["mlflow_version"], reference["mlflow_version"]);
    let our_files: Vec<&str> = layouts["our_files"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    for file in layouts["reference_files"].as_array().unwrap() {
        assert!(our_files.contains(&file.as_str().unwrap()), "we do not write {file}: {our_files:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Loads the champion with `mlflow.pyfunc` and writes its predicted classes to `argv[2]`.
const PYFUNC_SCRIPT: &str = r#"
import sys
import numpy as np, mlflow.pyfunc
x = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255
model = mlflow.pyfunc.load_model(sys.argv[3])
probabilities = model.predict(x)["probabilities"]
probabilities.argmax(axis=1).astype(np.uint8).tofile(sys.argv[2])
"#;

/// `mlflow models serve` in its own process group, killed with it when dropped.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let kill = |signal: &str| Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
        let _ = kill("-TERM");
        std::thread::sleep(Duration::from_millis(500));
        let _ = kill("-KILL");
        let _ = self.0.wait();
    }
}

fn serve(model_uri: &str, tracking_uri: &str, port: u16, log: &Path) -> Serving {
    use std::os::unix::process::CommandExt;
    let mlflow = mlflow::mlflow_bin().unwrap();
    // The server runs `uvicorn` by name: the venv's bin goes first on PATH.
    let bin = mlflow.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(mlflow)
        .env("PATH", path)
        .args(["models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-w", "1", "-p"])
        .arg(port.to_string())
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("mlflow models serve starts");
    Serving(child)
}

impl Serving {
    /// Waits until the server answers `/ping`; panics with its log if it exits or takes too long.
    fn wait_until_ready(&mut self, port: u16, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let url = format!("http://127.0.0.1:{port}/ping");
        while ureq::get(&url).call().is_err() {
            let exited = self.0.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("mlflow models serve is not answering on port {port} ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// POSTs `body` to `/invocations`; the predicted classes.
fn invoke(port: u16, body: &str) -> Vec<usize> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(&format!("http://127.0.0.1:{port}/invocations"))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("the server answers");
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{text}");
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = parsed["predictions"]["probabilities"].as_array().unwrap_or_else(|| panic!("{text}"));
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.as_array().unwrap()).map(|p| p.as_f64().unwrap() as f32).collect();
    argmax_rows(&flat)
}

#[test]
fn the_registered_champion_loads_with_pyfunc_and_serves_with_mlflow() {
    let Some(python) = python() else { return };
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-pyfunc");
    let store = dir.join("store");
    let (_, images) = test_images(&dir, 10_000);
    let (name, uri) = ("fashion-onnx", Some(server.uri()));

    let trained = cli::train_tiny(&dir.join("train"), &store, uri);
    let run_id = trained["run_id"].as_str().unwrap();
    let registered = cli::json_line(&engine(&["register", "--run-id", run_id, "--name", name, "--json"], &store, uri));
    let version = registered["version"].as_str().unwrap();
    engine(&["promote", "--name", name, "--version", version], &store, uri);
    let champion = format!("models:/{name}@champion");
    let eval_dir = dir.join("eval");
    engine(&["eval", "--model-uri", &champion, "--output-dir", eval_dir.to_str().unwrap()], &store, uri);
    let expected = eval_classes(&eval_dir);
    let exported = dir.join("champion.onnx");
    engine(&["export", "--model-uri", &champion, "--output", exported.to_str().unwrap()], &store, uri);
    assert_eq!(std::fs::read(&exported).unwrap(), std::fs::read(dir.join("train/model/model.onnx")).unwrap());

    let classes = dir.join("pyfunc-classes.u8");
    let args = [images.as_path(), &classes, Path::new(&champion)];
    run_python(&python, PYFUNC_SCRIPT, &args, uri);
    let pyfunc: Vec<usize> = std::fs::read(&classes).unwrap().into_iter().map(usize::from).collect();
    assert_eq!(pyfunc.len(), 10_000);
    assert_eq!(pyfunc, expected, "mlflow.pyfunc's classes differ from engine eval's");

    let (port, log) = (mlflow::free_port(), dir.join("serve.log"));
    let mut serving = serve(&champion, server.uri(), port, &log);
    serving.wait_until_ready(port, &log);
    let pixels = std::fs::read(&images).unwrap();
    let batch: Vec<Vec<f32>> = pixels
        .chunks(IMAGE_PIXELS)
        .take(64)
        .map(|image| image.iter().map(|&p| f32::from(p) / 255.0).collect())
        .collect();
    let served = invoke(port, &serde_json::json!({ "inputs": batch }).to_string());
    assert_eq!(served, expected[..64], "mlflow models serve's classes differ from engine eval's");
    // The serving example the directory ships is the first test image.
    let example =
        std::fs::read_to_string(dir.join("train/model").join(model::mlflow::SERVING_INPUT_EXAMPLE_FILE)).unwrap();
    assert_eq!(invoke(port, &example), expected[..1]);
    drop(serving);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Test images the CNN tests run through Python.
const CNN_IMAGES: usize = 200;

/// The tiny CNN every CNN test here uses, trained once through the CLI and tracked on the shared
/// server.
struct TrainedCnn {
    store: PathBuf,
    model: PathBuf,
    summary: serde_json::Value,
    test: Dataset,
    /// The first [`CNN_IMAGES`] test images, for Python.
    images: PathBuf,
}

fn trained_cnn(server: &mlflow::MlflowServer) -> &'static TrainedCnn {
    static TRAINED: std::sync::OnceLock<TrainedCnn> = std::sync::OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = mlflow::scratch_dir("engine-onnx-cnn");
        let (store, out) = (dir.join("store"), dir.join("train"));
        let config = TrainConfig {
            model: Architecture::Cnn,
            hidden: Vec::new(),
            epochs: 1,
            train_limit: Some(600),
            batch_size: 64,
            ..TrainConfig::default()
        };
        let tracking = on_server(server.uri(), &store, engine::tracking::DEFAULT_EXPERIMENT);
        let (_, summary) = finished_run(&RunSpec { output_dir: Some(out.clone()), ..RunSpec::new(config, tracking) });
        let (test, images) = test_images(&dir, CNN_IMAGES);
        TrainedCnn { store, model: out.join("model"), summary, test, images }
    })
}

/// Checks and runs the CNN's `model.onnx` (`argv[1]` the model directory) on the images of
/// `argv[2]`, and runs the forward pass of PyTorch's `nn.Sequential` in NumPy on the weights of
/// `model.safetensors`; writes both probabilities to `argv[3]` and prints what the graph and the
/// weights hold as JSON.
const CNN_SCRIPT: &str = r#"
import json, os, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
from safetensors.numpy import load_file

model_dir, images, out = sys.argv[1:4]
x = np.fromfile(images, dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255
path = os.path.join(model_dir, "model.onnx")
graph = onnx.load(path)
onnx.checker.check_model(graph, full_check=True)
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
(inp,), (outp,) = session.get_inputs(), session.get_outputs()
p = session.run(None, {"pixels": x})[0]
p.astype("<f4").tofile(os.path.join(out, "onnxruntime.f32"))
one = session.run(None, {"pixels": x[:1]})[0]

# nn.Sequential(Conv2d(1, c1, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(c1, c2, 3, padding=1),
# ReLU(), MaxPool2d(2), Flatten(), Linear(c2 * 49, hidden), ReLU(), Dropout(), Linear(hidden, 10))
# in eval mode, in float64, on x.reshape(-1, 1, 28, 28) normalised by the recorded contract.
weights = load_file(os.path.join(model_dir, "model.safetensors"))
w = {name: value.astype(np.float64) for name, value in weights.items()}
contract = json.load(open(os.path.join(model_dir, "engine_model.json")))["input"]

def conv(h, weight, bias):  # PyTorch's Conv2d: cross-correlation, stride 1, zero padding 1
    padded = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # [N, C, H, W, 3, 3]
    return np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + bias[:, None, None]

def max_pool(h):  # MaxPool2d(2)
    n, c, side, _ = h.shape
    return h.reshape(n, c, side // 2, 2, side // 2, 2).max(axis=(3, 5))

relu = lambda h: np.maximum(h, 0)
pixels = np.fromfile(images, dtype=np.uint8).astype(np.float64).reshape(-1, 1, 28, 28)
h = (pixels * contract["pixel_scale"] - contract["mean"]) / contract["std"]
h = max_pool(relu(conv(h, w["0.weight"], w["0.bias"])))
h = max_pool(relu(conv(h, w["3.weight"], w["3.bias"])))
h = relu(h.reshape(len(h), -1) @ w["7.weight"].T + w["7.bias"])
logits = h @ w["10.weight"].T + w["10.bias"]
e = np.exp(logits - logits.max(axis=1, keepdims=True))
(e / e.sum(axis=1, keepdims=True)).astype("<f4").tofile(os.path.join(out, "numpy.f32"))

initializers = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
print(json.dumps({
    "ops": [node.op_type for node in graph.graph.node],
    "input": [inp.name, inp.shape, inp.type],
    "output": [outp.name, outp.shape, outp.type],
    "weights": {name: [list(value.shape), str(value.dtype)] for name, value in weights.items()},
    "onnx_weights_are_the_safetensors": all(np.array_equal(initializers[n], v) for n, v in weights.items()),
    "batch_of_one": float(np.abs(one - p[:1]).max()),
    "metadata": session.get_modelmeta().custom_metadata_map,
}))
"#;

#[test]
fn the_cnn_onnx_graph_and_a_numpy_pytorch_forward_pass_give_the_engines_probabilities() {
    let Some(python) = python() else { return };
    let Some(server) = mlflow::shared() else { return };
    let cnn = trained_cnn(server);
    let out = mlflow::scratch_dir("engine-onnx-cnn-python");
    let found: serde_json::Value =
        serde_json::from_str(&run_python(&python, CNN_SCRIPT, &[&cnn.model, &cnn.images, &out], None)).unwrap();

    let ops = [
        "Sub", "Div", "Reshape", "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu",
        "Gemm", "Softmax",
    ];
    assert_eq!(found["ops"], serde_json::json!(ops), "the graph's nodes");
    assert_eq!(found["input"], serde_json::json!(["pixels", ["N", 784], "tensor(float)"]));
    assert_eq!(found["output"], serde_json::json!(["probabilities", ["N", 10], "tensor(float)"]));
    assert_eq!(found["metadata"]["format"], model::FORMAT_CNN);
    let weights: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(found["weights"].clone()).expect("a name -> [shape, dtype] map");
    let expected = serde_json::json!({
        "0.weight": [[32, 1, 3, 3], "float32"], "0.bias": [[32], "float32"],
        "3.weight": [[64, 32, 3, 3], "float32"], "3.bias": [[64], "float32"],
        "7.weight": [[128, 3136], "float32"], "7.bias": [[128], "float32"],
        "10.weight": [[10, 128], "float32"], "10.bias": [[10], "float32"],
    });
    assert_eq!(serde_json::json!(weights), expected, "PyTorch's names, shapes and dtypes");
    assert_eq!(found["onnx_weights_are_the_safetensors"], true);
    assert!(found["batch_of_one"].as_f64().unwrap() <= f64::from(TOLERANCE), "{}", found["batch_of_one"]);

    let engine = engine_probabilities(&cnn.model, &cnn.test, CNN_IMAGES);
    for source in ["onnxruntime", "numpy"] {
        let theirs = read_f32(&out.join(format!("{source}.f32")));
        let max_diff = max_difference(&engine, &theirs);
        eprintln!("max |{source} - engine| = {max_diff:e} over {CNN_IMAGES} images");
        assert!(max_diff <= TOLERANCE, "{source}'s probabilities differ from the engine's by {max_diff}");
        assert_eq!(argmax_rows(&theirs), argmax_rows(&engine), "{source}'s classes");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_registered_cnn_loads_with_pyfunc_and_predicts_engine_evals_classes() {
    let Some(python) = python() else { return };
    let Some(server) = mlflow::shared() else { return };
    let cnn = trained_cnn(server);
    let (name, uri) = ("fashion-cnn", Some(server.uri()));
    let run_id = cnn.summary["run_id"].as_str().unwrap();
    let args = ["register", "--run-id", run_id, "--name", name, "--json"];
    let registered = cli::json_line(&engine(&args, &cnn.store, uri));
    let model_uri = format!("models:/{name}/{}", registered["version"].as_str().unwrap());
    let dir = mlflow::scratch_dir("engine-pyfunc-cnn");
    let eval_dir = dir.join("eval");
    engine(&["eval", "--model-uri", &model_uri, "--output-dir", eval_dir.to_str().unwrap()], &cnn.store, uri);
    let expected = eval_classes(&eval_dir);

    let classes = dir.join("pyfunc-classes.u8");
    run_python(&python, PYFUNC_SCRIPT, &[&cnn.images, &classes, Path::new(&model_uri)], uri);
    let pyfunc: Vec<usize> = std::fs::read(&classes).unwrap().into_iter().map(usize::from).collect();
    assert_eq!(pyfunc, expected[..CNN_IMAGES], "mlflow.pyfunc's classes differ from engine eval's");

    let client = engine::tracking::MlflowClient::new(
        server.uri(),
        engine::tracking::Auth::None,
        engine::tracking::RetryPolicy::default(),
    )
    .unwrap();
    let model_id = cnn.summary["model_id"].as_str().unwrap();
    let logged = client.get_json(&format!("logged-models/{model_id}"), &[]).unwrap();
    assert_eq!(logged["model"]["info"]["model_type"], "engine-cnn", "{logged}");
    let run = client.get_run(run_id).unwrap();
    assert_eq!(run.param("model"), Some("cnn"));
    assert_eq!(run.param("hidden"), None, "a CNN has no --hidden layers");
    let _ = std::fs::remove_dir_all(&dir);
}
