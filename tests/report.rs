//! Tests of `engine::report`: numbers against scikit-learn fixtures, pictures by decoding them,
//! and bad input.

use std::path::{Path, PathBuf};

use engine::report::{
    CLASS_NAMES, ClassificationReport, ConfusionMatrix, EpochPoint, EvaluationInputs, ImageShape, Predictions, Rect,
    ReportError, confusion_matrix_layout, confusion_matrix_normalized_png, confusion_matrix_png,
    misclassified_images_png, misclassified_layout, misclassified_layout_for, misclassified_png, training_curves_png,
    write_evaluation_reports,
};
use image::RgbImage;
use serde_json::Value;

const FIXTURES: [&str; 5] =
    ["class_never_predicted", "class_without_samples", "perfect", "realistic_10k", "tiny_imbalanced"];

struct Fixture {
    name: &'static str,
    y_true: Vec<u8>,
    y_pred: Vec<u8>,
    class_names: Vec<String>,
    report: Value,
    text: String,
    matrix: Vec<Vec<u64>>,
}

fn load(name: &'static str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report").join(format!("{name}.json"));
    let raw = std::fs::read_to_string(&path).expect("fixture readable");
    let v: Value = serde_json::from_str(&raw).expect("fixture is JSON");
    let labels = |key: &str| -> Vec<u8> {
        v[key].as_array().expect("label array").iter().map(|x| x.as_u64().expect("integer label") as u8).collect()
    };
    Fixture {
        name,
        y_true: labels("y_true"),
        y_pred: labels("y_pred"),
        class_names: serde_json::from_value(v["class_names"].clone()).expect("names"),
        report: v["classification_report"].clone(),
        text: v["classification_report_text"].as_str().expect("text").to_string(),
        matrix: serde_json::from_value(v["confusion_matrix"].clone()).expect("matrix"),
    }
}

fn names(f: &Fixture) -> Vec<&str> {
    f.class_names.iter().map(String::as_str).collect()
}

fn report_of(f: &Fixture) -> ClassificationReport {
    ClassificationReport::new(&f.y_true, &f.y_pred, &names(f)).expect("report")
}

/// Same keys in the same order, numbers equal to 1e-12, recursively.
fn assert_same_json(ours: &Value, theirs: &Value, at: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            assert_eq!(ka, kb, "key order at {at}");
            for (k, va) in a {
                assert_same_json(va, &b[k], &format!("{at}/{k}"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-12, "{at}: ours {a}, sklearn {b}");
        }
        _ => panic!("{at}: ours {ours}, sklearn {theirs}: different kinds"),
    }
}

#[test]
fn fixtures_cover_the_edge_cases() {
    // The comparison tests below only mean something if the fixtures are the intended ones.
    for name in FIXTURES {
        let f = load(name);
        assert_eq!(f.y_true.len(), f.y_pred.len(), "{name}");
        assert_eq!(names(&f), CLASS_NAMES, "{name}");
    }
}

#[test]
fn report_numbers_and_key_order_match_sklearn() {
    for name in FIXTURES {
        let f = load(name);
        let ours = report_of(&f).to_json();
        assert_same_json(&ours, &f.report, f.name);
        // Supports are floats in sklearn's dict; ours must serialise the same way.
        assert!(ours["Coat"]["support"].is_f64(), "{name}: support is a float");
        assert!(ours["accuracy"].is_number(), "{name}: accuracy is a plain number");
    }
}

#[test]
fn report_text_matches_sklearn_exactly() {
    for name in FIXTURES {
        let f = load(name);
        assert_eq!(report_of(&f).render_text(), f.text, "{name}");
    }
}

