//! Saved models through the real binary: the safetensors layout other tools read, `eval`
//! agreeing with what training reported, `predict` on image files and IDX samples, the
//! plots, and the error paths a user can hit.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use std::sync::OnceLock;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::data::{self, DataSource, Dataset, Features, Targets};
use wgtrain::model::{Activation, LossKind, Model, ModelSpec};
use wgtrain::optim::{OptimizerConfig, OptimizerKind};
use wgtrain::store::{load_model, save_model};
use wgtrain::train::{RunData, Trainer, fit};

// ---------------------------------------------------------------------------------------------
// Helpers

fn wgtrain(args: &[&str]) -> Output {
    common::command()
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs the binary, asserts success, and returns its stdout.
#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = wgtrain(args);
    assert!(
        out.status.success(),
        "wgtrain {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs the binary, asserts it failed with exit status 1 and a one-line error containing
/// every fragment, and returns the message.
#[track_caller]
fn fails(args: &[&str], fragments: &[&str]) -> String {
    let out = wgtrain(args);
    assert_eq!(out.status.code(), Some(1), "wgtrain {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {err:?}"))
        .to_string();
    for f in fragments {
        assert!(line.contains(f), "error {line:?} lacks {f:?}");
    }
    line
}

/// The JSON object on the last line of `stdout`.
#[track_caller]
fn last_json(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

/// Equal up to the last bit or so: serde_json's default float parser is fast rather than
/// correctly rounded, so a number that went through JSON may come back one ulp off. (Values
/// compared with each other as parsed JSON need no tolerance: the same text parses the same.)
#[track_caller]
fn assert_close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A model trained once for the tests that only read it: 784-32-10 on mnist-sample, one epoch
/// on the CPU, with its metrics, plot and `--json` summary.
struct Trained {
    dir: PathBuf,
    model: PathBuf,
    summary: Value,
}

fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        // Kept for the whole test run; it lives under Cargo's scratch directory.
        let dir = tempfile::Builder::new()
            .prefix("cli_model")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let model = dir.join("model.safetensors");
        let out = ok(&[
            "train",
            "--backend",
            "cpu",
            "--hidden",
            "32",
            "--epochs",
            "1",
            "--save",
            s(&model),
            "--metrics",
            s(&dir.join("metrics.csv")),
            "--plot",
            s(&dir.join("train.png")),
            "--quiet",
            "--json",
        ]);
        Trained {
            summary: last_json(&out),
            dir,
            model,
        }
    })
}

/// The mnist-sample test set, as the binary loads it.
fn mnist_test() -> Dataset {
    data::load(&DataSource::MnistSample, 0)
        .unwrap()
        .test
        .expect("mnist-sample has a test split")
}

fn pixels(d: &Dataset) -> &[u8] {
    match &d.features {
        Features::U8(v) => v,
        Features::F32(_) => panic!("mnist has u8 pixels"),
    }
}

fn labels(d: &Dataset) -> &[u32] {
    match &d.targets {
        Targets::Classes { labels, .. } => labels,
        Targets::Values { .. } => panic!("mnist has labels"),
    }
}

/// Writes an uncompressed IDX image file and label file of the first `n` test digits.
fn write_idx(dir: &Path, test: &Dataset, n: usize) -> (PathBuf, PathBuf) {
    let mut img = Vec::new();
    for v in [0x0803u32, n as u32, 28, 28] {
        img.extend_from_slice(&v.to_be_bytes());
    }
    img.extend_from_slice(&pixels(test)[..n * 784]);
    let mut lbl = Vec::new();
    for v in [0x0801u32, n as u32] {
        lbl.extend_from_slice(&v.to_be_bytes());
    }
    lbl.extend(labels(test)[..n].iter().map(|&l| l as u8));
    let (ip, lp) = (dir.join("images.idx3"), dir.join("labels.idx1"));
    std::fs::write(&ip, img).unwrap();
    std::fs::write(&lp, lbl).unwrap();
    (ip, lp)
}

