//! `engine train`, `engine eval` and `engine serve` on data other than FashionMNIST, through
//! `--data`: an image folder (gray PNGs split by seed, RGB JPEGs in train/ and test/) and an IDX
//! set with class names from a file, generated here at sizes other than 28x28; MLP and CNN;
//! tracked in the local store and on a real MLflow server. The report names the folder's
//! classes, the run's dataset inputs carry the split's digest and shape, `eval` of the model
//! reproduces the run's test accuracy, the served model answers a test image sent as PNG or JPEG
//! as `eval` classified it and names the classes, data the model cannot read is refused naming
//! both, and every bad `--data` value exits 2 naming its flag.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/mlflow.rs"]
mod mlflow;
#[path = "common/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::Output;

use cli::{eval_predictions, json_line, stderr};
use engine::data::{ClassNames, ColorMode, DataFlags, DataSource, DataSplit, DecodeLimits, InputContract, decode};
use engine::rng::Rng;
use engine::tracking::LocalStore;
use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage};
use serde_json::{Value, json};
use serve::{EngineServer, argmax, encode, post, post_json};

const CLASSES: [&str; 3] = ["circle", "square", "stripe"];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-own-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `engine ARGS` with its own store and user cache under `dir`.
fn engine(dir: &Path, args: &[&str], tracking_uri: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_engine"));
    cli::clean_env(command.args(args), &dir.join("store"), tracking_uri)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .expect("the engine binary runs")
}

/// A pixel of class `class` at `(x, y)` of a `width`x`height` image: a bright left half, top
/// half or diagonal band, with noise, so that a small network learns the classes in an epoch.
fn intensity(class: usize, x: u32, y: u32, width: u32, height: u32, rng: &mut Rng) -> u8 {
    let bright = match class {
        0 => x < width / 2,
        1 => y < height / 2,
        _ => (x as i64 - y as i64).abs() <= 2,
    };
    let base = if bright { 200 } else { 40 };
    (base + rng.below(40)) as u8
}

/// `dir/<class>/<i>.png`: `per_class` gray `width`x`height` images of each class.
fn gray_folder(dir: &Path, per_class: usize, width: u32, height: u32) {
    let mut rng = Rng::new(1);
    for (class, name) in CLASSES.iter().enumerate() {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..per_class {
            let image =
                GrayImage::from_fn(width, height, |x, y| Luma([intensity(class, x, y, width, height, &mut rng)]));
            image.save(dir.join(name).join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// `dir/train/<class>/*.jpg` and `dir/test/<class>/*.jpg`: RGB images whose red channel carries
/// the class pattern.
fn rgb_folder(dir: &Path, train: usize, test: usize, width: u32, height: u32) {
    let mut rng = Rng::new(2);
    for (part, count) in [("train", train), ("test", test)] {
        for (class, name) in CLASSES.iter().enumerate() {
            let class_dir = dir.join(part).join(name);
            std::fs::create_dir_all(&class_dir).unwrap();
            for i in 0..count {
                let image = RgbImage::from_fn(width, height, |x, y| {
                    Rgb([intensity(class, x, y, width, height, &mut rng), 90, (30 * class) as u8])
                });
                image.save(class_dir.join(format!("{i:03}.jpg"))).unwrap();
            }
        }
    }
}

fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes.extend_from_slice(body);
    bytes
}

/// An IDX set of `rows`x`cols` images in `dir`, with the classes' names in `dir/names.txt`.
fn idx_set(dir: &Path, train: usize, test: usize, rows: u32, cols: u32) -> PathBuf {
    let mut rng = Rng::new(3);
    for (prefix, count) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..count).map(|i| (i % 3) as u8).collect();
        let pixels: Vec<u8> = labels
            .iter()
            .flat_map(|&l| (0..rows * cols).map(move |p| (l, p % cols, p / cols)).collect::<Vec<_>>())
            .map(|(l, x, y)| intensity(l as usize, x, y, cols, rows, &mut rng))
            .collect();
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(0x803, &[count as u32, rows, cols], &pixels),
        )
        .unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), idx(0x801, &[count as u32], &labels)).unwrap();
    }
    let names = dir.join("names.txt");
    std::fs::write(&names, CLASSES.join("\n")).unwrap();
    names
}

