//! The host-side graph: a model compiled once into a plan of ops, which a step replays.
//!
//! Compiling a model ([`crate::model::ModelSpec`]) for a batch size and a [`Mode`] goes through
//! four small passes, each in its own file:
//! 1. [`lower`]: the layers become an ordered list of [`crate::ops::Op`]s over named values with
//!    shapes ([`Plan`]): the batch gather, the forward pass, and in training the loss, the
//!    backward pass and the update. Every value is written once (a new value per op output).
//! 2. [`fuse`]: pairs of ops become one where a kernel can do both (an activation on its
//!    matmul's tiles, the bias gradient beside the weight gradient, the metrics in the loss, the
//!    labels in the row gather, the penalties in the update). Switched off by
//!    [`PlanOptions::fuse`] or `WGTRAIN_FUSE=0`; both forms compute the same numbers.
//! 3. [`assign`]: values get buffers by liveness: a value takes a buffer no later op still needs,
//!    in place on its input only where the op allows it and the input dies there. A checker
//!    replays the assignment and refuses a plan in which an op reads a buffer overwritten since
//!    its value was written (tests run it on every plan they build; debug builds on every plan).
//! 4. [`Program`]: the plan on a backend, every op's shape rule checked once, replayed per step
//!    with only the batch's offset, the dropout streams and the optimizer's scalars changing.
//!
//! A [`Recipe`] compiles plans without a backend, which is how `wgtrain plan` prints them:
//!
//! ```
//! use wgtrain::graph::lower::Training;
//! use wgtrain::graph::{Mode, Persistent, PlanOptions, Recipe};
//! use wgtrain::model::{ParamLayout, Sequential};
//! use wgtrain::ops::Op;
//! use wgtrain::optim::{OptimizerConfig, OptimizerKind, Regularization};
//!
//! let spec = Sequential::new(784).dense(128).relu().dense(10).cross_entropy()?;
//! let recipe = Recipe {
//!     layout: ParamLayout::new(&spec),
//!     spec,
//!     mode: Mode::Train,
//!     training: Some(Training {
//!         update: OptimizerConfig::new(OptimizerKind::Adam).update_params(0),
//!         regularization: Regularization::default(),
//!         clip_norm: None,
//!         shift: 0,
//!     }),
//!     // No buffers: enough to compile and print, not to run.
//!     persistent: Persistent::default(),
//!     options: PlanOptions { fuse: true },
//!     batch: 64,
//! };
//! let plan = recipe.plan(64);
//! print!("{plan}"); // one line per op: its name and shape, what it reads -> what it writes
//! // Gather (+labels), 2 products (the first +relu, the second +softmax-CE +metrics), 2
//! // weight-gradient products (+bias gradients), 1 input-gradient product (×relu'), the update.
//! assert_eq!(plan.ops.len(), 7);
//! assert!(plan.to_string().starts_with("Train plan, 64 rows, 7 ops:"));
//! assert!(matches!(plan.ops.last(), Some(Op::Update(_))));
//! # Ok::<(), wgtrain::Error>(())
//! ```

pub mod assign;
pub mod fuse;
pub mod lower;
mod plan;
pub(crate) mod program;
mod resident;

pub use plan::{Mode, Plan, PlanOptions, Value, ValueKind};
pub use program::{Persistent, Pool, Program, ProgramCache, Recipe, StepArgs};
pub use resident::ResidentData;

#[cfg(test)]
mod tests {
    use super::assign::{assign, verify};
    use super::lower::{Bounds, Training, lower};
    use super::*;
    use crate::model::{Activation, Layer, LossKind, ModelSpec, ParamLayout};
    use crate::ops::{Epilogue, Op};
    use crate::optim::{OptimizerConfig, OptimizerKind, Regularization};

    fn training(reg: Regularization) -> Training {
        Training {
            update: OptimizerConfig::new(OptimizerKind::Adam).update_params(0),
            regularization: reg,
            clip_norm: None,
            shift: 0,
        }
    }