/// Checks a PNG decodes to the plot's size and is a picture, not a blank page.
#[track_caller]
fn assert_plot(path: &Path) {
    let img = image::open(path).expect("the plot decodes").to_rgb8();
    assert_eq!(img.dimensions(), (1200, 480));
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(non_white > 5_000, "only {non_white} non-white pixels");
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 50, "only {} colours", colours.len());
}

// ---------------------------------------------------------------------------------------------
// The model file

/// Reads the file the way any safetensors reader does: an 8-byte little-endian header length,
/// the JSON header, then the tensor bytes.
#[test]
fn model_file_is_plain_safetensors_in_pytorch_layout() {
    let bytes = std::fs::read(&trained().model).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("JSON header");
    let body = bytes.len() - 8 - n;

    // Dense layers sit at indices 0 and 2 of the spec (1 is the ReLU), as in nn.Sequential.
    let expect = [
        ("layers.0.weight", vec![32, 784]),
        ("layers.0.bias", vec![32]),
        ("layers.2.weight", vec![10, 32]),
        ("layers.2.bias", vec![10]),
    ];
    let mut covered = 0;
    for (name, shape) in &expect {
        let t = &header[*name];
        assert_eq!(t["dtype"], "F32", "{name}");
        let got: Vec<usize> = serde_json::from_value(t["shape"].clone()).unwrap();
        assert_eq!(&got, shape, "{name}");
        let off: Vec<usize> = serde_json::from_value(t["data_offsets"].clone()).unwrap();
        assert_eq!(
            off[1] - off[0],
            4 * shape.iter().product::<usize>(),
            "{name}"
        );
        assert!(off[1] <= body);
        covered += off[1] - off[0];
    }
    assert_eq!(covered, body, "no bytes besides the four tensors");
    let tensors = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .count();
    assert_eq!(tensors, expect.len());

    let meta = &header["__metadata__"];
    assert_eq!(meta["format"], "wgtrain");
    assert_eq!(meta["format_version"], "1");
    let spec: ModelSpec =
        serde_json::from_str(meta["spec"].as_str().expect("spec is a string")).unwrap();
    assert_eq!(spec.inputs(), 784);
    assert_eq!(spec.outputs(), 10);
    assert_eq!(spec.input_shape, (28, 28));
    assert_eq!(spec.loss, LossKind::SoftmaxCrossEntropy);
    assert_eq!(spec.data.as_deref(), Some("mnist-sample"));

    // The first weight is (out, in) row-major: element [0][0] is the file's first f32 there.
    let off: Vec<usize> =
        serde_json::from_value(header["layers.0.weight"]["data_offsets"].clone()).unwrap();
    let start = 8 + n + off[0];
    let w00 = f32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    assert_eq!(load_model(&trained().model).unwrap().params[0], w00);
}

/// Train in the library, save, load: the loaded model predicts bit-for-bit the same.
#[test]
fn save_then_load_predicts_identically() {
    let splits = data::load(&DataSource::MnistSample, 0).unwrap();
    let train = splits.train.subset(&(0..1024).collect::<Vec<_>>());
    let test = splits.test.unwrap().subset(&(0..300).collect::<Vec<_>>());
    let mut spec = ModelSpec::mlp(
        784,
        &[24],
        10,
        Activation::Tanh,
        0.0,
        LossKind::SoftmaxCrossEntropy,
    )
    .unwrap();
    spec.input_shape = (28, 28);
    let adam = OptimizerConfig::new(OptimizerKind::Adam);
    let mut trainer = Trainer::from_spec(Box::new(CpuBackend::new()), spec, 64, adam, 7).unwrap();
    let train_r = trainer.upload(&train).unwrap();
    let test_r = trainer.upload(&test).unwrap();
    let data = RunData {
        train: &train_r,
        val: None,
        test: None,
    };
    fit(&mut trainer, data, 2, &mut []).unwrap();
    let before = trainer.model_mut().outputs(&test_r).unwrap();
    let params = trainer.params().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_model(&path, trainer.spec(), &params).unwrap();
    let saved = load_model(&path).unwrap();
    assert_eq!(&saved.spec, trainer.spec());
    assert_eq!(saved.params, params);

    let mut loaded = Model::load(&path, Box::new(CpuBackend::new())).unwrap();
    loaded.set_batch_size(64).unwrap();
    let resident = loaded.upload(&test).unwrap();
    let after = loaded.outputs(&resident).unwrap();
    assert_eq!(before.len(), 300 * 10);
    assert!(
        before
            .iter()
            .zip(&after)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "predictions changed after save and load"
    );
}

