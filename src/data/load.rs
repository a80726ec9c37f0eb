//! Choosing a data source by name or path, loading its splits, and carving out a validation set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::folder;
use super::idx::{self, IdxImages};
use super::synthetic;
use super::{Color, Dataset, Features, Splits, Targets};
use crate::rng::Rng;
use crate::{Error, Result};

/// Where the data comes from: a built-in set or a directory.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// 8,000 + 2,000 real MNIST digits compiled into the binary.
    MnistSample,
    /// Fashion-MNIST (60,000 + 10,000) from the Debian package `dataset-fashion-mnist`.
    FashionMnist,
    /// The nnfs.io spiral, three classes in 2-D.
    Spiral,
    /// The nnfs.io sine wave, a 1-D regression.
    Sine,
    /// A directory of IDX files or an image folder.
    Path(PathBuf),
}

impl DataSource {
    /// Interprets a `--data` argument: a built-in name, or else a path.
    pub fn parse(s: &str) -> DataSource {
        match s {
            "mnist-sample" => DataSource::MnistSample,
            "fashion-mnist" => DataSource::FashionMnist,
            "spiral" => DataSource::Spiral,
            "sine" => DataSource::Sine,
            _ => DataSource::Path(PathBuf::from(s)),
        }
    }

    /// A short name for messages and summaries: the built-in name or the path.
    pub fn name(&self) -> String {
        match self {
            DataSource::MnistSample => "mnist-sample".into(),
            DataSource::FashionMnist => "fashion-mnist".into(),
            DataSource::Spiral => "spiral".into(),
            DataSource::Sine => "sine".into(),
            DataSource::Path(p) => p.display().to_string(),
        }
    }
}

/// Where Fashion-MNIST is looked for unless [`FASHION_MNIST_ENV`] says otherwise (the location
/// used by Debian's `dataset-fashion-mnist`).
const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable that overrides [`FASHION_MNIST_DIR`].
const FASHION_MNIST_ENV: &str = "WGTRAIN_FASHION_MNIST_DIR";

/// Fashion-MNIST's item names, index = label.
const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

// The sample is compiled in so the binary trains on real digits from any directory, with no
// download and no data path to get wrong.
const MNIST_SAMPLE: [(&str, &[u8]); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist-sample/train-images-idx3-ubyte.gz"
        )),
    ),
    (
        "train-labels-idx1-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist-sample/train-labels-idx1-ubyte.gz"
        )),
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist-sample/t10k-images-idx3-ubyte.gz"
        )),
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mnist-sample/t10k-labels-idx1-ubyte.gz"
        )),
    ),
];

/// Loads the train and test splits of `source`. `seed` only affects the synthetic sets.
pub fn load(source: &DataSource, seed: u64) -> Result<Splits> {
    load_with(source, seed, Color::Gray)
}

/// [`load`], reading image folders' images as `color` (gray or RGB, channels last); IDX files
/// and the built-in sets are gray only.
pub fn load_with(source: &DataSource, seed: u64, color: Color) -> Result<Splits> {
    if color == Color::Rgb && !matches!(source, DataSource::Path(_)) {
        return Err(Error::Config(format!(
            "--color rgb reads image folders in colour; {} has no colour (its images are gray)",
            source.name()
        )));
    }
    match source {
        DataSource::MnistSample => load_mnist_sample(),
        DataSource::FashionMnist => load_fashion_mnist(),
        DataSource::Spiral => {
            let mut rng = Rng::new(seed);
            // Separate streams, so the test set does not depend on the training set's size.
            let (mut train_rng, mut test_rng) = (rng.fork(), rng.fork());
            let c = synthetic::SPIRAL_CLASSES;
            Ok(Splits {
                name: source.name(),
                train: synthetic::spiral(synthetic::SPIRAL_TRAIN_PER_CLASS, c, &mut train_rng),
                test: Some(synthetic::spiral(
                    synthetic::SPIRAL_TEST_PER_CLASS,
                    c,
                    &mut test_rng,
                )),
                class_names: None,
            })
        }
        DataSource::Sine => {
            let mut rng = Rng::new(seed);
            Ok(Splits {
                name: source.name(),
                train: synthetic::sine(synthetic::SINE_TRAIN_SAMPLES, &mut rng.fork()),
                test: Some(synthetic::sine_grid(synthetic::SINE_TEST_SAMPLES, 0.5)),
                class_names: None,
            })
        }
        DataSource::Path(path) => load_path(path, source.name(), color),
    }
}

