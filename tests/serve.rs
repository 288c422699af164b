//! `engine serve` as a client meets it, the real binary on a free port: every request format of
//! MLflow's scoring protocol gives the same answer, which is `engine eval`'s; every bad request
//! is a 400 (or 413, 415) with MLflow's error body and the server lives on; concurrent requests
//! share batches; SIGTERM lets the request in flight finish.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/serve.rs"]
mod serve;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use engine::data::IMAGE_PIXELS;
use serde_json::json;
use serve::{EngineServer, argmax, client, get, post, post_json, test_rows};

/// One tiny model for every test here, trained once, and `engine eval`'s predictions of it:
/// (model directory, store, run id, (predicted class, probability) per test image).
struct Trained {
    model: PathBuf,
    store: PathBuf,
    run_id: String,
    predictions: Vec<(usize, f64)>,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = cli::empty_dir("serve-model");
        let store = dir.join("store");
        let summary = cli::train_tiny(&dir.join("train"), &store, None);
        let model = dir.join("train/model");
        let eval = dir.join("eval");
        let output = cli::engine(
            &["eval", "--model-uri", model.to_str().unwrap(), "--output-dir", eval.to_str().unwrap()],
            &store,
            None,
        );
        assert!(output.status.success(), "{}", cli::text(&output));
        let predictions = cli::eval_predictions(&eval);
        Trained { model, store, run_id: summary["run_id"].as_str().unwrap().to_string(), predictions }
    })
}

fn start(extra: &[&str]) -> EngineServer {
    let t = trained();
    let mut args = vec!["--model-uri", t.model.to_str().unwrap()];
    args.extend_from_slice(extra);
    EngineServer::start(&args, &t.store, None)
}

fn csv_body(rows: &[Vec<f32>], header: bool) -> String {
    let mut text = String::new();
    if header {
        let names: Vec<String> = (0..IMAGE_PIXELS).map(|i| i.to_string()).collect();
        text += &(names.join(",") + "\n");
    }
    for row in rows {
        text += &(row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",") + "\n");
    }
    text
}

fn records(rows: &[Vec<f32>]) -> serde_json::Value {
    let record = |row: &Vec<f32>| -> serde_json::Map<String, serde_json::Value> {
        row.iter().enumerate().map(|(i, v)| (i.to_string(), json!(v))).collect()
    };
    json!({ "dataframe_records": rows.iter().map(record).collect::<Vec<_>>() })
}

#[test]
fn every_format_gives_engine_evals_predictions() {
    let t = trained();
    let server = start(&["--access-log"]);
    let client = client();
    let url = server.url("/invocations");
    let rows = test_rows(300);

    let all = post_json(&client, &url, &json!({ "inputs": rows }));
    assert_eq!(all.content_type.as_deref(), Some("application/json"));
    assert_eq!(all.run_id.as_deref(), Some(t.run_id.as_str()), "x-model-run-id");
    assert_eq!(all.model_version, None, "a directory has no registry version");
    let probabilities = all.probabilities();
    assert_eq!(probabilities.len(), rows.len());
    for (i, (row, classes)) in probabilities.iter().zip(argmax(&probabilities)).enumerate() {
        assert_eq!(row.len(), 10);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "row {i} sums to {}", row.iter().sum::<f64>());
        let (expected_class, expected_probability) = t.predictions[i];
        assert_eq!(classes, expected_class, "image {i}: engine eval predicts {expected_class}");
        let diff = (row[classes] - expected_probability).abs();
        assert!(diff < 1e-5, "image {i}: probability {} against engine eval's {expected_probability}", row[classes]);
    }

    // The same images in every other format, and split over requests, give the same bits.
    let few = &rows[..7];
    let expected = &probabilities[..7];
    let columns: Vec<String> = (0..IMAGE_PIXELS).map(|i| i.to_string()).collect();
    let bodies = [
        json!({ "instances": few }),
        json!({ "inputs": few, "params": { "unused": 1 } }),
        json!({ "dataframe_split": { "columns": columns, "data": few } }),
        json!({ "dataframe_split": { "index": (0..7).collect::<Vec<_>>(), "data": few } }),
        json!({ "dataframe_split": { "columns": ["image"], "data": few.iter().map(|r| vec![r]).collect::<Vec<_>>() } }),
        records(few),
    ];
    for body in &bodies {
        let answer = post_json(&client, &url, body);
        assert_eq!(answer.probabilities(), expected, "{}", &body.to_string()[..60]);
    }
    for header in [true, false] {
        let answer = post(&client, &url, Some("text/csv"), csv_body(few, header).as_bytes());
        assert_eq!(answer.probabilities(), expected, "CSV, header {header}");
    }
    for (i, row) in few.iter().enumerate() {
        let one = post_json(&client, &url, &json!({ "inputs": [row] }));
        assert_eq!(one.probabilities(), [expected[i].clone()], "image {i} alone");
    }

    for path in ["/ping", "/health"] {
        let answer = get(&client, &server.url(path));
        assert_eq!((answer.status, answer.body.as_str()), (200, "\n"), "{path}");
    }
    let version = get(&client, &server.url("/version")).json();
    assert_eq!(version["run_id"], t.run_id.as_str());
    assert_eq!(version["model_uri"], t.model.to_str().unwrap());
    assert_eq!(version["engine_version"], env!("CARGO_PKG_VERSION"));
    let access = server.wait_for_log("\"GET /version\" 200", Duration::from_secs(5));
    assert!(access.starts_with("access: 127.0.0.1:"), "{access}");
    let posts = server.log_text().lines().filter(|l| l.contains("\"POST /invocations\" 200")).count();
    assert_eq!(posts, 1 + bodies.len() + 2 + few.len(), "one access line per request");
    assert!(server.log_text().contains("rows=300 "));
}

