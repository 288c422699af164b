//! Dataset sources on small sets the tests write: image folders in both layouts (PNG, JPEG,
//! BMP, WebP; gray and RGB; resized), the decoded-set cache, the selection string, and every bad
//! input: each an error naming the file, or with skipping asked for, a count. IDX sets are
//! tested in `data.rs`.

use std::path::{Path, PathBuf};

use engine::data::{
    BadInput, CacheUse, ColorMode, DataError, DataFlags, DataSource, DataSplit, FolderOptions, IdxOptions, ImageSize,
    InputContract, Part, decode, folder,
};
use image::{GrayImage, Luma, Rgb, RgbImage};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-sources-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Folder options that leave the user's cache alone.
fn uncached() -> FolderOptions {
    FolderOptions { cache: false, ..FolderOptions::default() }
}

fn load_folder(dir: &Path, options: &FolderOptions) -> Result<DataSplit, DataError> {
    folder::load(dir, options)
}

/// A gray image whose pixels depend on its class and index.
fn gray(width: u32, height: u32, class: u32, i: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| Luma([((x * 7 + y * 13 + class * 80 + i * 3) % 256) as u8]))
}

fn rgb(width: u32, height: u32, class: u32, i: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| Rgb([(class * 90) as u8, (x * 20 + i) as u8, (y * 30) as u8]))
}

/// `dir/<class>/<n>.png` gray images, `per_class` each, for classes `a`, `b`, `c`.
fn gray_folder(dir: &Path, per_class: u32, width: u32, height: u32) -> Vec<Vec<Vec<u8>>> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(c, class)| {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            (0..per_class)
                .map(|i| {
                    let image = gray(width, height, c as u32, i);
                    image.save(dir.join(class).join(format!("{i:03}.png"))).unwrap();
                    image.into_raw()
                })
                .collect()
        })
        .collect()
}

fn error_of<T: std::fmt::Debug>(result: Result<T, DataError>) -> String {
    result.expect_err("expected an error").to_string()
}

#[test]
fn a_single_folder_is_split_by_seed_and_measured() {
    let dir = temp_dir("gray");
    let made = gray_folder(&dir, 10, 12, 9);
    let options = FolderOptions { test_fraction: 0.2, split_seed: 3, ..uncached() };
    let split = load_folder(&dir, &options).unwrap();
    let c = &split.contract;
    assert_eq!((c.channels, c.height, c.width), (1, 9, 12));
    assert_eq!(c.class_names, ["a", "b", "c"]);
    assert_eq!((split.train.len(), split.test.len()), (24, 6));
    for set in [&split.train, &split.test] {
        for i in 0..set.len() {
            let class = set.labels[i] as usize;
            assert!(made[class].iter().any(|m| m == set.image(i)), "image {i} is one of class {class}'s files");
        }
    }
    let pixels: Vec<f64> = split.train.pixels.iter().map(|&p| p as f64 / 255.0).collect();
    let mean = pixels.iter().sum::<f64>() / pixels.len() as f64;
    let std = (pixels.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / pixels.len() as f64).sqrt();
    assert!((c.mean[0] as f64 - mean).abs() < 1e-5 && (c.std[0] as f64 - std).abs() < 1e-5, "{c:?} vs {mean} {std}");

    let again = load_folder(&dir, &options).unwrap();
    assert_eq!(
        (again.test.labels.clone(), again.test.pixels.clone()),
        (split.test.labels.clone(), split.test.pixels.clone())
    );
    let reseeded = load_folder(&dir, &FolderOptions { split_seed: 4, ..options }).unwrap();
    assert_ne!(reseeded.test.pixels, split.test.pixels, "another seed, another split");
}

#[test]
fn linked_images_are_read_through_their_links() {
    let dir = temp_dir("linked");
    let made = gray_folder(&dir, 4, 5, 5);
    let targets = temp_dir("link-targets");
    let linked: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let (image, target) = (gray(5, 5, 1, 40 + i), targets.join(format!("{i}.png")));
            image.save(&target).unwrap();
            std::os::unix::fs::symlink(&target, dir.join(format!("b/link{i}.png"))).unwrap();
            image.into_raw()
        })
        .collect();
    let split = load_folder(&dir, &FolderOptions { test_fraction: 0.25, ..uncached() }).unwrap();
    assert_eq!(split.train.len() + split.test.len(), 15);
    let class_b: Vec<&[u8]> = [&split.train, &split.test]
        .iter()
        .flat_map(|set| (0..set.len()).filter(|&i| set.labels[i] == 1).map(|i| set.image(i)))
        .collect();
    assert!(
        linked.iter().chain(&made[1]).all(|image| class_b.contains(&image.as_slice())),
        "every linked image is in b"
    );
}

