//! The epoch loop, with callbacks for progress, stopping and saving.

use super::{Callback, Control, Metrics, ResidentData, Trainer};
use crate::data::Dataset;
use crate::ops::reduce::ACC_LEN;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What one epoch measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean data loss over the epoch's steps (as the weights moved).
    pub train_loss: f64,
    /// The regularisation penalty at the epoch's end.
    pub reg_loss: f64,
    /// Training accuracy (classes) or MAE (regression) over the epoch's steps.
    pub train_metric: f64,
    /// The validation set's metrics at the epoch's end, when a split was held out.
    pub val: Option<Metrics>,
    /// The test set's metrics at the epoch's end, when the data has a test set.
    pub test: Option<Metrics>,
    /// The learning rate at the epoch's first step.
    pub lr: f32,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Wall time of the training steps alone.
    pub train_seconds: f64,
    /// Training rows per second of wall time over the rows this run trained in the epoch (a resumed
    /// epoch counts only the rest).
    pub samples_per_sec: f64,
}

/// The data sets of a run, resident on the trainer's backend.
#[derive(Clone, Copy)]
pub struct RunData<'a> {
    /// The training set, shuffled every epoch.
    pub train: &'a ResidentData,
    /// A validation split, evaluated after each epoch; what early stopping watches first.
    pub val: Option<&'a ResidentData>,
    /// A test set, evaluated after each epoch.
    pub test: Option<&'a ResidentData>,
}

/// Trains until `epochs` epochs are complete (counting those a resumed trainer already did),
/// evaluating the held-out sets after each. Returns the reports of the epochs it ran; stops
/// early when a callback asks (after an epoch, or part-way through one).
pub fn fit(
    t: &mut Trainer,
    data: RunData,
    epochs: usize,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Vec<EpochReport>> {
    let mut reports = Vec::new();
    while t.progress.epoch < epochs && !callbacks.iter().any(|c| c.should_stop()) {
        match train_epoch(t, data, callbacks)? {
            Some((r, control)) => {
                reports.push(r);
                if control == Control::Stop {
                    break;
                }
            }
            None => break,
        }
    }
    Ok(reports)
}

/// Uploads `train` and trains on it for `epochs` epochs (see [`fit`]).
pub fn fit_dataset(
    t: &mut Trainer,
    train: &Dataset,
    epochs: usize,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Vec<EpochReport>> {
    let train = t.upload(train)?;
    let data = RunData {
        train: &train,
        val: None,
        test: None,
    };
    fit(t, data, epochs, callbacks)
}

/// Trains the current epoch (from where an interrupted one stopped, if it was), then
/// evaluates and hands the report to the callbacks. Returns `None` when a callback stopped it
/// part-way (after any step, the last included: the epoch then ends, evaluation and all, when
/// training resumes), else the report and whether a callback asked to stop.
pub fn train_epoch(
    t: &mut Trainer,
    data: RunData,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Option<(EpochReport, Control)>> {
    let train = data.train;
    let batch = t.batch_size();
    let epoch = t.progress.epoch + 1;
    let started = Instant::now();
    let lr = t.lr();
    let next_rng = t.shuffle(train)?;
    let resume_at = t.progress.rows_done;
    if resume_at > train.rows {
        return Err(Error::Dataset(format!(
            "the checkpoint stopped {resume_at} rows into an epoch, but the training set has only \
             {} rows; resume with the data it was trained on",
            train.rows
        )));
    }
    t.write_acc(t.progress.partial)?;
    for c in callbacks.iter_mut() {
        c.epoch_start(epoch, train.rows);
    }
    let refresh = callbacks
        .iter()
        .map(|c| c.refresh())
        .min()
        .unwrap_or(Duration::MAX);
    let mut last_read = Instant::now();
    for start in (resume_at..train.rows).step_by(batch) {
        let rows = batch.min(train.rows - start);
        t.step(train, start, rows)?;
        let done = start + rows;
        let live = if last_read.elapsed() >= refresh {
            last_read = Instant::now();
            let m = Metrics::from_sums(&t.read_acc()?, done);
            check_finite(m.loss, epoch, t.progress.step)?;
            Some(m)
        } else {
            None
        };
        for c in callbacks.iter_mut() {
            c.step(done, live);
        }
        if callbacks.iter().any(|c| c.should_stop()) {
            t.progress.rows_done = done;
            t.progress.partial = t.read_acc()?;
            check_finite(t.progress.partial[0] as f64, epoch, t.progress.step)?;
            return Ok(None);
        }
    }
    let acc = t.read_acc()?;
    let m = Metrics::from_sums(&acc, train.rows);
    check_finite(m.loss, epoch, t.progress.step)?;
    // One read per epoch: the penalty and the check that no parameter overflowed.
    let params = t.finite_params(epoch)?;
    let reg_loss = t.regularization().penalty(t.model().layout(), &params);
    check_finite(reg_loss, epoch, t.progress.step)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let val = data.val.map(|d| t.evaluate(d)).transpose()?;
    let test = data.test.map(|d| t.evaluate(d)).transpose()?;
    t.progress.epoch = epoch;
    t.progress.rng = next_rng;
    t.progress.rows_done = 0;
    t.progress.partial = [0.0; ACC_LEN];
    let report = EpochReport {
        epoch,
        train_loss: m.loss,
        reg_loss,
        train_metric: m.metric,
        val,
        test,
        lr,
        seconds: started.elapsed().as_secs_f64(),
        train_seconds,
        samples_per_sec: (train.rows - resume_at) as f64 / train_seconds.max(1e-9),
    };
    let mut control = Control::Continue;
    for c in callbacks.iter_mut() {
        if c.epoch_end(t, &report)? == Control::Stop {
            control = Control::Stop;
        }
    }
    Ok(Some((report, control)))
}

fn check_finite(v: f64, epoch: usize, step: u64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::Diverged {
            epoch,
            step: step as usize,
            what: "the training loss".into(),
        })
    }
}
