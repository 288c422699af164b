//! The IDX reader and IDX sets on small files written by the test: valid (raw and gzip),
//! truncated, wrong magic, label out of range, count mismatch, a size other than FashionMNIST's,
//! sets of any size with numbered or named classes, several sets in one directory. Every
//! failure is an error naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use engine::data::idx::{IMAGES_MAGIC, LABELS_MAGIC, read_images, read_labels};
use engine::data::{self, ClassNames, DataError, DataFlags, DataSource};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes.extend(payload);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn images(count: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..count as usize * 784).map(|i| (i % 251) as u8).collect();
    idx(IMAGES_MAGIC, &[count, 28, 28], &pixels)
}

fn labels(values: &[u8]) -> Vec<u8> {
    idx(LABELS_MAGIC, &[values.len() as u32], values)
}

/// An IDX set of 5x7 images (rows x cols) with the given labels, the training files gzipped.
fn idx_set_files(dir: &Path, prefix: &str, train: &[u8], test: &[u8]) {
    let images =
        |n: usize| idx(IMAGES_MAGIC, &[n as u32, 5, 7], &(0..n * 35).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let labels = |l: &[u8]| idx(LABELS_MAGIC, &[l.len() as u32], l);
    std::fs::write(dir.join(format!("{prefix}train-images-idx3-ubyte.gz")), gzip(&images(train.len()))).unwrap();
    std::fs::write(dir.join(format!("{prefix}train-labels-idx1-ubyte.gz")), gzip(&labels(train))).unwrap();
    std::fs::write(dir.join(format!("{prefix}test-images-idx3-ubyte")), images(test.len())).unwrap();
    std::fs::write(dir.join(format!("{prefix}test-labels-idx1-ubyte")), labels(test)).unwrap();
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn problem(result: Result<impl std::fmt::Debug, DataError>) -> String {
    let message = result.expect_err("expected an error").to_string();
    assert!(message.contains("engine-data-"), "the message should name the file: {message}");
    message
}

#[test]
fn reads_raw_and_gzip_files() {
    let dir = temp_dir("valid");
    for (name, bytes) in [("raw", images(3)), ("gz", gzip(&images(3)))] {
        let read = read_images(&write(&dir, name, &bytes)).unwrap();
        assert_eq!((read.count, read.rows, read.cols), (3, 28, 28));
        assert_eq!(read.pixels, images(3)[16..]);
    }
    let path = write(&dir, "labels.gz", &gzip(&labels(&[0, 9, 4])));
    assert_eq!(read_labels(&path, 10).unwrap(), vec![0, 9, 4]);
}

#[test]
fn truncated_files_are_errors() {
    let dir = temp_dir("truncated");
    let full = images(2);
    assert!(problem(read_images(&write(&dir, "short", &full[..full.len() - 1]))).contains("truncated"));
    assert!(problem(read_images(&write(&dir, "header", &full[..10]))).contains("header"));
    let lying = idx(IMAGES_MAGIC, &[u32::MAX, 255, 255], &[0; 10]);
    assert!(
        problem(read_images(&write(&dir, "lying", &gzip(&lying)))).contains("truncated"),
        "no allocation from the header"
    );
    let gz = gzip(&full);
    assert!(problem(read_images(&write(&dir, "short.gz", &gz[..gz.len() / 2]))).contains("gzip"));
    assert!(problem(read_labels(&write(&dir, "long", &[labels(&[1, 2]), vec![0]].concat()), 10)).contains("longer"));
}

#[test]
fn wrong_magic_and_wrong_image_size_are_errors() {
    let dir = temp_dir("magic");
    assert!(problem(read_images(&write(&dir, "labels-as-images", &labels(&[1])))).contains("magic"));
    assert!(problem(read_labels(&write(&dir, "images-as-labels", &images(1)), 10)).contains("magic"));
    write(&dir, "train-images-idx3-ubyte", &idx(IMAGES_MAGIC, &[1, 27, 28], &[0; 27 * 28]));
    write(&dir, "train-labels-idx1-ubyte", &labels(&[1]));
    write(&dir, "t10k-images-idx3-ubyte", &idx(IMAGES_MAGIC, &[1, 27, 28], &[0; 27 * 28]));
    write(&dir, "t10k-labels-idx1-ubyte", &labels(&[1]));
    let message = data::load(Some(&dir)).err().expect("not FashionMNIST's size").to_string();
    assert!(message.contains("27x28") && message.contains("engine-data-"), "{message}");
}

#[test]
fn labels_outside_the_classes_are_errors() {
    let dir = temp_dir("range");
    let message = problem(read_labels(&write(&dir, "labels", &labels(&[3, 10, 1])), 10));
    assert!(message.contains("label 10 at index 1"), "{message}");
}

#[test]
fn a_count_mismatch_between_images_and_labels_is_an_error() {
    let dir = temp_dir("mismatch");
    write(&dir, "train-images-idx3-ubyte.gz", &gzip(&images(3)));
    write(&dir, "train-labels-idx1-ubyte", &labels(&[1, 2]));
    write(&dir, "t10k-images-idx3-ubyte", &images(1));
    write(&dir, "t10k-labels-idx1-ubyte", &labels(&[1]));
    let message = data::load(Some(&dir)).err().expect("mismatch").to_string();
    assert!(message.contains("3 images") && message.contains("2 labels"), "{message}");
}

#[test]
fn a_directory_without_the_files_explains_how_to_provide_them() {
    let dir = temp_dir("empty");
    let message = data::load(Some(&dir)).err().expect("not found").to_string();
    for hint in ["--data-dir", "ENGINE_DATA_DIR", "dataset-fashion-mnist", "downloaded"] {
        assert!(message.contains(hint), "missing '{hint}' in: {message}");
    }
}

#[test]
fn a_download_that_fails_its_checksum_leaves_no_file_behind() {
    // A one-shot HTTP server that serves bytes which cannot match the published MD5.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Read;
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let body = b"not the dataset";
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
    });
    let cache = temp_dir("download");
    let error = data::fashion_mnist::download_all(&format!("http://127.0.0.1:{port}"), &cache).unwrap_err();
    server.join().unwrap();
    assert!(matches!(error, DataError::Checksum { .. }), "{error}");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "no partial or unverified file may stay in the cache");
}

