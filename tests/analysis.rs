//! Comparing runs on crafted numbers, no files or servers: ranking and the cheaper-run
//! recommendation, the evaluation checklist (weakest class, top confusions, the overfitting
//! epoch), and early stopping inside the real training loop restoring the best weights.

use engine::analysis::{
    self, AnalysisInputs, ClassScore, ConfusionCounts, Direction, RunSummary, Verdict, class_scores_from_json,
};
use engine::data::{Dataset, IMAGE_PIXELS, InputContract, Normalization};
use engine::rng::Rng;
use engine::train::{self, LrSchedule, OptimizerKind, TrainConfig};
use engine::{Device, data};

fn run(id: &str, accuracy: f64, seconds: f64, parameters: f64) -> RunSummary {
    let mut r = RunSummary { run_id: id.repeat(32 / id.len()), run_name: format!("run-{id}"), ..Default::default() };
    for (k, v) in [
        ("test_accuracy", accuracy),
        ("test_loss", 1.5 - accuracy),
        ("train_seconds", seconds),
        ("parameter_count", parameters),
    ] {
        r.metrics.insert(k.into(), v);
    }
    r
}

fn curve(values: &[f64]) -> Vec<(i64, f64)> {
    values.iter().enumerate().map(|(i, v)| (i as i64 + 1, *v)).collect()
}

#[test]
fn compare_ranks_by_the_metric_and_recommends_the_cheapest_within_tolerance() {
    let runs = vec![
        run("a", 0.8800, 30.0, 669_706.0),
        run("b", 0.8870, 90.0, 669_706.0), // the best
        run("c", 0.8840, 12.0, 203_530.0), // within 0.005 of b and the cheapest such
        run("d", 0.8500, 2.0, 25_450.0),   // cheapest overall, but 0.037 behind
    ];
    let ranking = analysis::rank(&runs, "test_accuracy", Direction::for_metric("test_accuracy"), 0.005);
    assert_eq!(ranking.order, [1, 2, 0, 3]);
    assert_eq!(ranking.best, Some(1));
    let rec = ranking.recommended.expect("a recommendation");
    assert_eq!(rec.index, 2);
    assert!(rec.reason.contains("12.0 s of training instead of 90.0 s"), "{}", rec.reason);

    // test_loss is minimised by default: the same order.
    let by_loss = analysis::rank(&runs, "test_loss", Direction::for_metric("test_loss"), 0.005);
    assert_eq!(by_loss.order, [1, 2, 0, 3]);
    // Forcing max on the loss turns it round.
    assert_eq!(analysis::rank(&runs, "test_loss", Direction::Max, 0.0).order, [3, 0, 2, 1]);
}

fn scores() -> Vec<ClassScore> {
    let report = serde_json::json!({
        "T-shirt/top": {"precision": 0.80, "recall": 0.85, "f1-score": 0.82, "support": 1000.0},
        "Trouser": {"precision": 0.98, "recall": 0.97, "f1-score": 0.975, "support": 1000.0},
        "Shirt": {"precision": 0.65, "recall": 0.60, "f1-score": 0.62, "support": 1000.0},
        "accuracy": 0.8,
        "macro avg": {"precision": 0.81, "recall": 0.81, "f1-score": 0.805, "support": 3000.0},
        "weighted avg": {"precision": 0.81, "recall": 0.81, "f1-score": 0.805, "support": 3000.0}
    });
    class_scores_from_json(&report).unwrap()
}

fn confusion() -> ConfusionCounts {
    ConfusionCounts {
        class_names: vec!["T-shirt/top".into(), "Trouser".into(), "Shirt".into()],
        counts: vec![vec![850, 10, 140], vec![20, 970, 10], vec![300, 100, 600]],
    }
}

