//! The data readers through the public API: IDX files (raw and gzip), image folders, the
//! built-in sets, and validation splits, including every error a user can run into.

use std::io::Write;
use std::path::{Path, PathBuf};

use wgtrain::data::{DataSource, Dataset, Features, Targets, folder, idx, load, split_validation};

// ---------------------------------------------------------------------------------------------
// Helpers

fn images_bytes(count: u32, h: u32, w: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [idx::IMAGES_MAGIC, count, h, w] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..count * h * w).map(|i| (i * 7 % 256) as u8));
    v
}

fn labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut v = idx::LABELS_MAGIC.to_be_bytes().to_vec();
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Asserts that `r` failed with a message containing every fragment.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: wgtrain::Result<T>, fragments: &[&str]) -> String {
    let msg = r.expect_err("expected an error").to_string();
    for f in fragments {
        assert!(msg.contains(f), "error {msg:?} lacks {f:?}");
    }
    msg
}

/// Writes a 4-file MNIST-style directory with `n_train`/`n_test` images of `h x w`.
fn write_idx_dir(dir: &Path, n_train: u32, n_test: u32, h: u32, w: u32, gz: bool) {
    let enc = |b: Vec<u8>| if gz { gzip(&b) } else { b };
    let sfx = if gz { ".gz" } else { "" };
    let labels = |n: u32| (0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>();
    write(
        &dir.join(format!("train-images-idx3-ubyte{sfx}")),
        &enc(images_bytes(n_train, h, w)),
    );
    write(
        &dir.join(format!("train-labels-idx1-ubyte{sfx}")),
        &enc(labels_bytes(&labels(n_train))),
    );
    write(
        &dir.join(format!("t10k-images-idx3-ubyte{sfx}")),
        &enc(images_bytes(n_test, h, w)),
    );
    write(
        &dir.join(format!("t10k-labels-idx1-ubyte{sfx}")),
        &enc(labels_bytes(&labels(n_test))),
    );
}

fn labels_of(d: &Dataset) -> &[u32] {
    match &d.targets {
        Targets::Classes { labels, .. } => labels,
        Targets::Values { .. } => panic!("expected class targets"),
    }
}

fn save_gray(path: &Path, h: u32, w: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([value]))
        .save(path)
        .unwrap();
}

