//! A sweep through the library alone, no `engine` process: a plan of two points on an image
//! folder is written, driven rung by rung with its trials trained in this process, and
//! summarized; the children are nested under the parent, trained on the folder, and the parent
//! ends FINISHED with the best run named.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use engine::data::{DataFlags, DataSource};
use engine::experiment::sweep::{self, Plan, PlannedPoint, SWEEP_TAG, SweepEvent};
use engine::experiment::{Bench, ExperimentError};
use engine::search::schedule::Schedule;
use engine::tracking::{self, LocalStore, RecordStatus, RunStatus, TrackingConfig};
use engine::train::TrainConfig;
use image::{GrayImage, Luma};

/// `dir/<class>/<i>.png`: a bright left half, top half or neither, 12x10.
fn folder(dir: &Path) {
    for (class, name) in ["left", "top", "dark"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..12u32 {
            let image = GrayImage::from_fn(12, 10, |x, y| {
                let bright = (class == 0 && x < 6) || (class == 1 && y < 5);
                Luma([if bright { 200 + (i % 7) as u8 } else { 30 + ((x + y + i) % 9) as u8 }])
            });
            image.save(dir.join(name).join(format!("{i}.png"))).unwrap();
        }
    }
}

/// A plan of `configs` on `data`, its parent started in the store `tracking` names.
fn plan(tracking: &TrackingConfig, data: DataSource, configs: &[(&str, TrainConfig)]) -> Plan {
    let mut parent = tracking::open(tracking).unwrap();
    let parent_run_id = parent.start_run(&[], &[(SWEEP_TAG.to_string(), "true".to_string())]).unwrap();
    parent.flush().unwrap();
    Plan {
        parent_run_id,
        parent_name: "library-sweep".into(),
        tracking_uri: None,
        experiment: tracking.experiment.clone(),
        device: "cpu".into(),
        data,
        output_dir: None,
        tags: Vec::new(),
        system_metrics_seconds: None,
        tolerance: 0.0,
        points: configs
            .iter()
            .map(|(label, config)| PlannedPoint { label: label.to_string(), config: config.clone() })
            .collect(),
        schedule: Schedule::single(configs.len(), 1),
        checkpoint_dir: None,
    }
}

#[test]
fn a_plan_on_a_folder_is_driven_and_summarized_through_the_library() {
    let dir = std::env::temp_dir().join(format!("engine-sweep-library-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    folder(&dir.join("images"));
    // SAFETY: this binary's only test sets the variable before any thread reads the environment;
    // a plan's runs are tracked in the local store of the machine that runs them, named by it.
    unsafe { std::env::set_var("ENGINE_LOCAL_STORE", dir.join("store")) };
    let flags = DataFlags { no_cache: true, ..DataFlags::default() };
    let data = DataSource::parse(&format!("folder:{}", dir.join("images").display()), &flags).unwrap();
    let base = TrainConfig { epochs: 1, hidden: vec![8], batch_size: 8, ..TrainConfig::default() };
    let configs = [("lr=0.05", base.clone()), ("lr=0.01", TrainConfig { lr: 0.01, ..base })];
    let tracking = TrackingConfig::from_env(None, Some("library".into()), None);
    let mut plan = plan(&tracking, data.clone(), &configs);
    let path = dir.join("plan.json");
    plan.write(&path).unwrap();
    let plan_read = Plan::read(&path).unwrap();
    assert_eq!(plan_read.data, data);

    let bench = Bench::load(engine::Device::Cpu, "cpu".into(), data).unwrap();
    let cancel = AtomicBool::new(false);
    let mut started = Vec::new();
    let mut train = |plan: &Plan, trials: &[usize]| {
        let mut observe = |event: SweepEvent| {
            if let SweepEvent::Trial { label, .. } = event {
                started.push(label.to_string());
            }
        };
        Ok::<_, ExperimentError>(sweep::run_trials(plan, &path, &bench, trials, &cancel, &mut observe))
    };
    sweep::drive(&mut plan, &path, &cancel, &mut |_| {}, &mut train).unwrap();
    assert_eq!(started, ["lr=0.05", "lr=0.01"]);

    let summary = sweep::summarize(&plan, &path).unwrap();
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(summary.summaries.len(), 2);
    let store = LocalStore::open(dir.join("store")).unwrap();
    let parent = store.load_run(&plan.parent_run_id).unwrap();
    assert_eq!(parent.status, RecordStatus::Finished);
    let best = parent.tags.get("engine.best_run_id").expect("the best run on the parent");
    let child = store.load_run(best).unwrap();
    assert_eq!(child.tags.get("mlflow.parentRunId"), Some(&plan.parent_run_id));
    assert_eq!(child.inputs[0].dataset.name, "images-train");
    let _ = std::fs::remove_dir_all(&dir);
}
