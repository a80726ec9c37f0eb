//! What runs beside training: progress displays, early stopping, saving the best model, and any
//! callback of the user's, which sees the trainer and may stop it, change its learning rate or
//! save it.

use super::{EpochReport, Metrics, Trainer};
use crate::Result;
use std::path::PathBuf;
use std::time::Duration;

/// What a callback wants after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on training.
    Continue,
    /// End training after this epoch.
    Stop,
}

/// Receives training's progress. Every method has a default that does nothing.
///
/// ```
/// use wgtrain::train::{Callback, Control, EpochReport, Trainer};
///
/// /// Halves the learning rate every 5 epochs.
/// struct Halve;
/// impl Callback for Halve {
///     fn epoch_end(&mut self, t: &mut Trainer, r: &EpochReport) -> wgtrain::Result<Control> {
///         if r.epoch % 5 == 0 {
///             t.optimizer.lr /= 2.0;
///         }
///         Ok(Control::Continue)
///     }
/// }
/// ```
pub trait Callback {
    /// Before epoch `epoch` (counted from 1) starts, with the `rows` rows of its training set. A
    /// resumed epoch starts again here, part-way.
    fn epoch_start(&mut self, _epoch: usize, _rows: usize) {}
    /// `rows_done` rows of the epoch are done; `live` is the running metrics when they were
    /// read at this step (see [`Callback::refresh`]).
    fn step(&mut self, _rows_done: usize, _live: Option<Metrics>) {}
    /// After each epoch's evaluation, with the trainer: change its learning rate, save its
    /// model, or stop.
    fn epoch_end(&mut self, _trainer: &mut Trainer, _report: &EpochReport) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// How often running metrics are read back (each read waits for the device); never by
    /// default.
    fn refresh(&self) -> Duration {
        Duration::MAX
    }
    /// Asked after every step and before every epoch: stop there (the trainer is then at a
    /// consistent point that [`crate::train::Progress`] describes, ready for a checkpoint).
    fn should_stop(&self) -> bool {
        false
    }
}

/// A callback that does nothing.
pub struct Silent;
impl Callback for Silent {}

/// The figure early stopping and save-best watch: the validation loss where there is a
/// validation set, else the training loss. Never the test loss: a model chosen on the test set
/// would make its test accuracy an overestimate.
fn watched(r: &EpochReport) -> f64 {
    r.val.map_or(r.train_loss, |m| m.loss)
}

/// Stops training when the watched loss (validation, else training) has not improved for
/// `patience` epochs.
///
/// ```
/// use wgtrain::backend::cpu::CpuBackend;
/// use wgtrain::model::Sequential;
/// use wgtrain::optim::{OptimizerConfig, OptimizerKind};
/// use wgtrain::train::{Callback, Control, EarlyStopping, EpochReport, Trainer};
///
/// let spec = Sequential::new(1).dense(1).mse()?;
/// let sgd = OptimizerConfig::new(OptimizerKind::Sgd);
/// let mut trainer = Trainer::from_spec(Box::new(CpuBackend::new()), spec, 8, sgd, 0)?;
/// // Given to `fit` as `&mut [&mut early]`; here it is fed reports by hand.
/// let mut early = EarlyStopping::new(2);
/// let report = |epoch, train_loss| EpochReport {
///     epoch, train_loss, reg_loss: 0.0, train_metric: 0.0, val: None, test: None,
///     lr: 0.05, seconds: 0.0, train_seconds: 0.0, samples_per_sec: 0.0,
/// };
/// let mut controls = Vec::new();
/// for (epoch, loss) in [(1, 0.9), (2, 0.5), (3, 0.6), (4, 0.5)] {
///     controls.push(early.epoch_end(&mut trainer, &report(epoch, loss))?);
/// }
/// // Epochs 3 and 4 do not beat epoch 2's 0.5 (an equal loss is no improvement).
/// use Control::{Continue, Stop};
/// assert_eq!(controls, [Continue, Continue, Continue, Stop]);
/// assert_eq!(early.best(), 0.5);
/// # Ok::<(), wgtrain::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// Epochs without improvement after which training stops; at least 1 (with 0 it stops after the
    /// first epoch).
    pub patience: usize,
    best: f64,
    since_best: usize,
}

impl EarlyStopping {
    /// Stops after `patience` epochs without a new best watched loss.
    pub fn new(patience: usize) -> EarlyStopping {
        EarlyStopping {
            patience,
            best: f64::INFINITY,
            since_best: 0,
        }
    }

    /// The best watched loss so far.
    pub fn best(&self) -> f64 {
        self.best
    }
}

impl Callback for EarlyStopping {
    fn epoch_end(&mut self, _: &mut Trainer, r: &EpochReport) -> Result<Control> {
        let loss = watched(r);
        if loss < self.best {
            self.best = loss;
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        // A patience of 0 would stop after the first epoch, improved or not: it means 1.
        Ok(if self.since_best >= self.patience.max(1) {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// Saves the model to `path` whenever the watched loss (validation, else training) improves. A model with a NaN or infinite parameter is never saved: training stops with
/// [`crate::Error::Diverged`] instead.
#[derive(Clone, Debug)]
pub struct SaveBest {
    /// Where the best model is written (atomically), as a model file.
    pub path: PathBuf,
    best: f64,
    /// The epoch of the model on disk.
    pub saved_epoch: Option<usize>,
}

impl SaveBest {
    /// Saves the best model to `path`, overwriting any file there.
    pub fn new(path: impl Into<PathBuf>) -> SaveBest {
        SaveBest {
            path: path.into(),
            best: f64::INFINITY,
            saved_epoch: None,
        }
    }
}

impl Callback for SaveBest {
    fn epoch_end(&mut self, t: &mut Trainer, r: &EpochReport) -> Result<Control> {
        let loss = watched(r);
        if loss < self.best {
            self.best = loss;
            // Never a model that cannot predict.
            let params = t.finite_params(r.epoch)?;
            crate::store::save_model(&self.path, t.spec(), &params)?;
            self.saved_epoch = Some(r.epoch);
        }
        Ok(Control::Continue)
    }
}
