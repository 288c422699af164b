//! `engine serve` with image bodies, the real binary on a free port: a PNG, a JPEG or a
//! multipart body of images is prepared as training prepares images and answers what the same
//! pixels sent as JSON answer, with the class names; every bad image is a 400 (or 413, 415)
//! naming the problem and the server lives on; the page and its model card are served under a
//! strict Content-Security-Policy.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/serve.rs"]
mod serve;

use std::path::PathBuf;
use std::sync::OnceLock;

use engine::data::InputContract;
use engine::data::decode::{DecodeLimits, decode_for_contract};
use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::json;
use serve::{EngineServer, client, encode, get, multipart, png_of, post, post_json, test_rows};

/// A tiny model trained once for every test here: (training's output directory, store).
fn trained() -> &'static (PathBuf, PathBuf) {
    static TRAINED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = cli::empty_dir("serve-images");
        let store = dir.join("store");
        cli::train_tiny(&dir.join("train"), &store, None);
        (dir.join("train"), store)
    })
}

fn start(extra: &[&str]) -> EngineServer {
    let (train, store) = trained();
    let model = train.join("model");
    let mut args = vec!["--model-uri", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    EngineServer::start(&args, store, None)
}

fn fashion_names() -> Vec<String> {
    engine::data::FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
}

/// The rows of a 200 image answer, after checking it names the classes.
fn image_answer(answer: &serve::Answer) -> serde_json::Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["classes"], json!(fashion_names()), "{}", answer.body);
    json["predictions"]["probabilities"].clone()
}

#[test]
fn image_bodies_answer_what_their_pixels_answer_as_json() {
    let server = start(&[]);
    let (client, url) = (client(), server.url("/invocations"));
    let rows = test_rows(3);
    let as_json = post_json(&client, &url, &json!({ "inputs": rows })).json()["predictions"]["probabilities"].clone();
    assert_eq!(as_json.as_array().map(Vec::len), Some(3));

    let pngs: Vec<Vec<u8>> = rows.iter().map(|r| png_of(r, 28)).collect();
    let one = post(&client, &url, Some("image/png"), &pngs[1]);
    assert_eq!(image_answer(&one), json!([as_json[1]]), "a PNG of test image 1");
    let parts: Vec<(&str, &str, &[u8])> =
        pngs.iter().zip(["a", "b", "c"]).map(|(png, name)| (name, "image/png", png.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let several = post(&client, &url, Some(&content_type), &body);
    assert_eq!(image_answer(&several), as_json, "three PNGs in one multipart body, in order");

    // A 40x36 colour JPEG becomes a 28x28 gray image exactly as training's decoder makes one.
    let colour = RgbImage::from_fn(40, 36, |x, y| image::Rgb([(x * 6) as u8, (y * 7) as u8, ((x + y) * 3) as u8]));
    let jpeg = encode(&DynamicImage::ImageRgb8(colour), ImageFormat::Jpeg);
    let bytes = decode_for_contract(&jpeg, &InputContract::fashion_mnist(), DecodeLimits::default()).unwrap();
    let pixels: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
    let expected =
        post_json(&client, &url, &json!({ "inputs": [pixels] })).json()["predictions"]["probabilities"].clone();
    let answer = post(&client, &url, Some("image/jpeg"), &jpeg);
    assert_eq!(image_answer(&answer), expected, "a JPEG, resized and made gray");

    // The JSON answer stays MLflow's: no class names beside it.
    let plain = post_json(&client, &url, &json!({ "inputs": [&rows[0]] }));
    assert_eq!(plain.json().as_object().map(|o| o.len()), Some(1), "{}", plain.body);
}

#[test]
fn bad_image_bodies_are_refused_with_the_problem_named() {
    let server = start(&["--max-body-bytes", "200000"]);
    let (client, url) = (client(), server.url("/invocations"));
    let png = png_of(&test_rows(1)[0], 28);
    let bomb = encode(&DynamicImage::new_luma8(12_000, 1), ImageFormat::Png);
    let (one_part_type, mut unterminated) = multipart(&[("a", "image/png", &png)]);
    unterminated.truncate(unterminated.len() - 12);
    let (text_part_type, text_part) = multipart(&[("a", "image/png", &png), ("notes", "text/plain", b"hello")]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("image/png", Vec::new(), 400, "empty (0 bytes)"),
        ("image/png", png[..png.len() / 2].to_vec(), 400, "truncated"),
        ("image/png", [&png[..40], &[0x55; 64][..], &png[104..]].concat(), 400, "corrupt"),
        ("image/jpeg", b"just some text, not an image".to_vec(), 400, "not an image"),
        ("image/png", bomb, 400, "decoding limits"),
        (&one_part_type, unterminated, 400, "truncated"),
        (&text_part_type, text_part, 400, "part \"notes\": not an image"),
        ("multipart/form-data", png.clone(), 400, "no boundary"),
        ("image/gif", png.clone(), 415, "image/png"),
    ];
    for (content_type, body, status, fragment) in cases {
        let answer = post(&client, &url, Some(content_type), &body);
        assert_eq!(answer.status, status, "{content_type} ({fragment}): {}", answer.body);
        let message = answer.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(fragment), "{message:?} should mention {fragment:?}");
    }
    let huge = encode(&DynamicImage::new_rgb8(400, 400), ImageFormat::Bmp);
    assert_eq!(post(&client, &url, Some("image/bmp"), &huge).status, 413, "past --max-body-bytes");
    let after = post(&client, &url, Some("image/png"), &png);
    assert_eq!(after.status, 200, "the server lives on: {}", after.body);
}

#[test]
fn the_page_and_its_model_card_are_served_under_a_strict_policy() {
    let server = start(&[]);
    let client = client();
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let response = client.get(server.url(path)).call().unwrap();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert!(header("content-type").starts_with(kind), "{path}: {}", header("content-type"));
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
    }
    let page = get(&client, &server.url("/")).body;
    assert!(page.contains("<script src=\"/app.js\""), "the script is its own file");
    assert!(
        !page.contains("<script>") && !page.contains("style=") && !page.contains("http"),
        "nothing inline or external"
    );

    let card = get(&client, &server.url("/model-card")).json();
    let (train, _) = trained();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(train.join("classification_report.json")).unwrap()).unwrap();
    assert_eq!(card["classes"], json!(fashion_names()));
    assert_eq!(card["test_accuracy"], report["accuracy"]);
    assert_eq!(card["f1"][3], report["Dress"]["f1-score"]);
    let confusion = card["confusion_matrix"].as_array().unwrap();
    let total: u64 = confusion.iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!((confusion.len(), total), (10, 10_000), "the test set's confusion matrix");
}

#[test]
fn a_model_card_without_reports_says_so() {
    let (train, _) = trained();
    let lone = cli::empty_dir("serve-lone-model").join("model");
    std::fs::create_dir_all(&lone).unwrap();
    for entry in std::fs::read_dir(train.join("model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), lone.join(entry.file_name())).unwrap();
    }
    let empty_store = cli::empty_dir("serve-lone-store");
    let server = EngineServer::start(&["--model-uri", lone.to_str().unwrap()], &empty_store, None);
    let card = get(&client(), &server.url("/model-card"));
    assert_eq!(card.status, 200, "{}", card.body);
    let card = card.json();
    for field in ["reports_from", "test_accuracy", "f1", "confusion_matrix"] {
        assert!(card[field].is_null(), "{field}: {card}");
    }
    assert_eq!(card["classes"], json!(fashion_names()));
}
