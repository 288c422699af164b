//! Search spaces and random search: the expression and JSON parsers, each distribution's draws
//! (in range, log-uniform uniform in log space, every choice drawn), seeded reproducibility
//! pinned to known values, every bad input refused through the binary with exit code 2 naming
//! its flag, and a three-trial `engine sweep --search random` in the local store.

#[path = "common/cli.rs"]
mod cli;

use std::path::Path;

use cli::{empty_dir, engine, json_line, stderr};
use engine::nn::Architecture;
use engine::search::{Distribution, Param, SearchSpace, SpaceError, Trial, Value, trial_labels};
use engine::tracking::{LocalStore, RecordStatus};
use engine::train::{OptimizerKind, TrainConfig};

fn space(expressions: &[&str]) -> SearchSpace {
    SearchSpace::parse(expressions).unwrap_or_else(|e| panic!("{expressions:?}: {e}"))
}

fn floats(trials: &[Trial], param: Param) -> Vec<f64> {
    trials
        .iter()
        .map(|t| match t.get(param) {
            Some(Value::Float(x)) => *x,
            other => panic!("{param}: {other:?}"),
        })
        .collect()
}

fn base() -> TrainConfig {
    TrainConfig { epochs: 1, train_limit: Some(500), ..TrainConfig::default() }
}

#[test]
fn parses_every_distribution_and_reads_back_what_it_writes() {
    let s = space(&[
        "hidden=choice(256|512, 512|1024)",
        "lr=loguniform(1e-3,0.3)",
        " dropout = uniform(0, 0.4) ",
        "batch_size=choice(64,128,256)",
        "epochs=int(1,5)",
        "optimizer=choice(sgd,Adam)",
        "model=choice(mlp,cnn)",
        "weight-decay=loguniform(1e-6,1e-2)",
    ]);
    let dims = s.dims();
    // Draw order is the parameters' order, whatever the order of the flags.
    let order: Vec<Param> = dims.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        order,
        [
            Param::Lr,
            Param::WeightDecay,
            Param::Dropout,
            Param::BatchSize,
            Param::Epochs,
            Param::Hidden,
            Param::Optimizer,
            Param::Model
        ]
    );
    assert_eq!(dims[0].1, Distribution::LogUniform { low: 1e-3, high: 0.3 });
    assert_eq!(dims[2].1, Distribution::Uniform { low: 0.0, high: 0.4 });
    assert_eq!(dims[3].1, Distribution::Choice(vec![Value::Int(64), Value::Int(128), Value::Int(256)]));
    assert_eq!(dims[4].1, Distribution::Int { low: 1, high: 5 });
    assert_eq!(
        dims[5].1,
        Distribution::Choice(vec![Value::Layers(vec![256]), Value::Layers(vec![512, 512]), Value::Layers(vec![1024])])
    );
    assert_eq!(
        dims[6].1,
        Distribution::Choice(vec![Value::Optimizer(OptimizerKind::Sgd), Value::Optimizer(OptimizerKind::Adam)])
    );
    assert_eq!(
        s.to_string(),
        "lr=loguniform(0.001,0.3) weight-decay=loguniform(0.000001,0.01) dropout=uniform(0,0.4) \
         batch-size=choice(64,128,256) epochs=int(1,5) hidden=choice(256|512,512|1024) \
         optimizer=choice(sgd,adam) model=choice(mlp,cnn)"
    );
    let text: Vec<String> = s.to_string().split(' ').map(String::from).collect();
    assert_eq!(SearchSpace::parse(&text).unwrap(), s, "the text form reads back");
    let mut from_json = SearchSpace::default();
    from_json.add_json(&s.to_json().to_string()).unwrap();
    assert_eq!(from_json, s, "the JSON form reads back");
    let mut strings = SearchSpace::default();
    strings.add_json(r#"{"lr": "loguniform(1e-3,0.3)", "hidden": {"choice": [256, [512, 512], "1024"]}}"#).unwrap();
    assert_eq!(strings, space(&["lr=loguniform(1e-3,0.3)", "hidden=choice(256|512,512|1024)"]));
}