#[test]
fn accessors_agree_with_sklearn() {
    for name in FIXTURES {
        let f = load(name);
        let r = report_of(&f);
        let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() <= 1e-12;
        assert!(close(r.accuracy(), &f.report["accuracy"]), "{name}");
        assert!(close(r.macro_f1(), &f.report["macro avg"]["f1-score"]), "{name}");
        assert!(close(r.weighted_f1(), &f.report["weighted avg"]["f1-score"]), "{name}");
        assert_eq!(r.f1_scores().len(), 10);
        for (k, class) in CLASS_NAMES.iter().enumerate() {
            assert!(close(r.f1_scores()[k], &f.report[*class]["f1-score"]), "{name} {class}");
        }
    }
}

#[test]
fn confusion_matrix_matches_sklearn() {
    for name in FIXTURES {
        let f = load(name);
        let cm = ConfusionMatrix::new(&f.y_true, &f.y_pred, 10).expect("matrix");
        assert_eq!(cm.counts(), f.matrix.as_slice(), "{name}");
        assert_eq!(cm.total(), f.y_true.len() as u64);
        assert_eq!(cm.class_names(), (0..10).map(|i| i.to_string()).collect::<Vec<_>>(), "unnamed: indices");
        let json = cm.with_class_names(&CLASS_NAMES).unwrap().to_json();
        assert_eq!(json["class_names"], serde_json::json!(CLASS_NAMES));
        assert_eq!(json["counts"], serde_json::json!(f.matrix));
    }
}

#[test]
fn normalized_rows_sum_to_one_or_zero() {
    let f = load("class_without_samples");
    let cm = ConfusionMatrix::new(&f.y_true, &f.y_pred, 10).unwrap();
    let rows = cm.normalized_rows();
    for (k, row) in rows.iter().enumerate() {
        let sum: f64 = row.iter().sum();
        let expected = if cm.counts()[k].iter().sum::<u64>() == 0 { 0.0 } else { 1.0 };
        assert!((sum - expected).abs() < 1e-12, "row {k}: {sum}");
    }
}

#[test]
fn bad_labels_are_errors() {
    let ok = [0u8, 1, 2];
    assert!(matches!(ClassificationReport::new(&ok, &[0, 1], &CLASS_NAMES), Err(ReportError::LengthMismatch { .. })));
    assert!(matches!(
        ClassificationReport::new(&[0, 10, 1], &ok, &CLASS_NAMES),
        Err(ReportError::LabelOutOfRange { which: "y_true", index: 1, label: 10, .. })
    ));
    assert!(matches!(
        ClassificationReport::new(&ok, &[0, 1, 255], &CLASS_NAMES),
        Err(ReportError::LabelOutOfRange { which: "y_pred", .. })
    ));
    assert!(matches!(ClassificationReport::new(&[], &[], &CLASS_NAMES), Err(ReportError::Empty { .. })));
    assert!(matches!(ConfusionMatrix::new(&ok, &ok, 2), Err(ReportError::LabelOutOfRange { .. })));
    assert!(matches!(ConfusionMatrix::new(&[], &[], 10), Err(ReportError::Empty { .. })));
    assert!(matches!(ConfusionMatrix::new(&ok, &ok[..1], 10), Err(ReportError::LengthMismatch { .. })));
}

fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn decode(path: &Path) -> RgbImage {
    image::open(path).expect("a decodable PNG").to_rgb8()
}

fn luma(p: &image::Rgb<u8>) -> f64 {
    0.2126 * f64::from(p.0[0]) + 0.7152 * f64::from(p.0[1]) + 0.0722 * f64::from(p.0[2])
}

/// Number of pixels in `r` darker than mid-grey: text and lines drawn in ink.
fn dark_pixels(img: &RgbImage, r: Rect) -> usize {
    (r.y..r.y + r.h)
        .flat_map(|y| (r.x..r.x + r.w).map(move |x| (x, y)))
        .filter(|&(x, y)| luma(img.get_pixel(x, y)) < 100.0)
        .count()
}

