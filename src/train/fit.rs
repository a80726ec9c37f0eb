//! The epoch loop, with hooks for progress display (and, later, checkpoints).

use super::{Metrics, ResidentData, Trainer};
use crate::{Error, Result};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What one epoch measured.
#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean data loss over the epoch's steps (as the weights moved).
    pub train_loss: f64,
    /// The regularisation penalty at the epoch's end.
    pub reg_loss: f64,
    /// Training accuracy (classes) or MAE (regression) over the epoch's steps.
    pub train_metric: f64,
    /// The held-out set's metrics at the epoch's end ("test" or "validation").
    pub eval: Option<Metrics>,
    pub lr: f32,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Wall time of the training steps alone.
    pub train_seconds: f64,
    pub samples_per_sec: f64,
}

/// Receives progress while [`fit`] runs.
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
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {
    fn refresh(&self) -> Duration {
        Duration::MAX
    }
}

/// Trains `epochs` more epochs on `train` in batches of the network's batch size, evaluating
/// `eval` after each.
pub fn fit(
    t: &mut Trainer,
    train: &ResidentData,
    eval: Option<&ResidentData>,
    epochs: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<EpochReport>> {
    let mut reports = Vec::new();
    let batch = t.net.max_batch;
    for _ in 0..epochs {
        let epoch = t.progress.epoch + 1;
        let started = Instant::now();
        let lr = t.optimizer.lr_at(t.progress.step);
        t.shuffle(train)?;
        t.reset_metrics()?;
        obs.epoch_start(epoch, train.rows);
        let mut last_read = Instant::now();
        for start in (0..train.rows).step_by(batch) {
            let rows = batch.min(train.rows - start);
            t.step(train, start, rows)?;
            let done = start + rows;
            let live = if last_read.elapsed() >= obs.refresh() {
                last_read = Instant::now();
                let m = t.read_metrics()?;
                check_finite(m.loss, epoch, t.progress.step)?;
                Some(m)
            } else {
                t.backend.flush()?;
                None
            };
            obs.step(done, live);
        }
        let m = t.read_metrics()?;
        check_finite(m.loss, epoch, t.progress.step)?;
        let reg_loss = t.penalty()?;
        check_finite(reg_loss, epoch, t.progress.step)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let eval = match eval {
            Some(d) => Some(t.evaluate(d)?),
            None => None,
        };
        t.progress.epoch = epoch;
        let report = EpochReport {
            epoch,
            train_loss: m.loss,
            reg_loss,
            train_metric: m.metric,
            eval,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            train_seconds,
            samples_per_sec: train.rows as f64 / train_seconds.max(1e-9),
        };
        obs.epoch_end(&report);
        reports.push(report);
    }
    Ok(reports)
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