// ---------------------------------------------------------------------------------------------
// eval

#[test]
fn eval_reports_what_training_reported() {
    let t = trained();
    let run = wgtrain(&["eval", "--model", s(&t.model), "--backend", "cpu", "--json"]);
    assert!(run.status.success());
    // eval warns when the matrix's accuracy and the loss op's differ; they must not.
    assert!(!String::from_utf8_lossy(&run.stderr).contains("warning"));
    let out = String::from_utf8(run.stdout).unwrap();
    let e = last_json(&out);
    // Same data, same code path: the same numbers, not merely close ones. The loss matches
    // too because eval's default batch size is training's.
    assert_eq!(e["accuracy"], t.summary["test_accuracy"]);
    assert_eq!(e["loss"], t.summary["test_loss"]);
    assert_eq!(e["data"], "mnist-sample");
    assert_eq!(e["split"], "test");
    assert_eq!(e["rows"], 2000);

    let confusion: Vec<Vec<u64>> = serde_json::from_value(e["confusion"].clone()).unwrap();
    assert_eq!(confusion.len(), 10);
    assert!(confusion.iter().all(|r| r.len() == 10));
    let total: u64 = confusion.iter().flatten().sum();
    assert_eq!(total, 2000);
    let trace: u64 = (0..10).map(|i| confusion[i][i]).sum();
    // The confusion matrix's accuracy is the loss op's (checked exactly by the CLI, above).
    assert_close(trace as f64 / 2000.0, e["accuracy"].as_f64().unwrap());
    // Row sums are the true-class counts of the data.
    let test = mnist_test();
    for (c, row) in confusion.iter().enumerate() {
        let n = labels(&test).iter().filter(|&&l| l as usize == c).count() as u64;
        assert_eq!(row.iter().sum::<u64>(), n, "class {c}");
    }
    let per_class = e["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    for (c, p) in per_class.iter().enumerate() {
        assert_eq!(p["class"], c);
        assert_eq!(p["name"], c.to_string());
        assert_eq!(p["support"], confusion[c].iter().sum::<u64>());
        let tp = confusion[c][c] as f64;
        let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
        assert_close(p["precision"].as_f64().unwrap(), tp / predicted as f64);
        assert_close(
            p["recall"].as_f64().unwrap(),
            tp / p["support"].as_f64().unwrap(),
        );
    }
    for key in ["precision", "recall", "f1"] {
        let v = e["macro"][key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }

    // The human-readable table: a header of predicted classes and one row per true class.
    assert!(out.contains("confusion matrix (rows: true class, columns: predicted class)"));
    assert!(out.contains("true \\ predicted"));
    assert!(out.contains("macro avg"));
}

#[test]
fn eval_on_the_train_split_and_other_batch_sizes() {
    let t = trained();
    let e = last_json(&ok(&[
        "eval",
        "--model",
        s(&t.model),
        "--backend",
        "cpu",
        "--split",
        "train",
        "--batch-size",
        "1000",
        "--json",
        "--quiet",
    ]));
    assert_eq!(e["rows"], 8000);
    assert_eq!(e["split"], "train");
    let acc = e["accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "one epoch of training reaches more than {acc}");

    // The accuracy does not depend on the batch size.
    let e2 = last_json(&ok(&[
        "eval",
        "--model",
        s(&t.model),
        "--backend",
        "cpu",
        "--batch-size",
        "7",
        "--json",
        "--quiet",
    ]));
    assert_eq!(e2["accuracy"], t.summary["test_accuracy"]);
}

#[test]
fn eval_of_a_regression_model_reports_mse_and_mae() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sine.safetensors");
    let summary = last_json(&ok(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        "sine",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--save",
        s(&model),
        "--quiet",
        "--json",
    ]));
    let out = ok(&["eval", "--model", s(&model), "--backend", "cpu", "--json"]);
    let e = last_json(&out);
    assert_eq!(e["data"], "sine");
    assert_eq!(e["mae"], summary["test_mae"]);
    assert_eq!(e["loss"], summary["test_loss"]);
    // The loss is the MSE for an MSE model.
    assert_eq!(e["mse"], e["loss"]);
    assert!(e.get("confusion").is_none());
    assert!(out.contains("MSE") && out.contains("MAE"));

    // Predicting needs images, which a sine model does not take.
    let png = dir.path().join("x.png");
    image::GrayImage::new(28, 28).save(&png).unwrap();
    fails(
        &["predict", "--model", s(&model), s(&png)],
        &["takes 1 feature per row, not images", "sine"],
    );
}