fn bright_pixels(img: &RgbImage, r: Rect) -> usize {
    (r.y..r.y + r.h)
        .flat_map(|y| (r.x..r.x + r.w).map(move |x| (x, y)))
        .filter(|&(x, y)| luma(img.get_pixel(x, y)) > 230.0)
        .count()
}

fn inner(r: Rect, pad: u32) -> Rect {
    Rect { x: r.x + pad, y: r.y + pad, w: r.w - 2 * pad, h: r.h - 2 * pad }
}

#[test]
fn confusion_matrix_png_draws_cells_labels_and_counts() {
    let f = load("realistic_10k");
    let cm = ConfusionMatrix::new(&f.y_true, &f.y_pred, 10).unwrap().with_class_names(&CLASS_NAMES).unwrap();
    let dir = out_dir("cm");
    let path = dir.join("confusion_matrix.png");
    confusion_matrix_png(&cm, &path).unwrap();
    let img = decode(&path);
    let l = confusion_matrix_layout(&CLASS_NAMES).unwrap();
    assert_eq!(img.dimensions(), (l.width, l.height));

    // Pick the largest cell and a zero cell; their backgrounds (a corner) must differ.
    let counts = cm.counts();
    let (mut big, mut zero) = ((0, 0), None);
    for r in 0..10 {
        for c in 0..10 {
            if counts[r][c] > counts[big.0][big.1] {
                big = (r, c);
            }
            if counts[r][c] == 0 {
                zero = Some((r, c));
            }
        }
    }
    let zero = zero.expect("the fixture has an empty cell");
    let corner = |(r, c): (usize, usize)| {
        let cell = l.cell_rect(r, c);
        *img.get_pixel(cell.x + 3, cell.y + 3)
    };
    let (dark_bg, light_bg) = (corner(big), corner(zero));
    assert!(luma(&dark_bg) < 100.0, "the largest count is a dark cell: {dark_bg:?}");
    assert!(luma(&light_bg) > 230.0, "a zero count is a light cell: {light_bg:?}");

    // Counts are written in a colour readable on the cell: white on dark, dark on light.
    let big_cell = inner(l.cell_rect(big.0, big.1), 6);
    let zero_cell = inner(l.cell_rect(zero.0, zero.1), 6);
    assert!(bright_pixels(&img, big_cell) > 20, "white digits on the dark cell");
    assert!(dark_pixels(&img, zero_cell) > 10, "dark digit on the light cell");

    for (what, r) in [
        ("title", l.title),
        ("class names left", l.y_tick_labels),
        ("class names below", l.x_tick_labels),
        ("True label", l.y_axis_title),
        ("Predicted label", l.x_axis_title),
        ("colour bar labels", l.colorbar_labels),
    ] {
        assert!(dark_pixels(&img, r) > 50, "{what} has text");
    }
    // The colour bar runs from dark (top) to light (bottom).
    let bar = l.colorbar;
    let top = img.get_pixel(bar.x + bar.w / 2, bar.y + 3);
    let bottom = img.get_pixel(bar.x + bar.w / 2, bar.y + bar.h - 4);
    assert!(luma(top) + 100.0 < luma(bottom));
    // Every class name lies inside the picture and outside the grid (nothing overlaps).
    assert!(l.y_tick_labels.x + l.y_tick_labels.w <= l.grid.x);
    assert!(l.x_tick_labels.y >= l.grid.y + l.grid.h);
    assert!(l.x_axis_title.y >= l.x_tick_labels.y + l.x_tick_labels.h);
    assert!(l.colorbar_labels.x + l.colorbar_labels.w <= l.width);
}