fn load_mnist_sample() -> Result<Splits> {
    let root = Path::new("mnist-sample");
    let [train_img, train_lbl, test_img, test_lbl] = MNIST_SAMPLE.map(|(name, bytes)| {
        let path = root.join(name);
        idx::decode_maybe_gz(bytes, &path).map(|b| (b.into_owned(), path))
    });
    let (train_img, train_img_path) = train_img?;
    let (train_lbl, train_lbl_path) = train_lbl?;
    let (test_img, test_img_path) = test_img?;
    let (test_lbl, test_lbl_path) = test_lbl?;
    let train = idx_dataset(
        idx::parse_images(&train_img, &train_img_path)?,
        &train_img_path,
        idx::parse_labels(&train_lbl, &train_lbl_path)?,
        &train_lbl_path,
    )?;
    let test = idx_dataset(
        idx::parse_images(&test_img, &test_img_path)?,
        &test_img_path,
        idx::parse_labels(&test_lbl, &test_lbl_path)?,
        &test_lbl_path,
    )?;
    finish("mnist-sample".into(), train, Some(test), None)
}

fn load_fashion_mnist() -> Result<Splits> {
    let dir = std::env::var_os(FASHION_MNIST_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR));
    load_fashion_mnist_from(&dir)
}

fn load_fashion_mnist_from(dir: &Path) -> Result<Splits> {
    let files = find_idx_files(dir);
    let missing = || {
        Error::data(
            dir,
            "Fashion-MNIST not found (no train-images-idx3-ubyte[.gz] here); install it with \
             `sudo apt-get install dataset-fashion-mnist` (or pass --data DIR with the IDX files)",
        )
    };
    let (Some(train_img), Some(train_lbl)) = (&files[0], &files[1]) else {
        return Err(missing());
    };
    let train = read_idx_pair(train_img, train_lbl)?;
    let test = read_optional_test(&files[2], &files[3], dir)?;
    let names = FASHION_MNIST_CLASSES.map(String::from).to_vec();
    finish("fashion-mnist".into(), train, test, Some(names))
}

fn load_path(path: &Path, name: String, color: Color) -> Result<Splits> {
    if !path.exists() {
        return Err(Error::data(
            path,
            "no such file or directory (expected a built-in data set: mnist-sample, \
             fashion-mnist, spiral, sine; or a directory of IDX files or class folders)",
        ));
    }
    if !path.is_dir() {
        return Err(Error::data(
            path,
            "not a directory; --data takes a directory of IDX files (train-images-idx3-ubyte \
             etc.) or an image folder (train/<class>/*.png)",
        ));
    }
    let files = find_idx_files(path);
    if files.iter().any(Option::is_some) {
        let (Some(train_img), Some(train_lbl)) = (&files[0], &files[1]) else {
            return Err(Error::data(
                path,
                format!(
                    "has some IDX files but not both {} and {} (optionally .gz); add the missing one",
                    IDX_NAMES[0], IDX_NAMES[1]
                ),
            ));
        };
        if color == Color::Rgb {
            return Err(Error::data(
                path,
                "IDX files hold gray images; --color rgb applies to image folders",
            ));
        }
        let train = read_idx_pair(train_img, train_lbl)?;
        let test = read_optional_test(&files[2], &files[3], path)?;
        return finish(name, train, test, None);
    }

    let train_dir = path.join("train");
    if train_dir.is_dir() {
        let (train, names) = folder::read_split(&train_dir, None, color)?;
        let test_dir = path.join("test");
        let test = if test_dir.is_dir() {
            Some(folder::read_split(&test_dir, Some(&names), color)?.0)
        } else {
            None
        };
        return finish(name, train, test, Some(names));
    }

    Err(Error::data(
        path,
        format!(
            "found neither IDX files ({}[.gz], {}[.gz], and optionally {}[.gz], {}[.gz]) nor an \
             image folder (train/<class>/*.png|jpg, and optionally test/<class>/...)",
            IDX_NAMES[0], IDX_NAMES[1], IDX_NAMES[2], IDX_NAMES[3]
        ),
    ))
}