#[test]
fn bad_requests_get_mlflows_errors_and_the_server_lives_on() {
    let server = start(&["--max-body-bytes", "100000", "--max-batch", "4"]);
    let client = client();
    let url = server.url("/invocations");
    let row = test_rows(1).remove(0);
    let json_type = Some("application/json");
    let with_first = |value: &str| format!("{{\"inputs\": [[{value}{}]]}}", ",0.5".repeat(IMAGE_PIXELS - 1));
    let deep = format!("{{\"params\": {}", "[".repeat(50_000));
    let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (json_type, b"{\"inputs\": [[0.1, 0.2,".to_vec(), 400, "valid JSON"),
        (json_type, Vec::new(), 400, "empty"),
        (json_type, b"   ".to_vec(), 400, "empty"),
        (json_type, json!({ "inputs": [&row[..783]] }).to_string().into_bytes(), 400, "783 values"),
        (json_type, json!({ "inputs": [&row, &row[..700]] }).to_string().into_bytes(), 400, "row 1 has 700 values"),
        (json_type, json!({ "inputs": row }).to_string().into_bytes(), 400, "wrap one image"),
        (json_type, json!({ "inputs": [] }).to_string().into_bytes(), 400, "no rows"),
        (json_type, with_first("NaN").into_bytes(), 400, "NaN"),
        (json_type, with_first("Infinity").into_bytes(), 400, "Infinity"),
        (json_type, with_first("1e39").into_bytes(), 400, "is inf"),
        (json_type, with_first("1e999").into_bytes(), 400, "out of range"),
        (json_type, with_first("null").into_bytes(), 400, "null"),
        (json_type, with_first("\"0.5\"").into_bytes(), 400, "a string"),
        (json_type, with_first("255").into_bytes(), 400, "is 255: pixels are in [0, 1]"),
        (json_type, json!({ "images": [&row] }).to_string().into_bytes(), 400, "'images'"),
        (json_type, json!({ "inputs": [&row], "instances": [&row] }).to_string().into_bytes(), 400, "both"),
        (json_type, json!([&row]).to_string().into_bytes(), 400, "Received a list"),
        (json_type, b"{\"inputs\": [[\xff]]}".to_vec(), 400, "valid JSON"),
        (json_type, deep.into_bytes(), 400, "nested"),
        (Some("text/csv"), b"0.5,0.5\n".to_vec(), 400, "2 values"),
        (Some("text/plain"), json!({ "inputs": [&row] }).to_string().into_bytes(), 415, "content types"),
        (None, json!({ "inputs": [&row] }).to_string().into_bytes(), 415, "Content-Type"),
    ];
    for (content_type, body, status, fragment) in cases {
        let answer = post(&client, &url, content_type, &body);
        let what = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_eq!(answer.content_type.as_deref(), Some("application/json"), "{what}");
        let error = answer.json();
        assert_eq!(error["error_code"], "BAD_REQUEST", "{what}: {}", answer.body);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{what}: {message:?} should mention {fragment:?}");
    }

    // Past --max-body-bytes: 413, whether the length is declared or the body is chunked.
    let big = json!({ "inputs": vec![&row; 30] }).to_string();
    assert!(big.len() > 100_000);
    let declared = post(&client, &url, json_type, big.as_bytes());
    assert_eq!(declared.status, 413, "{}", declared.body);
    assert_eq!(declared.json()["error_code"], "REQUEST_LIMIT_EXCEEDED");
    let chunked = client
        .post(&url)
        .header("Content-Type", "application/json")
        .send(ureq::SendBody::from_reader(&mut big.as_bytes()))
        .unwrap();
    assert_eq!(chunked.status().as_u16(), 413);

    // A client that waits for "100 Continue" is refused before it sends the body.
    let mut polite = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        polite,
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    polite.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 12];
    polite.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    // More images than --max-batch run as a batch of their own.
    let ten = post_json(&client, &url, &json!({ "inputs": vec![&row; 10] }));
    assert_eq!(ten.probabilities().len(), 10);

    // Wrong methods and paths, as MLflow's server answers them.
    assert_eq!(get(&client, &url).status, 405);
    let missing = get(&client, &server.url("/predict"));
    assert_eq!((missing.status, missing.json()["detail"].as_str()), (404, Some("Not Found")));

    // A client that hangs up halfway, or sends garbage instead of HTTP, costs nothing.
    let mut half = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        half,
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"in"
    )
    .unwrap();
    drop(half);
    let mut garbage = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    garbage.write_all(b"\x00\x01 not http at all\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    garbage.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = garbage.read_to_end(&mut reply);
    assert!(reply.is_empty() || reply.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&reply));

    let fine = post_json(&client, &url, &json!({ "inputs": [&row] }));
    assert_eq!(fine.probabilities().len(), 1, "the server still answers");
    assert!(!server.log_text().contains("panicked"), "{}", server.log_text());
}