#[test]
fn normalized_confusion_matrix_png_is_written() {
    let f = load("tiny_imbalanced");
    let cm = ConfusionMatrix::new(&f.y_true, &f.y_pred, 10).unwrap().with_class_names(&CLASS_NAMES).unwrap();
    let path = out_dir("cm-norm").join("confusion_matrix_normalized.png");
    confusion_matrix_normalized_png(&cm, &path).unwrap();
    let img = decode(&path);
    let l = confusion_matrix_layout(&CLASS_NAMES).unwrap();
    assert_eq!(img.dimensions(), (l.width, l.height));
    // Row "Dress" is all correct: its diagonal (1.00) is dark, its off-diagonal (0.00) light.
    let diag = l.cell_rect(3, 3);
    let off = l.cell_rect(3, 4);
    assert!(luma(img.get_pixel(diag.x + 3, diag.y + 3)) < 100.0);
    assert!(luma(img.get_pixel(off.x + 3, off.y + 3)) > 230.0);
}

#[test]
fn confusion_matrix_rejects_wrong_class_name_count_and_knows_its_accuracy() {
    let cm = ConfusionMatrix::new(&[0, 1, 2, 2], &[1, 1, 2, 0], 10).unwrap();
    assert!(matches!(cm.clone().with_class_names(&CLASS_NAMES[..9]), Err(ReportError::LengthMismatch { .. })));
    assert_eq!(cm.accuracy(), 0.5);
}

/// `n` synthetic 28x28 images; image `i` is filled with grey level `10 + 7 * (i % 35)` so
/// that it can be recognised in the picture, with a white bar to look like something.
fn synthetic_images(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 784);
    for i in 0..n {
        let level = grey_of(i);
        for y in 0..28 {
            for x in 0..28 {
                out.push(if (10..18).contains(&x) && y > 4 { 255 } else { level });
            }
        }
    }
    out
}

fn grey_of(i: usize) -> u8 {
    10 + 7 * (i % 35) as u8
}

#[test]
fn misclassified_png_shows_most_confident_mistakes_first() {
    // 40 samples; every odd one is wrong (20 mistakes) with probability rising with i.
    let n = 40;
    let y_true: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let y_pred: Vec<u8> = (0..n).map(|i| if i % 2 == 1 { ((i + 3) % 10) as u8 } else { (i % 10) as u8 }).collect();
    let prob: Vec<f32> = (0..n).map(|i| 0.3 + 0.017 * i as f32).collect();
    let images = synthetic_images(n);
    let path = out_dir("mis").join("misclassified_examples.png");
    misclassified_png(&images, &y_true, &y_pred, &prob, &CLASS_NAMES, &path).unwrap();
    let img = decode(&path);
    let l = misclassified_layout(20);
    assert_eq!(img.dimensions(), (l.width, l.height));
    assert_eq!(l.images.len(), 20);
    // Tile k shows the k-th most confident mistake: sample 39, then 37, 35, ...
    for (k, r) in l.images.iter().enumerate() {
        let sample = 39 - 2 * k;
        let p = img.get_pixel(r.x + 2, r.y + 2);
        assert_eq!(p.0, [grey_of(sample); 3], "tile {k} shows sample {sample}");
        // Upscaled: the 28-pixel image covers 140 pixels, the white bar included.
        assert_eq!(r.w, 140);
        assert_eq!(img.get_pixel(r.x + 12 * 5, r.y + 20 * 5).0, [255; 3]);
    }
    for (k, c) in l.captions.iter().enumerate() {
        assert!(dark_pixels(&img, *c) > 100, "caption {k} has text");
    }
    assert!(dark_pixels(&img, l.title) > 100, "title");
}