#[test]
fn train_and_test_folders_of_mixed_formats_are_resized_to_rgb_planes() {
    let dir = temp_dir("rgb");
    for (set, n) in [("train", 4), ("test", 2)] {
        for (c, class) in ["cat", "dog"].iter().enumerate() {
            let folder = dir.join(set).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..n {
                let ext = ["png", "jpg", "bmp", "webp"][i as usize % 4];
                rgb(10 + i, 8 + 2 * i, c as u32, i).save(folder.join(format!("{i}.{ext}"))).unwrap();
            }
        }
    }
    let solid = RgbImage::from_pixel(13, 11, Rgb([200, 10, 60]));
    solid.save(dir.join("train/cat/solid.PNG")).unwrap();
    std::fs::write(dir.join("train/cat/notes.txt"), "not listed: not an image extension").unwrap();
    let size = ImageSize { width: 8, height: 6 };
    let split = load_folder(&dir, &FolderOptions { size: Some(size), ..uncached() }).unwrap();
    let c = &split.contract;
    assert_eq!((c.channels, c.height, c.width, c.mean.len(), c.class_names.len()), (3, 6, 8, 3, 2));
    assert_eq!((split.train.len(), split.test.len()), (9, 4));
    let solid_index = 4; // cat's files sorted by name: 0..3, then solid.PNG
    let planes = split.train.image(solid_index);
    assert!(planes[..48].iter().all(|&v| v == 200) && planes[48..96].iter().all(|&v| v == 10));
    assert!(planes[96..].iter().all(|&v| v == 60), "planar CHW: red, then green, then blue");

    for channel in 0..3 {
        let values: Vec<f64> = (0..split.train.len())
            .flat_map(|i| split.train.image(i)[channel * 48..(channel + 1) * 48].to_vec())
            .map(|v| v as f64 / 255.0)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((c.mean[channel] as f64 - mean).abs() < 1e-5, "channel {channel}: {} vs {mean}", c.mean[channel]);
    }

    let served =
        decode::decode_for_contract(&std::fs::read(dir.join("train/dog/1.jpg")).unwrap(), c, Default::default());
    let dog_1 = 5 + 1; // dog's files follow cat's five
    assert_eq!(served.unwrap(), split.train.image(dog_1), "serving prepares an image exactly as training did");

    let gray_split =
        load_folder(&dir, &FolderOptions { size: Some(size), mode: Some(ColorMode::Gray), ..uncached() }).unwrap();
    assert_eq!((gray_split.contract.channels, gray_split.train.image_len()), (1, 48));
}

#[test]
fn mixed_sizes_without_a_size_name_two_files_and_colour_decides_the_mode() {
    let dir = temp_dir("mixed");
    gray_folder(&dir, 3, 6, 6);
    gray(7, 6, 0, 9).save(dir.join("b/odd.png")).unwrap();
    let message = error_of(load_folder(&dir, &uncached()));
    assert!(message.contains("differ in size") && message.contains("odd.png") && message.contains("7x6"), "{message}");
    std::fs::remove_file(dir.join("b/odd.png")).unwrap();
    assert_eq!(load_folder(&dir, &uncached()).unwrap().contract.channels, 1);
    rgb(6, 6, 1, 0).save(dir.join("b/colour.png")).unwrap();
    let split = load_folder(&dir, &uncached()).unwrap();
    assert_eq!((split.contract.channels, split.contract.mean.len()), (3, 3), "one colour image makes the set RGB");
}

