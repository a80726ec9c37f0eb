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
pub use load::{DataSource, load, settle_classes, split_validation};

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
        labels: Vec<u32>,
        num_classes: usize,
    },
    /// `dim` real values per row, row-major `(rows, dim)`.
    Values { values: Vec<f32>, dim: usize },
}

/// How `u8` pixels become model inputs.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
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

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub rows: usize,
    /// Features per row (`height * width` for images).
    pub dim: usize,
    /// `(height, width)` for image data, `(1, dim)` otherwise.
    pub image_shape: (usize, usize),
    pub features: Features,
    pub targets: Targets,
}

impl Dataset {
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

/// A training set with the set it is measured on.
#[derive(Clone, Debug)]
pub struct Splits {
    /// A short name for messages and summaries ("mnist-sample", a path, ...).
    pub name: String,
    pub train: Dataset,
    /// The test set; `None` only where the source has none.
    pub test: Option<Dataset>,
    /// Class names where the source knows them (folder names, Fashion-MNIST's item names).
    pub class_names: Option<Vec<String>>,
}