#[test]
fn misclassified_png_caps_at_25_and_handles_few_and_none() {
    let n = 60;
    let y_true = vec![0u8; n];
    let all_wrong = vec![1u8; n];
    let prob = vec![0.9f32; n];
    let images = synthetic_images(n);
    let dir = out_dir("mis-count");

    let path = dir.join("many.png");
    misclassified_png(&images, &y_true, &all_wrong, &prob, &CLASS_NAMES, &path).unwrap();
    assert_eq!(decode(&path).height(), misclassified_layout(25).height);
    assert_eq!(misclassified_layout(60), misclassified_layout(25));

    let mut three_wrong = y_true.clone();
    three_wrong[5] = 2;
    three_wrong[17] = 3;
    three_wrong[42] = 9;
    let path = dir.join("three.png");
    misclassified_png(&images, &y_true, &three_wrong, &prob, &CLASS_NAMES, &path).unwrap();
    let img = decode(&path);
    let l = misclassified_layout(3);
    assert_eq!(img.dimensions(), (l.width, l.height));
    // Equal probabilities keep dataset order.
    for (r, sample) in l.images.iter().zip([5, 17, 42]) {
        assert_eq!(img.get_pixel(r.x + 2, r.y + 2).0, [grey_of(sample); 3]);
    }

    let path = dir.join("none.png");
    misclassified_png(&images, &y_true, &y_true, &prob, &CLASS_NAMES, &path).unwrap();
    let img = decode(&path);
    let l = misclassified_layout(0);
    assert_eq!(img.dimensions(), (l.width, l.height));
    assert!(dark_pixels(&img, l.title) > 200, "the picture says there are none");
}

#[test]
fn misclassified_png_rejects_bad_buffers() {
    let dir = out_dir("mis-bad");
    let path = dir.join("x.png");
    let images = synthetic_images(3);
    let (t, p, prob) = ([0u8, 1, 2], [1u8, 1, 2], [0.5f32; 3]);
    let run =
        |images: &[u8], t: &[u8], p: &[u8], prob: &[f32]| misclassified_png(images, t, p, prob, &CLASS_NAMES, &path);
    assert!(matches!(run(&images[..783 * 3], &t, &p, &prob), Err(ReportError::ImageBufferSize { expected: 2352, .. })));
    assert!(matches!(run(&images, &t, &p, &prob[..2]), Err(ReportError::LengthMismatch { what: "prob_of_pred", .. })));
    assert!(matches!(run(&images, &t, &[1, 1, 10], &prob), Err(ReportError::LabelOutOfRange { .. })));
    assert!(matches!(run(&[], &[], &[], &[]), Err(ReportError::Empty { .. })));
    assert!(!path.exists());
}

fn history(n: usize) -> Vec<EpochPoint> {
    (1..=n)
        .map(|e| EpochPoint {
            epoch: e,
            train_loss: 1.2 / e as f64,
            val_loss: 1.0 / e as f64 + 0.1,
            val_accuracy: 0.9 - 0.3 / e as f64,
        })
        .collect()
}

fn count_color(img: &RgbImage, x_range: std::ops::Range<u32>, rgb: [u8; 3]) -> usize {
    img.enumerate_pixels().filter(|(x, _, p)| x_range.contains(x) && p.0 == rgb).count()
}

#[test]
fn training_curves_png_has_both_panels() {
    let dir = out_dir("curves");
    for n in [1, 2, 15] {
        let path = dir.join(format!("curves_{n}.png"));
        training_curves_png(&history(n), &path).unwrap();
        let img = decode(&path);
        let (w, h) = img.dimensions();
        assert_eq!((w, h), (1120, 420));
        let (left, right) = (0..w / 2, w / 2..w);
        assert!(count_color(&img, left.clone(), [31, 119, 180]) > 10, "{n}: train loss");
        assert!(count_color(&img, left.clone(), [230, 110, 0]) > 10, "{n}: val loss");
        assert!(count_color(&img, right.clone(), [34, 139, 34]) > 10, "{n}: accuracy");
        assert_eq!(count_color(&img, right, [31, 119, 180]), 0, "{n}: panels separate");
        // Tick labels left of each plot and the epoch label below it.
        for x0 in [0, w / 2] {
            let y_ticks = Rect { x: x0 + 30, y: 56, w: 55, h: 300 };
            let x_axis = Rect { x: x0 + 90, y: 352, w: 440, h: 68 };
            assert!(dark_pixels(&img, y_ticks) > 50, "{n}: y tick labels at {x0}");
            assert!(dark_pixels(&img, x_axis) > 50, "{n}: x ticks and label at {x0}");
        }
    }
    assert!(matches!(training_curves_png(&[], &dir.join("empty.png")), Err(ReportError::Empty { .. })));
}