/// The standard MNIST file names: train images, train labels, test images, test labels.
const IDX_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Finds each of [`IDX_NAMES`] in `dir`, raw or `.gz`, also under the common spelling with a
/// dot (`train-images.idx3-ubyte`). The first match wins, raw before `.gz`.
fn find_idx_files(dir: &Path) -> [Option<PathBuf>; 4] {
    IDX_NAMES.map(|name| {
        let dotted = name.replacen("-idx", ".idx", 1);
        [name, dotted.as_str()]
            .iter()
            .flat_map(|n| [n.to_string(), format!("{n}.gz")])
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    })
}

fn read_idx_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    idx_dataset(
        idx::read_images(images)?,
        images,
        idx::read_labels(labels)?,
        labels,
    )
}

/// The test pair if both files are there, `None` if neither is; one without the other is an
/// error, since it is surely a mistake.
fn read_optional_test(
    images: &Option<PathBuf>,
    labels: &Option<PathBuf>,
    dir: &Path,
) -> Result<Option<Dataset>> {
    match (images, labels) {
        (Some(i), Some(l)) => read_idx_pair(i, l).map(Some),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(Error::data(
            dir,
            format!(
                "has only one of {} and {} (optionally .gz); the test set needs both: add the \
                 other, or remove this one to train without a test set",
                IDX_NAMES[2], IDX_NAMES[3]
            ),
        )),
    }
}

/// Pairs images with labels; `num_classes` is provisional until [`finish`] sees both splits.
fn idx_dataset(
    images: IdxImages,
    images_path: &Path,
    labels: Vec<u8>,
    labels_path: &Path,
) -> Result<Dataset> {
    if images.count != labels.len() {
        return Err(Error::Dataset(format!(
            "{} has {} images but {} has {} labels; they must pair one to one: use the image \
             and label files of one data set",
            images_path.display(),
            images.count,
            labels_path.display(),
            labels.len()
        )));
    }
    Ok(Dataset {
        rows: images.count,
        dim: images.height * images.width,
        image_shape: (images.height, images.width),
        features: Features::U8(images.pixels),
        targets: Targets::Classes {
            labels: labels.into_iter().map(u32::from).collect(),
            num_classes: 0,
        },
    })
}

/// Checks the splits against each other and sets `num_classes` on both to the largest label
/// of either, plus one (and at least the number of class names). Training settles the count
/// with [`settle_classes`].
fn finish(
    name: String,
    mut train: Dataset,
    mut test: Option<Dataset>,
    class_names: Option<Vec<String>>,
) -> Result<Splits> {
    if train.rows == 0 {
        return Err(Error::Dataset(format!(
            "{name}: the training set is empty (0 images); point --data at a data set with images"
        )));
    }
    if let Some(test) = &test {
        if test.rows == 0 {
            return Err(Error::Dataset(format!(
                "{name}: the test set is empty (remove its files to train without one)"
            )));
        }
        if test.image_shape != train.image_shape {
            return Err(Error::Dataset(format!(
                "{name}: training images are {}x{} but test images are {}x{}; both splits \
                 need one image size: resize the test images or use matching files",
                train.image_shape.0, train.image_shape.1, test.image_shape.0, test.image_shape.1
            )));
        }
    }
    let max_label = [Some(&train), test.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|d| match &d.targets {
            Targets::Classes { labels, .. } => labels.iter().copied().max(),
            Targets::Values { .. } => None,
        })
        .max();
    let named = class_names.as_ref().map_or(0, Vec::len);
    let classes = max_label.map_or(0, |m| m as usize + 1).max(named);
    for d in std::iter::once(&mut train).chain(test.as_mut()) {
        if let Targets::Classes { num_classes, .. } = &mut d.targets {
            *num_classes = classes;
        }
    }
    Ok(Splits {
        name,
        train,
        test,
        class_names,
    })
}