fn path_source(p: &Path) -> DataSource {
    DataSource::Path(p.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// IDX

#[test]
fn idx_raw_and_gzip_round_trip_non_square() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = images_bytes(3, 5, 7);
    // The gzip file deliberately has no .gz suffix and the raw one has it: detection is by
    // content.
    let (raw_path, gz_path) = (tmp.path().join("raw.gz"), tmp.path().join("packed"));
    write(&raw_path, &raw);
    write(&gz_path, &gzip(&raw));
    for p in [&raw_path, &gz_path] {
        let img = idx::read_images(p).unwrap();
        assert_eq!((img.count, img.height, img.width), (3, 5, 7));
        assert_eq!(img.pixels, raw[16..]);
    }
    let lbl = labels_bytes(&[4, 0, 9]);
    write(&tmp.path().join("l.gz"), &gzip(&lbl));
    assert_eq!(
        idx::read_labels(&tmp.path().join("l.gz")).unwrap(),
        [4, 0, 9]
    );
    assert_eq!(idx::read_maybe_gz(&gz_path).unwrap(), raw);
}

#[test]
fn idx_zero_count_is_parsed() {
    let img = idx::parse_images(&images_bytes(0, 28, 28), Path::new("e")).unwrap();
    assert_eq!((img.count, img.pixels.len()), (0, 0));
    assert!(
        idx::parse_labels(&labels_bytes(&[]), Path::new("e"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn idx_wrong_magic_names_both() {
    let mut b = images_bytes(1, 2, 2);
    b[0..4].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    assert_err(
        idx::parse_images(&b, Path::new("f")),
        &[
            "wrong magic number 0x12345678",
            "expected 0x00000803 (2051)",
        ],
    );
    assert_err(
        idx::parse_labels(&images_bytes(1, 2, 2), Path::new("f")),
        &[
            "0x00000803 (2051)",
            "expected 0x00000801 (2049)",
            "image file",
        ],
    );
    // Gzip data whose content is not IDX at all.
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("x.gz"),
        &gzip(b"hello, world, this is not IDX"),
    );
    assert_err(
        idx::read_images(&tmp.path().join("x.gz")),
        &["x.gz", "not an IDX file", "0x68656C6C", "0x00000803"],
    );
}

#[test]
fn idx_length_mismatches_report_expected_and_found() {
    let b = images_bytes(2, 5, 7); // 16 + 70 = 86 bytes
    assert_err(
        idx::parse_images(&b[..80], Path::new("t")),
        &[
            "2 images of 5x7",
            "86 bytes are expected",
            "80 bytes were found",
            "truncated",
        ],
    );
    let mut long = b.clone();
    long.extend_from_slice(&[0; 5]);
    assert_err(
        idx::parse_images(&long, Path::new("t")),
        &[
            "86 bytes are expected",
            "91 bytes were found",
            "5 trailing bytes",
        ],
    );
    // Header itself truncated.
    assert_err(
        idx::parse_images(&b[..10], Path::new("t")),
        &["truncated IDX header", "16", "10"],
    );
    assert_err(
        idx::parse_images(&b[..2], Path::new("t")),
        &["too short", "2 bytes"],
    );
    assert_err(
        idx::parse_labels(&labels_bytes(&[1, 2, 3])[..9], Path::new("t")),
        &["11 bytes are expected", "9 bytes were found"],
    );

    // The same through gzip files: a short stream is reported by the parser, a long one by the
    // decoder (which stops reading at the declared size).
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("short.gz");
    write(&p, &gzip(&b[..80]));
    assert_err(
        idx::read_images(&p),
        &["short.gz", "86 bytes are expected", "80 bytes were found"],
    );
    let p = tmp.path().join("long.gz");
    write(&p, &gzip(&long));
    assert_err(
        idx::read_images(&p),
        &["long.gz", "declares 86 bytes", "has 91 bytes", "5 trailing"],
    );
}

#[test]
fn idx_zero_sized_images_are_rejected() {
    assert_err(
        idx::parse_images(&images_bytes(0, 0, 3), Path::new("z")),
        &["0x3 pixels"],
    );
}

#[test]
fn idx_huge_header_counts_do_not_allocate() {
    // 2^32-1 images of 2^16 x 2^16: about 2^64 bytes, which overflows the size arithmetic
    // itself; the readers must say so instead of wrapping or trying to allocate.
    let mut b = images_bytes(0, 1, 1);
    b[4..16].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 1, 0, 0]);
    assert_err(
        idx::parse_images(&b, Path::new("h")),
        &["4294967295 images of 65536x65536"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("huge.gz");
    write(&p, &gzip(&b));
    assert_err(idx::read_images(&p), &["huge.gz", "4 GiB"]);
    // Just under the bound: accepted as a size, then found to be short, without reserving 4 GiB
    // for a stream that holds 16 bytes.
    b[4..16].copy_from_slice(&[0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0]); // 4096^3 > 4 GiB
    write(&p, &gzip(&b));
    assert_err(idx::read_images(&p), &["4 GiB"]);
    b[4..16].copy_from_slice(&[0, 0, 0x40, 0, 0, 0, 0x01, 0, 0, 0, 0x01, 0]); // 16384 * 256 * 256 = 1 GiB
    write(&p, &gzip(&b));
    assert_err(
        idx::read_images(&p),
        &["1073741840 bytes are expected", "16 bytes were found"],
    );
}

#[test]
fn idx_corrupt_gzip_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let gz = gzip(&images_bytes(4, 8, 8));
    // Flip bytes in the deflate body.
    let mut bad = gz.clone();
    for b in &mut bad[12..gz.len() - 8] {
        *b ^= 0x5a;
    }
    let p = tmp.path().join("bad.gz");
    write(&p, &bad);
    assert_err(idx::read_images(&p), &["bad.gz", "not a valid gzip stream"]);
    // A gzip file cut short.
    write(&p, &gz[..gz.len() / 2]);
    assert_err(idx::read_images(&p), &["not a valid gzip stream"]);
    // A broken CRC in the trailer.
    let mut crc = gz.clone();
    let n = crc.len();
    crc[n - 8] ^= 1;
    write(&p, &crc);
    assert_err(idx::read_images(&p), &["not a valid gzip stream"]);
}

#[test]
fn idx_missing_file_names_it() {
    assert_err(
        idx::read_images(Path::new("/nonexistent/imgs")),
        &["/nonexistent/imgs"],
    );
}

// ---------------------------------------------------------------------------------------------
// Loading IDX directories

#[test]
fn load_idx_directory_raw_and_gzip() {
    for gz in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        write_idx_dir(tmp.path(), 6, 4, 5, 7, gz);
        let s = load(&path_source(tmp.path()), 0).unwrap();
        assert_eq!(s.train.rows, 6);
        assert_eq!((s.train.dim, s.train.image_shape), (35, (5, 7)));
        let test = s.test.as_ref().unwrap();
        assert_eq!(test.rows, 4);
        // One class per label up to the largest: training settles the count for good.
        assert_eq!(
            (s.train.num_classes(), test.num_classes()),
            (Some(3), Some(3))
        );
        assert_eq!(labels_of(&s.train), [0, 1, 2, 0, 1, 2]);
        assert_eq!(s.name, tmp.path().display().to_string());
        assert!(matches!(&s.train.features, Features::U8(p) if p.len() == 6 * 35));
    }
}

#[test]
fn load_idx_dotted_names_and_optional_test() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("train-images.idx3-ubyte"),
        &images_bytes(2, 3, 3),
    );
    write(
        &tmp.path().join("train-labels.idx1-ubyte.gz"),
        &gzip(&labels_bytes(&[11, 0])),
    );
    let s = load(&path_source(tmp.path()), 0).unwrap();
    assert!(s.test.is_none());
    // A label of 11 gives 12 classes (as loaded; training refuses the empty ones).
    assert_eq!(s.train.num_classes(), Some(12));
}