#[test]
fn evaluation_reports_are_all_written() {
    let f = load("realistic_10k");
    let n = 300;
    let (y_true, y_pred) = (&f.y_true[..n], &f.y_pred[..n]);
    let prob: Vec<f32> = (0..n).map(|i| (i % 100) as f32 / 100.0).collect();
    let images = synthetic_images(n);
    let dir = out_dir("eval").join("nested");
    let class_names = fashion_names();
    let eval = EvaluationInputs {
        y_true,
        y_pred,
        prob_of_pred: &prob,
        images: &images,
        shape: ImageShape::FASHION_MNIST,
        class_names: &class_names,
    };
    let written = write_evaluation_reports(&dir, &eval).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in
        ["classification_report.json", "confusion_matrix.json", "confusion_matrix.png", "misclassified_examples.png"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    for p in &written {
        assert!(p.is_file(), "{p:?} exists");
    }
    // Nothing else (no temporary files) is left in the directory.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), written.len());
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("classification_report.json")).unwrap()).unwrap();
    let report = ClassificationReport::new(y_true, y_pred, &CLASS_NAMES).unwrap();
    assert_same_json(&json, &report.to_json(), "written report");
    let cm: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("confusion_matrix.json")).unwrap()).unwrap();
    let expected = ConfusionMatrix::new(y_true, y_pred, 10).unwrap();
    assert_eq!(cm["counts"], serde_json::json!(expected.counts()));
}

#[test]
fn evaluation_reports_check_inputs_before_writing() {
    let dir = out_dir("eval-bad");
    let class_names = fashion_names();
    let eval = EvaluationInputs {
        y_true: &[0, 1],
        y_pred: &[0, 1],
        prob_of_pred: &[0.9, 0.8],
        images: &[0; 784],
        shape: ImageShape::FASHION_MNIST,
        class_names: &class_names,
    };
    assert!(matches!(write_evaluation_reports(&dir, &eval), Err(ReportError::ImageBufferSize { .. })));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
}

#[test]
fn io_errors_name_the_path() {
    let dir = out_dir("io");
    let blocker = dir.join("a_file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let target = blocker.join("report.png");
    let cm = ConfusionMatrix::new(&[0, 1], &[0, 1], 10).unwrap();
    let err = confusion_matrix_png(&cm, &target).unwrap_err();
    assert!(matches!(err, ReportError::Io { ref path, .. } if path == &target));
    assert!(err.to_string().contains("a_file"), "{err}");
}

#[test]
fn text_columns_widen_for_long_class_names() {
    // sklearn pads names to the longest one when it is longer than "weighted avg".
    let long = "a class name longer than twelve";
    let r = ClassificationReport::new(&[0, 1, 1], &[0, 0, 1], &[long, "b"]).unwrap();
    let text = r.render_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("{:w$}  precision    recall  f1-score   support", "", w = long.len()));
    assert_eq!(lines[2], format!("{long}     0.5000    1.0000    0.6667         1"));
    assert_eq!(lines[3], format!("{:>w$}     1.0000    0.5000    0.6667         2", "b", w = long.len()));
    assert_eq!(lines[5], format!("{:>w$}                         0.6667         3", "accuracy", w = long.len()));
}

fn fashion_names() -> Vec<String> {
    CLASS_NAMES.iter().map(|s| s.to_string()).collect()
}

/// Fixtures with other class counts, made by `fixtures/report/make_class_count_fixtures.py`.
const CLASS_COUNT_FIXTURES: [(&str, usize); 2] = [("two_classes", 2), ("emnist_47", 47)];