#[test]
fn validation_split_is_seeded_and_disjoint() {
    let (train, val) = data::split_indices(1000, 0.1, 5);
    assert_eq!((train.len(), val.len()), (900, 100));
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert_eq!(data::split_indices(1000, 0.1, 5), (train, val));
    assert_ne!(data::split_indices(1000, 0.1, 6).1, data::split_indices(1000, 0.1, 5).1);
}

#[test]
fn an_idx_set_of_any_size_numbers_or_names_its_classes() {
    let dir = temp_dir("idx");
    idx_set_files(&dir, "", &[0, 2, 1, 2], &[1, 0]);
    let split = DataSource::parse(&format!("idx:{}", dir.display()), &DataFlags::default()).unwrap().load().unwrap();
    let c = &split.contract;
    assert_eq!((c.channels, c.height, c.width, c.pixels()), (1, 5, 7, 35));
    assert_eq!(c.class_names, ["0", "1", "2"]);
    assert_eq!((split.train.len(), split.test.len(), split.train.image_len()), (4, 2, 35));
    assert_eq!(split.train.image(1), &(35..70).map(|i| (i % 253) as u8).collect::<Vec<_>>()[..]);
    let all: Vec<f64> = split.train.pixels.iter().map(|&p| p as f64 / 255.0).collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    assert!((c.mean[0] as f64 - mean).abs() < 1e-6, "{} vs {mean}", c.mean[0]);

    let names = dir.join("names.txt");
    std::fs::write(&names, "zero\n\none\ntwo\n").unwrap();
    let flags = DataFlags { class_names: Some(ClassNames::from_arg(names.to_str().unwrap())), ..DataFlags::default() };
    let named = DataSource::parse(&format!("idx:{}", dir.display()), &flags).unwrap().load().unwrap();
    assert_eq!(named.contract.class_names, ["zero", "one", "two"]);

    let two = DataFlags { class_names: Some(ClassNames::from_arg("zero,one")), ..DataFlags::default() };
    let message = problem(DataSource::parse(&format!("idx:{}", dir.display()), &two).unwrap().load());
    assert!(message.contains("train-labels-idx1-ubyte.gz") && message.contains("label 2 at index 1"), "{message}");
    let missing = DataFlags { class_names: Some(ClassNames::from_arg("no/such/names.txt")), ..DataFlags::default() };
    let message =
        DataSource::parse(&format!("idx:{}", dir.display()), &missing).unwrap().load().unwrap_err().to_string();
    assert!(message.contains("neither a file nor a comma-separated list"), "{message}");
    let skipping = DataFlags { skip_bad: true, ..two };
    let kept = DataSource::parse(&format!("idx:{}", dir.display()), &skipping).unwrap().load().unwrap();
    assert_eq!((kept.train.labels.clone(), kept.test.labels.clone(), kept.skipped.len()), (vec![0, 1], vec![1, 0], 2));
    assert_eq!(kept.train.image(1), split.train.image(2), "the examples kept keep their own pixels");
}

#[test]
fn a_prefix_chooses_one_of_several_idx_sets() {
    let dir = temp_dir("emnist");
    idx_set_files(&dir, "emnist-digits-", &[0, 1], &[1]);
    idx_set_files(&dir, "emnist-letters-", &[0, 1, 2], &[2]);
    let message = problem(DataSource::parse(&format!("idx:{}", dir.display()), &DataFlags::default()).unwrap().load());
    assert!(message.contains("emnist-digits-") && message.contains("emnist-letters-"), "{message}");
    let source = DataSource::parse(&format!("idx:{}/emnist-letters", dir.display()), &DataFlags::default()).unwrap();
    assert_eq!(source.load().unwrap().train.len(), 3);
    assert_eq!(DataSource::parse(&source.to_string(), &DataFlags::default()).unwrap(), source);
}
