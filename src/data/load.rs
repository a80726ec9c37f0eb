//! Choosing a data source by name or path. (Stub until the readers land.)
use super::{Dataset, Splits};
use crate::Result;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    MnistSample,
    FashionMnist,
    Spiral,
    Sine,
    Path(PathBuf),
}

impl DataSource {
    pub fn parse(s: &str) -> DataSource {
        match s {
            "mnist-sample" => DataSource::MnistSample,
            "fashion-mnist" => DataSource::FashionMnist,
            "spiral" => DataSource::Spiral,
            "sine" => DataSource::Sine,
            p => DataSource::Path(PathBuf::from(p)),
        }
    }
}

pub fn load(_source: &DataSource, _seed: u64) -> Result<Splits> {
    todo!()
}

pub fn split_validation(_train: Dataset, _fraction: f64, _seed: u64) -> Result<(Dataset, Dataset)> {
    todo!()
}