#[test]
fn reports_for_2_and_47_classes_match_sklearn() {
    for (name, n_classes) in CLASS_COUNT_FIXTURES {
        let f = load(name);
        assert_eq!(f.class_names.len(), n_classes, "{name}");
        let report = report_of(&f);
        assert_same_json(&report.to_json(), &f.report, name);
        assert_eq!(report.render_text(), f.text, "{name}");
        // Written through the evaluation entry point, with 2x3 RGB images.
        let shape = ImageShape { channels: 3, height: 2, width: 3 };
        let images = vec![7u8; f.y_true.len() * shape.pixels()];
        let prob = vec![0.5f32; f.y_true.len()];
        let dir = out_dir(name);
        let eval = EvaluationInputs {
            y_true: &f.y_true,
            y_pred: &f.y_pred,
            prob_of_pred: &prob,
            images: &images,
            shape,
            class_names: &f.class_names,
        };
        write_evaluation_reports(&dir, &eval).unwrap();
        let read =
            |file: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap() };
        assert_same_json(&read("classification_report.json"), &f.report, name);
        let cm = read("confusion_matrix.json");
        assert_eq!(cm["counts"], serde_json::json!(f.matrix), "{name}");
        assert_eq!(cm["class_names"], serde_json::json!(f.class_names), "{name}");
        let l = confusion_matrix_layout(&names(&f)).unwrap();
        let png = decode(&dir.join("confusion_matrix.png"));
        assert_eq!((png.width(), png.height()), (l.width, l.height), "{name}");
    }
}

fn overlap(a: Rect, b: Rect) -> bool {
    a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
}

fn inside(r: Rect, width: u32, height: u32) -> bool {
    r.x + r.w <= width && r.y + r.h <= height
}

#[test]
fn confusion_matrices_are_legible_at_2_10_and_47_classes() {
    let emnist = load("emnist_47");
    let long_names: Vec<String> = (0..47).map(|i| format!("a rather long class name number {i}")).collect();
    let cases: [(&str, Vec<String>); 4] = [
        ("2", vec!["cat".into(), "dog".into()]),
        ("10", fashion_names()),
        ("47", emnist.class_names.clone()),
        ("47-long", long_names),
    ];
    for (case, class_names) in cases {
        let n = class_names.len();
        let names: Vec<&str> = class_names.iter().map(String::as_str).collect();
        let y: Vec<u8> = (0..n as u8).flat_map(|c| [c, c, c]).collect();
        let pred: Vec<u8> =
            y.iter().enumerate().map(|(i, &c)| if i % 3 == 0 { (c + 1) % n as u8 } else { c }).collect();
        let cm = ConfusionMatrix::new(&y, &pred, n).unwrap().with_class_names(&names).unwrap();
        let path = out_dir(&format!("legible-{case}")).join("cm.png");
        confusion_matrix_png(&cm, &path).unwrap();
        confusion_matrix_normalized_png(&cm, &path.with_file_name("cm_normalized.png")).unwrap();
        let l = confusion_matrix_layout(&names).unwrap();
        let img = decode(&path);
        assert_eq!((img.width(), img.height()), (l.width, l.height), "{case}");
        assert_eq!(l.grid.w, l.cell * n as u32, "{case}: one cell per class");
        assert!(l.width <= 1400 && l.height <= 1400, "{case}: {}x{}", l.width, l.height);
        assert!(l.tick_size >= 10.0, "{case}: names at least 10 px, got {}", l.tick_size);
        assert_eq!(l.cell_text_size.is_some(), n <= 10, "{case}: counts printed only in big cells");
        for boxes in [&l.y_label_boxes, &l.x_label_boxes] {
            assert_eq!(boxes.len(), n, "{case}");
            for (i, &a) in boxes.iter().enumerate() {
                assert!(inside(a, l.width, l.height), "{case}: label {i} {a:?} inside the picture");
                assert!(!overlap(a, l.grid), "{case}: label {i} off the grid");
                for (j, &b) in boxes.iter().enumerate().skip(i + 1) {
                    assert!(!overlap(a, b), "{case}: labels {i} {a:?} and {j} {b:?} overlap");
                }
            }
        }
        // Every row name is drawn: ink in its box.
        for (i, &b) in l.y_label_boxes.iter().enumerate() {
            assert!(dark_pixels(&img, b) > 0, "{case}: name {i} drawn");
        }
    }
}