#[test]
fn the_decoded_set_is_cached_keyed_by_the_files_and_rebuilt_when_corrupt() {
    let dir = temp_dir("cached");
    let cache = temp_dir("cache-root");
    gray_folder(&dir, 4, 5, 5);
    let options = FolderOptions { cache_dir: Some(cache.clone()), ..FolderOptions::default() };
    let first = load_folder(&dir, &options).unwrap();
    let CacheUse::Written(path) = first.cache.clone() else { panic!("first load writes the cache: {:?}", first.cache) };
    assert!(path.starts_with(&cache));
    let second = load_folder(&dir, &options).unwrap();
    assert_eq!(second.cache, CacheUse::Hit(path.clone()));
    assert_eq!(
        (second.train.pixels.clone(), second.test.labels.clone()),
        (first.train.pixels.clone(), first.test.labels.clone())
    );
    assert_eq!(second.contract, first.contract);

    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let rebuilt = load_folder(&dir, &options).unwrap();
    assert_eq!(
        (rebuilt.cache.clone(), rebuilt.train.pixels.clone()),
        (CacheUse::Written(path.clone()), first.train.pixels.clone())
    );
    std::fs::write(&path, &bytes[..100]).unwrap();
    assert_eq!(
        load_folder(&dir, &options).unwrap().cache,
        CacheUse::Written(path.clone()),
        "a truncated cache is rebuilt"
    );

    gray(5, 5, 2, 99).save(dir.join("c/000.png")).unwrap();
    let changed = load_folder(&dir, &options).unwrap();
    assert!(matches!(&changed.cache, CacheUse::Written(p) if *p != path), "a changed file is another key");
    let resized =
        load_folder(&dir, &FolderOptions { size: Some(ImageSize { width: 4, height: 4 }), ..options.clone() }).unwrap();
    assert!(matches!(&resized.cache, CacheUse::Written(p) if *p != path), "another size is another key");
    let blocked = FolderOptions { cache_dir: Some(dir.join("a/000.png/cache")), ..options.clone() };
    let unwritten = load_folder(&dir, &blocked).unwrap();
    assert!(matches!(&unwritten.cache, CacheUse::NotWritten { .. }), "{:?}", unwritten.cache);
    assert_eq!(unwritten.train.pixels, changed.train.pixels, "a cache that cannot be written costs only the cache");
    let leftovers: Vec<_> = walk(&cache).into_iter().filter(|p| !p.ends_with("decoded.bin")).collect();
    assert!(leftovers.is_empty(), "only whole cache files stay: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        match entry.path().is_dir() {
            true => files.extend(walk(&entry.path())),
            false => files.push(entry.path()),
        }
    }
    files
}

/// A valid PNG whose header claims `width x height`, with its CRC fixed so only the size is odd.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    gray(1, 1, 0, 0).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

/// Each bad file, alone in an otherwise good folder: an error naming it, and under skipping,
/// a set one image short with the file counted.
#[test]
fn every_bad_image_is_an_error_naming_it_or_a_counted_skip() {
    let mut truncated = Vec::new();
    gray(6, 6, 0, 0).write_to(&mut std::io::Cursor::new(&mut truncated), image::ImageFormat::Png).unwrap();
    truncated.truncate(truncated.len() / 2);
    let mut corrupt_jpeg = Vec::new();
    rgb(6, 6, 0, 0).write_to(&mut std::io::Cursor::new(&mut corrupt_jpeg), image::ImageFormat::Jpeg).unwrap();
    corrupt_jpeg.truncate(40);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated.png", truncated, "truncated"),
        ("corrupt.jpg", corrupt_jpeg, "corrupt"),
        ("notes.png", b"these are words, not pixels".to_vec(), "not an image"),
        ("empty.bmp", Vec::new(), "0 bytes"),
        ("bomb.png", png_claiming(100_000, 100_000), "decompression bomb"),
    ];
    for (name, bytes, expected) in cases {
        let dir = temp_dir(&format!("bad-{name}"));
        gray_folder(&dir, 5, 6, 6);
        std::fs::write(dir.join("b").join(name), bytes).unwrap();
        let message = error_of(load_folder(&dir, &uncached()));
        assert!(message.contains(name) && message.contains(expected), "{name}: {message}");
        let skipped = load_folder(&dir, &FolderOptions { bad: BadInput::Skip, ..uncached() }).unwrap();
        assert_eq!(skipped.skipped.len(), 1, "{name}");
        assert!(skipped.skipped[0].path.ends_with(name) && skipped.skipped[0].reason.contains(expected));
        assert_eq!(skipped.train.len() + skipped.test.len(), 15, "{name}: the good images all stay");
    }
}

