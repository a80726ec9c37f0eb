//! Lowering: a model's layers become the ops of one step.
//!
//! Every op output is a new value, so the plan says exactly what each op reads: a layer's
//! backward reads the values its forward wrote, whatever later layers do. (Which values share a
//! buffer is decided afterwards, by liveness, in `assign.rs`.)

use super::plan::{Mode, Plan, Value, ValueKind};
use crate::backend::{Buf, DType};
use crate::model::{Layer, ModelSpec, ParamLayout};
use crate::ops::reduce::{ACC_LEN, STATS_PER_ROW};
use crate::ops::{
    AccumulateStats, ActBackward, ActForward, Clip, ColSum, Dropout, Gather, GatherLabels, Loss,
    MaskMul, Matmul, MatmulDims, Op, Regularize, SumSquares, Update, UpdateParams,
};
use crate::optim::Regularization;

/// What a training plan needs besides the model: the optimizer's rule, the penalties and
/// gradient clipping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Training {
    /// The update's hyper-parameters; the step-dependent ones (learning rate, bias
    /// corrections) are replaced at each step.
    pub update: UpdateParams,
    /// The L1/L2 penalties; a part with both at 0 gets no penalty op.
    pub regularization: Regularization,
    /// Gradient clipping by global norm, when set.
    pub clip_norm: Option<f32>,
}

/// Builds a plan's value table and op list.
struct Builder {
    values: Vec<Value>,
    ops: Vec<Op>,
    view_names: Vec<(Buf, String)>,
}

impl Builder {
    fn value(&mut self, name: impl Into<String>, dtype: DType, len: usize, kind: ValueKind) -> Buf {
        let id = self.values.len() as u32;
        self.values.push(Value {
            name: name.into(),
            dtype,
            len,
            kind,
        });
        Buf {
            id,
            offset: 0,
            len: len as u32,
            dtype,
        }
    }

    fn temp(&mut self, name: impl Into<String>, len: usize) -> Buf {
        self.value(name, DType::F32, len, ValueKind::Temp)
    }

    fn op(&mut self, op: impl Into<Op>) {
        self.ops.push(op.into());
    }

    fn view(&mut self, of: Buf, offset: usize, len: usize, name: String) -> Buf {
        let v = of.slice(offset, len);
        self.view_names.push((v, name));
        v
    }
}

/// The weight and bias views of Dense slot `s` of `layout` in the flat buffer `flat`.
fn slot_views(
    b: &mut Builder,
    layout: &ParamLayout,
    flat: Buf,
    s: usize,
    what: &str,
) -> (Buf, Buf) {
    let t = &layout.slots[s];
    let w = b.view(
        flat,
        t.weight_offset,
        t.inputs * t.outputs,
        format!("{what}layers.{}.weight", t.layer),
    );
    let bias = b.view(
        flat,
        t.bias_offset,
        t.outputs,
        format!("{what}layers.{}.bias", t.layer),
    );
    (w, bias)
}