#[test]
fn fashion_mnist_layout_keeps_its_size() {
    // Ten classes keep 60-pixel cells and the full-size names they always had.
    let l = confusion_matrix_layout(&CLASS_NAMES).unwrap();
    assert_eq!((l.cell, l.tick_size, l.cell_text_size), (60, 14.0, Some(14.0)));
    assert_eq!(l.labels, fashion_names());
}

/// `n` images of `shape` in CHW order: plane `c` of image `i` is the constant `40 * c + 10 * i`.
fn planar_images(n: usize, shape: ImageShape) -> Vec<u8> {
    let plane = shape.height * shape.width;
    (0..n).flat_map(|i| (0..shape.channels).flat_map(move |c| vec![(40 * c + 10 * i) as u8; plane])).collect()
}

#[test]
fn misclassified_examples_are_drawn_in_colour_and_magnified() {
    let cases = [
        (ImageShape { channels: 3, height: 12, width: 20 }, (140, 84)),
        (ImageShape { channels: 1, height: 40, width: 40 }, (120, 120)),
        (ImageShape { channels: 3, height: 300, width: 200 }, (93, 140)),
    ];
    for (shape, drawn) in cases {
        let n = 4;
        let images = planar_images(n, shape);
        let y_true = [0u8, 1, 0, 1];
        let y_pred = [1u8, 0, 1, 0];
        let prob = [0.9f32, 0.8, 0.7, 0.6];
        let predictions = Predictions { y_true: &y_true, y_pred: &y_pred, prob_of_pred: &prob };
        let path = out_dir(&format!("rgb-{}x{}x{}", shape.channels, shape.height, shape.width)).join("mis.png");
        misclassified_images_png(&images, shape, &predictions, &["cat", "dog"], &path).unwrap();
        let l = misclassified_layout_for(n, shape);
        let img = decode(&path);
        assert_eq!((img.width(), img.height()), (l.width, l.height));
        for (i, r) in l.images.iter().enumerate() {
            assert_eq!((r.w, r.h), drawn, "{shape:?}");
            let expected: [u8; 3] = if shape.channels == 3 {
                [10 * i as u8, 40 + 10 * i as u8, 80 + 10 * i as u8]
            } else {
                [10 * i as u8; 3]
            };
            for (x, y) in [(r.x, r.y), (r.x + r.w - 1, r.y + r.h - 1), (r.x + r.w / 2, r.y + r.h / 2)] {
                assert_eq!(img.get_pixel(x, y).0, expected, "{shape:?} image {i} at ({x}, {y})");
            }
        }
    }
}

#[test]
fn misclassified_examples_reject_undrawable_shapes() {
    let path = out_dir("mis-shape").join("mis.png");
    let predictions = Predictions { y_true: &[0], y_pred: &[1], prob_of_pred: &[0.5] };
    let two = ImageShape { channels: 2, height: 4, width: 4 };
    let err = misclassified_images_png(&[0; 32], two, &predictions, &["a", "b"], &path).unwrap_err();
    assert!(matches!(err, ReportError::UnsupportedChannels { channels: 2 }), "{err}");
    let rgb = ImageShape { channels: 3, height: 4, width: 4 };
    let err = misclassified_images_png(&[0; 16], rgb, &predictions, &["a", "b"], &path).unwrap_err();
    assert!(err.to_string().contains("3x4x4"), "{err}");
    assert!(!path.exists(), "nothing written");
}
