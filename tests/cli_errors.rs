//! Every way a user can get input or environment wrong, through the real binary: a non-zero
//! exit, one or two lines on stderr that say what is wrong and what to do, no panic or
//! backtrace, and output files from an earlier run left byte for byte as they were.
//!
//! Each test writes its own small data in a temporary directory and runs `wgtrain` there with
//! `--save`, `--metrics` and `--checkpoint` pointing at files that already exist.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use std::time::{Duration, Instant};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use wgtrain::store::{load_checkpoint, load_model};

/// Output files that exist before each failing run, with their contents.
const OUTPUTS: [(&str, &str, &[u8]); 3] = [
    ("--save", "out.safetensors", b"an earlier model"),
    ("--metrics", "m.csv", b"epoch,train_loss\n1,0.5\n"),
    ("--checkpoint", "c.safetensors", b"an earlier checkpoint"),
];

const IDX_TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const IDX_TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const IDX_TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const IDX_TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// An IDX image file: the 16-byte header (magic 2051, count, rows, cols) and `n` images.
fn idx_images(n: u32, h: u32, w: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051u32, n, h, w] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..n * h * w).map(|i| (i * 37 % 256) as u8));
    v
}

/// An IDX label file: magic 2049, count, then one byte per label.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = 2049u32.to_be_bytes().to_vec();
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// Twelve labels over three classes.
fn labels12() -> Vec<u8> {
    (0..12).map(|i| i % 3).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gray_png(path: &Path, h: u32, w: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([value]))
        .save(path)
        .unwrap();
}