#[test]
fn concurrent_requests_share_forward_passes() {
    let mut server = start(&["--max-wait-ms", "20"]);
    let url = server.url("/invocations");
    let rows = test_rows(16);
    let client = client();
    let alone: Vec<Vec<Vec<f64>>> =
        rows.iter().map(|r| post_json(&client, &url, &json!({ "inputs": [r] })).probabilities()).collect();
    let (clients, each) = (8, 40);
    std::thread::scope(|scope| {
        for n in 0..clients {
            let (url, rows, alone) = (&url, &rows, &alone);
            scope.spawn(move || {
                let client = serve::client();
                for i in 0..each {
                    let k = (n + i) % rows.len();
                    let answer = post_json(&client, url, &json!({ "inputs": [&rows[k]] }));
                    // Bits do not depend on which requests shared the batch.
                    assert_eq!(answer.probabilities(), alone[k], "client {n}, request {i}");
                }
            });
        }
    });
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success(), "{}", server.log_text());
    let line = server.wait_for_log("batches in all", Duration::from_secs(5));
    let images = rows.len() + clients * each;
    assert!(line.contains(&format!(" batches of {images} images")), "{line}");
    let largest: usize =
        line.split("(largest ").nth(1).and_then(|s| s.split(')').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(largest > 1, "no two requests shared a batch: {line}");
}

/// Raw HTTP, so that a request can be left half sent.
fn send_head(stream: &mut TcpStream, length: usize) {
    write!(
        stream,
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let mut server = start(&[]);
    let body = json!({ "inputs": test_rows(3) }).to_string();
    let mut in_flight = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    send_head(&mut in_flight, body.len());
    in_flight.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    // An idle keep-alive connection must not hold the shutdown up.
    let idle = client();
    assert_eq!(get(&idle, &server.url("/ping")).status, 200);
    std::thread::sleep(Duration::from_millis(200));

    server.terminate();
    server.wait_for_log("finishing the requests in flight", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err(), "new connections are refused");
    in_flight.write_all(&body.as_bytes()[body.len() / 2..]).unwrap();
    let mut reply = String::new();
    in_flight.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    in_flight.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let json_start = reply.find("{\"predictions\"").unwrap_or_else(|| panic!("{reply}"));
    let answer: serde_json::Value = serde_json::from_str(&reply[json_start..]).unwrap();
    assert_eq!(answer["predictions"]["probabilities"].as_array().unwrap().len(), 3);

    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    server.wait_for_log("serve: stopped", Duration::from_secs(5));
}

#[test]
fn wrong_command_lines_fail_before_listening() {
    let t = trained();
    let model = t.model.to_str().unwrap();
    let output = cli::engine(&["serve", "--model-uri", model, "--watch"], &t.store, None);
    assert_eq!(output.status.code(), Some(2), "{}", cli::text(&output));
    assert!(cli::text(&output).contains("models:/NAME@ALIAS"));
    let missing = Path::new(&t.store).join("no-such-model");
    let output = cli::engine(&["serve", "--model-uri", missing.to_str().unwrap(), "--port", "0"], &t.store, None);
    assert_eq!(output.status.code(), Some(1), "{}", cli::text(&output));
    assert!(cli::text(&output).contains("cannot load the model"), "{}", cli::text(&output));
    assert!(!cli::text(&output).contains("listening"));
}