/// `engine train --data DATA` on the CPU for `epochs`, with `extra` flags; its JSON summary.
fn train(dir: &Path, data: &[&str], extra: &[&str], tracking_uri: Option<&str>) -> Value {
    let out = dir.join("out");
    let mut args = vec!["train", "--device", "cpu", "--json", "--output-dir", out.to_str().unwrap()];
    args.extend_from_slice(data);
    args.extend_from_slice(extra);
    json_line(&engine(dir, &args, tracking_uri))
}

/// The class names of the run's classification report.
fn report_classes(output_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(output_dir.join("classification_report.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    let object = report.as_object().unwrap();
    CLASSES.iter().filter(|c| object.contains_key(**c)).map(|c| c.to_string()).collect()
}

/// `engine eval` of the run's model on `data`; its JSON summary, after checking it reproduces
/// the run's test accuracy and that its reports, printed and written, name the model's classes.
fn eval_matches(dir: &Path, run: &Value, data: &[&str], tracking_uri: Option<&str>) -> Value {
    let run_id = run["run_id"].as_str().unwrap();
    let eval_dir = dir.join("eval");
    let mut args = vec!["eval", "--device", "cpu", "--run-id", run_id, "--json", "--output-dir"];
    args.push(eval_dir.to_str().unwrap());
    args.extend_from_slice(data);
    let output = engine(dir, &args, tracking_uri);
    let evaluated = json_line(&output);
    assert_eq!(evaluated["test_accuracy"], run["test_accuracy"], "{evaluated} vs {run}");
    assert_eq!(report_classes(&eval_dir), CLASSES);
    let printed = stderr(&output);
    let rows: Vec<&str> = printed.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(CLASSES.iter().all(|c| rows.contains(c)) && !printed.contains("T-shirt"), "{printed}");
    let confusion: Value =
        serde_json::from_slice(&std::fs::read(eval_dir.join("confusion_matrix.json")).unwrap()).unwrap();
    assert_eq!(confusion["class_names"], json!(CLASSES), "{confusion}");
    evaluated
}

/// The run's dataset inputs in the local store: `(name, context, digest, features shape)`.
fn local_inputs(dir: &Path, run_id: &str) -> Vec<(String, String, String, Value)> {
    let record = LocalStore::open(dir.join("store")).unwrap().load_run(run_id).unwrap();
    record
        .inputs
        .iter()
        .map(|input| {
            let profile: Value = serde_json::from_str(&input.dataset.profile).unwrap();
            let d = &input.dataset;
            (d.name.clone(), input.context.clone(), d.digest.clone(), profile["features_shape"].clone())
        })
        .collect()
}

/// `engine serve` of the model trained into `dir/out`, on a free port.
fn serve_trained(dir: &Path) -> EngineServer {
    let model = dir.join("out/model");
    EngineServer::start(&["--model-uri", model.to_str().unwrap()], &dir.join("store"), None)
}

/// The class the server predicts for `image` sent as `content_type`, after checking that the
/// answer names the classes and is the answer to the JSON row of the image as `contract`
/// prepares it: the server decoded and resized it as training does.
fn served_class(server: &EngineServer, content_type: &str, image: &[u8], contract: &InputContract) -> usize {
    let (client, url) = (serve::client(), server.url("/invocations"));
    let answer = post(&client, &url, Some(content_type), image);
    assert_eq!(answer.status, 200, "{content_type}: {}", answer.body);
    let body = answer.json();
    assert_eq!(body["classes"], json!(CLASSES), "{}", answer.body);
    let pixels = decode::decode_for_contract(image, contract, DecodeLimits::default()).unwrap();
    let row: Vec<f32> = pixels.iter().map(|&b| f32::from(b) / 255.0).collect();
    let as_json = post_json(&client, &url, &json!({ "inputs": [row] }));
    assert_eq!(body["predictions"], as_json.json()["predictions"], "{content_type} vs its pixels as JSON");
    argmax(&as_json.probabilities())[0]
}

/// Test image `index` of `split` (planar bytes) as a PNG: the same pixels, losslessly.
fn test_image_png(split: &DataSplit, index: usize) -> Vec<u8> {
    let contract = &split.contract;
    let (width, height) = (contract.width as u32, contract.height as u32);
    let (pixels, plane) = (split.test.image(index), contract.height * contract.width);
    let picture = match contract.channels {
        1 => DynamicImage::ImageLuma8(GrayImage::from_raw(width, height, pixels.to_vec()).unwrap()),
        _ => DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            let at = (y * width + x) as usize;
            Rgb([pixels[at], pixels[plane + at], pixels[2 * plane + at]])
        })),
    };
    encode(&picture, ImageFormat::Png)
}

