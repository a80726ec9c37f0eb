//! Data sets: readers for IDX files and image folders, the built-in sets, and splitting.
//!
//! A [`Dataset`] is a table of `rows` samples with `dim` features each, plus targets. Image
//! pixels stay `u8` here; scaling to floats happens where a batch is assembled (on the GPU, in
//! the gather kernel), so the resident copy of a data set is a quarter of the f32 size.

pub mod folder;
pub mod idx;
pub mod image_file;
pub mod synthetic;

mod load;
pub use load::{DataSource, load, load_with, settle_classes, split_validation};

/// Feature matrix, row-major `(rows, dim)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    /// Raw pixels 0..=255, scaled by [`Scale`] when a batch is assembled.
    U8(Vec<u8>),
    /// Ready-to-use values (synthetic sets); no scaling is applied.
    F32(Vec<f32>),
}

/// What the model predicts.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per row, each `< num_classes`.
    Classes {
        /// The class of each row, (rows,).
        labels: Vec<u32>,
        /// How many classes there are (labels 0 to `num_classes - 1`), at least 1. A classifier
        /// has one output per class, except a single-output sigmoid (BCE) model of two.
        /// Classes without rows are allowed here.
        num_classes: usize,
    },
    /// `dim` real values per row, row-major `(rows, dim)`.
    Values {
        /// The targets, (rows, dim) row-major, all finite.
        values: Vec<f32>,
        /// Targets per row: the model's outputs.
        dim: usize,
    },
}

/// How image files become rows: one gray channel, or three RGB channels interleaved
/// (channels last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// Rec. 709 luma, one byte per pixel.
    #[default]
    Gray,
    /// Red, green and blue, three bytes per pixel.
    Rgb,
}

impl Color {
    /// Channels per pixel.
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb => 3,
        }
    }
}

/// How `u8` pixels become model inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// `p / 255`, in [0, 1].
    #[default]
    ZeroOne,
    /// `p / 127.5 - 1`, in [-1, 1].
    MinusOneOne,
}

impl Scale {
    /// `(a, b)` such that the input is `a * p + b`.
    pub fn affine(self) -> (f32, f32) {
        match self {
            Scale::ZeroOne => (1.0 / 255.0, 0.0),
            Scale::MinusOneOne => (1.0 / 127.5, -1.0),
        }
    }
}

/// A table of samples: `rows` rows of `dim` features, with a class label or target values per
/// row. Build one from arrays in memory with [`Dataset::classification`],
/// [`Dataset::regression`] or [`Dataset::images`], or read one with [`load`].
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Samples in the set; at least 1.
    pub rows: usize,
    /// Features per row (`height * width` for images).
    pub dim: usize,
    /// `(height, width)` for image data, `(1, dim)` otherwise.
    pub image_shape: (usize, usize),
    /// The features, (rows, dim) row-major.
    pub features: Features,
    /// What each row should predict.
    pub targets: Targets,
}

impl Dataset {
    /// A classification set from rows of features in memory, `x`: (rows, dim), and one label
    /// per row, each below `classes`.
    ///
    /// ```
    /// use wgtrain::data::Dataset;
    /// use ndarray::array;
    ///
    /// let x = array![[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0]];
    /// let d = Dataset::classification(x.view(), &[0, 1, 1], 2).unwrap();
    /// assert_eq!((d.rows, d.dim, d.num_classes()), (3, 2, Some(2)));
    /// // A label out of range, or one label too few, is refused.
    /// assert!(Dataset::classification(x.view(), &[0, 1, 2], 2).is_err());
    /// assert!(Dataset::classification(x.view(), &[0, 1], 2).is_err());
    /// ```
    pub fn classification(
        x: ndarray::ArrayView2<f32>,
        labels: &[u32],
        classes: usize,
    ) -> crate::Result<Dataset> {
        let features = Features::F32(x.iter().copied().collect());
        Dataset::new(features, x.nrows(), x.ncols(), classes_of(labels, classes)?)
    }

    /// A classification set of `height x width` images with byte pixels in memory,
    /// `pixels`: (rows, height * width), and one label per row, each below `classes`. Pixels
    /// are scaled when a batch is assembled, as the model's [`Scale`] says.
    pub fn images(
        pixels: ndarray::ArrayView2<u8>,
        (height, width): (usize, usize),
        labels: &[u32],
        classes: usize,
    ) -> crate::Result<Dataset> {
        if pixels.ncols() != height * width {
            return Err(crate::Error::Dataset(format!(
                "rows of {} pixels are not {height}x{width} images",
                pixels.ncols()
            )));
        }
        let features = Features::U8(pixels.iter().copied().collect());
        let mut d = Dataset::new(
            features,
            pixels.nrows(),
            height * width,
            classes_of(labels, classes)?,
        )?;
        d.image_shape = (height, width);
        Ok(d)
    }