/// The plan of one step of `spec` in `mode` for batches of `rows` rows. `training` is required
/// for [`Mode::Train`] and ignored otherwise. The spec must be valid
/// ([`ModelSpec::validate`]).
pub fn lower(
    spec: &ModelSpec,
    layout: &ParamLayout,
    mode: Mode,
    rows: usize,
    training: Option<&Training>,
) -> Plan {
    let mut b = Builder {
        values: Vec::new(),
        ops: Vec::new(),
        view_names: Vec::new(),
    };
    let train = mode == Mode::Train;
    let (inputs, outputs) = (spec.inputs(), spec.outputs());
    let params = b.value("params", DType::F32, layout.total, ValueKind::Params);
    let grads = if train {
        Some(b.value("grads", DType::F32, layout.total, ValueKind::Grads))
    } else {
        None
    };

    // The batch: rows of the resident data set in the epoch's order.
    let features = b.value("features", DType::F32, 0, ValueKind::Features);
    let index = b.value("row order", DType::U32, 0, ValueKind::Index);
    let x0 = b.temp("input", rows * inputs);
    b.op(Gather {
        src: features,
        idx: index,
        start: 0,
        rows,
        cols: inputs,
        affine: (1.0, 0.0),
        dst: x0,
        labels: None,
    });
    let targets = (mode != Mode::Predict).then(|| {
        if spec.loss.is_classification() {
            let src = b.value("data labels", DType::U32, 0, ValueKind::Targets);
            let t = b.value("labels", DType::U32, rows, ValueKind::Temp);
            b.op(GatherLabels {
                src,
                idx: index,
                start: 0,
                rows,
                dst: t,
            });
            t
        } else {
            let src = b.value("data targets", DType::F32, 0, ValueKind::Targets);
            let t = b.temp("targets", rows * outputs);
            b.op(Gather {
                src,
                idx: index,
                start: 0,
                rows,
                cols: outputs,
                affine: (1.0, 0.0),
                dst: t,
                labels: None,
            });
            t
        }
    });

    // Forward: what each layer read, wrote, and (dropout) drew, for the backward pass.
    let n_layers = spec.layers.len();
    let mut input_of = vec![x0; n_layers];
    let mut output_of = vec![x0; n_layers];
    let mut mask_of: Vec<Option<Buf>> = vec![None; n_layers];
    let mut cur = x0;
    let mut width = inputs;
    let mut slot = 0;
    for (i, layer) in spec.layers.iter().enumerate() {
        input_of[i] = cur;
        match *layer {
            Layer::Dense { inputs: k, outputs } => {
                let (w, bias) = slot_views(&mut b, layout, params, slot, "");
                slot += 1;
                let z = b.temp(format!("layer {i} out"), rows * outputs);
                // x: (rows, k) · Wᵀ with W: (outputs, k) -> (rows, outputs)
                let dims = MatmulDims {
                    m: rows,
                    k,
                    n: outputs,
                    trans_a: false,
                    trans_b: true,
                };
                b.op(Matmul {
                    bias: Some(bias),
                    ..Matmul::new(cur, w, z, dims)
                });
                cur = z;
                width = outputs;
            }
            Layer::Activation { activation } => {
                let y = b.temp(format!("layer {i} out"), rows * width);
                b.op(ActForward {
                    act: activation,
                    x: cur,
                    y,
                    rows,
                    cols: width,
                });
                cur = y;
            }
            Layer::Dropout { p } if train && p > 0.0 => {
                let y = b.temp(format!("layer {i} out"), rows * width);
                let mask = b.temp(format!("layer {i} mask"), rows * width);
                b.op(Dropout {
                    x: cur,
                    y,
                    mask,
                    n: rows * width,
                    p,
                    seed: 0,
                    // The layer's stream; a step adds its own base (see `Program::run`).
                    stream: i as u32,
                });
                mask_of[i] = Some(mask);
                cur = y;
            }
            // The identity outside training.
            Layer::Dropout { .. } => {}
        }
        output_of[i] = cur;
    }
    let logits = cur;

    let acc =
        (mode != Mode::Predict).then(|| b.value("metrics", DType::F32, ACC_LEN, ValueKind::Acc));
    if let (Some(t), Some(acc)) = (targets, acc) {
        let stats = b.temp("loss stats", rows * STATS_PER_ROW);
        let grad = train.then(|| b.temp("loss grad", rows * outputs));
        b.op(Loss {
            kind: spec.loss,
            out: logits,
            targets: t,
            rows,
            cols: outputs,
            grad,
            stats: Some(stats),
            acc: None,
        });
        b.op(AccumulateStats { stats, rows, acc });
        if let (Some(mut g), Some(grads), Some(tr)) = (grad, grads, training) {
            backward(
                &mut b, spec, layout, rows, params, grads, &mut g, &input_of, &output_of, &mask_of,
            );
            update(&mut b, layout, params, grads, tr);
        }
    }
    let values = b.values;
    Plan {
        mode,
        rows,
        values,
        ops: b.ops,
        output: (mode == Mode::Predict).then_some(logits),
        view_names: b.view_names,
    }
}