#[test]
fn eval_errors_are_one_clear_line() {
    let t = trained();
    fails(
        &[
            "eval",
            "--model",
            s(&t.model),
            "--backend",
            "cpu",
            "--data",
            "spiral",
        ],
        &[
            "2 features per row",
            "model takes 784",
            "28x28",
            "--data mnist-sample",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    fails(
        &["eval", "--model", s(&junk), "--backend", "cpu"],
        &["junk.safetensors", "not a safetensors file"],
    );
    fails(
        &["eval", "--model", s(&dir.path().join("absent.safetensors"))],
        &["absent.safetensors"],
    );
    fails(
        &[
            "eval",
            "--model",
            s(&t.model),
            "--backend",
            "cpu",
            "--batch-size",
            "0",
        ],
        &["--batch-size must be at least 1"],
    );
}

// ---------------------------------------------------------------------------------------------
// predict

/// The `top` lists of a predict `--json` line, with their invariants checked.
#[track_caller]
fn tops(json: &Value, k: usize) -> Vec<Vec<(usize, f64)>> {
    json["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let top: Vec<(usize, f64)> = p["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["class"].as_u64().unwrap() as usize,
                        c["probability"].as_f64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(top.len(), k);
            assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "sorted: {top:?}");
            let sum: f64 = top.iter().map(|c| c.1).sum();
            assert!(
                sum <= 1.0 + 1e-6 && top.iter().all(|c| c.1 >= 0.0),
                "{top:?}"
            );
            top
        })
        .collect()
}

#[test]
fn predict_images_matches_the_same_digits_from_idx() {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let test = mnist_test();
    let digit = |i: usize| pixels(&test)[i * 784..(i + 1) * 784].to_vec();

    // Digit 0 as a 28x28 grayscale PNG, digit 1 as 28x28 RGB, digit 2 as a 56x42 RGB JPEG
    // (another size, format and colour mode), digit 3 black on white (for --invert).
    let gray = dir.path().join("gray.png");
    image::GrayImage::from_raw(28, 28, digit(0))
        .unwrap()
        .save(&gray)
        .unwrap();
    let rgb = dir.path().join("rgb.png");
    let d1 = digit(1);
    image::RgbImage::from_fn(28, 28, |x, y| {
        let v = d1[(y * 28 + x) as usize];
        image::Rgb([v, v, v])
    })
    .save(&rgb)
    .unwrap();
    let big = dir.path().join("big.jpg");
    let d2 = image::GrayImage::from_raw(28, 28, digit(2)).unwrap();
    let d2 = image::imageops::resize(&d2, 56, 42, image::imageops::FilterType::Triangle);
    image::DynamicImage::ImageLuma8(d2)
        .to_rgb8()
        .save(&big)
        .unwrap();
    let inverted = dir.path().join("inverted.png");
    image::GrayImage::from_raw(28, 28, digit(3).iter().map(|p| 255 - p).collect())
        .unwrap()
        .save(&inverted)
        .unwrap();

    let out = ok(&[
        "predict",
        "--model",
        s(&t.model),
        "--backend",
        "cpu",
        s(&gray),
        s(&rgb),
        s(&big),
        "--json",
    ]);
    let json = last_json(&out);
    let from_images = tops(&json, 3);
    assert_eq!(from_images.len(), 3);
    assert_eq!(json["predictions"][0]["input"], s(&gray));
    // Human lines first, one per image, naming it.
    assert!(out.lines().next().unwrap().starts_with(s(&gray)));

    let inv = last_json(&ok(&[
        "predict",
        "--model",
        s(&t.model),
        "--backend",
        "cpu",
        "--invert",
        "--top-k",
        "10",
        s(&inverted),
        "--json",
        "-q",
    ]));
    let from_inverted = tops(&inv, 10);

    let (idx, _) = write_idx(dir.path(), &test, 4);
    let from_idx = tops(
        &last_json(&ok(&[
            "predict",
            "--model",
            s(&t.model),
            "--backend",
            "cpu",
            "--idx",
            s(&idx),
            "--top-k",
            "10",
            "--json",
            "-q",
        ])),
        10,
    );
    // A 28x28 image goes in unresampled: the same pixels as the data set, the same
    // probabilities to the last bit, whether stored gray, RGB, or inverted and flipped back.
    assert_eq!(from_images[0], from_idx[0][..3]);
    assert_eq!(from_images[1], from_idx[1][..3]);
    assert_eq!(from_inverted[0], from_idx[3]);
    // All ten classes' probabilities sum to one.
    let sum: f64 = from_idx[0].iter().map(|c| c.1).sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
}