/// Settles the classes of a classification data set before a model is built on it, and sets
/// `num_classes` on both splits. Labels that are surely a mistake are refused rather than
/// grown into outputs (one corrupt byte of 200 in a label file would otherwise make a 201-class
/// model):
/// - with `declared` (`--classes N`), every label of both splits must be below N;
/// - without it, the classes are 0 to the largest training label: each must have training rows,
///   and every test label must be one of them.
///
/// Either way a classifier needs rows of two classes (or a declared second one). Returns the
/// number of classes, `None` for real-valued targets.
pub fn settle_classes(splits: &mut Splits, declared: Option<usize>) -> Result<Option<usize>> {
    let name = &splits.name;
    let Targets::Classes { labels, .. } = &splits.train.targets else {
        return match declared {
            Some(_) => Err(Error::Config(format!(
                "--classes applies to class labels, but {name} has real-valued targets; drop \
                 --classes"
            ))),
            None => Ok(None),
        };
    };
    let test_labels: &[u32] = match splits.test.as_ref().map(|t| &t.targets) {
        Some(Targets::Classes { labels, .. }) => labels,
        _ => &[],
    };
    let mut rows: BTreeMap<u32, usize> = BTreeMap::new();
    for &l in labels {
        *rows.entry(l).or_default() += 1;
    }
    // "3 (dog)" where the data names its classes.
    let show = |l: u32| match splits.class_names.as_ref().and_then(|n| n.get(l as usize)) {
        Some(n) => format!("{l} ({n})"),
        None => l.to_string(),
    };
    let classes = match declared {
        Some(n) => {
            if n < 2 {
                return Err(Error::Config(format!(
                    "--classes must be at least 2 (a classifier chooses between classes), got {n}"
                )));
            }
            if let Some(names) = &splits.class_names
                && names.len() != n
            {
                return Err(Error::Config(format!(
                    "--classes {n} contradicts {name}, which names {} classes; drop --classes",
                    names.len()
                )));
            }
            for (split, ls) in [("training", labels.as_slice()), ("test", test_labels)] {
                if let Some(&l) = ls.iter().find(|&&l| l as usize >= n) {
                    return Err(Error::Dataset(format!(
                        "{name}: a {split} row has label {l}, but --classes {n} allows labels 0 \
                         to {}; raise --classes or fix the label file",
                        n - 1
                    )));
                }
            }
            n
        }
        None => {
            let Some((&max, &max_rows)) = rows.last_key_value() else {
                return Err(Error::Dataset(format!(
                    "{name}: the training set has no rows"
                )));
            };
            let range = max as usize + 1;
            if rows.len() == 1 {
                return Err(Error::Dataset(format!(
                    "{name}: every training row has label {}; a classifier needs rows of two \
                     classes or more: add data of another class",
                    show(max)
                )));
            }
            if rows.len() < range {
                let empty = range - rows.len();
                let mut listed: Vec<String> = (0..max)
                    .filter(|l| !rows.contains_key(l))
                    .take(3)
                    .map(|l| l.to_string())
                    .collect();
                if empty > 3 {
                    listed.push("...".into());
                }
                return Err(Error::Dataset(format!(
                    "{name}: the training labels run from 0 to {max}, but {empty} of those \
                     {range} classes have no rows (labels {}), and label {max} is on {max_rows} \
                     row{}: fix the label file if it is corrupt, or pass --classes {range} if \
                     the empty classes are meant",
                    listed.join(", "),
                    if max_rows == 1 { "" } else { "s" }
                )));
            }
            if let Some(&l) = test_labels.iter().find(|l| !rows.contains_key(l)) {
                let n = test_labels.iter().filter(|&&x| x == l).count();
                return Err(Error::Dataset(format!(
                    "{name}: {n} test row{} {} label {}, which no training row has, so the \
                     model cannot learn it: use a test set of the training classes, or pass \
                     --classes N (above {l}) to score it anyway",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "has" } else { "have" },
                    show(l)
                )));
            }
            range
        }
    };
    for d in std::iter::once(&mut splits.train).chain(splits.test.as_mut()) {
        if let Targets::Classes { num_classes, .. } = &mut d.targets {
            *num_classes = classes;
        }
    }
    Ok(Some(classes))
}