    fn plan(spec: &ModelSpec, mode: Mode, rows: usize, fuse: bool, reg: Regularization) -> Plan {
        let layout = ParamLayout::new(spec);
        let mut p = lower(
            spec,
            &layout,
            mode,
            rows,
            Some(&training(reg)),
            Bounds::unbounded(rows),
        );
        if fuse {
            fuse::fuse(&mut p, rows);
        }
        p
    }

    fn standard() -> ModelSpec {
        ModelSpec::mlp(
            784,
            &[256, 128],
            10,
            Activation::Relu,
            0.0,
            LossKind::SoftmaxCrossEntropy,
        )
        .unwrap()
    }

    #[test]
    fn the_standard_step_is_ten_ops_fused_and_every_plan_verifies() {
        let spec = standard();
        let fused = plan(&spec, Mode::Train, 128, true, Regularization::default());
        // gather (+labels), 2 products (+relu), the last product (+softmax-CE +metrics), 3
        // weight-gradient products (+bias gradients), 2 input-gradient products (×relu'), the
        // update.
        assert_eq!(fused.ops.len(), 10, "{fused}");
        assert!(
            fused.ops.iter().any(
                |op| matches!(op, Op::Matmul(m) if matches!(m.epilogue, Epilogue::SoftmaxCe(_)))
            ),
            "{fused}"
        );
        // Evaluation: gather, 3 products, the last with its loss and accumulation.
        let eval = plan(&spec, Mode::Eval, 128, true, Regularization::default());
        assert_eq!(eval.ops.len(), 4, "{eval}");
        let plain = plan(&spec, Mode::Train, 128, false, Regularization::default());
        // Unfused: 2 gathers, 3 products + 2 activations, loss + accumulate, 3 + 3 gradient
        // ops, 2 products + 2 activation derivatives, the update.
        assert_eq!(plain.ops.len(), 20, "{plain}");
        for mode in [Mode::Train, Mode::Eval, Mode::Predict] {
            for p in [true, false].map(|f| plan(&spec, mode, 128, f, Regularization::default())) {
                verify(&p, &assign(&p)).unwrap();
                // Logical values are distinct, so the shape rules hold on them too (ops on the
                // data set are checked when one is bound).
                for op in &p.ops {
                    let data = op
                        .operands()
                        .iter()
                        .any(|(b, _)| p.value(*b).kind.is_external());
                    if !data {
                        op.check().unwrap();
                    }
                }
            }
        }
        // Penalties ride on the update.
        let reg = Regularization {
            l2_weights: 1e-4,
            l1_biases: 1e-3,
            ..Regularization::default()
        };
        let p = plan(&spec, Mode::Train, 128, true, reg);
        assert_eq!(p.ops.len(), 10, "{p}");
        assert!(matches!(p.ops.last(), Some(Op::Update(u)) if u.penalty.is_some()));
    }

    /// Dense -> Sigmoid -> Tanh -> Dense.
    fn stacked() -> ModelSpec {
        let mut spec = standard();
        spec.layers = vec![
            Layer::Dense {
                inputs: 4,
                outputs: 5,
            },
            Layer::Activation {
                activation: Activation::Sigmoid,
            },
            Layer::Activation {
                activation: Activation::Tanh,
            },
            Layer::Dense {
                inputs: 5,
                outputs: 3,
            },
        ];
        spec
    }

    /// Two activations in a row: the second must not overwrite the first's output, which the
    /// first's derivative reads in the backward pass.
    #[test]
    fn stacked_activations_keep_both_outputs() {
        let spec = stacked();
        for fuse in [true, false] {
            let p = plan(&spec, Mode::Train, 4, fuse, Regularization::default());
            let a = assign(&p);
            verify(&p, &a).unwrap();
            let slot = |name: &str| {
                let v = p.values.iter().position(|v| v.name == name).unwrap();
                a.slot_of[v]
            };
            assert_ne!(slot("layer 1 out"), slot("layer 2 out"), "{p}");
        }
    }

