//! Train a small network on the 10,000 MNIST digits bundled with wgtrain and print the test
//! accuracy after each epoch, on the GPU when there is one (else the CPU).
//!
//!     cargo run --release --example mnist

use wgtrain::backend::{self, BackendChoice};
use wgtrain::data::{self, DataSource, Scale};
use wgtrain::model::{Model, Sequential};
use wgtrain::optim::{OptimizerConfig, OptimizerKind};
use wgtrain::train::{RunData, Trainer, fit};

fn main() -> wgtrain::Result<()> {
    // 8,000 training and 2,000 test digits, 28x28 bytes each.
    let digits = data::load(&DataSource::MnistSample, 0)?;
    let test = digits.test.expect("the bundled digits have a test split");

    // 784 pixels -> 128 ReLU units -> 10 classes, softmax cross-entropy.
    let spec = Sequential::image(28, 28, Scale::ZeroOne)
        .dense(128)
        .relu()
        .dense(10)
        .cross_entropy()?;
    let (backend, _) = backend::create(BackendChoice::Auto, None)?;
    let model = Model::new(backend, spec, 42)?;
    let adam = OptimizerConfig::new(OptimizerKind::Adam);
    let mut trainer = Trainer::new(model, 64, adam, 42)?;

    // The data moves to the device once; each step moves nothing.
    let train = trainer.upload(&digits.train)?;
    let test = trainer.upload(&test)?;
    let data = RunData {
        train: &train,
        val: None,
        test: Some(&test),
    };
    for r in fit(&mut trainer, data, 5, &mut [])? {
        let acc = r.test.expect("measured on the test split").metric;
        println!(
            "epoch {}  loss {:.4}  test accuracy {:.2}%",
            r.epoch,
            r.train_loss,
            100.0 * acc
        );
    }
    Ok(())
}