#[test]
fn the_allocation_limit_stops_a_large_decode() {
    let dir = temp_dir("alloc");
    gray_folder(&dir, 3, 6, 6);
    std::fs::write(dir.join("a/large.png"), png_claiming(3000, 3000)).unwrap();
    let mut options = uncached();
    options.limits.max_alloc = 1 << 20;
    let message = error_of(load_folder(&dir, &options));
    assert!(message.contains("large.png") && message.contains("decoding limits"), "{message}");
}

#[test]
fn folder_layouts_that_cannot_train_a_classifier_are_errors() {
    let dir = temp_dir("one-class");
    std::fs::create_dir_all(dir.join("only")).unwrap();
    gray(4, 4, 0, 0).save(dir.join("only/0.png")).unwrap();
    let message = error_of(load_folder(&dir, &uncached()));
    assert!(message.contains("one class folder") && message.contains("engine-sources-one-class"), "{message}");

    let dir = temp_dir("empty-class");
    gray_folder(&dir, 3, 4, 4);
    std::fs::create_dir_all(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/readme.txt"), "no images here").unwrap();
    let message = error_of(load_folder(&dir, &uncached()));
    assert!(message.contains("empty class folder") && message.contains("/d"), "{message}");

    let dir = temp_dir("no-classes");
    assert!(error_of(load_folder(&dir, &uncached())).contains("no class folders"));
}

/// The folder an unprivileged copy of this test binary loads (see below).
const UNREADABLE_DIR: &str = "ENGINE_TEST_UNREADABLE_DIR";

#[test]
fn an_unreadable_image_is_an_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = temp_dir("unreadable");
    gray_folder(&dir, 3, 4, 4);
    let path = dir.join("a/001.png");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if unsafe { libc::geteuid() } != 0 {
        return load_unreadable(&dir);
    }
    // Root reads any file whatever its mode: the load runs in this binary again as `nobody`.
    let binary = std::env::current_exe().unwrap();
    let output = std::process::Command::new(binary)
        .args(["--exact", "unreadable_folder_as_another_user", "--nocapture"])
        .env(UNREADABLE_DIR, &dir)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("this test binary, run as nobody (it and the temp dir must be readable by all)");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.contains("1 passed"), "{said}");
}

/// The half of the test above that runs as `nobody`; without the variable it has nothing to do.
#[test]
fn unreadable_folder_as_another_user() {
    if let Some(dir) = std::env::var_os(UNREADABLE_DIR) {
        load_unreadable(Path::new(&dir));
    }
}

fn load_unreadable(dir: &Path) {
    let message = error_of(load_folder(dir, &uncached()));
    assert!(message.contains("001.png") && message.contains("ermission denied"), "{message}");
}

#[test]
fn the_selection_string_parses_detects_and_refuses_what_does_not_apply() {
    let none = DataFlags::default();
    assert_eq!(DataSource::parse("fashion-mnist", &none).unwrap(), DataSource::FashionMnist { dir: None });
    assert_eq!(DataSource::parse("", &none).ok(), None);
    let idx_dir = temp_dir("detect-idx");
    for name in
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz"]
    {
        std::fs::write(idx_dir.join(name), b"detection reads the names only").unwrap();
    }
    let folder_dir = temp_dir("detect-folder");
    gray_folder(&folder_dir, 2, 4, 4);
    let detected = DataSource::parse(idx_dir.to_str().unwrap(), &none).unwrap();
    assert_eq!(detected, DataSource::Idx { dir: idx_dir.clone(), options: IdxOptions::default() });
    assert_eq!(DataSource::parse(folder_dir.to_str().unwrap(), &none).unwrap().kind(), "folder");
    let empty = temp_dir("detect-empty");
    assert!(error_of(DataSource::parse(empty.to_str().unwrap(), &none)).contains("idx:DIR or folder:DIR"));
    assert!(error_of(DataSource::parse("no/such/place", &none)).contains("neither a dataset"));

    let sized = DataFlags {
        image_size: Some("32x24".parse().unwrap()),
        skip_bad: true,
        no_cache: true,
        ..DataFlags::default()
    };
    assert!(error_of(DataSource::parse("fashion-mnist", &sized)).contains("skipping bad inputs"));
    let only_size = DataFlags { skip_bad: false, ..sized.clone() };
    assert!(error_of(DataSource::parse("fashion-mnist", &only_size)).contains("an image size does not apply"));
    assert!(error_of(DataSource::parse(&format!("idx:{}", idx_dir.display()), &sized)).contains("idx"));
    let source = DataSource::parse(&format!("folder:{}", folder_dir.display()), &sized).unwrap();
    let DataSource::Folder { options, .. } = &source else { panic!("{source:?}") };
    assert_eq!(
        (options.size, options.bad, options.cache),
        (Some(ImageSize { width: 32, height: 24 }), BadInput::Skip, false)
    );
    let json = serde_json::to_string(&source).unwrap();
    assert_eq!(serde_json::from_str::<DataSource>(&json).unwrap(), source, "plans carry a selection as JSON");
    assert_eq!(source.to_string(), format!("folder:{}", folder_dir.display()));
    assert!("0x5".parse::<ImageSize>().is_err() && "5000".parse::<ImageSize>().is_err());
    assert_eq!("16".parse::<ImageSize>().unwrap(), ImageSize { width: 16, height: 16 });
}