    /// The checker refuses an assignment where an op reads a value whose buffer a later value
    /// has taken: here, the sigmoid's output given the tanh's slot.
    #[test]
    fn the_checker_refuses_a_read_after_overwrite() {
        let spec = stacked();
        let p = plan(&spec, Mode::Train, 4, false, Regularization::default());
        let mut a = assign(&p);
        let id = |name: &str| p.values.iter().position(|v| v.name == name).unwrap();
        // What an in-place tanh would do.
        a.slot_of[id("layer 2 out")] = a.slot_of[id("layer 1 out")];
        let err = verify(&p, &a).unwrap_err().to_string();
        assert!(
            err.contains("reads `layer 1 out`") && err.contains("`layer 2 out`"),
            "{err}"
        );
    }

    /// Liveness reuses buffers: the standard step needs far fewer buffers than values.
    #[test]
    fn liveness_shares_buffers() {
        let p = plan(&standard(), Mode::Eval, 64, true, Regularization::default());
        let a = assign(&p);
        let temps = a.slot_of.iter().filter(|s| s.is_some()).count();
        assert!(
            a.slots.len() < temps,
            "{} slots for {temps} values",
            a.slots.len()
        );
        // Evaluation holds the input, one hidden layer's output at a time, and the logits.
        assert!(a.slots.len() <= 4, "{a:?}\n{p}");
    }

    /// The CNN preset's training plan at batch 1024 under a 128 MiB binding (lavapipe's, many
    /// integrated GPUs'): no value takes more, the patches are read in place, their gradient
    /// is made in slices, and the plan of a smaller last batch has the same ops and values (so
    /// it can share the full batch's buffers). Both verify.
    #[test]
    fn the_cnn_at_batch_1024_keeps_every_value_within_a_128_mib_binding() {
        use crate::data::Scale;
        use crate::model::Sequential;
        let spec = Sequential::images(28, 28, 1, Scale::ZeroOne)
            .conv_with(32, [3, 3], [1, 1], [1, 1])
            .relu()
            .conv_with(32, [3, 3], [1, 1], [1, 1])
            .relu()
            .max_pool(2)
            .conv_with(64, [3, 3], [1, 1], [1, 1])
            .relu()
            .conv_with(64, [3, 3], [1, 1], [1, 1])
            .relu()
            .max_pool(2)
            .dense(256)
            .relu()
            .dense(10)
            .cross_entropy()
            .unwrap();
        let layout = ParamLayout::new(&spec);
        let cap = 128 << 20;
        let bounds = Bounds {
            max_buffer_bytes: cap,
            batch: 1024,
        };
        let lowered = |rows| {
            let mut p = lower(
                &spec,
                &layout,
                Mode::Train,
                rows,
                Some(&training(Default::default())),
                bounds,
            );
            fuse::fuse(&mut p, 1024);
            p
        };
        let full = lowered(1024);
        for v in &full.values {
            assert!((v.len as u64) * 4 <= cap, "{} has {} words", v.name, v.len);
        }
        let printed = full.to_string();
        // The first convolution's patches (28.9 MB) fit and are kept; the others' do not.
        let named = |name: &str| full.values.iter().any(|v| v.name == name);
        assert!(named("layer 0 patches"), "{printed}");
        for i in [2, 5, 7] {
            assert!(!named(&format!("layer {i} patches")), "{printed}");
        }
        assert!(printed.contains("implicit im2col of b"), "{printed}");
        assert!(
            printed.contains("grad of layer 2 patches, slice 7 of 7"),
            "{printed}"
        );
        verify(&full, &assign(&full)).unwrap();
        // 8000 rows in batches of 1024 leave 832; 3 leaves slices with no image.
        for rows in [832, 3] {
            let small = lowered(rows);
            assert_eq!(small.ops.len(), full.ops.len(), "{rows} rows");
            assert_eq!(small.values.len(), full.values.len(), "{rows} rows");
            verify(&small, &assign(&small)).unwrap();
        }
        // Unbounded (the CPU), the same network keeps its patch matrices.
        let p = lower(
            &spec,
            &layout,
            Mode::Train,
            1024,
            Some(&training(Default::default())),
            Bounds::unbounded(1024),
        );
        assert!(p.to_string().contains("layer 2 patches"));
    }
}
