//! Measuring a saved model on a labelled data set: loss and accuracy from the training code
//! path, plus a confusion matrix and per-class precision, recall and F1 for classifiers, or
//! MSE and MAE for regressors.

use super::ranking::predicted_class;
use super::{class_count, class_names, upload_checked};
use crate::data::{Dataset, Targets};
use crate::model::Model;
use crate::model::{LossKind, Task};
use crate::{Error, Result};
use serde::Serialize;

/// Precision, recall and F1 of one class, or their macro averages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassStats {
    /// The class index (its label).
    pub class: usize,
    /// The class's display name: its folder or item name, else its index.
    pub name: String,
    /// Of the rows predicted as this class, the fraction that are; 0 when none is predicted.
    pub precision: f64,
    /// Of the rows of this class, the fraction predicted as it; 0 when there are none.
    pub recall: f64,
    /// The harmonic mean of precision and recall; 0 when both are.
    pub f1: f64,
    /// Rows whose true class this is.
    pub support: u64,
}

/// Unweighted means of precision, recall and F1 over the classes that occur as a true or a
/// predicted class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Averages {
    /// Mean precision.
    pub precision: f64,
    /// Mean recall.
    pub recall: f64,
    /// Mean F1.
    pub f1: f64,
}

/// What [`evaluate`] measures of a classifier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationEval {
    /// Rows evaluated.
    pub rows: usize,
    /// Mean data loss, as training reports it.
    pub loss: f64,
    /// Fraction correct, as training reports it (equal to the confusion matrix's trace over
    /// `rows`).
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Precision, recall, F1 and support of each class, in class order.
    pub per_class: Vec<ClassStats>,
    /// Unweighted means over the classes that occur as a true or a predicted class.
    #[serde(rename = "macro")]
    pub macro_avg: Averages,
}

/// What [`evaluate`] measures of a regression model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegressionEval {
    /// Rows evaluated.
    pub rows: usize,
    /// Mean data loss, as training reports it.
    pub loss: f64,
    /// Mean squared error per output value.
    pub mse: f64,
    /// Mean absolute error per output value, as training reports it.
    pub mae: f64,
}

/// A model's measures on a data set, by task; serialised without a tag, as the variant's own
/// fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Evaluation {
    /// A classifier's loss, accuracy, confusion matrix and per-class statistics.
    Classification(ClassificationEval),
    /// A regression model's loss, MSE and MAE.
    Regression(RegressionEval),
}

/// Evaluates the model on every row of `data`.
pub fn evaluate(model: &mut Model, data: &Dataset) -> Result<Evaluation> {
    let resident = upload_checked(model, data)?;
    // The same evaluation the epoch loop runs for its val and test columns.
    let metrics = model.evaluate(&resident)?;
    let spec = model.spec().clone();
    match (&data.targets, spec.task()) {
        (Targets::Classes { labels, .. }, Task::Classification) => {
            let classes = class_count(&spec).unwrap_or(2);
            let logits = model.logits(&resident)?;
            let predicted: Vec<usize> = logits
                .chunks_exact(spec.outputs())
                .map(|row| predicted_class(spec.loss, row))
                .collect();
            let confusion = confusion_matrix(labels, &predicted, classes);
            let (per_class, macro_avg) = class_stats(&confusion, &class_names(&spec));
            Ok(Evaluation::Classification(ClassificationEval {
                rows: data.rows,
                loss: metrics.loss,
                accuracy: metrics.metric,
                confusion,
                per_class,
                macro_avg,
            }))
        }
        (Targets::Values { values, .. }, Task::Regression) => {
            let mse = if spec.loss == LossKind::Mse {
                metrics.loss
            } else {
                let out = model.outputs(&resident)?;
                let sq: f64 = out
                    .iter()
                    .zip(values)
                    .map(|(&y, &t)| (y as f64 - t as f64).powi(2))
                    .sum();
                sq / values.len().max(1) as f64
            };
            Ok(Evaluation::Regression(RegressionEval {
                rows: data.rows,
                loss: metrics.loss,
                mse,
                mae: metrics.metric,
            }))
        }
        // `upload` has rejected these already.
        _ => Err(Error::Dataset(
            "the data's targets do not fit the model's task".into(),
        )),
    }
}

/// `confusion[t][p]`: rows of true class `t` predicted as `p`. labels, predicted: (rows,),
/// every value `< classes` (`upload` has checked the labels).
pub fn confusion_matrix(labels: &[u32], predicted: &[usize], classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; classes]; classes];
    for (&t, &p) in labels.iter().zip(predicted) {
        m[t as usize][p] += 1;
    }
    m
}

