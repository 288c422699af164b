//! The page of `engine serve` in a real headless Chromium: a model trained for one short epoch
//! is served, a PNG of a FashionMNIST test image is uploaded on the page, and the class the page
//! shows is the one `/invocations` answers for the same image. The screenshot goes to the test's
//! temporary directory, or with `ENGINE_SCREENSHOT_DIR=docs/screenshots` to the README's copy. Chromium, Node and `playwright-core` must be installed
//! (`scripts/test.sh` does it); without them the test fails under `ENGINE_REQUIRE_BROWSER=1`.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;

use serve::{EngineServer, argmax, client, png_of, post, test_rows};

/// Where `scripts/test.sh` installs `playwright-core`: `$ENGINE_BROWSER_MODULES`, else the
/// user cache.
fn browser_modules() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENGINE_BROWSER_MODULES") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("engine-browser/node_modules")
}

/// What is missing to drive a browser, if anything.
fn missing_browser(modules: &Path) -> Option<String> {
    let chrome = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chrome).exists() {
        return Some(format!("no Chromium at {chrome} (set CHROME)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no `node` on PATH".into());
    }
    if !modules.join("playwright-core").is_dir() {
        return Some(format!("no playwright-core in {} (scripts/test.sh installs it)", modules.display()));
    }
    None
}

#[test]
fn the_page_shows_the_class_the_server_predicts_for_an_uploaded_image() {
    let modules = browser_modules();
    if let Some(missing) = missing_browser(&modules) {
        assert!(std::env::var("ENGINE_REQUIRE_BROWSER").as_deref() != Ok("1"), "ENGINE_REQUIRE_BROWSER=1: {missing}");
        eprintln!("skipped: {missing}");
        return;
    }
    let dir = cli::empty_dir("serve-page");
    let store = dir.join("store");
    let train = dir.join("train");
    let args = ["train", "--epochs", "1", "--train-limit", "3000", "--hidden", "64", "--json", "--output-dir"];
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    cli::json_line(&cli::clean_env(command.args(args).arg(&train), &store, None).output().unwrap());
    let server = EngineServer::start(&["--model-uri", train.join("model").to_str().unwrap()], &store, None);

    let image = dir.join("test-image-0.png");
    std::fs::write(&image, png_of(&test_rows(1)[0], 28)).unwrap();
    let answer = post(&client(), &server.url("/invocations"), Some("image/png"), &std::fs::read(&image).unwrap());
    let json = answer.json();
    let probabilities: Vec<Vec<f64>> = serde_json::from_value(json["predictions"]["probabilities"].clone()).unwrap();
    let expected = argmax(&probabilities)[0];
    let expected_name = json["classes"][expected].as_str().unwrap().to_string();

    let screenshots = std::env::var_os("ENGINE_SCREENSHOT_DIR").map_or_else(|| dir.to_path_buf(), PathBuf::from);
    let screenshot = screenshots.join("serve-page.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/serve_page.cjs");
    let output = Command::new("node")
        .arg(&script)
        .args([&server.url("/"), image.to_str().unwrap(), screenshot.to_str().unwrap()])
        .env("NODE_PATH", &modules)
        .output()
        .unwrap();
    assert!(output.status.success(), "the browser run failed:\n{}", cli::text(&output));
    let shown: serde_json::Value = serde_json::from_str(cli::stdout(&output).lines().last().unwrap_or("")).unwrap();
    assert_eq!(shown["problems"], serde_json::json!([]), "console errors or external requests: {shown}");
    assert_eq!((shown["index"].as_u64(), shown["predicted"].as_str()), (Some(expected as u64), Some(&*expected_name)));
    assert_eq!(shown["bars"].as_array().map(Vec::len), Some(5), "the top five classes: {shown}");
    assert!(shown["latency"].as_str().unwrap().contains(" ms"), "{shown}");
    assert!(shown["card"].as_str().unwrap().contains("Test accuracy"), "{shown}");
    assert!(shown["card"].as_str().unwrap().contains("Sandal, Shirt, Sneaker"), "the class names: {shown}");
    assert_eq!(shown["confusionRows"], 11, "a header and ten classes: {shown}");
    assert_eq!((shown["firstFocus"].as_str(), shown["drawing"].as_bool()), (Some("file"), Some(true)), "{shown}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000, "a screenshot was written");
    let classes: Vec<&str> = json["classes"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(classes.contains(&shown["drawnPredicted"].as_str().unwrap_or("")), "a drawing is classified: {shown}");
}