#[test]
fn load_idx_count_mismatch_names_numbers_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dir(tmp.path(), 5, 2, 2, 2, false);
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &labels_bytes(&[0, 1, 2]),
    );
    assert_err(
        load(&path_source(tmp.path()), 0),
        &[
            "train-images-idx3-ubyte has 5 images",
            "train-labels-idx1-ubyte has 3 labels",
        ],
    );
}

#[test]
fn load_idx_size_mismatch_between_splits() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dir(tmp.path(), 3, 3, 4, 4, false);
    write(
        &tmp.path().join("t10k-images-idx3-ubyte"),
        &images_bytes(3, 5, 7),
    );
    assert_err(
        load(&path_source(tmp.path()), 0),
        &["training images are 4x4", "test images are 5x7"],
    );
}

#[test]
fn load_idx_empty_train_and_test() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dir(tmp.path(), 0, 3, 4, 4, true);
    assert_err(
        load(&path_source(tmp.path()), 0),
        &["training set is empty"],
    );
    write_idx_dir(tmp.path(), 3, 0, 4, 4, true);
    assert_err(load(&path_source(tmp.path()), 0), &["test set is empty"]);
}

#[test]
fn load_idx_incomplete_sets_of_files() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("train-images-idx3-ubyte"),
        &images_bytes(2, 3, 3),
    );
    assert_err(
        load(&path_source(tmp.path()), 0),
        &["train-labels-idx1-ubyte"],
    );
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &labels_bytes(&[0, 1]),
    );
    write(
        &tmp.path().join("t10k-images-idx3-ubyte"),
        &images_bytes(2, 3, 3),
    );
    assert_err(
        load(&path_source(tmp.path()), 0),
        &["only one of", "t10k-labels-idx1-ubyte"],
    );
}

#[test]
fn load_idx_corrupt_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_idx_dir(tmp.path(), 3, 3, 4, 4, true);
    write(
        &tmp.path().join("t10k-images-idx3-ubyte.gz"),
        b"\x1f\x8bgarbage",
    );
    assert_err(
        load(&path_source(tmp.path()), 0),
        &["t10k-images-idx3-ubyte.gz", "not a valid gzip stream"],
    );
}

#[test]
fn load_missing_or_unrecognised_paths() {
    assert_err(
        load(&DataSource::parse("/no/such/dir"), 0),
        &["/no/such/dir", "no such file"],
    );
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("notes.txt"), b"hi");
    assert_err(
        load(&path_source(tmp.path()), 0),
        &[
            "found neither IDX files",
            "train-images-idx3-ubyte",
            "train/<class>",
        ],
    );
    assert_err(
        load(&path_source(&tmp.path().join("notes.txt")), 0),
        &["not a directory"],
    );
}

