//! Callbacks: early stopping on a validation set, saving the best model, and a learning-rate
//! schedule of our own (cosine with warm restarts), on the 3-class spiral of nnfs.io.
//!
//!     cargo run --release --example callbacks

use wgtrain::backend::{self, BackendChoice};
use wgtrain::data::{self, DataSource};
use wgtrain::model::{Model, Sequential};
use wgtrain::optim::{OptimizerConfig, OptimizerKind};
use wgtrain::train::{
    Callback, Control, EarlyStopping, EpochReport, RunData, SaveBest, Trainer, fit,
};

/// Cosine annealing from `base` to 0 over `period` epochs, restarting at `base` (SGDR).
struct WarmRestarts {
    base: f32,
    period: usize,
}

impl Callback for WarmRestarts {
    fn epoch_end(&mut self, t: &mut Trainer, r: &EpochReport) -> wgtrain::Result<Control> {
        let phase = (r.epoch % self.period) as f32 / self.period as f32;
        t.optimizer.lr = 0.5 * self.base * (1.0 + (std::f32::consts::PI * phase).cos());
        Ok(Control::Continue)
    }
}

fn main() -> wgtrain::Result<()> {
    let spiral = data::load(&DataSource::Spiral, 3)?;
    let (train, val) = data::split_validation(spiral.train, 0.2, 3)?;

    let spec = Sequential::new(2)
        .dense(64)
        .relu()
        .dense(64)
        .relu()
        .dense(3)
        .cross_entropy()?;
    let (backend, _) = backend::create(BackendChoice::Auto, None)?;
    let adam = OptimizerConfig {
        lr: 0.02,
        ..OptimizerConfig::new(OptimizerKind::Adam)
    };
    let mut trainer = Trainer::new(Model::new(backend, spec, 3)?, 64, adam, 3)?;
    let (train, val) = (trainer.upload(&train)?, trainer.upload(&val)?);

    let best = std::env::temp_dir().join("wgtrain-spiral-best.safetensors");
    let mut schedule = WarmRestarts {
        base: 0.02,
        period: 40,
    };
    let mut early = EarlyStopping::new(60);
    let mut save = SaveBest::new(&best);
    let data = RunData {
        train: &train,
        val: Some(&val),
        test: None,
    };
    let reports = fit(
        &mut trainer,
        data,
        1000,
        &mut [&mut schedule, &mut early, &mut save],
    )?;

    let last = reports.last().expect("at least one epoch");
    let val_acc = |r: &EpochReport| r.val.map_or(0.0, |m| 100.0 * m.metric);
    println!(
        "stopped after epoch {} of 1000: validation accuracy {:.1}%",
        last.epoch,
        val_acc(last)
    );
    println!(
        "best validation loss {:.4}, model of epoch {:?} in {}",
        early.best(),
        save.saved_epoch,
        best.display()
    );
    Ok(())
}