/// Serves the model trained into `dir/out` and checks test images `indices` of `split`, sent as
/// PNGs, get the classes `engine eval` gave them (its `dir/eval`), and that the model card names
/// the classes and counts the test set in a confusion matrix of their size. The server, running.
fn serve_as_evaluated(dir: &Path, split: &DataSplit, indices: &[usize]) -> EngineServer {
    let server = serve_trained(dir);
    let evaluated = eval_predictions(&dir.join("eval"));
    assert_eq!(evaluated.len(), split.test.len());
    for &i in indices {
        let png = test_image_png(split, i);
        let class = served_class(&server, "image/png", &png, &split.contract);
        assert_eq!(class, evaluated[i].0, "test image {i} as a PNG");
    }
    let card = serve::get(&serve::client(), &server.url("/model-card")).json();
    assert_eq!(card["classes"], json!(CLASSES));
    let confusion: Vec<Vec<u64>> = serde_json::from_value(card["confusion_matrix"].clone()).unwrap();
    let total: u64 = confusion.iter().flatten().sum();
    assert_eq!((confusion.len(), total), (CLASSES.len(), split.test.len() as u64), "{card}");
    server
}

#[test]
fn a_gray_png_folder_trains_evaluates_and_serves_an_mlp_in_the_local_store() {
    let dir = scratch("gray");
    let images = dir.join("shapes");
    gray_folder(&images, 60, 20, 16);
    let data = format!("folder:{}", images.display());
    let flags = ["--model", "mlp", "--hidden", "32", "--epochs", "4", "--normalize", "unit", "--lr", "0.1"];
    let run = train(&dir, &["--data", &data, "--test-fraction", "0.25", "--split-seed", "7"], &flags, None);
    assert!(run["test_accuracy"].as_f64().unwrap() > 0.9, "{run}");
    assert_eq!(report_classes(&dir.join("out")), CLASSES);

    // 45 training and 15 test images a class, 1x16x20, digested as the data layer digests them.
    let flags = DataFlags { test_fraction: Some(0.25), split_seed: Some(7), no_cache: true, ..DataFlags::default() };
    let split = DataSource::parse(&data, &flags).unwrap().load().unwrap();
    let inputs = local_inputs(&dir, run["run_id"].as_str().unwrap());
    let expected = [
        ("shapes-train".to_string(), "training".to_string(), split.train.digest(135), serde_json::json!([135, 16, 20])),
        ("shapes-test".to_string(), "evaluation".to_string(), split.test.digest(45), serde_json::json!([45, 16, 20])),
    ];
    assert_eq!(inputs, expected);

    // The decoded set was cached for the next load; the model evaluates as it tested.
    assert!(std::fs::read_dir(dir.join("cache/engine/datasets")).unwrap().count() > 0);
    eval_matches(&dir, &run, &["--data", &data, "--test-fraction", "0.25", "--split-seed", "7"], None);
    drop(serve_as_evaluated(&dir, &split, &[0, 20, 40]));

    // Data the model cannot read is refused, naming both.
    let other = dir.join("other");
    gray_folder(&other, 4, 9, 9);
    let refused = engine(
        &dir,
        &["eval", "--device", "cpu", "--run-id", run["run_id"].as_str().unwrap(), "--data", other.to_str().unwrap()],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(message.contains("1x16x20 images of 3 classes") && message.contains("1x9x9 images"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_rgb_jpeg_folder_trains_a_cnn_tracked_on_a_real_mlflow_server() {
    let Some(server) = mlflow::shared() else { return };
    let dir = scratch("rgb");
    let images = dir.join("photos");
    rgb_folder(&images, 30, 10, 18, 14);
    let data = format!("folder:{}", images.display());
    let flags = ["--model", "cnn", "--epochs", "2", "--normalize", "unit", "--batch-size", "16", "--lr", "0.05"];
    let run = train(&dir, &["--data", &data, "--color", "rgb"], &flags, Some(server.uri()));
    assert_eq!(report_classes(&dir.join("out")), CLASSES);
    let metadata: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/model/engine_model.json")).unwrap()).unwrap();
    assert_eq!(metadata["class_names"], serde_json::json!(CLASSES));

    let client = engine::tracking::MlflowClient::new(
        server.uri(),
        engine::tracking::Auth::None,
        engine::tracking::RetryPolicy::default(),
    )
    .unwrap();
    let recorded = client.get_run(run["run_id"].as_str().unwrap()).unwrap();
    let inputs = recorded.inputs["dataset_inputs"].as_array().expect("dataset inputs");
    let test = inputs.iter().find(|i| i["dataset"]["name"] == "photos-test").expect("the test set as an input");
    let profile: Value = serde_json::from_str(test["dataset"]["profile"].as_str().unwrap()).unwrap();
    assert_eq!(profile["features_shape"], serde_json::json!([30, 3, 14, 18]));
    let source: Value = serde_json::from_str(test["dataset"]["source"].as_str().unwrap()).unwrap();
    assert_eq!(source["uri"], images.display().to_string());
    assert_eq!(test["dataset"]["digest"].as_str().map(str::len), Some(8));

    eval_matches(&dir, &run, &["--data", images.to_str().unwrap(), "--color", "rgb"], Some(server.uri()));

    // Served, test images as PNGs and a test JPEG as it is get the classes eval gave them (the
    // folder's test images are its classes' files in order: stripe/004.jpg is image 24).
    let flags = DataFlags { color: Some(ColorMode::Rgb), no_cache: true, ..DataFlags::default() };
    let split = DataSource::parse(&data, &flags).unwrap().load().unwrap();
    let served = serve_as_evaluated(&dir, &split, &[1, 13, 24]);
    let jpeg = std::fs::read(images.join("test/stripe/004.jpg")).unwrap();
    let decoded = decode::decode_for_contract(&jpeg, &split.contract, DecodeLimits::default()).unwrap();
    assert_eq!(decoded, split.test.image(24));
    let class = served_class(&served, "image/jpeg", &jpeg, &split.contract);
    assert_eq!(class, eval_predictions(&dir.join("eval"))[24].0);

    // A row of FashionMNIST's width is refused, naming both widths.
    let wide = post_json(&serve::client(), &served.url("/invocations"), &json!({ "inputs": [vec![0.5; 784]] }));
    let message = wide.json()["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(wide.status, 400, "{}", wide.body);
    assert!(message.contains("784 values") && message.contains("756 per row, one 3x14x18 image"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_idx_set_trains_with_class_names_from_a_file() {
    let dir = scratch("idx");
    let set = dir.join("set");
    std::fs::create_dir_all(&set).unwrap();
    let names = idx_set(&set, 240, 60, 11, 9);
    let classes = format!("@{}", names.display());
    let data = format!("idx:{}", set.display());
    let flags = ["--hidden", "16", "--epochs", "3", "--normalize", "unit", "--lr", "0.1"];
    let run = train(&dir, &["--data", &data, "--classes", &classes], &flags, None);
    assert!(run["test_accuracy"].as_f64().unwrap() > 0.9, "{run}");
    assert_eq!(report_classes(&dir.join("out")), CLASSES);
    let inputs = local_inputs(&dir, run["run_id"].as_str().unwrap());
    assert_eq!(inputs[1].3, serde_json::json!([60, 11, 9]), "{inputs:?}");
    eval_matches(&dir, &run, &["--data", &data, "--classes", &classes], None);

    // Served, test images as PNGs get eval's classes; a colour JPEG twice the size is made
    // gray and resized as training would.
    let flags = DataFlags { class_names: Some(ClassNames::File(names.clone())), ..DataFlags::default() };
    let split = DataSource::parse(&data, &flags).unwrap().load().unwrap();
    let served = serve_as_evaluated(&dir, &split, &[0, 1, 2, 59]);
    let colour = RgbImage::from_fn(18, 22, |x, y| Rgb([(x * 14) as u8, (y * 11) as u8, 60]));
    let jpeg = encode(&DynamicImage::ImageRgb8(colour), ImageFormat::Jpeg);
    assert!(served_class(&served, "image/jpeg", &jpeg, &split.contract) < CLASSES.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_data_values_exit_2_naming_the_flag() {
    let dir = scratch("bad");
    let images = dir.join("few");
    gray_folder(&images, 3, 6, 6);
    let folder = format!("folder:{}", images.display());
    let missing = dir.join("missing");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--data".into(), format!("folder:{}", missing.display())], "--data"),
        (vec!["--data".into(), "idx:".into()], "--data"),
        (vec!["--data".into(), format!("idx:{}", images.display())], "--data"),
        (vec!["--data".into(), missing.display().to_string()], "--data"),
        (vec!["--image-size".into(), "16x16".into()], "--image-size"),
        (vec!["--classes".into(), "a,b".into()], "--classes"),
        (vec!["--data".into(), folder.clone(), "--classes".into(), "a,b,c".into()], "--classes"),
        (vec!["--data".into(), folder.clone(), "--test-fraction".into(), "1.5".into()], "--test-fraction"),
        (vec!["--data".into(), folder.clone(), "--image-size".into(), "0x3".into()], "--image-size"),
        (vec!["--data".into(), folder.clone(), "--color".into(), "cmyk".into()], "--color"),
        (vec!["--data".into(), "idx:/tmp".into(), "--classes".into(), "@/nonexistent".into()], "--classes"),
    ];
    for (flags, name) in &cases {
        for command in ["train", "eval"] {
            let mut args = vec![command, "--device", "cpu"];
            if command == "eval" {
                args.extend(["--model-uri", dir.to_str().unwrap()]);
            }
            args.extend(flags.iter().map(String::as_str));
            let output = engine(&dir, &args, None);
            let message = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
            assert!(message.contains(name), "{args:?} should name {name}: {message}");
        }
    }

    // A corrupt image in the folder stops training before any run, naming the file.
    std::fs::write(images.join("circle/broken.png"), b"not a png").unwrap();
    let output = engine(&dir, &["train", "--device", "cpu", "--data", &folder, "--no-data-cache"], None);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("broken.png"), "{}", stderr(&output));
    assert!(
        !dir.join("store").exists() || LocalStore::open(dir.join("store")).unwrap().list_runs(None).unwrap().is_empty()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sweep_plan_made_with_a_folder_runs_its_children_on_that_folder() {
    let dir = scratch("sweep");
    let images = dir.join("shapes");
    gray_folder(&images, 20, 12, 10);
    let (data, plan) = (format!("folder:{}", images.display()), dir.join("plan.json"));
    let planned = engine(
        &dir,
        &[
            "sweep",
            "--device",
            "cpu",
            "--lr",
            "0.1,0.05",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--data",
            &data,
            "--test-fraction",
            "0.25",
            "--plan",
            plan.to_str().unwrap(),
        ],
        None,
    );
    assert!(planned.status.success(), "{}", stderr(&planned));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(written["data"]["kind"], "folder");
    assert_eq!(written["data"]["dir"], images.display().to_string());
    assert_eq!(written["data"]["options"]["test_fraction"], 0.25);

    // A worker given only the plan trains on the folder with the plan's split.
    let worker = engine(&dir, &["sweep", "--plan", plan.to_str().unwrap(), "--index", "1"], None);
    assert!(worker.status.success(), "{}", stderr(&worker));
    let store = LocalStore::open(dir.join("store")).unwrap();
    let child = store.list_runs(None).unwrap().into_iter().find(|r| r.tags.contains_key("mlflow.parentRunId")).unwrap();
    let inputs = local_inputs(&dir, &child.run_id);
    let names: Vec<(&str, &Value)> = inputs.iter().map(|i| (i.0.as_str(), &i.3)).collect();
    assert_eq!(
        names,
        [("shapes-train", &serde_json::json!([45, 10, 12])), ("shapes-test", &serde_json::json!([15, 10, 12]))]
    );
    assert!(child.params["data_source"].starts_with(&data), "{:?}", child.params);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_help_of_serve_and_export_describes_inputs_of_the_models_size() {
    let dir = scratch("help");
    for command in ["serve", "export"] {
        let output = engine(&dir, &[command, "--help"], None);
        let help = cli::stdout(&output);
        assert!(output.status.success() && help.contains("C·H·W") && !help.contains("[N, 784]"), "{help}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