#[test]
fn predict_idx_range_with_labels() {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let test = mnist_test();
    let (idx, lbl) = write_idx(dir.path(), &test, 12);
    let out = ok(&[
        "predict",
        "--model",
        s(&t.model),
        "--backend",
        "cpu",
        "--idx",
        s(&idx),
        "--labels",
        s(&lbl),
        "--range",
        "5..9",
        "--top-k",
        "2",
        "--json",
    ]);
    let json = last_json(&out);
    let preds = json["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 4);
    for (k, p) in preds.iter().enumerate() {
        assert_eq!(p["index"], 5 + k);
        assert_eq!(p["label"], labels(&test)[5 + k]);
    }
    tops(&json, 2);
    assert_eq!(out.lines().count(), 5, "four lines and the JSON");
    assert!(out.contains("[5] (label "));

    for (range, n) in [("11", 1), ("..=2", 3), ("10..", 2)] {
        let j = last_json(&ok(&[
            "predict",
            "--model",
            s(&t.model),
            "--backend",
            "cpu",
            "--idx",
            s(&idx),
            "--range",
            range,
            "--json",
            "-q",
        ]));
        assert_eq!(j["predictions"].as_array().unwrap().len(), n, "{range}");
    }
}

#[test]
fn predict_errors_are_one_clear_line() {
    let t = trained();
    let model = s(&t.model);
    let dir = tempfile::tempdir().unwrap();
    let (idx, lbl) = write_idx(dir.path(), &mnist_test(), 12);

    fails(
        &[
            "predict",
            "--model",
            model,
            "--idx",
            s(&idx),
            "--range",
            "10..13",
        ],
        &["out of bounds", "12 images"],
    );
    fails(
        &[
            "predict",
            "--model",
            model,
            "--idx",
            s(&idx),
            "--range",
            "4..4",
        ],
        &["empty"],
    );
    fails(
        &["predict", "--model", model, "--idx", s(&lbl)],
        &["labels.idx1", "magic"],
    );
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    fails(
        &["predict", "--model", model, s(&text)],
        &["notes.png", "cannot decode image", "not a PNG or JPEG"],
    );
    // An honest 6000x6000 PNG (a few hundred KB of compressed black) would decode to 36 MB
    // and convert through gigabytes; it is refused from its header by the decoder that the
    // image-folder reader uses too.
    let huge = dir.path().join("huge.png");
    image::GrayImage::new(6000, 6000).save(&huge).unwrap();
    fails(
        &["predict", "--model", model, s(&huge)],
        &[
            "huge.png",
            "6000x6000 pixels (36 million), more than the 33 million",
            "scale it down",
        ],
    );
    fails(
        &[
            "predict",
            "--model",
            model,
            s(&dir.path().join("missing.png")),
        ],
        &["missing.png"],
    );
    fails(
        &["predict", "--model", model],
        &["give one or more image files"],
    );
    fails(
        &["predict", "--model", model, s(&text), "--top-k", "0"],
        &["--top-k must be at least 1"],
    );
    // A file of 14x14 images does not fit a 28x28 model.
    let mut small = Vec::new();
    for v in [0x0803u32, 1, 14, 14] {
        small.extend_from_slice(&v.to_be_bytes());
    }
    small.extend([0u8; 196]);
    let small_path = dir.path().join("small.idx3");
    std::fs::write(&small_path, small).unwrap();
    fails(
        &["predict", "--model", model, "--idx", s(&small_path)],
        &["14x14", "model takes 28x28"],
    );
    // Argument errors are clap's (exit status 2).
    let out = wgtrain(&[
        "predict",
        "--model",
        model,
        "--idx",
        s(&idx),
        "--range",
        "a..b",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a range"));
}

// ---------------------------------------------------------------------------------------------
// plots

#[test]
fn train_plot_and_plot_command_draw_curves() {
    let t = trained();
    assert_plot(&t.dir.join("train.png"));

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("curves.png");
    ok(&["plot", s(&t.dir.join("metrics.csv")), "-o", s(&png)]);
    assert_plot(&png);

    // A regression run's JSON-lines metrics, over several epochs.
    let jsonl = dir.path().join("sine.jsonl");
    ok(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        "sine",
        "--hidden",
        "8",
        "--epochs",
        "3",
        "--metrics",
        s(&jsonl),
        "--quiet",
    ]);
    let png2 = dir.path().join("sine.png");
    ok(&["plot", s(&jsonl), "--output", s(&png2)]);
    assert_plot(&png2);

    fails(
        &["plot", s(&dir.path().join("none.csv")), "-o", s(&png)],
        &["none.csv"],
    );
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "epoch\n").unwrap();
    fails(&["plot", s(&bad)], &["bad.txt", ".csv or .jsonl"]);
}

/// A CNN through the binary: trained with `--layers`, saved in PyTorch's `nn.Sequential` layout
/// (Conv2d weights (out, in, kh, kw) at the layers' indices, the implicit flatten counted),
/// then evaluated and used for prediction from the file alone.
#[test]
fn a_cnn_trains_saves_in_pytorch_layout_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    // 8x8 images of three classes: a bright row, column or diagonal, with noise.
    let (n_train, n_test) = (96u32, 24u32);
    let write = |prefix: &str, n: u32| {
        let mut img = Vec::new();
        let mut lbl = Vec::new();
        for v in [2051u32, n, 8, 8] {
            img.extend_from_slice(&v.to_be_bytes());
        }
        for v in [2049u32, n] {
            lbl.extend_from_slice(&v.to_be_bytes());
        }
        for i in 0..n {
            let class = (i % 3) as usize;
            lbl.push(class as u8);
            for p in 0..64usize {
                let (y, x) = (p / 8, p % 8);
                let on = match class {
                    0 => y == 3,
                    1 => x == 4,
                    _ => x == y,
                };
                img.push(if on {
                    220
                } else {
                    ((p * 7 + i as usize * 13) % 40) as u8
                });
            }
        }
        std::fs::write(dir.path().join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        std::fs::write(dir.path().join(format!("{prefix}-labels-idx1-ubyte")), lbl).unwrap();
    };
    write("train", n_train);
    write("t10k", n_test);
    let model = dir.path().join("cnn.safetensors");
    let out = ok(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        s(dir.path()),
        "--layers",
        "conv 4 3 pad same, relu, maxpool 2, conv 6 3, relu, dense",
        "--epochs",
        "15",
        "--batch-size",
        "16",
        "--save",
        s(&model),
        "--quiet",
        "--json",
    ]);
    let summary = last_json(&out);
    assert!(
        summary["test_accuracy"].as_f64().unwrap() > 0.9,
        "{summary}"
    );

    // conv (0), relu, maxpool, conv (3), relu, flatten (5), dense (6): nn.Sequential's indices.
    let bytes = std::fs::read(&model).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for (name, shape) in [
        ("layers.0.weight", vec![4, 1, 3, 3]),
        ("layers.0.bias", vec![4]),
        ("layers.3.weight", vec![6, 4, 3, 3]),
        ("layers.3.bias", vec![6]),
        ("layers.6.weight", vec![3, 6 * 2 * 2]),
        ("layers.6.bias", vec![3]),
    ] {
        let got: Vec<usize> = serde_json::from_value(header[name]["shape"].clone())
            .unwrap_or_else(|_| panic!("{name} missing: {header}"));
        assert_eq!(got, shape, "{name}");
    }
    let spec: ModelSpec =
        serde_json::from_str(header["__metadata__"]["spec"].as_str().unwrap()).unwrap();
    assert_eq!(spec.layers[5], wgtrain::model::Layer::Flatten);
    // The file holds PyTorch's (out, in, kh, kw); the model holds (out, kh, kw, in).
    let offsets = |name: &str| -> Vec<usize> {
        serde_json::from_value(header[name]["data_offsets"].clone()).unwrap()
    };
    let start = 8 + n + offsets("layers.3.weight")[0];
    let file =
        |i: usize| f32::from_le_bytes(bytes[start + 4 * i..start + 4 * i + 4].try_into().unwrap());
    let saved = load_model(&model).unwrap();
    let layout = wgtrain::model::ParamLayout::new(&saved.spec);
    let w = layout.slots[1].weight_offset;
    // Element [o=5][c=2][ky=1][kx=0].
    assert_eq!(
        file(((5 * 4 + 2) * 3 + 1) * 3),
        saved.params[w + ((5 * 3 + 1) * 3) * 4 + 2]
    );

    // eval agrees with training's test accuracy; predict from IDX runs on the file alone.
    let e = last_json(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--backend",
        "cpu",
        "--json",
        "--quiet",
    ]));
    assert_close(
        e["accuracy"].as_f64().unwrap(),
        summary["test_accuracy"].as_f64().unwrap(),
    );
    let idx = dir.path().join("t10k-images-idx3-ubyte");
    let p = last_json(&ok(&[
        "predict",
        "--model",
        s(&model),
        "--idx",
        s(&idx),
        "--range",
        "0..6",
        "--backend",
        "cpu",
        "--json",
        "-q",
    ]));
    assert_eq!(p["predictions"].as_array().unwrap().len(), 6, "{p}");
}