#[test]
fn a_split_describes_its_sets_for_the_run_inputs() {
    let dir = temp_dir("describe");
    gray_folder(&dir, 5, 6, 4);
    let split = load_folder(&dir, &uncached()).unwrap();
    let train = split.describe(Part::Train, None);
    assert_eq!(
        (train.name.as_str(), train.shape),
        (format!("engine-sources-describe-{}-train", std::process::id()).as_str(), [12, 1, 4, 6])
    );
    assert_eq!(train.digest.len(), 8);
    assert!(train.source.contains(&*dir.display().to_string()));
    let head = split.describe(Part::Train, Some(5));
    assert!(head.name.ends_with("-train[:5]") && head.shape[0] == 5 && head.digest != train.digest);
    assert_eq!(split.describe(Part::Test, None).shape[0], 3);
    let fashion = InputContract::fashion_mnist();
    assert_eq!((fashion.pixels(), fashion.classes(), fashion.class_names[9].as_str()), (784, 10, "Ankle boot"));
}

/// Cold (decode and cache) and cached loads of a folder of FashionMNIST's images as PNGs,
/// against reading the IDX files: `cargo test --release --test data_sources -- --ignored
/// --nocapture folder_load_benchmark` (`ENGINE_BENCH_IMAGES`, default 10000, sets the count).
#[test]
#[ignore]
fn folder_load_benchmark() {
    let count: usize = std::env::var("ENGINE_BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let started = std::time::Instant::now();
    let fashion = engine::data::load(None).expect("FashionMNIST is installed");
    let idx_time = started.elapsed();
    let dir = temp_dir("bench");
    let per_set = |n: usize, set: &engine::data::Dataset, name: &str| {
        for i in 0..n.min(set.len()) {
            let class = dir.join(name).join(set.labels[i].to_string());
            std::fs::create_dir_all(&class).unwrap();
            GrayImage::from_raw(28, 28, set.image(i).to_vec())
                .unwrap()
                .save(class.join(format!("{i:05}.png")))
                .unwrap();
        }
    };
    per_set(count * 6 / 7, &fashion.train, "train");
    per_set(count / 7, &fashion.test, "test");
    let cache = temp_dir("bench-cache");
    let options = FolderOptions { cache_dir: Some(cache), ..FolderOptions::default() };
    let started = std::time::Instant::now();
    let cold = load_folder(&dir, &options).unwrap();
    let cold_time = started.elapsed();
    let started = std::time::Instant::now();
    let cached = load_folder(&dir, &options).unwrap();
    let cached_time = started.elapsed();
    assert!(matches!(cached.cache, CacheUse::Hit(_)));
    assert_eq!(cached.train.pixels, cold.train.pixels);
    let n = cold.train.len() + cold.test.len();
    println!("IDX (70000 images): {idx_time:.2?}; folder of {n} PNGs: cold {cold_time:.2?}, cached {cached_time:.2?}");
}