// ---------------------------------------------------------------------------------------------
// Image folders

#[test]
fn folder_reads_png_jpeg_and_converts_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train");
    save_gray(&train.join("cat/a.png"), 3, 4, 10);
    save_gray(&train.join("cat/b.png"), 3, 4, 20);
    std::fs::create_dir_all(train.join("dog")).unwrap();
    // Pure red converts to luma round(0.2126 * 255) = 54 with the Rec. 709 weights image uses.
    image::RgbImage::from_pixel(4, 3, image::Rgb([255, 0, 0]))
        .save(train.join("dog/red.png"))
        .unwrap();
    image::RgbImage::from_pixel(4, 3, image::Rgb([128, 128, 128]))
        .save(train.join("dog/grey.JPG"))
        .unwrap();
    save_gray(&tmp.path().join("test/dog/t.png"), 3, 4, 99);

    let s = load(&path_source(tmp.path()), 0).unwrap();
    assert_eq!(
        s.class_names.as_deref(),
        Some(&["cat".to_string(), "dog".to_string()][..])
    );
    assert_eq!(
        (s.train.rows, s.train.dim, s.train.image_shape),
        (4, 12, (3, 4))
    );
    assert_eq!(s.train.num_classes(), Some(2));
    // Files in sorted order within each class: cat/a, cat/b, dog/grey.JPG, dog/red.png.
    assert_eq!(labels_of(&s.train), [0, 0, 1, 1]);
    let Features::U8(px) = &s.train.features else {
        panic!("u8 features")
    };
    assert!(px[..12].iter().all(|&p| p == 10));
    assert!(px[12..24].iter().all(|&p| p == 20));
    assert!(
        px[24..36].iter().all(|&p| p.abs_diff(128) <= 2),
        "{:?}",
        &px[24..36]
    );
    assert!(
        px[36..48].iter().all(|&p| p.abs_diff(54) <= 1),
        "{:?}",
        &px[36..48]
    );
    // The test split uses the training split's mapping: "dog" is 1 although it is its only class.
    let test = s.test.as_ref().unwrap();
    assert_eq!(
        (labels_of(test), test.num_classes()),
        (&[1u32][..], Some(2))
    );
}

#[test]
fn folder_without_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    save_gray(&tmp.path().join("train/0/a.png"), 2, 2, 1);
    let s = load(&path_source(tmp.path()), 0).unwrap();
    assert!(s.test.is_none());
}

#[test]
fn folder_errors_name_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // No class subfolders: images directly in the split folder.
    save_gray(&dir.join("flat/a.png"), 2, 2, 0);
    assert_err(
        folder::read_split(&dir.join("flat"), None, wgtrain::data::Color::Gray),
        &["no class subfolders"],
    );

    // A non-image file.
    save_gray(&dir.join("txt/a/x.png"), 2, 2, 0);
    write(&dir.join("txt/a/labels.csv"), b"x,0");
    assert_err(
        folder::read_split(&dir.join("txt"), None, wgtrain::data::Color::Gray),
        &["labels.csv", "not an image file"],
    );

    // A file with an image extension that is not an image.
    write(&dir.join("bad/a/x.png"), b"not a png");
    assert_err(
        folder::read_split(&dir.join("bad"), None, wgtrain::data::Color::Gray),
        &["x.png", "cannot decode image"],
    );

    // Images of different sizes.
    save_gray(&dir.join("sizes/a/1.png"), 2, 3, 0);
    save_gray(&dir.join("sizes/b/2.png"), 4, 5, 0);
    assert_err(
        folder::read_split(&dir.join("sizes"), None, wgtrain::data::Color::Gray),
        &["2.png", "4x5", "1.png", "2x3"],
    );

    // An empty class folder.
    save_gray(&dir.join("empty/a/1.png"), 2, 2, 0);
    std::fs::create_dir_all(dir.join("empty/b")).unwrap();
    assert_err(
        folder::read_split(&dir.join("empty"), None, wgtrain::data::Color::Gray),
        &["empty class folder"],
    );

    // A test class unknown to train.
    save_gray(&dir.join("unk/zebra/1.png"), 2, 2, 0);
    let names = vec!["cat".to_string(), "dog".to_string()];
    assert_err(
        folder::read_split(&dir.join("unk"), Some(&names), wgtrain::data::Color::Gray),
        &["\"zebra\"", "cat, dog"],
    );

    // A missing split folder.
    assert_err(
        folder::read_split(&dir.join("nope"), None, wgtrain::data::Color::Gray),
        &["nope"],
    );
}