/// A PNG whose header declares `w x h` 8-bit gray pixels but whose data is a few bytes: what
/// a corrupt or hostile file looks like to a decoder that trusts its header.
fn lying_png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0; 64]).unwrap();
    chunk(&mut png, b"IDAT", &z.finish().unwrap());
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A temporary working directory for one test, with the output files of an earlier run.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let w = Work {
            dir: tempfile::tempdir().unwrap(),
        };
        for (_, name, bytes) in OUTPUTS {
            w.write(name, bytes);
        }
        w
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }

    /// A directory of IDX training files (and test files when given).
    fn idx_dir(&self, name: &str, train: (Vec<u8>, Vec<u8>), test: Option<(Vec<u8>, Vec<u8>)>) {
        self.write(&format!("{name}/{IDX_TRAIN_IMAGES}"), &train.0);
        self.write(&format!("{name}/{IDX_TRAIN_LABELS}"), &train.1);
        if let Some((images, labels)) = test {
            self.write(&format!("{name}/{IDX_TEST_IMAGES}"), &images);
            self.write(&format!("{name}/{IDX_TEST_LABELS}"), &labels);
        }
    }

    /// A good data set: twelve 4x4 images in three classes.
    fn good_idx_dir(&self, name: &str) {
        self.idx_dir(name, (idx_images(12, 4, 4), idx_labels(&labels12())), None);
    }

    /// Runs `wgtrain` in the directory. Backtraces are switched on, so a panic could not
    /// hide its trace.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        common::command()
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_BACKTRACE", "1")
            .envs(env.iter().copied())
            .output()
            .expect("the binary runs")
    }

    /// Trains one epoch on `data` and writes a checkpoint to `ck`; panics if that fails.
    fn checkpoint(&self, data: &str, ck: &str) {
        let out = self.run(
            &[
                "train",
                "--backend",
                "cpu",
                "--data",
                data,
                "--hidden",
                "4",
                "--epochs",
                "1",
                "--quiet",
                "--checkpoint",
                ck,
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `wgtrain train ARGS --quiet --save .. --metrics .. --checkpoint ..` (with
    /// `--backend cpu` unless ARGS choose a backend) and checks the failure: exit `code`, an
    /// `error:` message holding every fragment, no panic or backtrace, at most two lines for
    /// our own errors (code 1), and every output file unchanged with no temporary file left.
    /// Returns stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, fragments: &[&str]) -> String {
        self.fails_env(args, &[], code, fragments)
    }

    #[track_caller]
    fn fails_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        code: i32,
        fragments: &[&str],
    ) -> String {
        let mut all = vec!["train"];
        if !args.contains(&"--backend") {
            all.extend(["--backend", "cpu"]);
        }
        all.extend_from_slice(args);
        all.push("--quiet");
        for (flag, name, _) in OUTPUTS {
            all.extend([flag, name]);
        }
        let before = self.files();
        let out = self.run(&all, env);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "wgtrain {all:?}\nstderr:\n{err}"
        );
        assert!(err.starts_with("error: "), "{err}");
        for f in fragments {
            assert!(err.contains(f), "stderr lacks {f:?}:\n{err}");
        }
        let lower = err.to_lowercase();
        assert!(!lower.contains("panicked"), "{err}");
        assert!(!lower.contains("backtrace"), "{err}");
        if code == 1 {
            assert!(err.lines().count() <= 2, "more than two lines:\n{err}");
        }
        for (_, name, bytes) in OUTPUTS {
            assert_eq!(self.read(name), bytes, "{name} changed; stderr:\n{err}");
        }
        assert_eq!(self.files(), before, "files appeared or vanished");
        err
    }

    /// The names in the directory (temporary files of interrupted writes included).
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Data

#[test]
fn data_directory_missing() {
    let w = Work::new();
    w.fails(
        &["--data", "no-such-dir"],
        1,
        &["no-such-dir", "no such file or directory", "mnist-sample"],
    );
}

#[test]
fn data_path_is_a_file() {
    let w = Work::new();
    w.write("file.idx", &idx_images(1, 1, 1));
    w.fails(
        &["--data", "file.idx"],
        1,
        &["file.idx", "not a directory", "--data takes a directory"],
    );
}

#[test]
fn data_directory_without_data() {
    let w = Work::new();
    w.write("d/README", b"nothing here");
    w.fails(
        &["--data", "d"],
        1,
        &["found neither IDX files", "nor an image folder"],
    );
}

#[test]
fn idx_label_file_missing() {
    let w = Work::new();
    w.write(&format!("d/{IDX_TRAIN_IMAGES}"), &idx_images(12, 4, 4));
    w.fails(
        &["--data", "d"],
        1,
        &["not both", IDX_TRAIN_LABELS, "add the missing one"],
    );
}

#[test]
fn idx_wrong_magic() {
    let w = Work::new();
    let mut images = idx_images(12, 4, 4);
    images[2..4].copy_from_slice(&[0x12, 0x34]);
    w.idx_dir("d", (images, idx_labels(&labels12())), None);
    w.fails(
        &["--data", "d"],
        1,
        &[
            IDX_TRAIN_IMAGES,
            "wrong magic number 0x00001234",
            "expected 0x00000803 (2051)",
        ],
    );
}

#[test]
fn idx_swapped_image_and_label_files() {
    let w = Work::new();
    w.idx_dir("d", (idx_labels(&labels12()), idx_images(12, 4, 4)), None);
    w.fails(
        &["--data", "d"],
        1,
        &["(this is an IDX label file)", "use the images file"],
    );
}

#[test]
fn idx_truncated() {
    let w = Work::new();
    let images = idx_images(12, 4, 4);
    w.idx_dir(
        "d",
        (images[..images.len() - 5].to_vec(), idx_labels(&labels12())),
        None,
    );
    w.fails(
        &["--data", "d"],
        1,
        &[
            "12 images of 4x4 pixels",
            "208 bytes are expected, but 203 bytes were found (truncated",
            "replace it",
        ],
    );
}

#[test]
fn idx_trailing_bytes() {
    let w = Work::new();
    let mut labels = idx_labels(&labels12());
    labels.extend_from_slice(b"xyz");
    w.idx_dir("d", (idx_images(12, 4, 4), labels), None);
    w.fails(
        &["--data", "d"],
        1,
        &[IDX_TRAIN_LABELS, "12 labels", "3 trailing bytes"],
    );
}

#[test]
fn idx_image_and_label_counts_differ() {
    let w = Work::new();
    w.idx_dir(
        "d",
        (idx_images(12, 4, 4), idx_labels(&labels12()[..11])),
        None,
    );
    w.fails(
        &["--data", "d"],
        1,
        &["has 12 images but", "has 11 labels", "pair one to one"],
    );
}

#[test]
fn idx_train_and_test_image_sizes_differ() {
    let w = Work::new();
    w.idx_dir(
        "d",
        (idx_images(12, 4, 4), idx_labels(&labels12())),
        Some((idx_images(3, 5, 5), idx_labels(&[0, 1, 2]))),
    );
    w.fails(
        &["--data", "d"],
        1,
        &["training images are 4x4 but test images are 5x5", "resize"],
    );
}

#[test]
fn idx_corrupt_gzip() {
    let w = Work::new();
    let mut gz = gzip(&idx_images(12, 4, 4));
    let n = gz.len();
    gz[n - 12..n - 4].copy_from_slice(b"garbage!"); // the deflate tail and the CRC
    w.write(&format!("d/{IDX_TRAIN_IMAGES}.gz"), &gz);
    w.write(&format!("d/{IDX_TRAIN_LABELS}"), &idx_labels(&labels12()));
    w.fails(
        &["--data", "d"],
        1,
        &[
            &format!("{IDX_TRAIN_IMAGES}.gz"),
            "not a valid gzip stream",
            "replace it",
        ],
    );
}

#[test]
fn idx_truncated_gzip() {
    let w = Work::new();
    let gz = gzip(&idx_images(12, 4, 4));
    w.write(&format!("d/{IDX_TRAIN_IMAGES}.gz"), &gz[..gz.len() / 2]);
    w.write(&format!("d/{IDX_TRAIN_LABELS}"), &idx_labels(&labels12()));
    w.fails(&["--data", "d"], 1, &["not a valid gzip stream"]);
}

#[test]
fn idx_empty_data_set() {
    let w = Work::new();
    w.idx_dir("d", (idx_images(0, 4, 4), idx_labels(&[])), None);
    w.fails(
        &["--data", "d"],
        1,
        &["the training set is empty", "point --data at"],
    );
}

/// A header that declares 2^32 - 1 images in a 19-byte file is refused by comparing with the
/// file's length, before anything is allocated: the run fails at once.
#[test]
fn idx_huge_header_count_fails_fast() {
    let w = Work::new();
    let mut images = idx_images(0, 28, 28);
    images[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    images.extend_from_slice(b"abc");
    w.idx_dir("d", (images.clone(), idx_labels(&labels12())), None);
    let t = Instant::now();
    w.fails(
        &["--data", "d"],
        1,
        &["4294967295 images of 28x28 pixels", "19 bytes were found"],
    );
    assert!(t.elapsed() < Duration::from_secs(5));

    // The same header inside a gzip stream: refused from the header alone.
    std::fs::remove_file(w.path(&format!("d/{IDX_TRAIN_IMAGES}"))).unwrap();
    images[8..16].copy_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0]); // 65536 x 65536
    w.write(&format!("d/{IDX_TRAIN_IMAGES}.gz"), &gzip(&images));
    w.fails(&["--data", "d"], 1, &["exceed the 4 GiB", "corrupt"]);

    // And in a label file.
    let mut labels = idx_labels(&labels12());
    labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    w.idx_dir("e", (idx_images(12, 4, 4), labels), None);
    w.fails(
        &["--data", "e"],
        1,
        &["4294967295 labels", "20 bytes were found"],
    );
}

