//! The gate's rules and the command line's manners, on a local run (no server needed): the
//! direction follows the metric, impossible thresholds and unknown metrics are refused with
//! what exists, `--json` is one document on stdout, a failed gate blocks registration unless
//! forced (and the override is recorded), and choices take aliases and any case.

#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};

use cli::{stdout, text};

/// One tiny local run shared by the tests, `(store, run id)`, and the right to use it: a run
/// takes one writer at a time (the others are refused), so these tests take turns.
fn trained() -> (MutexGuard<'static, ()>, &'static (PathBuf, String)) {
    static TURN: Mutex<()> = Mutex::new(());
    static RUN: OnceLock<(PathBuf, String)> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (
        turn,
        RUN.get_or_init(|| {
            let dir = cli::unused_path("gate-cli");
            let store = dir.join("store");
            let summary = cli::train_tiny(&dir.join("out"), &store, None);
            (store, summary["run_id"].as_str().expect("a run id").to_string())
        }),
    )
}

fn engine(args: &[&str], store: &Path) -> Output {
    cli::engine(args, store, None)
}

#[test]
fn losses_are_gated_lower_is_better_and_the_direction_can_be_given() {
    let (_turn, (store, run)) = trained();
    let loss = engine(&["gate", "--run-id", run, "--metric", "test_loss", "--threshold", "100"], store);
    assert_eq!(loss.status.code(), Some(0), "{}", text(&loss));
    assert!(stdout(&loss).contains("<= threshold"), "{}", text(&loss));
    let told =
        engine(&["gate", "--run-id", run, "--metric", "test_loss", "--threshold", "100", "--direction", "MAX"], store);
    assert_eq!(told.status.code(), Some(1), "{}", text(&told));
}

#[test]
fn impossible_thresholds_and_unknown_metrics_are_refused_with_what_exists() {
    let (_turn, (store, run)) = trained();
    let percent = engine(&["gate", "--run-id", run, "--threshold", "88"], store);
    assert_eq!(percent.status.code(), Some(2), "{}", text(&percent));
    assert!(text(&percent).contains("0.88"), "{}", text(&percent));
    let unknown = engine(&["gate", "--run-id", run, "--metric", "f1", "--threshold", "0.5"], store);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("macro_f1") && text(&unknown).contains("test_accuracy"), "{}", text(&unknown));
}

#[test]
fn a_failed_gate_blocks_registration_unless_forced_and_the_override_is_recorded() {
    let (_turn, (store, run)) = trained();
    let failed = engine(&["gate", "--run-id", run, "--threshold", "0.999", "--json"], store);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let outcome: serde_json::Value = serde_json::from_str(&stdout(&failed)).expect("stdout is one JSON document");
    assert_eq!(outcome["decision"], "failed");
    assert!(cli::stderr(&failed).contains("gate failed"), "{}", text(&failed));

    // Refused before any server is asked: this one does not exist.
    let down = "http://127.0.0.1:9";
    let refused = engine(&["register", "--run-id", run, "--tracking-uri", down], store);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("failed its quality gate") && text(&refused).contains("--force"),
        "{}",
        text(&refused)
    );
    let forced = engine(&["register", "--run-id", run, "--tracking-uri", down, "--force"], store);
    assert!(!text(&forced).contains("failed its quality gate"), "{}", text(&forced));
    let shown = engine(&["runs", "show", run], store);
    assert!(stdout(&shown).contains("engine.gate.forced"), "{}", text(&shown));
}

#[test]
fn choices_take_aliases_and_any_case() {
    let store = cli::unused_path("gate-cli-choices");
    // `--epochs 0` stops the run after parsing: the choices before it were accepted.
    let parsed = engine(
        &["train", "--device", "cuda", "--optimizer", "Adam", "--lr-schedule", "COSINE", "--epochs", "0"],
        &store,
    );
    assert_eq!(parsed.status.code(), Some(2), "{}", text(&parsed));
    assert!(text(&parsed).contains("epochs") && !text(&parsed).contains("invalid value"), "{}", text(&parsed));
}

/// Every option of every command says what it does in `--help`.
#[test]
fn every_option_has_help_text() {
    let store = cli::unused_path("gate-cli-help");
    let commands: [&[&str]; 15] = [
        &["train"],
        &["sweep"],
        &["eval"],
        &["export"],
        &["gate"],
        &["register"],
        &["promote"],
        &["serve"],
        &["sync"],
        &["ui"],
        &["devices"],
        &["runs", "list"],
        &["runs", "show"],
        &["runs", "compare"],
        &["runs", "analyze"],
    ];
    for command in commands {
        let help = stdout(&engine(&[command, &["--help"]].concat(), &store));
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let option = line.trim_start();
            // Options start within six columns; a choice's values (`- cpu: ...`) are indented further.
            if option.starts_with('-') && line.len() - option.len() <= 6 {
                let next = lines.get(i + 1).copied().unwrap_or_default();
                // Short help is on the option's line, after two spaces; long help on the next line.
                let inline = option.split_once("  ").is_some_and(|(_, help)| !help.trim().is_empty());
                let described = inline || (next.starts_with("          ") && !next.trim_start().starts_with('-'));
                assert!(described, "`engine {} --help`: {option} has no help text", command.join(" "));
            }
        }
        if command == ["train"] {
            assert!(help.contains("--no-system-metrics"), "{help}");
        }
        if command == ["sync"] {
            assert!(help.contains("every experiment"), "{help}");
        }
    }
}
