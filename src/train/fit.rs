//! The epoch loop, with hooks for progress display and for stopping between steps.

use super::{Metrics, ResidentData, Trainer};
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
    pub samples_per_sec: f64,
}

/// Receives progress while an epoch runs.
pub trait Observer {
    fn epoch_start(&mut self, _epoch: usize, _rows: usize) {}
    /// `rows_done` rows of the epoch are done; `live` is the running metrics when they were
    /// read at this step (see [`Observer::refresh`]).
    fn step(&mut self, _rows_done: usize, _live: Option<Metrics>) {}
    fn epoch_end(&mut self, _report: &EpochReport) {}
    /// How often running metrics are read back (each read waits for the device).
    fn refresh(&self) -> Duration {
        Duration::from_millis(250)
    }
    /// Asked after every step: stop there (the trainer is then at a consistent point that
    /// [`crate::train::Progress`] describes, ready for a checkpoint).
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {
    fn refresh(&self) -> Duration {
        Duration::MAX
    }
}

/// The data sets of a run, resident on the trainer's backend.
#[derive(Clone, Copy)]
pub struct RunData<'a> {
    pub train: &'a ResidentData,
    pub val: Option<&'a ResidentData>,
    pub test: Option<&'a ResidentData>,
}

/// Trains until `epochs` epochs are complete, evaluating the held-out sets after each.
/// Returns the reports of the epochs it ran, or stops early (with the reports so far) when the
/// observer asks.
pub fn fit(
    t: &mut Trainer,
    data: RunData,
    epochs: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<EpochReport>> {
    let mut reports = Vec::new();
    while t.progress.epoch < epochs {
        match train_epoch(t, data, obs)? {
            Some(r) => reports.push(r),
            None => break,
        }
    }
    Ok(reports)
}

/// Trains the current epoch (from where an interrupted one stopped, if it was), then
/// evaluates. Returns `None` when the observer stopped it part-way.
pub fn train_epoch(
    t: &mut Trainer,
    data: RunData,
    obs: &mut dyn Observer,
) -> Result<Option<EpochReport>> {
    let train = data.train;
    let batch = t.net.max_batch;
    let epoch = t.progress.epoch + 1;
    let started = Instant::now();
    let lr = t.optimizer.lr_at(t.progress.step);
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
    obs.epoch_start(epoch, train.rows);
    let mut last_read = Instant::now();
    for start in (resume_at..train.rows).step_by(batch) {
        let rows = batch.min(train.rows - start);
        t.step(train, start, rows)?;
        let done = start + rows;
        let live = if last_read.elapsed() >= obs.refresh() {
            last_read = Instant::now();
            let m = t.read_metrics()?;
            check_finite(m.loss, epoch, t.progress.step)?;
            Some(m)
        } else {
            None
        };
        obs.step(done, live);
        if done < train.rows && obs.should_stop() {
            t.progress.rows_done = done;
            t.progress.partial = t.read_acc()?;
            check_finite(t.progress.partial[0] as f64, epoch, t.progress.step)?;
            return Ok(None);
        }
    }
    let acc = t.read_acc()?;
    let m = Metrics::from_acc(&acc);
    check_finite(m.loss, epoch, t.progress.step)?;
    // One read per epoch: the penalty and the check that no parameter overflowed.
    let params = t.finite_params(epoch)?;
    let reg_loss = t.regularization.penalty(&t.net.layout, &params);
    check_finite(reg_loss, epoch, t.progress.step)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let val = data.val.map(|d| t.evaluate(d)).transpose()?;
    let test = data.test.map(|d| t.evaluate(d)).transpose()?;
    t.progress.epoch = epoch;
    t.progress.rng = next_rng;
    t.progress.rows_done = 0;
    t.progress.partial = [0.0; 3];
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
    obs.epoch_end(&report);
    Ok(Some(report))
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