    /// A regression set from rows of features `x`: (rows, dim) and of targets `y`:
    /// (rows, outputs) in memory. Features and targets must be finite, and as many rows of
    /// each; [`crate::Error::Dataset`] says which rule a set breaks.
    ///
    /// ```
    /// use ndarray::{array, s};
    /// use wgtrain::data::Dataset;
    ///
    /// // One feature, two targets per row: y = (x, -x).
    /// let x = array![[0.0f32], [0.5], [1.0]];
    /// let y = array![[0.0f32, 0.0], [0.5, -0.5], [1.0, -1.0]];
    /// let d = Dataset::regression(x.view(), y.view())?;
    /// assert_eq!((d.rows, d.dim, d.output_dim(), d.num_classes()), (3, 1, 2, None));
    ///
    /// // Fewer rows of targets than of features, or a NaN, is refused.
    /// assert!(Dataset::regression(x.view(), y.slice(s![..2, ..])).is_err());
    /// let nan = array![[f32::NAN], [0.5], [1.0]];
    /// assert!(Dataset::regression(nan.view(), y.view()).is_err());
    /// # Ok::<(), wgtrain::Error>(())
    /// ```
    pub fn regression(
        x: ndarray::ArrayView2<f32>,
        y: ndarray::ArrayView2<f32>,
    ) -> crate::Result<Dataset> {
        if y.nrows() != x.nrows() {
            return Err(crate::Error::Dataset(format!(
                "{} rows of features but {} rows of targets",
                x.nrows(),
                y.nrows()
            )));
        }
        let targets = Targets::Values {
            values: y.iter().copied().collect(),
            dim: y.ncols(),
        };
        Dataset::new(
            Features::F32(x.iter().copied().collect()),
            x.nrows(),
            x.ncols(),
            targets,
        )
    }

    /// A data set of `rows` rows of `dim` features, checked: the features and targets hold
    /// `rows` rows, float features are finite, labels are below the class count.
    pub fn new(
        features: Features,
        rows: usize,
        dim: usize,
        targets: Targets,
    ) -> crate::Result<Dataset> {
        use crate::Error;
        if rows == 0 || dim == 0 {
            return Err(Error::Dataset(format!(
                "a data set needs rows and features (got {rows} rows of {dim})"
            )));
        }
        let n = match &features {
            Features::U8(v) => v.len(),
            Features::F32(v) => {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(Error::Dataset(format!(
                        "feature {} of row {} is {}; features must be finite",
                        i % dim,
                        i / dim,
                        v[i]
                    )));
                }
                v.len()
            }
        };
        if n != rows * dim {
            return Err(Error::Dataset(format!(
                "{n} feature values are not {rows} rows of {dim}"
            )));
        }
        match &targets {
            Targets::Classes {
                labels,
                num_classes,
            } => {
                if labels.len() != rows {
                    return Err(Error::Dataset(format!(
                        "{} labels for {rows} rows",
                        labels.len()
                    )));
                }
                classes_of(labels, *num_classes)?;
            }
            Targets::Values { values, dim: out } => {
                if *out == 0 || values.len() != rows * out {
                    return Err(Error::Dataset(format!(
                        "{} target values are not {rows} rows of {out}",
                        values.len()
                    )));
                }
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(Error::Dataset("targets must be finite".into()));
                }
            }
        }
        Ok(Dataset {
            rows,
            dim,
            image_shape: (1, dim),
            features,
            targets,
        })
    }

    /// The class count of a classification set; `None` for a regression set.
    pub fn num_classes(&self) -> Option<usize> {
        match &self.targets {
            Targets::Classes { num_classes, .. } => Some(*num_classes),
            Targets::Values { .. } => None,
        }
    }

    /// Outputs the model needs: the class count, or the regression target width.
    pub fn output_dim(&self) -> usize {
        match &self.targets {
            Targets::Classes { num_classes, .. } => *num_classes,
            Targets::Values { dim, .. } => *dim,
        }
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let d = self.dim;
        let features = match &self.features {
            Features::U8(v) => Features::U8(
                indices
                    .iter()
                    .flat_map(|&i| &v[i * d..(i + 1) * d])
                    .copied()
                    .collect(),
            ),
            Features::F32(v) => Features::F32(
                indices
                    .iter()
                    .flat_map(|&i| &v[i * d..(i + 1) * d])
                    .copied()
                    .collect(),
            ),
        };
        let targets = match &self.targets {
            Targets::Classes {
                labels,
                num_classes,
            } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                num_classes: *num_classes,
            },
            Targets::Values { values, dim } => Targets::Values {
                values: indices
                    .iter()
                    .flat_map(|&i| &values[i * dim..(i + 1) * dim])
                    .copied()
                    .collect(),
                dim: *dim,
            },
        };
        Dataset {
            rows: indices.len(),
            dim: self.dim,
            image_shape: self.image_shape,
            features,
            targets,
        }
    }
}

/// Class labels, checked to lie below `classes`.
fn classes_of(labels: &[u32], classes: usize) -> crate::Result<Targets> {
    if classes == 0 {
        return Err(crate::Error::Dataset(
            "a classification set needs at least one class".into(),
        ));
    }
    if let Some((row, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= classes)
    {
        return Err(crate::Error::Dataset(format!(
            "row {row} has label {l}, but there are {classes} classes (labels 0 to {})",
            classes - 1
        )));
    }
    Ok(Targets::Classes {
        labels: labels.to_vec(),
        num_classes: classes,
    })
}

/// A training set with the set it is measured on.
#[derive(Clone, Debug)]
pub struct Splits {
    /// A short name for messages and summaries ("mnist-sample", a path, ...).
    pub name: String,
    /// The training set.
    pub train: Dataset,
    /// The test set; `None` only where the source has none.
    pub test: Option<Dataset>,
    /// Class names where the source knows them (folder names, Fashion-MNIST's item names).
    pub class_names: Option<Vec<String>>,
}