#[test]
fn folder_size_mismatch_between_splits() {
    let tmp = tempfile::tempdir().unwrap();
    save_gray(&tmp.path().join("train/a/1.png"), 2, 2, 0);
    save_gray(&tmp.path().join("test/a/1.png"), 3, 3, 0);
    assert_err(
        load(&path_source(tmp.path()), 0),
        &["training images are 2x2", "test images are 3x3"],
    );
}

// ---------------------------------------------------------------------------------------------
// Built-in sets

#[test]
fn mnist_sample_is_embedded_and_balanced() {
    let s = load(&DataSource::MnistSample, 0).unwrap();
    assert_eq!(s.name, "mnist-sample");
    let test = s.test.as_ref().unwrap();
    assert_eq!((s.train.rows, test.rows), (8000, 2000));
    assert_eq!((s.train.dim, s.train.image_shape), (784, (28, 28)));
    assert_eq!(s.train.num_classes(), Some(10));
    for (d, per_class) in [(&s.train, 800.0), (test, 200.0)] {
        let mut counts = [0usize; 10];
        for &l in labels_of(d) {
            counts[l as usize] += 1;
        }
        for c in counts {
            assert!(
                (c as f64 - per_class).abs() < 0.25 * per_class,
                "{counts:?}"
            );
        }
    }
    // Real digits: mostly background, some ink.
    let Features::U8(px) = &s.train.features else {
        panic!("u8 features")
    };
    let ink = px.iter().filter(|&&p| p > 128).count() as f64 / px.len() as f64;
    assert!((0.05..0.3).contains(&ink), "ink fraction {ink}");
}

