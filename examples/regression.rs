//! Learn a function from arrays in memory: `y = sin(3x) + x/2` on [-1, 1], from 512 noisy
//! samples, then use the trained model inside the program.
//!
//!     cargo run --release --example regression

use ndarray::{Array1, Array2, Axis};
use wgtrain::backend::{self, BackendChoice};
use wgtrain::data::Dataset;
use wgtrain::model::{Model, Sequential};
use wgtrain::optim::{OptimizerConfig, OptimizerKind};
use wgtrain::rng::Rng;
use wgtrain::train::{Trainer, fit_dataset};

fn f(x: f32) -> f32 {
    (3.0 * x).sin() + 0.5 * x
}

fn main() -> wgtrain::Result<()> {
    // Inputs (512, 1) and targets (512, 1) with a little noise.
    let mut rng = Rng::new(1);
    let x = Array2::from_shape_fn((512, 1), |_| rng.next_f64() as f32 * 2.0 - 1.0);
    let y = x.mapv(|v| f(v) + 0.05 * rng.normal() as f32);
    let data = Dataset::regression(x.view(), y.view())?;

    let spec = Sequential::new(1)
        .dense(32)
        .tanh()
        .dense(32)
        .tanh()
        .dense(1)
        .mse()?;
    let (backend, _) = backend::create(BackendChoice::Auto, None)?;
    let model = Model::new(backend, spec, 7)?;
    let adam = OptimizerConfig {
        lr: 0.01,
        ..OptimizerConfig::new(OptimizerKind::Adam)
    };
    let mut trainer = Trainer::new(model, 32, adam, 7)?;
    let reports = fit_dataset(&mut trainer, &data, 400, &mut [])?;
    let last = reports.last().expect("400 epochs ran");
    println!(
        "after {} epochs: training MSE {:.5}, MAE {:.4}",
        last.epoch, last.train_loss, last.train_metric
    );

    // The trained model, used on new inputs in the program.
    let mut model = trainer.into_model();
    let grid = Array1::linspace(-1.0f32, 1.0, 9).insert_axis(Axis(1));
    let pred = model.predict(grid.view())?;
    for (x, p) in grid.iter().zip(pred.iter()) {
        println!("f({x:+.2}) = {:+.3}   model: {p:+.3}", f(*x));
    }
    Ok(())
}