/// Splits `train` into `(train, validation)`: a seeded shuffle picks `ceil(fraction * rows)`
/// rows for validation. Both parts keep the original row order.
pub fn split_validation(train: Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "--val-split must be between 0 and 1 (exclusive), got {fraction}"
        )));
    }
    let rows = train.rows;
    // A relative nudge down before rounding up, so that 0.1 * 8000 gives 800 even when the
    // floating-point product lands a hair above the integer.
    let exact = fraction * rows as f64;
    let n_val = (exact - exact * 1e-12).ceil() as usize;
    if n_val >= rows {
        return Err(Error::Dataset(format!(
            "--val-split {fraction} leaves no training data ({rows} rows, {n_val} for \
             validation); use a smaller --val-split or more data"
        )));
    }
    if n_val == 0 {
        return Err(Error::Dataset(format!(
            "--val-split {fraction} leaves no validation data ({rows} rows); use a larger \
             --val-split or leave it out"
        )));
    }
    let mut order: Vec<usize> = (0..rows).collect();
    Rng::new(seed).shuffle(&mut order);
    let (train_idx, val_idx) = order.split_at_mut(rows - n_val);
    // Sorted so that each part is a plain subsequence of the file; the trainer shuffles every
    // epoch anyway, and this keeps a part independent of the shuffle's internal order.
    train_idx.sort_unstable();
    val_idx.sort_unstable();
    Ok((train.subset(train_idx), train.subset(val_idx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_and_paths() {
        assert_eq!(DataSource::parse("mnist-sample"), DataSource::MnistSample);
        assert_eq!(DataSource::parse("fashion-mnist"), DataSource::FashionMnist);
        assert_eq!(DataSource::parse("spiral"), DataSource::Spiral);
        assert_eq!(DataSource::parse("sine"), DataSource::Sine);
        let p = DataSource::parse("./spiral");
        assert_eq!(p, DataSource::Path(PathBuf::from("./spiral")));
        assert_eq!(p.name(), "./spiral");
        assert_eq!(DataSource::Sine.name(), "sine");
    }

    #[test]
    fn idx_file_name_variants() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("train-images.idx3-ubyte.gz"), b"").unwrap();
        std::fs::write(tmp.path().join("train-labels-idx1-ubyte"), b"").unwrap();
        let found = find_idx_files(tmp.path());
        assert_eq!(
            found[0].as_deref(),
            Some(tmp.path().join("train-images.idx3-ubyte.gz").as_path())
        );
        assert_eq!(
            found[1].as_deref(),
            Some(tmp.path().join("train-labels-idx1-ubyte").as_path())
        );
        assert_eq!(found[2..], [None, None]);
    }

    #[test]
    fn missing_fashion_mnist_says_how_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load_fashion_mnist_from(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("sudo apt-get install dataset-fashion-mnist"),
            "{e}"
        );
        assert!(e.contains("--data DIR"), "{e}");
    }

    #[test]
    fn validation_size_rounds_up_exactly() {
        let ds = synthetic::sine_grid(8000, 0.0);
        let (t, v) = split_validation(ds.clone(), 0.1, 1).unwrap();
        assert_eq!((t.rows, v.rows), (7200, 800));
        let (t, v) = split_validation(synthetic::sine_grid(7, 0.0), 0.2, 1).unwrap();
        assert_eq!((t.rows, v.rows), (5, 2)); // ceil(1.4) = 2
    }
}
