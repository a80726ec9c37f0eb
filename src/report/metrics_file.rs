//! Per-epoch metrics as CSV or JSON lines, chosen by the file's extension.

use crate::model::Task;
use crate::store::write_atomic;
use crate::train::EpochReport;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch's row. Accuracy columns are for classifiers, MAE columns for regressors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Data loss (mean over the epoch's steps).
    pub train_loss: f64,
    /// Regularisation penalty at the epoch's end.
    pub reg_loss: f64,
    /// Training accuracy over the epoch's steps (classifiers), in [0, 1].
    pub train_accuracy: Option<f64>,
    /// Training mean absolute error over the epoch's steps (regressors).
    pub train_mae: Option<f64>,
    /// Mean loss on the validation split at the epoch's end, when one was held out.
    pub val_loss: Option<f64>,
    /// Validation accuracy (classifiers), when a split was held out.
    pub val_accuracy: Option<f64>,
    /// Validation mean absolute error (regressors), when a split was held out.
    pub val_mae: Option<f64>,
    /// Mean loss on the test set at the epoch's end, when the data has one.
    pub test_loss: Option<f64>,
    /// Test accuracy (classifiers), when the data has a test set.
    pub test_accuracy: Option<f64>,
    /// Test mean absolute error (regressors), when the data has a test set.
    pub test_mae: Option<f64>,
    /// The learning rate at the epoch's first step.
    pub lr: f64,
    /// Wall time of the epoch in seconds, evaluation included.
    pub seconds: f64,
}

const COLUMNS: [&str; 13] = [
    "epoch",
    "train_loss",
    "reg_loss",
    "train_accuracy",
    "train_mae",
    "val_loss",
    "val_accuracy",
    "val_mae",
    "test_loss",
    "test_accuracy",
    "test_mae",
    "lr",
    "seconds",
];

/// The rows of a metrics file from a run's epoch reports; `task` decides whether the metric columns
/// are accuracies or MAEs.
pub fn rows_from_history(history: &[EpochReport], task: Task) -> Vec<MetricsRow> {
    let class = task == Task::Classification;
    let split = |v: Option<f64>| if class { (v, None) } else { (None, v) };
    history
        .iter()
        .map(|r| {
            let (train_accuracy, train_mae) = split(Some(r.train_metric));
            let (val_accuracy, val_mae) = split(r.val.map(|m| m.metric));
            let (test_accuracy, test_mae) = split(r.test.map(|m| m.metric));
            MetricsRow {
                epoch: r.epoch,
                train_loss: r.train_loss,
                reg_loss: r.reg_loss,
                train_accuracy,
                train_mae,
                val_loss: r.val.map(|m| m.loss),
                val_accuracy,
                val_mae,
                test_loss: r.test.map(|m| m.loss),
                test_accuracy,
                test_mae,
                // Through the shortest decimal form, so 1e-3 is 0.001, not 0.0010000000474.
                lr: r.lr.to_string().parse().unwrap_or(r.lr as f64),
                seconds: r.seconds,
            }
        })
        .collect()
}

fn is_csv(path: &Path) -> Result<bool> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(true),
        Some("jsonl" | "json" | "ndjson") => Ok(false),
        _ => Err(Error::Config(format!(
            "{}: metrics files end in .csv or .jsonl",
            path.display()
        ))),
    }
}

/// Checks a metrics path's extension before training starts.
pub fn check_metrics_path(path: &Path) -> Result<()> {
    is_csv(path).map(|_| ())
}

/// Writes all rows (rewriting the file atomically, so a crash leaves the previous version).
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    let mut out = String::new();
    if is_csv(path)? {
        out += &COLUMNS.join(",");
        out.push('\n');
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for r in rows {
            let cells = [
                r.epoch.to_string(),
                r.train_loss.to_string(),
                r.reg_loss.to_string(),
                opt(r.train_accuracy),
                opt(r.train_mae),
                opt(r.val_loss),
                opt(r.val_accuracy),
                opt(r.val_mae),
                opt(r.test_loss),
                opt(r.test_accuracy),
                opt(r.test_mae),
                r.lr.to_string(),
                r.seconds.to_string(),
            ];
            out += &cells.join(",");
            out.push('\n');
        }
    } else {
        for r in rows {
            out += &serde_json::to_string(r).expect("rows serialise");
            out.push('\n');
        }
    }
    write_atomic(path, out.as_bytes())
}

/// Reads a metrics file written by [`write_metrics`].
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |line: usize, msg: String| Error::data(path, format!("line {line}: {msg}"));
    let mut rows = Vec::new();
    if is_csv(path)? {
        let mut lines = text.lines().enumerate();
        let header: Vec<&str> = match lines.next() {
            Some((_, h)) => h.split(',').map(str::trim).collect(),
            None => return Err(Error::data(path, "the file is empty")),
        };
        let col = |name: &str| header.iter().position(|h| *h == name);
        if col("epoch").is_none() || col("train_loss").is_none() {
            return Err(Error::data(
                path,
                "not a wgtrain metrics file (no epoch and train_loss columns)",
            ));
        }
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |name: &str| -> std::result::Result<Option<f64>, String> {
                match col(name).and_then(|c| cells.get(c)) {
                    None | Some(&"") => Ok(None),
                    Some(s) => s
                        .parse::<f64>()
                        .map(Some)
                        .map_err(|_| format!("{name} is not a number: {s:?}")),
                }
            };
            let need = |name: &str| -> std::result::Result<f64, String> {
                get(name)?.ok_or_else(|| format!("{name} is missing"))
            };
            let row = (|| -> std::result::Result<MetricsRow, String> {
                Ok(MetricsRow {
                    epoch: need("epoch")? as usize,
                    train_loss: need("train_loss")?,
                    reg_loss: get("reg_loss")?.unwrap_or(0.0),
                    train_accuracy: get("train_accuracy")?,
                    train_mae: get("train_mae")?,
                    val_loss: get("val_loss")?,
                    val_accuracy: get("val_accuracy")?,
                    val_mae: get("val_mae")?,
                    test_loss: get("test_loss")?,
                    test_accuracy: get("test_accuracy")?,
                    test_mae: get("test_mae")?,
                    lr: get("lr")?.unwrap_or(0.0),
                    seconds: get("seconds")?.unwrap_or(0.0),
                })
            })()
            .map_err(|m| bad(i + 1, m))?;
            rows.push(row);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            rows.push(serde_json::from_str(line).map_err(|e| bad(i + 1, e.to_string()))?);
        }
    }
    if rows.is_empty() {
        return Err(Error::data(path, "the file has no epochs"));
    }
    Ok(rows)
}