/// Labels the model cannot output: a checkpoint trained with three classes, resumed on data
/// whose label file now holds a 12.
#[test]
fn labels_beyond_the_models_classes() {
    let w = Work::new();
    w.good_idx_dir("d");
    w.checkpoint("d", "ck.safetensors");
    let mut labels = labels12();
    labels[5] = 12;
    w.write(&format!("d/{IDX_TRAIN_LABELS}"), &idx_labels(&labels));
    let ck = w.read("ck.safetensors");
    w.fails(
        &["--resume", "ck.safetensors", "--epochs", "2"],
        1,
        &[
            "label 12",
            "model with 3 classes",
            "the classes the model was trained on",
        ],
    );
    assert_eq!(w.read("ck.safetensors"), ck);
}

/// One corrupt byte in a label file (a 200 among labels 0 to 2) would make a 201-class model
/// with 197 classes that have no rows: refused, naming the label and the way out.
#[test]
fn corrupt_label_makes_empty_classes() {
    let w = Work::new();
    let mut labels = labels12();
    labels[7] = 200;
    w.idx_dir("d", (idx_images(12, 4, 4), idx_labels(&labels)), None);
    w.fails(
        &["--data", "d"],
        1,
        &[
            "the training labels run from 0 to 200, but 197 of those 201 classes have no rows",
            "(labels 3, 4, 5, ...)",
            "label 200 is on 1 row",
            "--classes 201",
        ],
    );
}