/// `--color rgb` reads an image folder in colour (channels last); the model records three
/// channels, and `predict` converts a new image the same way. Gray data refuses it.
#[test]
fn colour_image_folders_train_and_predict_in_rgb() {
    let dir = tempfile::tempdir().unwrap();
    // Three classes told apart by colour: red, green and blue squares with some noise.
    let colours = [[200u8, 20, 20], [20, 200, 20], [20, 20, 200]];
    for split in ["train", "test"] {
        for (class, rgb) in colours.iter().enumerate() {
            let folder = dir.path().join(split).join(format!("c{class}"));
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..12u32 {
                let img = image::RgbImage::from_fn(6, 6, |x, y| {
                    let n = ((x * 7 + y * 13 + i * 5) % 30) as u8;
                    image::Rgb(rgb.map(|v| v.saturating_add(n)))
                });
                img.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let model = dir.path().join("rgb.safetensors");
    let summary = last_json(&ok(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        s(dir.path()),
        "--color",
        "rgb",
        "--arch",
        "cnn",
        "--epochs",
        "20",
        "--batch-size",
        "8",
        "--save",
        s(&model),
        "--quiet",
        "--json",
    ]));
    assert_eq!(summary["test_accuracy"].as_f64(), Some(1.0), "{summary}");
    // The preset augments by default.
    assert_eq!(summary["shift"], 1, "{summary}");
    let spec = load_model(&model).unwrap().spec;
    assert_eq!((spec.channels, spec.inputs()), (3, 6 * 6 * 3));
    let blue = dir.path().join("test/c2/3.png");
    let p = last_json(&ok(&[
        "predict",
        "--model",
        s(&model),
        s(&blue),
        "--backend",
        "cpu",
        "--json",
        "-q",
    ]));
    assert_eq!(p["predictions"][0]["top"][0]["class"], 2, "{p}");
    fails(
        &[
            "train",
            "--backend",
            "cpu",
            "--color",
            "rgb",
            "--epochs",
            "1",
        ],
        &["--color rgb reads image folders in colour", "mnist-sample"],
    );
}