#[test]
fn fashion_mnist_loads_when_installed() {
    let dir = std::env::var_os("WGTRAIN_FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    if !dir.is_dir() {
        eprintln!(
            "skipping: {} is absent (sudo apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let s = load(&DataSource::FashionMnist, 0).unwrap();
    assert_eq!(s.name, "fashion-mnist");
    assert_eq!(
        (s.train.rows, s.test.as_ref().unwrap().rows),
        (60000, 10000)
    );
    assert_eq!((s.train.dim, s.train.num_classes()), (784, Some(10)));
    let names = s.class_names.unwrap();
    assert_eq!(
        (names.len(), names[0].as_str(), names[9].as_str()),
        (10, "T-shirt/top", "Ankle boot")
    );
    // Fashion-MNIST is exactly balanced.
    let mut counts = [0usize; 10];
    for &l in labels_of(&s.train) {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [6000; 10]);
}

#[test]
fn synthetic_sets_have_their_shapes() {
    let s = load(&DataSource::Spiral, 1).unwrap();
    assert_eq!(
        (s.train.rows, s.train.dim, s.train.image_shape),
        (3000, 2, (1, 2))
    );
    assert_eq!(
        (s.test.as_ref().unwrap().rows, s.train.num_classes()),
        (900, Some(3))
    );
    assert!(matches!(&s.train.features, Features::F32(v) if v.len() == 6000));
    assert_eq!(labels_of(&s.train)[999..1001], [0, 1]);

    let s = load(&DataSource::Sine, 1).unwrap();
    assert_eq!(
        (s.train.rows, s.train.dim, s.train.output_dim()),
        (1000, 1, 1)
    );
    let test = s.test.unwrap();
    assert_eq!(test.rows, 200);
    // Test points sit between the training points, at (i + 0.5) / 200.
    let Features::F32(x) = &test.features else {
        panic!("f32")
    };
    assert_eq!((x[0], x[199]), (0.0025, 0.9975));
    let Targets::Values { values, dim: 1 } = &test.targets else {
        panic!("values")
    };
    assert!((values[50] - (std::f32::consts::TAU * x[50]).sin()).abs() < 1e-6);
}

#[test]
fn synthetic_sets_are_deterministic_by_seed() {
    let a = load(&DataSource::Spiral, 7).unwrap();
    let b = load(&DataSource::Spiral, 7).unwrap();
    let c = load(&DataSource::Spiral, 8).unwrap();
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    assert_ne!(a.train, c.train);
    // Train and test are independent draws, not the same noise.
    assert_ne!(
        a.train.subset(&(0..900).collect::<Vec<_>>()).features,
        a.test.unwrap().features
    );
    assert_eq!(
        load(&DataSource::Sine, 1).unwrap().train,
        load(&DataSource::Sine, 2).unwrap().train
    );
}

// ---------------------------------------------------------------------------------------------
// Validation split

#[test]
fn split_validation_sizes_and_determinism() {
    let train = load(&DataSource::Spiral, 0).unwrap().train;
    let (t, v) = split_validation(train.clone(), 0.1, 5).unwrap();
    assert_eq!((t.rows, v.rows), (2700, 300));
    assert_eq!((t.dim, v.dim, v.num_classes()), (2, 2, Some(3)));
    let (t2, v2) = split_validation(train.clone(), 0.1, 5).unwrap();
    assert_eq!((&t, &v), (&t2, &v2));
    let (_, v3) = split_validation(train.clone(), 0.1, 6).unwrap();
    assert_ne!(v, v3);
    // Every class is represented in a random 10%.
    let mut seen = [false; 3];
    for &l in labels_of(&v) {
        seen[l as usize] = true;
    }
    assert_eq!(seen, [true; 3]);
    // ceil: 0.0001 of 3000 rows is 0.3, rounded up to one row.
    assert_eq!(split_validation(train, 0.0001, 0).unwrap().1.rows, 1);
}

#[test]
fn split_validation_is_a_partition() {
    // Sine rows are distinct, so the two parts together must be exactly the original rows.
    let ds = wgtrain::data::synthetic::sine_grid(50, 0.0);
    let (t, v) = split_validation(ds.clone(), 0.3, 9).unwrap();
    let (Features::F32(a), Features::F32(b)) = (&t.features, &v.features) else {
        panic!()
    };
    let mut all: Vec<f32> = a.iter().chain(b).copied().collect();
    all.sort_by(f32::total_cmp);
    assert_eq!(Features::F32(all), ds.features);
}

#[test]
fn split_validation_errors() {
    let ds = wgtrain::data::synthetic::sine_grid(10, 0.0);
    for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        assert_err(
            split_validation(ds.clone(), bad, 0),
            &["--val-split", "between 0 and 1"],
        );
    }
    assert_err(
        split_validation(ds.clone(), 0.99, 0),
        &["--val-split 0.99 leaves no training data"],
    );
    let one = wgtrain::data::synthetic::sine_grid(1, 0.0);
    assert_err(split_validation(one, 0.5, 0), &["leaves no training data"]);
}

/// Training and prediction read an image with transparency the same way (composited over
/// white, whatever colour hides under a transparent pixel), so a model sees in `predict` the
/// pixels it was trained on.
#[test]
fn transparency_reads_the_same_in_training_and_prediction() {
    let tmp = tempfile::tempdir().unwrap();
    // Black strokes on a transparent background whose hidden colour is black, with a
    // half-transparent pixel: what drawing programs save.
    let img = image::RgbaImage::from_fn(6, 4, |x, y| match (x, y) {
        (1..=4, 1) => image::Rgba([0, 0, 0, 255]),
        (2, 2) => image::Rgba([0, 0, 0, 128]),
        _ => image::Rgba([0, 0, 0, 0]),
    });
    for class in ["a", "b"] {
        let p = tmp.path().join("train").join(class).join("x.png");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save(&p).unwrap();
    }
    let s = load(&path_source(tmp.path()), 0).unwrap();
    let Features::U8(px) = &s.train.features else {
        panic!("u8 features")
    };
    let predicted =
        wgtrain::infer::input::read_image(&tmp.path().join("train/a/x.png"), (4, 6), false)
            .unwrap();
    assert_eq!(&px[..24], &predicted[..]);
    assert_eq!((px[0], px[7], px[14]), (255, 0, 127));
}