#[test]
fn analyze_names_the_weakest_class_the_top_confusions_and_the_overfitting_epoch() {
    let mut this = run("a", 0.8050, 40.0, 669_706.0);
    this.train_loss = curve(&[0.9, 0.6, 0.5, 0.4, 0.3, 0.2]);
    this.val_loss = curve(&[0.8, 0.6, 0.55, 0.58, 0.62, 0.7]); // lowest at 3, rising 4..6
    let cheaper = run("b", 0.8020, 10.0, 25_450.0);
    let better = run("c", 0.8200, 80.0, 669_706.0);
    let experiment = vec![this.clone(), cheaper.clone(), better.clone()];
    let (scores, confusion) = (scores(), confusion());
    let result = analysis::analyze(&AnalysisInputs {
        run: &this,
        experiment: &experiment,
        class_scores: Some(&scores),
        confusion: Some(&confusion),
        baseline: 0.85,
        tolerance: 0.005,
        overfit_epochs: 2,
    });

    assert_eq!(result.weakest_class.as_ref().unwrap().name, "Shirt");
    let confusions: Vec<String> = result.top_confusions.iter().map(ToString::to_string).collect();
    assert_eq!(
        confusions,
        [
            "Shirt predicted as T-shirt/top: 300",
            "T-shirt/top predicted as Shirt: 140",
            "Shirt predicted as Trouser: 100"
        ]
    );
    let overfit = result.overfitting.as_ref().expect("validation loss rose for 3 epochs");
    assert_eq!((overfit.best_epoch, overfit.rising_epochs), (3, 3));
    assert_eq!(result.cheaper_runs, vec![cheaper.run_id.as_str()]);

    let verdicts: Vec<Verdict> = result.items.iter().map(|i| i.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Good,    // beats 1/3 (three classes)
            Verdict::Concern, // below the 85% baseline
            Verdict::Concern, // c is better
            Verdict::Concern, // c has the lower test loss
            Verdict::Info,    // the gap
            Verdict::Concern, // overfitting
            Verdict::Concern, // F1 spread 0.355
            Verdict::Info,    // confusions
            Verdict::Concern, // b is cheaper and within 0.005
        ]
    );
    let md = result.to_markdown();
    for needle in [
        "Does test accuracy beat random guessing (33%)?",
        "80.50% (-4.50 points)",
        "2nd of 3 runs",
        "Yes, from epoch 4: validation loss rose for the last 3 epochs (from 0.5500 at epoch 3 to 0.7000 at epoch 6)",
        "Shirt has the lowest F1 (0.6200",
        "Not balanced",
        "Shirt predicted as T-shirt/top: 300; T-shirt/top predicted as Shirt: 140; Shirt predicted as Trouser: 100.",
        "At epoch 6: validation 0.7000, training 0.2000, gap +0.5000",
        "bbbbbbbb (run-b) reaches 0.8020 with 10.0 s of training, 25,450 parameters",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }

    // The best run of the experiment, with nothing cheaper nearby and no rising curve.
    let result = analysis::analyze(&AnalysisInputs {
        run: &better,
        experiment: &experiment,
        class_scores: None,
        confusion: None,
        baseline: 0.85,
        tolerance: 0.005,
        overfit_epochs: 2,
    });
    let verdicts: Vec<Verdict> = result.items.iter().map(|i| i.verdict).collect();
    assert_eq!(&verdicts[..4], [Verdict::Good, Verdict::Concern, Verdict::Good, Verdict::Good]);
    assert_eq!(verdicts[6], Verdict::Unknown, "no classification report");
    assert_eq!(verdicts[8], Verdict::Good);
}

/// 400 images of noise with random labels: a network can only memorise them, so validation
/// loss rises after the first epochs while training loss falls.
fn noise(n: usize) -> Dataset {
    let mut rng = Rng::new(7);
    Dataset {
        pixels: (0..n * IMAGE_PIXELS).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|_| rng.below(10) as u8).collect(),
    }
}

fn config(patience: Option<usize>) -> TrainConfig {
    TrainConfig {
        epochs: 25,
        batch_size: 20,
        lr: 0.05,
        optimizer: OptimizerKind::Sgd,
        momentum: 0.9,
        weight_decay: 0.0,
        dropout: 0.0,
        lr_schedule: LrSchedule::Constant,
        normalize: Normalization::Unit,
        model: engine::nn::Architecture::Mlp,
        hidden: vec![64],
        seed: 3,
        val_split: 0.5,
        train_limit: None,
        early_stop_patience: patience,
    }
}

#[test]
fn early_stopping_stops_after_patience_and_restores_the_best_weights() {
    let data = noise(400);
    let trained =
        train::fit(&config(Some(2)), &data, &InputContract::fashion_mnist(), &Device::Cpu, &mut |_| Ok(())).unwrap();
    let (best, stopped) = (trained.best_epoch.unwrap(), trained.stopped_epoch.unwrap());
    assert!(stopped < 25, "validation loss on noise must stop improving; stopped at {stopped}");
    assert_eq!(stopped, best + 2, "two epochs without improvement after the best");
    assert_eq!(trained.history.len(), stopped);
    let val: Vec<f64> = trained.history.iter().map(|m| m.val_loss.unwrap()).collect();
    let lowest = val.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(val[best - 1], lowest, "best_epoch is the lowest validation loss: {val:?}");

    // The model has the best epoch's weights: its validation loss is that epoch's, exactly.
    let mut rng = Rng::new(3);
    let (_, val_idx) = data::split_indices(400, 0.5, rng.next_u64());
    let eval = train::evaluate(
        &trained.model,
        &data,
        &val_idx,
        (&InputContract::fashion_mnist(), Normalization::Unit),
        1000,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(eval.loss, val[best - 1], "restored weights give the best epoch's validation loss");
    assert_ne!(eval.loss, val[stopped - 1]);

    // Without patience every epoch runs and nothing is restored.
    let mut full = config(None);
    full.epochs = stopped + 1;
    let trained = train::fit(&full, &data, &InputContract::fashion_mnist(), &Device::Cpu, &mut |_| Ok(())).unwrap();
    assert_eq!((trained.best_epoch, trained.stopped_epoch, trained.history.len()), (None, None, stopped + 1));
}

#[test]
fn early_stopping_needs_a_validation_set() {
    let mut c = config(Some(2));
    c.val_split = 0.0;
    assert!(c.validate().unwrap_err().contains("--early-stop-patience"));
    assert!(config(Some(0)).validate().unwrap_err().contains("--early-stop-patience"));
    assert!(config(Some(1)).validate().is_ok());
    assert!(config(Some(2)).params().contains(&("early_stop_patience".to_string(), "2".to_string())));
    assert!(!config(None).params().iter().any(|(k, _)| k == "early_stop_patience"));
}