#[test]
fn refuses_bad_expressions_and_files_saying_why() {
    let lr = Param::Lr;
    for (expression, want) in [
        ("lr", SpaceError::Syntax("lr".into())),
        ("lr=loguniform", SpaceError::Syntax("lr=loguniform".into())),
        ("lr=loguniform(1e-3,0.3", SpaceError::Syntax("lr=loguniform(1e-3,0.3".into())),
        ("speed=uniform(0,1)", SpaceError::UnknownParam("speed".into())),
        ("lr=normal(0,1)", SpaceError::UnknownDistribution { param: lr, name: "normal".into() }),
        ("lr=int(1,2)", SpaceError::WrongDistribution { param: lr, dist: "int" }),
        (
            "batch-size=loguniform(16,256)",
            SpaceError::WrongDistribution { param: Param::BatchSize, dist: "loguniform" },
        ),
        ("optimizer=uniform(0,1)", SpaceError::WrongDistribution { param: Param::Optimizer, dist: "uniform" }),
        ("lr=loguniform(1e-3)", SpaceError::Arity { param: lr, dist: "loguniform", got: 1 }),
        ("lr=uniform()", SpaceError::Arity { param: lr, dist: "uniform", got: 0 }),
        ("lr=uniform(a,1)", SpaceError::BadValue { param: lr, value: "a".into(), expected: "a finite number" }),
        ("lr=uniform(0,inf)", SpaceError::BadValue { param: lr, value: "inf".into(), expected: "a finite number" }),
        ("lr=uniform(0.1,0.1)", SpaceError::EmptyRange { param: lr, value: "0.1".into() }),
        ("epochs=int(3,3)", SpaceError::EmptyRange { param: Param::Epochs, value: "3".into() }),
        ("lr=loguniform(0.3,1e-3)", SpaceError::Reversed { param: lr, low: "0.3".into(), high: "0.001".into() }),
        ("epochs=int(5,1)", SpaceError::Reversed { param: Param::Epochs, low: "5".into(), high: "1".into() }),
        ("lr=loguniform(0,0.3)", SpaceError::LogNotPositive { param: lr, low: 0.0 }),
        ("lr=loguniform(-1,0.3)", SpaceError::LogNotPositive { param: lr, low: -1.0 }),
        ("lr=choice()", SpaceError::EmptyChoice { param: lr }),
        (
            "epochs=choice(1,2.5)",
            SpaceError::BadValue { param: Param::Epochs, value: "2.5".into(), expected: "a whole number" },
        ),
        (
            "hidden=choice(256|0)",
            SpaceError::BadValue { param: Param::Hidden, value: "0".into(), expected: "layer sizes like 512,512" },
        ),
        (
            "optimizer=choice(sgd,lbfgs)",
            SpaceError::BadValue { param: Param::Optimizer, value: "lbfgs".into(), expected: "adam, adamw or sgd" },
        ),
    ] {
        assert_eq!(SearchSpace::parse(&[expression]), Err(want), "{expression}");
    }
    assert_eq!(SearchSpace::parse(&["lr=uniform(0.1,1)", "lr=choice(1)"]), Err(SpaceError::Duplicate(Param::Lr)));
    for text in
        ["{", "[1]", r#"{"lr": 3}"#, r#"{"lr": {"uniform": 3}}"#, r#"{"lr": {"uniform": [0.1, 1], "choice": [1]}}"#]
    {
        let got = SearchSpace::default().add_json(text);
        assert!(matches!(got, Err(SpaceError::Json(_))), "{text}: {got:?}");
    }
    assert_eq!(
        SearchSpace::default().add_json(r#"{"speed": "uniform(0,1)"}"#),
        Err(SpaceError::UnknownParam("speed".into()))
    );
}

#[test]
fn a_space_is_checked_against_what_training_accepts() {
    assert!(space(&["dropout=uniform(0,0.5)", "lr=loguniform(1e-4,1)"]).check(&base(), None).is_ok());
    let refused = |e: &str| match space(&[e]).check(&base(), None) {
        Err(SpaceError::OutOfDomain { why, .. }) => why,
        other => panic!("{e}: {other:?}"),
    };
    assert!(refused("dropout=uniform(0,1)").contains("--dropout"));
    assert!(refused("lr=uniform(0,1)").contains("--lr"));
    assert!(refused("weight-decay=uniform(-1,1)").contains("--weight-decay"));
    assert!(refused("batch-size=int(0,64)").contains("--batch-size"));
    // Each range's largest end is weighed against the memory the caller says there is.
    let wide = space(&["hidden=choice(64|4096,4096)"]);
    assert!(wide.check(&base(), None).is_ok());
    match wide.check(&base(), Some(1 << 20)) {
        Err(SpaceError::OutOfDomain { why, .. }) => assert!(why.contains("GiB"), "{why}"),
        other => panic!("{other:?}"),
    }
    // As for `Trial::apply`, the base keeps the MLP's layers for trials that choose the MLP.
    let cnn = TrainConfig { model: Architecture::Cnn, ..base() };
    assert_eq!(space(&["hidden=choice(64|128)"]).check(&cnn, None), Err(SpaceError::HiddenForCnn));
    assert!(space(&["hidden=choice(64|128)", "model=choice(mlp,cnn)"]).check(&cnn, None).is_ok());
    assert_eq!(SearchSpace::default().check(&base(), None), Err(SpaceError::Empty));
}

#[test]
fn trials_apply_to_the_config_and_a_cnn_has_no_hidden_layers() {
    let trial = Trial {
        values: vec![
            (Param::Lr, Value::Float(0.01)),
            (Param::BatchSize, Value::Int(64)),
            (Param::Hidden, Value::Layers(vec![32])),
            (Param::Model, Value::Model(Architecture::Cnn)),
        ],
    };
    let config = trial.apply(&base());
    assert_eq!((config.lr, config.batch_size, config.model), (0.01, 64, Architecture::Cnn));
    assert!(config.hidden.is_empty());
    assert_eq!(trial.label(), "lr=0.01 bs=64 model=cnn");
}

#[test]
fn every_draw_stays_in_its_range_and_every_choice_is_drawn() {
    let s = space(&[
        "lr=loguniform(1e-4,0.3)",
        "dropout=uniform(0.1,0.4)",
        "epochs=int(2,5)",
        "batch-size=choice(32,64,128,256)",
        "hidden=choice(8|16,16|32)",
    ]);
    let trials = s.sample(2000, 1);
    assert!(floats(&trials, Param::Lr).iter().all(|x| (1e-4..=0.3).contains(x)));
    assert!(floats(&trials, Param::Dropout).iter().all(|x| (0.1..=0.4).contains(x)));
    let mut epochs: Vec<usize> =
        trials.iter().map(|t| if let Some(Value::Int(n)) = t.get(Param::Epochs) { *n } else { 0 }).collect();
    epochs.sort();
    epochs.dedup();
    assert_eq!(epochs, [2, 3, 4, 5], "every integer, both ends included");
    for (param, n) in [(Param::BatchSize, 4), (Param::Hidden, 3)] {
        let mut seen: Vec<String> = trials.iter().map(|t| t.get(param).unwrap().to_string()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "{param}: {seen:?}");
    }
    // Four significant digits: 0.01235, not 0.012345678.
    for x in floats(&trials, Param::Lr) {
        assert_eq!(format!("{:.3e}", x).parse::<f64>().unwrap(), x);
    }
}

#[test]
fn log_uniform_draws_are_uniform_in_log_space() {
    // Four decades, 4,000 draws: 1,000 expected in each (standard deviation 27).
    let trials = space(&["lr=loguniform(1e-4,1)"]).sample(4000, 11);
    let mut decades = [0usize; 4];
    for x in floats(&trials, Param::Lr) {
        decades[((x.log10() + 4.0).floor() as usize).min(3)] += 1;
    }
    assert!(decades.iter().all(|&n| (850..=1150).contains(&n)), "per decade: {decades:?}");
    // A uniform draw over the same range puts nine in ten in the last decade.
    let uniform = floats(&space(&["lr=uniform(1e-4,1)"]).sample(4000, 11), Param::Lr);
    assert!(uniform.iter().filter(|&&x| x >= 0.1).count() > 3400);
}

#[test]
fn the_same_seed_gives_the_same_trials_bit_for_bit_on_any_machine() {
    let s = space(&["lr=loguniform(1e-3,0.3)", "dropout=uniform(0,0.4)", "batch-size=choice(64,128,256)"]);
    let bits = |trials: &[Trial]| -> Vec<u64> {
        floats(trials, Param::Lr).into_iter().chain(floats(trials, Param::Dropout)).map(f64::to_bits).collect()
    };
    assert_eq!(bits(&s.sample(50, 7)), bits(&s.sample(50, 7)));
    assert_eq!(s.sample(50, 7), s.sample(50, 7));
    assert_ne!(s.sample(5, 7), s.sample(5, 8), "different seeds differ");
    assert_eq!(s.sample(10, 7)[..3], s.sample(3, 7)[..], "a longer search starts with the shorter one's trials");
    // Pinned: these are the trials of seed 7 on every machine (the engine's own generator, and
    // a logarithm and exponential of exactly rounded operations).
    assert_eq!(
        trial_labels(&s.sample(3, 7)),
        ["lr=0.1442 dropout=0.3154 bs=128", "lr=0.007359 dropout=0.3163 bs=256", "lr=0.08781 dropout=0.2959 bs=128"]
    );
}

#[test]
fn a_repeated_point_gets_its_number_in_its_name() {
    let trials = space(&["batch-size=choice(64,128)"]).sample(6, 3);
    let labels = trial_labels(&trials);
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{labels:?}");
}

/// `engine sweep ARGS` against an empty store, with no data: every refusal happens before any
/// data is needed.
fn refused(args: &[&str], dir: &Path) -> String {
    let mut full = vec!["sweep"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", "/nonexistent"]);
    let output = engine(&full, &dir.join("store"), None);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    stderr(&output)
}

#[test]
fn bad_search_flags_exit_2_naming_the_flag() {
    let dir = empty_dir("search-usage");
    fn with<'a>(more: &[&'a str]) -> Vec<&'a str> {
        ["--search", "random", "--trials", "2"].into_iter().chain(more.iter().copied()).collect()
    }
    for (args, says) in [
        (with(&["--space", "lr=gaussian(0,1)"]), "--space 'lr=gaussian(0,1)': unknown distribution 'gaussian'"),
        (with(&["--space", "speed=uniform(0,1)"]), "--space 'speed=uniform(0,1)': unknown parameter 'speed'"),
        (
            with(&["--space", "dropout=uniform(0.2,0.2)"]),
            "--space 'dropout=uniform(0.2,0.2)': dropout: the range is empty",
        ),
        (
            with(&["--space", "lr=loguniform(0.3,0.001)"]),
            "--space 'lr=loguniform(0.3,0.001)': lr: low 0.3 > high 0.001",
        ),
        (with(&["--space", "lr=loguniform(0,0.3)"]), "--space 'lr=loguniform(0,0.3)': lr: a log range needs 0 < low"),
        (with(&["--space", "weight-decay=loguniform(-1,0.3)"]), "a log range needs 0 < low"),
        (with(&["--space", "dropout=uniform(0,1.5)"]), "--space 'dropout=uniform(0,1.5)': --dropout must be in [0, 1)"),
        (
            with(&["--space", "lr=uniform(0.1,1)", "--space", "lr=choice(1)"]),
            "--space 'lr=choice(1)': lr is given twice",
        ),
        (with(&["--space", "lr=uniform(0.1,1)", "--lr", "0.1,0.2"]), "--lr lists 2 values"),
        (with(&["--model", "cnn", "--space", "hidden=choice(64|128)"]), "--space: hidden sets the MLP's layers"),
        (vec!["--search", "random", "--space", "lr=uniform(0.1,1)", "--trials", "0"], "--trials"),
        (vec!["--search", "random", "--space", "lr=uniform(0.1,1)"], "--search random needs --trials"),
        (vec!["--search", "random", "--trials", "3"], "--search random needs a space"),
        (vec!["--trials", "3"], "--trials is for --search random"),
        (vec!["--search", "grid", "--trials", "3"], "--trials is for --search random"),
        (vec!["--space", "lr=uniform(0.1,1)"], "--space is for --search random"),
        (vec!["--space-file", "space.json"], "--space-file is for --search random"),
        (vec!["--search-seed", "3", "--lr", "0.1,0.01"], "--search-seed is for --search random"),
        (vec!["--search", "bayes"], "--search"),
    ] {
        let message = refused(&args, &dir);
        assert!(message.contains(says), "{args:?}: {message}");
    }
    for (name, text, says) in [
        ("broken.json", "{\"lr\": ", "not valid JSON"),
        ("list.json", "[\"lr=uniform(0,1)\"]", "expected an object"),
        ("number.json", r#"{"lr": 3}"#, "lr: expected"),
        ("unknown.json", r#"{"speed": {"uniform": [0, 1]}}"#, "unknown parameter 'speed'"),
        ("reversed.json", r#"{"lr": {"loguniform": [0.3, 0.001]}}"#, "lr: low 0.3 > high 0.001"),
        ("domain.json", r#"{"dropout": {"uniform": [0, 2]}}"#, "--dropout must be in [0, 1)"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let message = refused(&with(&["--space-file", path.to_str().unwrap()]), &dir);
        let flag = format!("--space-file {}: ", path.display());
        assert!(message.contains(&flag) && message.contains(says), "{name}: {message}");
    }
    let missing = dir.join("missing.json");
    let message = refused(&with(&["--space-file", missing.to_str().unwrap()]), &dir);
    assert!(message.contains(&format!("--space-file {}: cannot read it", missing.display())), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

const SPACE: [&str; 6] = [
    "--space",
    "lr=loguniform(1e-3,0.3)",
    "--space",
    "dropout=uniform(0,0.4)",
    "--space",
    "batch-size=choice(64,128,256)",
];

#[test]
fn a_random_search_trains_its_trials_as_children_of_one_parent() {
    let dir = empty_dir("search-e2e");
    let store = dir.join("store");
    let tiny = ["--epochs", "1", "--train-limit", "500", "--hidden", "8", "--no-system-metrics"];
    let mut args = vec!["sweep", "--search", "random", "--trials", "3", "--search-seed", "7", "--json"];
    args.extend(SPACE);
    args.extend(tiny);
    let out = dir.join("out");
    args.extend(["--run-name", "random-search", "--output-dir", out.to_str().unwrap()]);
    let summary = json_line(&engine(&args, &store, None));
    let parent_id = summary["parent_run_id"].as_str().unwrap().to_string();
    assert_eq!(summary["status"], "FINISHED");

    let runs = LocalStore::open(&store).unwrap().list_runs(Some("fashion-mnist")).unwrap();
    let parent = runs.iter().find(|r| r.run_id == parent_id).expect("the parent run");
    let param = |key: &str| parent.params.get(key).map(String::as_str);
    assert_eq!(param("search_strategy"), Some("random"));
    assert_eq!(param("search_trials"), Some("3"));
    assert_eq!(param("search_seed"), Some("7"));
    assert_eq!(
        param("search_space"),
        Some("lr=loguniform(0.001,0.3) dropout=uniform(0,0.4) batch-size=choice(64,128,256)")
    );
    assert_eq!(param("learning_rate"), None, "what the trials vary is not a shared setting");
    assert_eq!(param("hidden"), Some("8"));
    let artifact = std::fs::read_to_string(parent.dir.join("artifacts/search_space.json")).expect("search_space.json");
    let mut logged = SearchSpace::default();
    logged.add_json(&artifact).unwrap();
    let expected = space(&SPACE.iter().skip(1).step_by(2).copied().collect::<Vec<_>>());
    assert_eq!(logged, expected);

    // The children are the trials the library draws from seed 7, with their numbers as params.
    let trials = expected.sample(3, 7);
    let labels = trial_labels(&trials);
    let children: Vec<_> = runs.iter().filter(|r| r.tags.get("mlflow.parentRunId") == Some(&parent_id)).collect();
    assert_eq!(children.len(), 3);
    for (trial, label) in trials.iter().zip(&labels) {
        let child = children.iter().find(|c| &c.run_name == label).unwrap_or_else(|| panic!("no run {label}"));
        assert_eq!(child.status, RecordStatus::Finished);
        let got = |key: &str| child.params[key].parse::<f64>().unwrap();
        assert_eq!(got("learning_rate"), floats(std::slice::from_ref(trial), Param::Lr)[0]);
        assert_eq!(got("dropout"), floats(std::slice::from_ref(trial), Param::Dropout)[0]);
        assert_eq!(child.params["batch_size"], trial.get(Param::BatchSize).unwrap().to_string());
        assert_eq!(child.params["hidden"], "8");
    }

    // A plan of the same search holds the same points, for --index to run anywhere.
    let plan = dir.join("plan.json");
    let mut args =
        vec!["sweep", "--search", "random", "--trials", "3", "--search-seed", "7", "--plan", plan.to_str().unwrap()];
    args.extend(SPACE);
    args.extend(tiny);
    let output = engine(&args, &store, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    let planned: Vec<(&str, f64)> = plan["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["label"].as_str().unwrap(), p["config"]["lr"].as_f64().unwrap()))
        .collect();
    let drawn: Vec<(&str, f64)> = labels.iter().map(String::as_str).zip(floats(&trials, Param::Lr)).collect();
    assert_eq!(planned, drawn);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_random_search_trains_each_trial_its_drawn_epochs() {
    let dir = empty_dir("search-epochs");
    let out = dir.join("out");
    #[rustfmt::skip]
    let args = [
        "sweep", "--search", "random", "--trials", "3", "--search-seed", "2", "--space", "epochs=int(1,3)",
        "--space", "lr=loguniform(1e-3,0.3)", "--train-limit", "300", "--hidden", "8", "--no-system-metrics",
        "--json", "--output-dir", out.to_str().unwrap(),
    ];
    let summary = json_line(&engine(&args, &dir.join("store"), None));
    assert_eq!(summary["status"], "FINISHED");
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let epochs = run["params"]["epochs"].as_str().unwrap();
        let name = run["run_name"].as_str().unwrap();
        assert!(name.contains(&format!("epochs={epochs}")), "{name} trained {epochs} epochs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
