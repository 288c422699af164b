//! The input contract in every file of a model directory. A CNN of 3-channel 12x10 images and
//! three named classes, trained on data of its own per-channel statistics, is saved: its
//! `engine_model.json`, `MLmodel` (signature and metadata) and `input_example.json` carry the
//! contract, and a directory written before the contract was recorded loads as FashionMNIST's.
//! A contract that does not fit the network is refused before anything is written.
//!
//! With the MLflow venv's Python: `model.onnx` passes `onnx.checker` and onnxruntime, and
//! `mlflow.pyfunc.load_model` predicts the engine's probabilities (normalised per channel by
//! hand here) and shows the class names; `engine export` writes the same graph again.
//!
//! `engine serve` takes JSON rows of the contract's length (a wrong length is a 400 naming both)
//! and the same images as PNGs, answering alike, with the contract's class names; its batcher
//! refuses rows read for another model.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/mlflow.rs"]
mod mlflow;
#[path = "common/serve.rs"]
mod serve;

use std::path::PathBuf;
use std::process::Command;

use engine::data::{InputContract, Layout, Normalization};
use engine::model::{self, ChannelValues};
use engine::nn::{Description, ImageShape, Network};
use engine::rng::Rng;
use engine::{Device, Tensor};

const IMAGE: ImageShape = ImageShape { channels: 3, height: 12, width: 10 };
/// Images saved beside the model, for the checks that run it.
const ROWS: usize = 4;

/// The contract of a made-up colour dataset: its own statistics per channel, three names.
fn colour_contract() -> InputContract {
    InputContract {
        channels: IMAGE.channels,
        height: IMAGE.height,
        width: IMAGE.width,
        layout: Layout::Chw,
        pixel_scale: 1.0 / 255.0,
        mean: vec![0.4, 0.5, 0.6],
        std: vec![0.2, 0.25, 0.3],
        class_names: vec!["cat".into(), "dog".into(), "bird's nest".into()],
    }
}

fn colour_cnn() -> Network {
    let description = Description::cnn(IMAGE, [4, 6, 16], 3).unwrap();
    Network::new(description, 0.0, &mut Rng::new(5), &Device::Cpu).unwrap()
}

fn random_images(rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..rows * IMAGE.pixels()).map(|_| rng.below(256) as u8).collect()
}

/// The colour CNN saved under a fresh directory, with its contract and `ROWS` random images.
fn saved(name: &str) -> (PathBuf, Network, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("engine-model-contract-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (network, images) = (colour_cnn(), random_images(ROWS, 3));
    let contract = colour_contract();
    model::save_model_dir(
        &dir,
        &network,
        Some(&contract),
        Normalization::Meanstd,
        serde_json::json!({}),
        &images,
        None,
        None,
    )
    .unwrap();
    (dir, network, images)
}

/// Probabilities of the colour CNN `network` on `images`, normalised by its contract.
fn probabilities_of(network: &Network, images: &[u8]) -> Vec<f32> {
    probabilities(network, &colour_contract(), images)
}

/// Probabilities of `network` on `images`, normalised per channel by `contract` by hand.
fn probabilities(network: &Network, contract: &InputContract, images: &[u8]) -> Vec<f32> {
    let plane = contract.height * contract.width;
    let inputs: Vec<f32> = images
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let c = i % contract.pixels() / plane;
            (f32::from(p) / 255.0 - contract.mean[c]) / contract.std[c]
        })
        .collect();
    let rows = images.len() / contract.pixels();
    let x = Tensor::from_vec(inputs, &[rows, contract.pixels()], &Device::Cpu).unwrap();
    engine::no_grad(|| network.forward(&x)?.softmax()?.to_vec()).unwrap()
}

fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn every_model_file_carries_the_contract() {
    let (dir, network, images) = saved("files");
    let json = read_json(dir.join(model::METADATA_FILE));
    let recorded: InputContract = serde_json::from_value(json["contract"].clone()).unwrap();
    assert_eq!(recorded, colour_contract(), "{json}");
    assert_eq!(json["contract"]["mean"], serde_json::json!([0.4, 0.5, 0.6]), "the decimals, not their f32 expansions");
    assert_eq!(json["class_names"], serde_json::json!(["cat", "dog", "bird's nest"]));
    assert_eq!(json["input"]["shape"], serde_json::json!([-1, 360]));
    assert_eq!(
        (&json["input"]["mean"], &json["input"]["std"]),
        (&serde_json::json!([0.4, 0.5, 0.6]), &serde_json::json!([0.2, 0.25, 0.3]))
    );

    let (loaded, meta) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(meta.input_contract(), colour_contract());
    assert_eq!(meta.input.unwrap().mean, ChannelValues::PerChannel(vec![0.4, 0.5, 0.6]));
    let contract = colour_contract();
    assert_eq!(probabilities(&loaded, &contract, &images), probabilities(&network, &contract, &images));

    let mlmodel = std::fs::read_to_string(dir.join(model::MLMODEL_FILE)).unwrap();
    for line in [
        r#""shape": [-1, 360]"#,
        r#""shape": [-1, 3]"#,
        "metadata:\n  class_names:\n  - cat\n  - dog\n  - 'bird''s nest'\n  input:\n    channels: 3\n    height: 12\n    width: 10\n    layout: chw\n",
        "    mean:\n    - 0.4\n    - 0.5\n    - 0.6\n    std:\n    - 0.2\n    - 0.25\n    - 0.3\n    normalize: meanstd\n",
    ] {
        assert!(mlmodel.contains(line), "MLmodel lacks {line}:\n{mlmodel}");
    }

    // The input example is the first image, scaled to [0, 1] as the ONNX input wants.
    let example = read_json(dir.join(model::mlflow::INPUT_EXAMPLE_FILE));
    let rows: Vec<Vec<f32>> = serde_json::from_value(example).unwrap();
    let first: Vec<f32> = images[..360].iter().map(|&p| f32::from(p) / 255.0).collect();
    assert_eq!(rows, [first]);
    let serving = read_json(dir.join(model::mlflow::SERVING_INPUT_EXAMPLE_FILE));
    let served: Vec<Vec<f32>> = serde_json::from_value(serving["inputs"].clone()).unwrap();
    assert_eq!(served, rows);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_file_without_the_contract_loads_as_fashion_mnist_s() {
    let dir = std::env::temp_dir().join(format!("engine-model-contract-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let network = Network::new(
        Description::mlp(ImageShape::FASHION_MNIST, &[8], 10).unwrap(),
        0.0,
        &mut Rng::new(1),
        &Device::Cpu,
    )
    .unwrap();
    // No contract given: FashionMNIST's, and a blank input example of its size.
    let saved =
        model::save_model_dir(&dir, &network, None, Normalization::Meanstd, serde_json::json!({}), &[], None, None)
            .unwrap();
    assert_eq!(saved.input_contract(), InputContract::fashion_mnist());
    let example = read_json(dir.join(model::mlflow::INPUT_EXAMPLE_FILE));
    assert_eq!(example, serde_json::json!([vec![0.0; 784]]));

    // As files were written before the contract: neither `contract` nor `input`.
    let path = dir.join(model::METADATA_FILE);
    let mut json = read_json(path.clone());
    for key in ["contract", "input"] {
        json.as_object_mut().unwrap().remove(key);
    }
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let (_, meta) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(meta.contract, Some(InputContract::fashion_mnist()));
    assert_eq!(meta.input, Some(model::NetworkInput::of(Normalization::Meanstd, &InputContract::fashion_mnist())));

    // A recorded contract whose class names disagree with the file's is refused.
    json["contract"] = serde_json::to_value(InputContract {
        class_names: (0..10).map(|i| i.to_string()).collect(),
        ..InputContract::fashion_mnist()
    })
    .unwrap();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let error = model::load_model_dir(&dir, &Device::Cpu).err().expect("a contradicting contract loaded").to_string();
    assert!(error.contains("class names") && error.contains(model::METADATA_FILE), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_contract_that_does_not_fit_the_network_is_refused() {
    let dir = std::env::temp_dir().join(format!("engine-model-contract-misfit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cases = [
        (InputContract { width: 11, ..colour_contract() }, "3x12x11 images are not the network's 3x12x10"),
        (
            InputContract { class_names: vec!["a".into(), "b".into()], ..colour_contract() },
            "names 2 classes; the network has 3",
        ),
        (InputContract { std: vec![0.2, 0.0, 0.3], ..colour_contract() }, "standard deviation"),
        (InputContract { pixel_scale: 1.0, ..colour_contract() }, "only 1/255"),
    ];
    for (contract, expected) in cases {
        let result = model::save_model_dir(
            &dir,
            &colour_cnn(),
            Some(&contract),
            Normalization::Meanstd,
            serde_json::json!({}),
            &[],
            None,
            None,
        );
        let error = result.expect_err("a misfit contract was saved").to_string();
        assert!(error.contains(expected), "{error} should say {expected:?}");
        assert!(!dir.exists(), "nothing is written for a misfit contract");
    }
}

/// Checks `model.onnx` of the model directory `argv[1]`, loads the directory with
/// `mlflow.pyfunc`, runs both on its `images.u8` (rows as wide as the pyfunc signature says) and
/// the pyfunc model on the input example; writes the probabilities beside the images and prints
/// what the files say as JSON.
const PYTHON: &str = r#"
import json, os, sys
import numpy as np, onnx, onnxruntime as ort, mlflow.pyfunc
model_dir = sys.argv[1]
file = lambda name: os.path.join(model_dir, name)
onnx.checker.check_model(onnx.load(file("model.onnx")), full_check=True)
session = ort.InferenceSession(file("model.onnx"), providers=["CPUExecutionProvider"])
model = mlflow.pyfunc.load_model(model_dir)
signature = model.metadata.get_input_schema().inputs[0].shape
images = np.fromfile(file("images.u8"), dtype=np.uint8).reshape(signature).astype(np.float32) / 255
runs = {"onnxruntime": lambda x: session.run(None, {"pixels": x})[0], "pyfunc": lambda x: model.predict(x)["probabilities"]}
for name, run in runs.items():
    run(images).astype("<f4").tofile(file(name + ".f32"))
example = np.array(json.load(open(file("input_example.json"))), dtype=np.float32)
(inp,), (out,) = session.get_inputs(), session.get_outputs()
print(json.dumps({
    "onnx": [[inp.name, inp.shape], [out.name, out.shape]],
    "onnx_contract": json.loads(session.get_modelmeta().custom_metadata_map["input_contract"]),
    "pyfunc_metadata": model.metadata.metadata,
    "pyfunc_input_shape": list(signature),
    "example": list(example.shape),
    "example_probabilities": model.predict(example)["probabilities"].tolist(),
}))
"#;

fn read_f32(path: PathBuf) -> Vec<f32> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn onnxruntime_and_mlflow_pyfunc_follow_the_contract() {
    let Some(mlflow) = mlflow::mlflow_or_skip() else { return };
    let (dir, network, images) = saved("python");
    std::fs::write(dir.join("images.u8"), &images).unwrap();
    let output = Command::new(mlflow.with_file_name("python"))
        .arg("-c")
        .arg(PYTHON)
        .arg(&dir)
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed:\n{stderr}");
    let found: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(found["onnx"], serde_json::json!([["pixels", ["N", 360]], ["probabilities", ["N", 3]]]));
    let contract: InputContract = serde_json::from_value(found["onnx_contract"].clone()).unwrap();
    assert_eq!(contract, colour_contract(), "the ONNX metadata's contract");
    let metadata = &found["pyfunc_metadata"];
    assert_eq!(metadata["class_names"], serde_json::json!(["cat", "dog", "bird's nest"]), "{metadata}");
    assert_eq!(metadata["input"]["mean"], serde_json::json!([0.4, 0.5, 0.6]), "{metadata}");
    assert_eq!(metadata["input"]["channels"], 3, "{metadata}");
    assert_eq!(found["pyfunc_input_shape"], serde_json::json!([-1, 360]));
    assert_eq!(found["example"], serde_json::json!([1, 360]), "one image of the contract's size");

    let expected = probabilities(&network, &colour_contract(), &images);
    for source in ["onnxruntime", "pyfunc"] {
        let difference = max_difference(&read_f32(dir.join(format!("{source}.f32"))), &expected);
        assert!(difference <= 1e-5, "{source} is {difference} away from the engine");
    }
    let example: Vec<f32> =
        serde_json::from_value::<Vec<Vec<f32>>>(found["example_probabilities"].clone()).unwrap()[0].clone();
    assert!(max_difference(&example, &expected[..3]) <= 1e-5, "the input example is the first image");

    // `engine export` rebuilds the same graph from the directory's contract.
    let exported = dir.join("exported.onnx");
    let args = ["export", "--model-uri", dir.to_str().unwrap(), "--output", exported.to_str().unwrap()];
    let output = cli::engine(&args, &dir.join("store"), None);
    assert!(output.status.success(), "engine export failed:\n{}", cli::text(&output));
    assert_eq!(std::fs::read(&exported).unwrap(), std::fs::read(dir.join(model::ONNX_FILE)).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Image `i` of `images` as an RGB PNG.
fn png(images: &[u8], i: usize) -> Vec<u8> {
    let image = &images[i * IMAGE.pixels()..(i + 1) * IMAGE.pixels()];
    let plane = IMAGE.height * IMAGE.width;
    let rgb = image::RgbImage::from_fn(IMAGE.width as u32, IMAGE.height as u32, |x, y| {
        let at = y as usize * IMAGE.width + x as usize;
        image::Rgb([image[at], image[plane + at], image[2 * plane + at]])
    });
    serve::encode(&image::DynamicImage::ImageRgb8(rgb), image::ImageFormat::Png)
}

#[test]
fn engine_serve_reads_json_rows_and_pngs_by_the_contract() {
    let (dir, network, images) = saved("serve");
    let server = serve::EngineServer::start(&["--model-uri", dir.to_str().unwrap()], &dir.join("store"), None);
    let (client, url) = (serve::client(), server.url("/invocations"));
    let rows: Vec<Vec<f32>> =
        images.chunks(IMAGE.pixels()).map(|image| image.iter().map(|&p| f32::from(p) / 255.0).collect()).collect();

    let as_json = serve::post_json(&client, &url, &serde_json::json!({ "inputs": rows }));
    let probabilities = as_json.probabilities();
    let expected = probabilities_of(&network, &images);
    for (row, expected) in probabilities.iter().zip(expected.chunks(3)) {
        let difference = max_difference(&row.iter().map(|&p| p as f32).collect::<Vec<_>>(), expected);
        assert!(difference <= 1e-6, "the served model is {difference} away from the engine's");
    }

    // The same images as PNGs: the same probabilities, with the contract's class names.
    let names = serde_json::json!(["cat", "dog", "bird's nest"]);
    for (i, expected) in probabilities.iter().enumerate() {
        let answer = serve::post(&client, &url, Some("image/png"), &png(&images, i)).json();
        assert_eq!(answer["predictions"]["probabilities"], serde_json::json!([expected]), "image {i} as a PNG");
        assert_eq!(answer["classes"], names);
    }
    // JSON names them when asked, in MLflow's `params`.
    let asked = serde_json::json!({ "inputs": &rows[..1], "params": {"classes": true} });
    let answer = serve::post_json(&client, &url, &asked).json();
    assert_eq!(
        (&answer["classes"], &answer["predictions"]["probabilities"][0]),
        (&names, &serde_json::json!(probabilities[0]))
    );

    // A row of FashionMNIST's length is refused, naming both lengths.
    let wrong = serve::post_json(&client, &url, &serde_json::json!({ "inputs": [vec![0.5; 784]] }));
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    let message = wrong.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("784 values") && message.contains("takes 360"), "{message}");

    let card = serve::get(&client, &server.url("/model-card")).json();
    assert_eq!(
        (&card["classes"], &card["channels"], &card["height"], &card["width"]),
        (&names, &serde_json::json!(3), &serde_json::json!(12), &serde_json::json!(10))
    );
    let version = serve::get(&client, &server.url("/version")).json();
    assert_eq!(version["contract"]["mean"], serde_json::json!([0.4, 0.5, 0.6]), "{version}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rows_read_for_another_model_are_refused_by_the_batcher() {
    use engine::serve::{BatchConfig, Batcher, Images, PredictError, ServedModel};
    let (dir, _, _) = saved("batcher");
    let model = ServedModel::load(&dir, &Device::Cpu, "cpu", Default::default()).unwrap();
    let config = BatchConfig { max_rows: 64, max_wait: std::time::Duration::ZERO, threads: 1, log_every: None };
    let batcher = Batcher::start(model, config).unwrap();
    let handle = batcher.handle();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // Rows parsed for FashionMNIST's model, reaching the colour one (as across a model swap).
    let stale = Images { rows: 2, pixels: vec![0.5; 2 * 784], with_classes: false };
    match runtime.block_on(handle.predict(stale, handle.arrival())) {
        Err(PredictError::WrongShape(message)) => {
            assert!(message.contains("784 values") && message.contains("takes 360"), "{message}")
        }
        other => panic!("stale rows were answered: {other:?}"),
    }
    let fitting = Images { rows: 1, pixels: vec![0.5; 360], with_classes: false };
    let prediction = runtime.block_on(handle.predict(fitting, handle.arrival())).unwrap();
    assert_eq!(prediction.probabilities.len(), 3, "the batcher lives on");
    batcher.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