/// Per-class precision, recall, F1 and support, and their macro averages. A ratio with a zero
/// denominator (a class never predicted, or absent) counts as 0, as scikit-learn reports it.
pub fn class_stats(confusion: &[Vec<u64>], names: &[String]) -> (Vec<ClassStats>, Averages) {
    let n = confusion.len();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut per_class = Vec::with_capacity(n);
    let mut sums = (0.0, 0.0, 0.0);
    let mut counted = 0usize;
    for c in 0..n {
        let tp = confusion[c][c];
        let support: u64 = confusion[c].iter().sum();
        let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        // Classes that neither occur nor are predicted say nothing about the model (a 10-class
        // MNIST model measured on a file of two digits), so they stay out of the averages.
        if support > 0 || predicted > 0 {
            sums = (sums.0 + precision, sums.1 + recall, sums.2 + f1);
            counted += 1;
        }
        per_class.push(ClassStats {
            class: c,
            name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
            precision,
            recall,
            f1,
            support,
        });
    }
    let k = counted.max(1) as f64;
    let averages = Averages {
        precision: sums.0 / k,
        recall: sums.1 / k,
        f1: sums.2 / k,
    };
    (per_class, averages)
}

impl ClassificationEval {
    /// The accuracy the confusion matrix implies: its trace over the rows. It counts the same
    /// decisions from the same logits as the loss op, so it equals [`Self::accuracy`]; a
    /// difference means a backend's loss op and [`predicted_class`] disagree.
    pub fn accuracy_from_confusion(&self) -> f64 {
        let correct: u64 = (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum();
        correct as f64 / self.rows.max(1) as f64
    }

    /// The confusion matrix as a table: one row per true class labelled "index name", one
    /// column per predicted class labelled by index (names would make it too wide).
    pub fn confusion_table(&self) -> String {
        let names: Vec<&str> = self.per_class.iter().map(|c| c.name.as_str()).collect();
        let row_labels: Vec<String> = (0..self.confusion.len())
            .map(|i| {
                if names.get(i).is_some_and(|n| *n != i.to_string()) {
                    format!("{i} {}", names[i])
                } else {
                    i.to_string()
                }
            })
            .collect();
        let corner = "true \\ predicted";
        let label_w = row_labels
            .iter()
            .map(|l| l.chars().count())
            .chain([corner.chars().count()])
            .max()
            .unwrap_or(0);
        let max_count = self.confusion.iter().flatten().max().copied().unwrap_or(0);
        let col_w = max_count
            .to_string()
            .len()
            .max((self.confusion.len().saturating_sub(1)).to_string().len());
        let mut out = format!("{corner:<label_w$}");
        for c in 0..self.confusion.len() {
            out += &format!(" {c:>col_w$}");
        }
        out.push('\n');
        for (label, row) in row_labels.iter().zip(&self.confusion) {
            out += &format!("{label:<label_w$}");
            for v in row {
                out += &format!(" {v:>col_w$}");
            }
            out.push('\n');
        }
        out
    }

    /// Precision, recall, F1 and support per class, then the macro averages.
    pub fn class_table(&self) -> String {
        let name_w = self
            .per_class
            .iter()
            .map(|c| c.name.chars().count())
            .chain(["class".len(), "macro avg".len()])
            .max()
            .unwrap_or(0);
        let mut out = format!(
            "{:<name_w$} {:>9} {:>9} {:>9} {:>8}\n",
            "class", "precision", "recall", "f1", "support"
        );
        for c in &self.per_class {
            out += &format!(
                "{:<name_w$} {:>9.4} {:>9.4} {:>9.4} {:>8}\n",
                c.name, c.precision, c.recall, c.f1, c.support
            );
        }
        let m = self.macro_avg;
        out += &format!(
            "{:<name_w$} {:>9.4} {:>9.4} {:>9.4} {:>8}\n",
            "macro avg", m.precision, m.recall, m.f1, self.rows
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn stats_match_a_hand_computed_example() {
        // true 0: 3 rows, 2 right; true 1: 2 rows, both right; class 2 never occurs.
        let labels = [0, 0, 0, 1, 1];
        let predicted = [0, 0, 1, 1, 1];
        let m = confusion_matrix(&labels, &predicted, 3);
        assert_eq!(m, vec![vec![2, 1, 0], vec![0, 2, 0], vec![0, 0, 0]]);
        let (per, avg) = class_stats(&m, &names(3));
        assert_eq!(per[0].precision, 1.0);
        assert_eq!(per[0].recall, 2.0 / 3.0);
        assert_eq!(per[0].f1, 0.8);
        assert_eq!(per[1].precision, 2.0 / 3.0);
        assert_eq!(per[1].recall, 1.0);
        assert_eq!(per[2].support, 0);
        assert_eq!(per[2].f1, 0.0);
        // Class 2 is neither true nor predicted anywhere, so the average is over 0 and 1.
        assert_eq!(avg.precision, (1.0 + 2.0 / 3.0) / 2.0);
        assert_eq!(avg.f1, 0.8);
    }

    #[test]
    fn tables_label_rows_with_names() {
        let e = ClassificationEval {
            rows: 5,
            loss: 0.5,
            accuracy: 0.8,
            confusion: vec![vec![2, 1], vec![0, 2]],
            per_class: class_stats(
                &[vec![2, 1], vec![0, 2]],
                &["cat".to_string(), "dog".to_string()],
            )
            .0,
            macro_avg: Averages {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
            },
        };
        let t = e.confusion_table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "true \\ predicted 0 1");
        assert_eq!(lines[1], "0 cat            2 1");
        assert_eq!(lines[2], "1 dog            0 2");
        assert!(e.class_table().contains("dog"));
    }
}