/// The backward pass from the loss gradient `g` (rows, outputs) down to the first Dense layer
/// (nothing before it has parameters), writing each Dense layer's gradients into `grads`.
#[allow(clippy::too_many_arguments)]
fn backward(
    b: &mut Builder,
    spec: &ModelSpec,
    layout: &ParamLayout,
    rows: usize,
    params: Buf,
    grads: Buf,
    g: &mut Buf,
    input_of: &[Buf],
    output_of: &[Buf],
    mask_of: &[Option<Buf>],
) {
    let first_dense = layout.slots[0].layer;
    let mut slot = layout.slots.len();
    let width_before = |i: usize| -> usize {
        spec.layers[..i]
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Dense { outputs, .. } => Some(*outputs),
                _ => None,
            })
            .unwrap_or_else(|| spec.inputs())
    };
    for (i, layer) in spec.layers.iter().enumerate().rev() {
        if i < first_dense {
            break;
        }
        match *layer {
            Layer::Dense { inputs: k, outputs } => {
                slot -= 1;
                let (dw, db) = slot_views(b, layout, grads, slot, "grad ");
                // dW = dYᵀ · X: (outputs, rows) · (rows, k) -> (outputs, k)
                b.op(Matmul::new(
                    *g,
                    input_of[i],
                    dw,
                    MatmulDims {
                        m: outputs,
                        k: rows,
                        n: k,
                        trans_a: true,
                        trans_b: false,
                    },
                ));
                // db = Σ_rows dY: (rows, outputs) -> (outputs,)
                b.op(ColSum {
                    a: *g,
                    rows,
                    cols: outputs,
                    out: db,
                });
                if i > first_dense {
                    let (w, _) = slot_views(b, layout, params, slot, "");
                    let dx = b.temp(format!("grad of layer {i} input"), rows * k);
                    // dX = dY · W: (rows, outputs) · (outputs, k) -> (rows, k)
                    b.op(Matmul::new(
                        *g,
                        w,
                        dx,
                        MatmulDims {
                            m: rows,
                            k: outputs,
                            n: k,
                            trans_a: false,
                            trans_b: false,
                        },
                    ));
                    *g = dx;
                }
            }
            Layer::Activation { activation } => {
                let width = width_before(i);
                let dx = b.temp(format!("grad of layer {i} input"), rows * width);
                b.op(ActBackward {
                    act: activation,
                    y: output_of[i],
                    dy: *g,
                    dx,
                    rows,
                    cols: width,
                });
                *g = dx;
            }
            Layer::Dropout { .. } => {
                if let Some(mask) = mask_of[i] {
                    let n = rows * width_before(i);
                    let dx = b.temp(format!("grad of layer {i} input"), n);
                    b.op(MaskMul {
                        x: *g,
                        mask,
                        y: dx,
                        n,
                    });
                    *g = dx;
                }
            }
        }
    }
}

/// Penalties, clipping and the optimizer update over the whole flat buffers.
fn update(b: &mut Builder, layout: &ParamLayout, params: Buf, grads: Buf, tr: &Training) {
    let total = layout.total;
    let state1 = b.value("optimizer state 1", DType::F32, total, ValueKind::State1);
    let state2 = b.value("optimizer state 2", DType::F32, total, ValueKind::State2);
    let r = tr.regularization;
    let split = layout.bias_start;
    for ((l1, l2), start, len) in [
        ((r.l1_weights, r.l2_weights), 0, split),
        ((r.l1_biases, r.l2_biases), split, total - split),
    ] {
        if l1 != 0.0 || l2 != 0.0 {
            b.op(Regularize {
                param: params.slice(start, len),
                grad: grads.slice(start, len),
                l1,
                l2,
            });
        }
    }
    let clip = tr.clip_norm.map(|max_norm| {
        let norm2 = b.temp("squared grad norm", 1);
        b.op(SumSquares {
            x: grads,
            out: norm2,
        });
        Clip { norm2, max_norm }
    });
    b.op(Update {
        params,
        grads,
        state1,
        state2,
        hyper: tr.update,
        penalty: None,
        clip,
    });
}