/// `--classes N` declares classes without training rows; then every label must be below N,
/// and the banner says how many classes there are and how many have rows.
#[test]
fn classes_flag_declares_the_classes() {
    let w = Work::new();
    w.good_idx_dir("d");
    w.fails(
        &["--data", "d", "--classes", "2"],
        1,
        &["a training row has label 2, but --classes 2 allows labels 0 to 1"],
    );
    w.fails(
        &["--data", "d", "--classes", "1"],
        1,
        &["--classes must be at least 2"],
    );
    w.fails(
        &["--data", "sine", "--classes", "3"],
        1,
        &["--classes applies to class labels, but sine has real-valued targets"],
    );
    let train = [
        "train",
        "--backend",
        "cpu",
        "--data",
        "d",
        "--hidden",
        "4",
        "--epochs",
        "1",
    ];
    let banner = |extra: &[&str]| {
        let args: Vec<&str> = train.iter().chain(extra).copied().collect();
        let out = w.run(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let e = banner(&[]);
    assert!(e.contains("(12 train rows, 3 classes)"), "{e}");
    let e = banner(&["--classes", "5"]);
    assert!(
        e.contains("(12 train rows, 5 classes, 3 with training rows)"),
        "{e}"
    );
    assert!(e.contains("16-4-5 relu"), "{e}");
}

/// A test label that no training row has cannot be learned: refused, unless declared with
/// `--classes`.
#[test]
fn test_labels_never_seen_in_training() {
    let w = Work::new();
    let mut test_labels = labels12();
    test_labels[4] = 3;
    w.idx_dir(
        "d",
        (idx_images(12, 4, 4), idx_labels(&labels12())),
        Some((idx_images(12, 4, 4), idx_labels(&test_labels))),
    );
    w.fails(
        &["--data", "d"],
        1,
        &[
            "1 test row has label 3, which no training row has",
            "--classes N (above 3)",
        ],
    );
    let out = w.run(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            "d",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "--quiet",
            "--classes",
            "4",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An image-folder tree with one class would train softmax cross-entropy over one output, whose
/// loss is exactly 0 whatever the weights: refused, naming the class.
#[test]
fn folder_with_a_single_class() {
    let w = Work::new();
    gray_png(&w.path("d/train/cat/a.png"), 4, 4, 1);
    gray_png(&w.path("d/train/cat/b.png"), 4, 4, 2);
    w.fails(
        &["--data", "d"],
        1,
        &[
            "every training row has label 0 (cat)",
            "a classifier needs rows of two classes or more",
        ],
    );
}

#[test]
fn folder_without_class_subfolders() {
    let w = Work::new();
    gray_png(&w.path("d/train/a.png"), 4, 4, 1);
    w.fails(
        &["--data", "d"],
        1,
        &["no class subfolders", "one folder per class"],
    );
}

#[test]
fn folder_with_a_non_image_file() {
    let w = Work::new();
    gray_png(&w.path("d/train/cat/a.png"), 4, 4, 1);
    w.write("d/train/cat/labels.csv", b"a.png,cat\n");
    w.fails(
        &["--data", "d"],
        1,
        &["labels.csv", "not an image file", "move it out"],
    );
}

#[test]
fn folder_with_a_corrupt_image() {
    let w = Work::new();
    gray_png(&w.path("d/train/cat/a.png"), 4, 4, 1);
    w.write("d/train/cat/b.png", b"this is not a PNG");
    w.fails(
        &["--data", "d"],
        1,
        &["b.png", "cannot decode image", "replace or remove it"],
    );
}

#[test]
fn folder_with_images_of_different_sizes() {
    let w = Work::new();
    gray_png(&w.path("d/train/cat/a.png"), 4, 4, 1);
    gray_png(&w.path("d/train/dog/b.png"), 4, 5, 2);
    w.fails(
        &["--data", "d"],
        1,
        &["b.png", "4x5", "a.png", "4x4", "resize them"],
    );
}

#[test]
fn folder_train_and_test_image_sizes_differ() {
    let w = Work::new();
    gray_png(&w.path("d/train/cat/a.png"), 4, 4, 1);
    gray_png(&w.path("d/train/dog/b.png"), 4, 4, 2);
    gray_png(&w.path("d/test/cat/c.png"), 3, 3, 1);
    w.fails(
        &["--data", "d"],
        1,
        &["training images are 4x4 but test images are 3x3"],
    );
}

/// A 100-byte PNG whose header declares 5000x5000 pixels (under the bound on any image's size)
/// is refused from its header (the decoder would otherwise allocate 25 MB before finding the
/// data missing; a real header can lie by far more).
#[test]
fn folder_image_header_larger_than_its_file() {
    let w = Work::new();
    gray_png(&w.path("d/train/cat/a.png"), 4, 4, 1);
    w.write("d/train/cat/b.png", &lying_png(5_000, 5_000));
    w.fails(
        &["--data", "d"],
        1,
        &["b.png", "declares more pixels than a", "corrupt"],
    );
}

// ---------------------------------------------------------------------------------------------
// Flags

#[test]
fn batch_size_zero() {
    Work::new().fails(
        &["--batch-size", "0"],
        1,
        &["--batch-size must be at least 1"],
    );
}

#[test]
fn epochs_zero() {
    Work::new().fails(&["--epochs", "0"], 1, &["--epochs must be at least 1"]);
}

#[test]
fn negative_counts_are_refused_by_name() {
    let w = Work::new();
    // Not "unexpected argument '-1'": the flag and the value are named.
    w.fails(
        &["--epochs", "-1"],
        2,
        &["invalid value '-1' for '--epochs"],
    );
    w.fails(
        &["--batch-size", "-8"],
        2,
        &["invalid value '-8' for '--batch-size"],
    );
}

#[test]
fn learning_rate_negative_or_zero() {
    let w = Work::new();
    w.fails(&["--lr", "-0.1"], 1, &["--lr must be a finite number > 0"]);
    w.fails(&["--lr", "0"], 1, &["--lr must be a finite number > 0"]);
}

#[test]
fn learning_rate_not_finite() {
    let w = Work::new();
    for v in ["--lr=nan", "--lr=inf", "--lr=-inf"] {
        w.fails(&[v], 1, &["--lr must be a finite number > 0"]);
    }
}

#[test]
fn dropout_outside_zero_one() {
    let w = Work::new();
    for v in ["1", "1.5", "-0.1", "nan"] {
        w.fails(&["--dropout", v], 1, &["--dropout must be in [0, 1)"]);
    }
}

#[test]
fn hidden_sizes_empty_or_zero() {
    let w = Work::new();
    w.fails(&["--hidden", ""], 2, &["invalid value '' for '--hidden"]);
    for v in ["0", "64,0"] {
        w.fails(
            &["--hidden", v],
            1,
            &["--hidden needs one or more sizes of at least 1"],
        );
    }
}

/// Sizes no machine can hold are refused before allocating, not aborted on.
#[test]
fn hidden_sizes_too_large() {
    let w = Work::new();
    w.fails(
        &["--hidden", "1000000000000"],
        1,
        &["parameters, more than the", "use smaller --hidden sizes"],
    );
    w.fails(
        &["--hidden", &usize::MAX.to_string()],
        1,
        &["use smaller --hidden sizes"],
    );
}

#[test]
fn validation_split_leaves_no_training_data() {
    let w = Work::new();
    w.good_idx_dir("d");
    w.fails(
        &["--data", "d", "--val-split", "0.99"],
        1,
        &[
            "--val-split 0.99 leaves no training data (12 rows, 12 for validation)",
            "use a smaller --val-split",
        ],
    );
}

#[test]
fn validation_split_out_of_range() {
    let w = Work::new();
    for v in ["1", "-0.2", "nan"] {
        w.fails(
            &["--val-split", v],
            1,
            &["--val-split must be in [0, 1) (0: no validation set)"],
        );
    }
}

#[test]
fn unknown_optimizer() {
    Work::new().fails(
        &["--optimizer", "lion"],
        2,
        &["'lion'", "possible values", "adam"],
    );
}

#[test]
fn unknown_activation() {
    Work::new().fails(
        &["--activation", "gelu"],
        2,
        &["'gelu'", "possible values", "relu"],
    );
}

#[test]
fn checkpoint_every_zero() {
    Work::new().fails(
        &["--checkpoint-every", "0"],
        1,
        &["--checkpoint-every must be at least 1"],
    );
}

/// An output that cannot be written is found before training, not after it.
#[test]
fn output_path_unwritable() {
    let w = Work::new();
    let out = w.run(
        &[
            "train",
            "--backend",
            "cpu",
            "--quiet",
            "--save",
            "no-such-dir/model.safetensors",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--save no-such-dir/model.safetensors: the folder no-such-dir does not exist"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    std::fs::create_dir(w.path("a-dir.csv")).unwrap();
    let out = w.run(
        &[
            "train",
            "--backend",
            "cpu",
            "--quiet",
            "--metrics",
            "a-dir.csv",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--metrics a-dir.csv: is a folder; give a file path"),
        "{err}"
    );
}

/// Runs `wgtrain ARGS` (any command) in `w` and checks it is refused at once with one
/// `error:` line holding every fragment.
#[track_caller]
fn refused(w: &Work, args: &[&str], env: &[(&str, &str)], fragments: &[&str]) -> String {
    let t = Instant::now();
    let out = w.run(args, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "wgtrain {args:?}\nstderr:\n{err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for f in fragments {
        assert!(err.contains(f), "stderr lacks {f:?}:\n{err}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        t.elapsed()
    );
    err
}

/// Optimizer flags the chosen optimizer would ignore are refused, not accepted and dropped;
/// so is Nesterov momentum without momentum, which would silently be plain SGD.
#[test]
fn optimizer_flags_the_optimizer_ignores() {
    let w = Work::new();
    w.fails(
        &["--optimizer", "adam", "--momentum", "0.5"],
        1,
        &["--momentum applies only to --optimizer sgd", "uses adam"],
    );
    // Adam is the default optimizer.
    w.fails(
        &["--nesterov"],
        1,
        &["--nesterov applies only to --optimizer sgd", "uses adam"],
    );
    w.fails(
        &["--optimizer", "rmsprop", "--weight-decay", "0.1"],
        1,
        &[
            "--weight-decay applies only to --optimizer adamw",
            "uses rmsprop",
        ],
    );
    w.fails(
        &["--optimizer", "sgd", "--nesterov", "--momentum", "0"],
        1,
        &["--nesterov needs momentum", "--momentum is 0"],
    );
}

/// `--scale` maps image pixels; real-valued features are used as they are.
#[test]
fn scale_on_real_valued_data() {
    Work::new().fails(
        &["--data", "spiral", "--scale", "minus-one-one"],
        1,
        &[
            "--scale scales image pixels",
            "spiral has real-valued features",
        ],
    );
}

/// `--adapter` picks a GPU, so with `--backend cpu` it is refused, in every command that has
/// both; WGTRAIN_ADAPTER, set once for every run, is no such request.
#[test]
fn adapter_with_the_cpu_backend() {
    let w = Work::new();
    w.fails(
        &["--backend", "cpu", "--adapter", "0"],
        1,
        &["--adapter picks a GPU but --backend cpu runs on the CPU"],
    );
    refused(
        &w,
        &["bench", "--backend", "cpu", "--adapter", "0"],
        &[],
        &["--adapter picks a GPU"],
    );
    let spiral = [
        "train",
        "--backend",
        "cpu",
        "--data",
        "spiral",
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--quiet",
    ];
    let out = w.run(&spiral, &[("WGTRAIN_ADAPTER", "0")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bench --quick` times one epoch, so an `--epochs` beside it would be ignored.
#[test]
fn bench_epochs_with_quick() {
    refused(
        &Work::new(),
        &["bench", "--backend", "cpu", "--quick", "--epochs", "2"],
        &[],
        &["--epochs has no effect with --quick"],
    );
}

/// Two outputs naming one file would have one write destroy the other: the model saved over
/// the checkpoint, or over the checkpoint being resumed.
#[test]
fn save_and_checkpoint_naming_one_file() {
    let w = Work::new();
    w.good_idx_dir("d");
    let train = [
        "train",
        "--backend",
        "cpu",
        "--data",
        "d",
        "--hidden",
        "4",
        "--quiet",
    ];
    let with =
        |extra: &[&'static str]| -> Vec<&str> { train.iter().chain(extra).copied().collect() };
    refused(
        &w,
        &with(&["--save", "m.safetensors", "--checkpoint", "./m.safetensors"]),
        &[],
        &[
            "--save and --checkpoint both name m.safetensors",
            "give each its own file",
        ],
    );
    assert!(!w.path("m.safetensors").exists());
    w.checkpoint("d", "ck.safetensors");
    let ck = w.read("ck.safetensors");
    refused(
        &w,
        &with(&[
            "--resume",
            "ck.safetensors",
            "--epochs",
            "2",
            "--save",
            "ck.safetensors",
        ]),
        &[],
        &["--save and --resume", "both name ck.safetensors"],
    );
    refused(
        &w,
        &with(&[
            "--resume",
            "ck.safetensors",
            "--checkpoint",
            "c2.safetensors",
            "--save",
            "ck.safetensors",
        ]),
        &[],
        &["--save and --resume both name ck.safetensors"],
    );
    assert_eq!(w.read("ck.safetensors"), ck);
    // Checkpoints written back to the file resumed from are what resuming normally does.
    let out = w.run(
        &with(&[
            "--resume",
            "ck.safetensors",
            "--epochs",
            "2",
            "--checkpoint",
            "ck.safetensors",
        ]),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Saved models and checkpoints

/// The tensors and metadata of a safetensors file, to be edited and written back.
fn edit_safetensors(
    bytes: &[u8],
    edit: impl FnOnce(
        &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
        &mut std::collections::HashMap<String, String>,
    ),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut meta);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// `--resume` with flags that repeat the settings the run used, defaults included (the loss
/// the data chose, the classes it settled), is accepted, also from a checkpoint of the previous
/// version that stored no loss; a flag that contradicts one is refused naming both values.
#[test]
fn resume_flags_that_repeat_the_checkpoint_are_accepted() {
    let w = with_checkpoint();
    let resume = |epochs: &'static str, extra: &[&'static str]| {
        let mut args = vec![
            "train",
            "--backend",
            "cpu",
            "--data",
            "d",
            "--quiet",
            "--resume",
            "ck.safetensors",
            "--epochs",
            epochs,
        ];
        args.extend(extra);
        w.run(&args, &[])
    };
    let repeat = [
        "--loss",
        "cross-entropy",
        "--classes",
        "3",
        "--val-split",
        "0",
    ];
    let out = resume("2", &repeat);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.fails(
        &[
            "--data",
            "d",
            "--resume",
            "ck.safetensors",
            "--epochs",
            "3",
            "--loss",
            "bce",
        ],
        1,
        &["--loss bce contradicts the checkpoint, which was trained with cross-entropy"],
    );
    w.fails(
        &[
            "--data",
            "d",
            "--resume",
            "ck.safetensors",
            "--epochs",
            "3",
            "--val-split",
            "0.5",
        ],
        1,
        &["--val-split 0.5 contradicts the checkpoint, which was trained with none"],
    );

    // The previous version's checkpoint: `"loss": null` for the default, no `classes`.
    let old = edit_safetensors(&w.read("ck.safetensors"), |_, meta| {
        let mut c: serde_json::Value = serde_json::from_str(&meta["checkpoint"]).unwrap();
        let run = c["run"].as_object_mut().unwrap();
        assert_eq!(run["loss"], "cross-entropy");
        run.insert("loss".into(), serde_json::Value::Null);
        run.remove("classes").unwrap();
        meta.insert("checkpoint".into(), c.to_string());
    });
    w.write("ck.safetensors", &old);
    let out = resume("3", &repeat);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A work directory with data `d` and a good checkpoint `ck.safetensors` trained on it.
fn with_checkpoint() -> Work {
    let w = Work::new();
    w.good_idx_dir("d");
    w.checkpoint("d", "ck.safetensors");
    w
}

/// Resuming from `bad` (written from the good checkpoint's bytes by `make`) fails with the
/// fragments, from the binary and from the library's readers alike; `bad` is left as it was.
#[track_caller]
fn bad_model_file(make: impl FnOnce(&[u8]) -> Vec<u8>, fragments: &[&str]) {
    let w = with_checkpoint();
    let bad = make(&w.read("ck.safetensors"));
    w.write("bad.safetensors", &bad);
    w.fails(&["--resume", "bad.safetensors"], 1, fragments);
    assert_eq!(w.read("bad.safetensors"), bad);
    let path = w.path("bad.safetensors");
    for e in [
        load_model(&path).map(|_| ()).unwrap_err().to_string(),
        load_checkpoint(&path).map(|_| ()).unwrap_err().to_string(),
    ] {
        for f in fragments {
            assert!(e.contains(f), "{e:?} lacks {f:?}");
        }
    }
}

#[test]
fn model_file_missing() {
    let w = Work::new();
    w.fails(
        &["--resume", "gone.safetensors"],
        1,
        &[
            "--resume: gone.safetensors",
            "No such file",
            "check the path",
        ],
    );
}

#[test]
fn model_file_not_safetensors() {
    bad_model_file(
        |_| b"epoch,train_loss\n1,0.5\n".to_vec(),
        &["not a safetensors file", "wgtrain train --save"],
    );
}

#[test]
fn model_file_truncated() {
    for keep in [4, 200, 1000] {
        bad_model_file(
            |b| b[..b.len().min(keep)].to_vec(),
            &["not a safetensors file, or one cut short"],
        );
    }
    bad_model_file(
        |b| b[..b.len() - 10].to_vec(),
        &["not a safetensors file, or one cut short"],
    );
}

#[test]
fn model_file_missing_tensor() {
    bad_model_file(
        |b| edit_safetensors(b, |t, _| t.retain(|(n, ..)| n != "layers.2.bias")),
        &["tensor layers.2.bias is missing", "damaged"],
    );
}

#[test]
fn model_file_shape_contradicts_metadata() {
    // The first weight, (4, 16) in the spec, stored as (16, 4): same bytes, wrong shape.
    bad_model_file(
        |b| {
            edit_safetensors(b, |t, _| {
                let w = t.iter_mut().find(|(n, ..)| n == "layers.0.weight").unwrap();
                w.2.reverse();
            })
        },
        &[
            "tensor layers.0.weight has shape [16, 4] but the model spec says [4, 16]",
            "damaged",
        ],
    );
    // A spec whose layers do not chain.
    bad_model_file(
        |b| {
            edit_safetensors(b, |_, m| {
                let spec = m["spec"].replace("\"outputs\":4", "\"outputs\":5");
                m.insert("spec".into(), spec);
            })
        },
        &["the model spec is invalid", "damaged"],
    );
    // A spec that declares a layer far larger than the file's tensors: refused from the
    // shapes, before the parameter vector is allocated.
    bad_model_file(
        |b| {
            edit_safetensors(b, |_, m| {
                let spec = m["spec"]
                    .replace(
                        "\"inputs\":16,\"outputs\":4",
                        "\"inputs\":16,\"outputs\":10000000",
                    )
                    .replace("\"inputs\":4,", "\"inputs\":10000000,");
                m.insert("spec".into(), spec);
            })
        },
        &["has shape [4, 16] but the model spec says [10000000, 16]"],
    );
}

#[test]
fn model_file_from_an_incompatible_version() {
    bad_model_file(
        |b| {
            edit_safetensors(b, |_, m| {
                m.insert("format_version".into(), "99".into());
            })
        },
        &[
            "incompatible version of wgtrain",
            "file format \"99\"",
            "retrain",
        ],
    );
}

#[test]
fn model_file_not_from_wgtrain() {
    bad_model_file(
        |b| {
            edit_safetensors(b, |_, m| {
                m.remove("format");
            })
        },
        &["not one written by wgtrain"],
    );
}

/// A saved model is not a checkpoint: it has no optimizer state to resume.
#[test]
fn resume_from_a_saved_model() {
    let w = Work::new();
    w.good_idx_dir("d");
    let out = w.run(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            "d",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "--quiet",
            "--save",
            "model.safetensors",
        ],
        &[],
    );
    assert!(out.status.success());
    w.fails(
        &["--resume", "model.safetensors"],
        1,
        &[
            "a saved model, not a training checkpoint",
            "pass the file written by --checkpoint",
        ],
    );
}

#[test]
fn resume_on_data_of_another_size() {
    let w = with_checkpoint();
    w.idx_dir("d", (idx_images(12, 5, 5), idx_labels(&labels12())), None);
    w.fails(
        &["--resume", "ck.safetensors", "--epochs", "2"],
        1,
        &[
            "25 features per row but the checkpoint's model takes 16",
            "resume with the data it was trained on",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Training

/// Plain SGD with a step far too large on the sine regression: the first epochs stay finite
/// (on every seed tried, the loss overflows in epoch 4), then the loss overflows. Training stops
/// with the epoch and step, the hint, and the checkpoint of the last good epoch intact.
#[test]
fn divergence_stops_and_keeps_the_last_good_checkpoint() {
    let w = Work::new();
    let args = [
        "train",
        "--backend",
        "cpu",
        "--data",
        "sine",
        "--optimizer",
        "sgd",
        "--momentum",
        "0",
        "--lr",
        "1.5",
        "--hidden",
        "8",
        "--epochs",
        "200",
        "--quiet",
        "--checkpoint-every",
        "1",
        "--checkpoint",
        "c.safetensors",
        "--metrics",
        "m.csv",
        "--save",
        "out.safetensors",
    ];
    let out = w.run(&args, &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("became NaN or infinite by step"), "{err}");
    assert!(err.contains("try a lower --lr"), "{err}");
    // "error: training diverged in epoch E: ... ; the checkpoint c.safetensors (epoch E-1) ..."
    let epoch: usize = err
        .split("diverged in epoch ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no epoch in {err}"));
    assert!(
        epoch >= 2,
        "diverged in epoch {epoch}: no good epoch to keep"
    );
    assert!(
        err.contains(&format!(
            "the checkpoint c.safetensors (epoch {}) is unchanged",
            epoch - 1
        )),
        "{err}"
    );
    let c = load_checkpoint(&w.path("c.safetensors")).unwrap();
    assert_eq!(c.meta.progress.epoch, epoch - 1);
    assert_eq!(c.meta.progress.rows_done, 0);
    assert!(c.model.params.iter().all(|v| v.is_finite()));
    assert!(c.state1.iter().chain(&c.state2).all(|v| v.is_finite()));
    assert_eq!(c.meta.history.len(), epoch - 1);
    // The metrics hold the good epochs; the model was never saved over the old file.
    let metrics = wgtrain::report::read_metrics(&w.path("m.csv")).unwrap();
    assert_eq!(metrics.len(), epoch - 1);
    assert!(metrics.iter().all(|r| r.train_loss.is_finite()));
    assert_eq!(w.read("out.safetensors"), OUTPUTS[0].2);
    assert!(!w.files().iter().any(|f| f.contains(".tmp-")));
}

// ---------------------------------------------------------------------------------------------
// GPU

/// With no Vulkan driver to be found, `--backend gpu` says so and points at `--backend cpu`.
#[test]
fn gpu_without_an_adapter() {
    let w = Work::new();
    w.fails_env(
        &["--backend", "gpu", "--epochs", "1"],
        &[
            ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
            ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
            ("WGPU_BACKEND", "vulkan"),
        ],
        1,
        &["no GPU adapter", "--backend cpu"],
    );
}

// ---------------------------------------------------------------------------------------------
// Bench

/// A malformed `--ratio` is refused before minutes of measuring, in one line.
#[test]
fn bench_ratio_needs_two_names() {
    let w = Work::new();
    let t = Instant::now();
    let out = w.run(&["bench", "--backend", "cpu", "--ratio", "cpu"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: --ratio takes two column names"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// Schedule flags that the chosen schedule would ignore, or that leave it nothing to do, and
/// out-of-range clipping and early stopping.
#[test]
fn schedule_clipping_and_early_stopping_flags() {
    let w = Work::new();
    w.fails(
        &["--gamma", "0.5"],
        1,
        &["--gamma applies only to --schedule step", "is constant"],
    );
    w.fails(
        &["--schedule", "cosine", "--decay", "0.1"],
        1,
        &[
            "--decay applies only to --schedule inverse-time",
            "is cosine",
        ],
    );
    w.fails(
        &["--schedule", "step"],
        1,
        &["--schedule step needs --step-epochs"],
    );
    w.fails(
        &[
            "--schedule",
            "cosine",
            "--warmup-epochs",
            "10",
            "--epochs",
            "10",
        ],
        1,
        &["--warmup-epochs 10 leaves nothing of the 10 epochs"],
    );
    w.fails(
        &["--clip-norm", "0"],
        1,
        &["--clip-norm must be a finite number > 0"],
    );
    w.fails(
        &["--early-stop", "0"],
        1,
        &["--early-stop must be at least 1"],
    );
}

/// Augmentation's shift needs images, and images larger than the shift.
#[test]
fn shift_needs_images_it_can_move() {
    let w = Work::new();
    w.fails(
        &["--data", "spiral", "--shift", "2"],
        1,
        &["a shift of 2 pixels needs image inputs"],
    );
    w.fails(
        &["--shift", "28"],
        1,
        &["would move 28x28 images out of sight; use at most 27"],
    );
}

// ---------------------------------------------------------------------------------------------
// Tune

/// `tune` with one kernel forced, or a batch size of 0, is refused in one line before any GPU
/// is opened.
#[test]
fn tune_with_nothing_to_tune() {
    let w = Work::new();
    for (args, env, msg) in [
        (
            &["tune"][..],
            &[("WGTRAIN_MATMUL_TILES", "64")][..],
            "error: WGTRAIN_MATMUL_TILES forces one matmul kernel",
        ),
        (
            &["tune", "--batch-sizes", "128,0"][..],
            &[][..],
            "error: --batch-sizes must all be at least 1",
        ),
    ] {
        let out = w.run(args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with(msg), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
