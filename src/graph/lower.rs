//! Lowering: a model's layers become the ops of one step.
//!
//! Every op output is a new value, so the plan says exactly what each op reads: a layer's
//! backward reads the values its forward wrote, whatever later layers do. (Which values share a
//! buffer is decided afterwards, by liveness, in `assign.rs`.)

use super::plan::{Mode, Plan, Value, ValueKind};
use crate::backend::{Buf, DType};
use crate::model::{Layer, ModelSpec, ParamLayout, Shape};
use crate::ops::reduce::{ACC_LEN, STATS_PER_ROW};
use crate::ops::{
    AccumulateStats, ActBackward, ActForward, AvgPool, AvgPoolGrad, Clip, ColSum, Dropout, Flatten,
    Gather, GatherLabels, Im2Row, Loss, MaskMul, Matmul, MatmulDims, MaxPool, MaxPoolGrad, Op,
    Patches, Regularize, Row2Im, Shift, SumSquares, Update, UpdateParams, Window,
};
use crate::optim::Regularization;

/// What a training plan needs besides the model: the optimizer's rule, the penalties, gradient
/// clipping and data augmentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Training {
    /// The update's hyper-parameters; the step-dependent ones (learning rate, bias
    /// corrections) are replaced at each step.
    pub update: UpdateParams,
    /// The L1/L2 penalties; a part with both at 0 gets no penalty op.
    pub regularization: Regularization,
    /// Gradient clipping by global norm, when set.
    pub clip_norm: Option<f32>,
    /// Each training image is moved by a random offset of up to this many pixels along each
    /// axis ([`crate::ops::gather::Shift`]); 0: none. Needs image inputs ([`image_dims`]).
    pub shift: u32,
}

/// `(height, width, channels)` of `spec`'s input rows where they are images of at least 2x2
/// pixels, which augmentation can move.
pub fn image_dims(spec: &ModelSpec) -> Option<(usize, usize, usize)> {
    let (h, w) = spec.input_shape;
    let c = spec.channels;
    (h > 1 && w > 1 && h * w * c == spec.inputs()).then_some((h, w, c))
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

/// What bounds a plan besides its rows: the largest buffer the backend binds, and the batch of
/// the program whose buffers the plan shares (a plan for an epoch's last, smaller batch has
/// the same ops and values as the full batch's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// No value of a convolution's patches takes more bytes than this
    /// ([`crate::backend::Backend::max_buffer_bytes`]).
    pub max_buffer_bytes: u64,
    /// The full batch: where a value is built in slices, their number is the full batch's.
    pub batch: usize,
}

impl Bounds {
    /// No bound on buffers; `batch` rows.
    pub fn unbounded(batch: usize) -> Bounds {
        Bounds {
            max_buffer_bytes: u64::MAX,
            batch,
        }
    }

    /// The rows of the full batch, of which a plan for `rows` is a part.
    fn full(self, rows: usize) -> usize {
        self.batch.max(rows)
    }
}

/// The plan of one step of `spec` in `mode` for batches of `rows` rows (at most
/// `bounds.batch`). `training` is required for [`Mode::Train`] and ignored otherwise. The spec
/// must be valid ([`ModelSpec::validate`]). Where a convolution's patches for the full batch
/// would take more than `bounds.max_buffer_bytes`, training reads them in place as evaluation
/// does (forward and weight gradient), and builds their gradient in slices of the batch.
pub fn lower(
    spec: &ModelSpec,
    layout: &ParamLayout,
    mode: Mode,
    rows: usize,
    training: Option<&Training>,
    bounds: Bounds,
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
    // Training images move by a random offset each; the step sets the seed and stream.
    let shift = match (train, training, image_dims(spec)) {
        (true, Some(t), Some((height, width, channels))) if t.shift > 0 => Some(Shift {
            height,
            width,
            channels,
            max: t.shift,
            seed: 0,
            stream: 0,
        }),
        _ => None,
    };
    b.op(Gather {
        src: features,
        idx: index,
        start: 0,
        rows,
        cols: inputs,
        affine: (1.0, 0.0),
        dst: x0,
        labels: None,
        shift,
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
                shift: None,
            });
            t
        }
    });

    // Forward: what each layer read, wrote, and kept for the backward pass (dropout masks,
    // convolution patches, pooling maxima).
    let shapes = spec.shapes().expect("the spec was validated");
    let n_layers = spec.layers.len();
    let mut input_of = vec![x0; n_layers];
    let mut output_of = vec![x0; n_layers];
    let mut kept: Vec<Option<Buf>> = vec![None; n_layers];
    let mut cur = x0;
    let mut slot = 0;
    for (i, layer) in spec.layers.iter().enumerate() {
        let shape = shapes[i];
        let len = rows * shape.len();
        match *layer {
            Layer::Dense { inputs: k, outputs } => {
                // A Dense layer after images flattens them first, as PyTorch's nn.Flatten.
                cur = flatten(&mut b, cur, shape, rows, i, false);
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
                input_of[i] = cur;
                b.op(Matmul {
                    bias: Some(bias),
                    ..Matmul::new(cur, w, z, dims)
                });
                cur = z;
            }
            Layer::Conv2d { out_channels, .. } => {
                let g = window(layer, shape, rows);
                let (w, bias) = slot_views(&mut b, layout, params, slot, "");
                slot += 1;
                let z = b.temp(format!("layer {i} out"), g.positions() * out_channels);
                // patches: (batch·oh·ow, kh·kw·c) · Wᵀ with W: (out, kh·kw·c)
                //   -> (batch·oh·ow, out), channels-last images
                let dims = MatmulDims {
                    m: g.positions(),
                    k: g.patch(),
                    n: out_channels,
                    trans_a: false,
                    trans_b: true,
                };
                input_of[i] = cur;
                let full = window(layer, shape, bounds.full(rows));
                let keep = fits(full.positions() * full.patch(), bounds.max_buffer_bytes);
                let (a, patches) = if train && keep {
                    // The weight gradient needs the patches: an explicit im2col buffer, kept.
                    let cols = b.temp(format!("layer {i} patches"), g.positions() * g.patch());
                    b.op(Im2Row { x: cur, cols, g });
                    kept[i] = Some(cols);
                    (cols, None)
                } else {
                    // Nothing needs them afterwards, or they would not fit one buffer (the
                    // weight gradient then reads them in place too): read in place (implicit
                    // GEMM).
                    (cur, Some(Patches::A(g)))
                };
                b.op(Matmul {
                    bias: Some(bias),
                    patches,
                    ..Matmul::new(a, w, z, dims)
                });
                cur = z;
            }
            Layer::MaxPool2d { .. } => {
                let g = window(layer, shape, rows);
                let y = b.temp(format!("layer {i} out"), g.positions() * g.c);
                let argmax = b.value(
                    format!("layer {i} argmax"),
                    DType::U32,
                    g.positions() * g.c,
                    ValueKind::Temp,
                );
                b.op(MaxPool {
                    x: cur,
                    y,
                    argmax,
                    g,
                });
                kept[i] = Some(argmax);
                cur = y;
            }
            Layer::AvgPool2d { .. } => {
                let g = window(layer, shape, rows);
                let y = b.temp(format!("layer {i} out"), g.positions() * g.c);
                b.op(AvgPool { x: cur, y, g });
                cur = y;
            }
            Layer::Flatten => cur = flatten(&mut b, cur, shape, rows, i, false),
            Layer::Activation { activation } => {
                let y = b.temp(format!("layer {i} out"), len);
                b.op(ActForward {
                    act: activation,
                    x: cur,
                    y,
                    rows,
                    cols: shape.len(),
                });
                cur = y;
            }
            Layer::Dropout { p } if train && p > 0.0 => {
                let y = b.temp(format!("layer {i} out"), len);
                let mask = b.temp(format!("layer {i} mask"), len);
                b.op(Dropout {
                    x: cur,
                    y,
                    mask,
                    n: len,
                    p,
                    seed: 0,
                    // The layer's stream; a step adds its own base (see `Program::run`).
                    stream: i as u32,
                });
                kept[i] = Some(mask);
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
            let saved = Saved {
                shapes: &shapes,
                input_of: &input_of,
                output_of: &output_of,
                kept: &kept,
            };
            backward(
                &mut b, spec, layout, rows, params, grads, &mut g, &saved, bounds,
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

/// Whether a value of `len` words fits a buffer of at most `max_bytes`.
fn fits(len: usize, max_bytes: u64) -> bool {
    (len as u64).saturating_mul(4) <= max_bytes
}

/// Rows per slice of a batch of `rows` whose values take `per_row` words a row, so that a
/// slice's fits `max_bytes`: as many as fit, at least one, at most all of them.
fn slice_rows(rows: usize, per_row: usize, max_bytes: u64) -> usize {
    let fit = max_bytes / (per_row as u64 * 4).max(1);
    usize::try_from(fit)
        .unwrap_or(usize::MAX)
        .clamp(1, rows.max(1))
}

/// What the forward pass left for the backward pass, per layer.
struct Saved<'a> {
    /// The shape of each layer's input (per row), then of the last layer's output.
    shapes: &'a [Shape],
    /// What each Dense layer's product read (its input, flattened), and each convolution's
    /// input images.
    input_of: &'a [Buf],
    /// What each layer wrote (activations' outputs, for their derivatives).
    output_of: &'a [Buf],
    /// Dropout's masks, convolutions' patch matrices (where they fit one buffer), max pooling's
    /// maxima positions.
    kept: &'a [Option<Buf>],
}

/// The window of a convolution or pooling layer over a batch of `rows` images of `shape`.
fn window(layer: &Layer, shape: Shape, rows: usize) -> Window {
    let Shape::Image { h, w, c } = shape else {
        unreachable!("the spec was validated: convolution and pooling take images")
    };
    let (kernel, stride, padding) = match *layer {
        Layer::Conv2d {
            kernel,
            stride,
            padding,
            ..
        } => (kernel, stride, padding),
        Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride } => {
            (kernel, stride, [0, 0])
        }
        _ => unreachable!("only convolution and pooling have windows"),
    };
    Window {
        batch: rows,
        h,
        w,
        c,
        kh: kernel[0],
        kw: kernel[1],
        sh: stride[0],
        sw: stride[1],
        ph: padding[0],
        pw: padding[1],
    }
}

/// Flattens a batch of `rows` rows of `shape` for layer `i` (or, `inverse`, unflattens its
/// gradient): channels-last images to PyTorch's (channel, y, x) rows. Rows already in that
/// order (feature vectors, one channel, one pixel) pass through as they are.
fn flatten(b: &mut Builder, x: Buf, shape: Shape, rows: usize, i: usize, inverse: bool) -> Buf {
    match shape {
        Shape::Image { h, w, c } if c > 1 && h * w > 1 => {
            let name = if inverse {
                format!("grad of layer {i} images")
            } else {
                format!("layer {i} rows")
            };
            let y = b.temp(name, rows * h * w * c);
            b.op(Flatten {
                x,
                y,
                batch: rows,
                h,
                w,
                c,
                inverse,
            });
            y
        }
        _ => x,
    }
}

/// The backward pass from the loss gradient `g` (rows, outputs) down to the first layer with
/// parameters (nothing before it has any), writing each one's gradients into `grads`.
#[allow(clippy::too_many_arguments)]
fn backward(
    b: &mut Builder,
    spec: &ModelSpec,
    layout: &ParamLayout,
    rows: usize,
    params: Buf,
    grads: Buf,
    g: &mut Buf,
    saved: &Saved,
    bounds: Bounds,
) {
    let first = layout.slots[0].layer;
    let mut slot = layout.slots.len();
    for (i, layer) in spec.layers.iter().enumerate().rev() {
        if i < first {
            break;
        }
        let shape = saved.shapes[i];
        let len = rows * shape.len();
        match *layer {
            Layer::Dense { inputs: k, outputs } => {
                slot -= 1;
                let (dw, db) = slot_views(b, layout, grads, slot, "grad ");
                // dW = dYᵀ · X: (outputs, rows) · (rows, k) -> (outputs, k)
                b.op(Matmul::new(
                    *g,
                    saved.input_of[i],
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
                if i > first {
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
                    *g = flatten(b, dx, shape, rows, i, true);
                }
            }
            Layer::Conv2d { out_channels, .. } => {
                slot -= 1;
                let win = window(layer, shape, rows);
                let (dw, db) = slot_views(b, layout, grads, slot, "grad ");
                // dW = dZᵀ · patches: (out, batch·oh·ow) · (batch·oh·ow, c·kh·kw), over the
                // patch matrix the forward kept, or where it did not fit one buffer over the
                // patches of the layer's input read in place.
                let dims = MatmulDims {
                    m: out_channels,
                    k: win.positions(),
                    n: win.patch(),
                    trans_a: true,
                    trans_b: false,
                };
                b.op(match saved.kept[i] {
                    Some(cols) => Matmul::new(*g, cols, dw, dims),
                    None => Matmul {
                        patches: Some(Patches::B(win)),
                        ..Matmul::new(*g, saved.input_of[i], dw, dims)
                    },
                });
                // db = Σ over every position of dZ: (batch·oh·ow, out) -> (out,)
                b.op(ColSum {
                    a: *g,
                    rows: win.positions(),
                    cols: out_channels,
                    out: db,
                });
                if i > first {
                    let (w, _) = slot_views(b, layout, params, slot, "");
                    let dx = b.temp(format!("grad of layer {i} input"), len);
                    // In slices of the batch where the gradient of the full batch's patches
                    // would not fit one buffer; each slice's images are contiguous in dZ and dX.
                    // As many slices for a smaller batch (the last ones may be empty).
                    let per_image = win.oh() * win.ow() * win.patch();
                    let full = bounds.full(rows);
                    let per = slice_rows(full, per_image, bounds.max_buffer_bytes);
                    let slices = full.div_ceil(per);
                    for s in 0..slices {
                        let start = (s * per).min(rows);
                        let n = per.min(rows - start);
                        let part = window(layer, shape, n);
                        let name = if slices == 1 {
                            format!("grad of layer {i} patches")
                        } else {
                            format!("grad of layer {i} patches, slice {} of {slices}", s + 1)
                        };
                        let dcols = b.temp(name, part.positions() * part.patch());
                        let positions = start * win.oh() * win.ow();
                        // d patches = dZ · W: (batch·oh·ow, out) · (out, c·kh·kw)
                        b.op(Matmul::new(
                            g.slice(positions * out_channels, part.positions() * out_channels),
                            w,
                            dcols,
                            MatmulDims {
                                m: part.positions(),
                                k: out_channels,
                                n: part.patch(),
                                trans_a: false,
                                trans_b: false,
                            },
                        ));
                        let image = shape.len();
                        b.op(Row2Im {
                            cols: dcols,
                            x: dx.slice(start * image, n * image),
                            g: part,
                        });
                    }
                    *g = dx;
                }
            }
            Layer::MaxPool2d { .. } => {
                let win = window(layer, shape, rows);
                let dx = b.temp(format!("grad of layer {i} input"), len);
                b.op(MaxPoolGrad {
                    dy: *g,
                    argmax: saved.kept[i].expect("max pooling keeps its maxima"),
                    dx,
                    g: win,
                });
                *g = dx;
            }
            Layer::AvgPool2d { .. } => {
                let win = window(layer, shape, rows);
                let dx = b.temp(format!("grad of layer {i} input"), len);
                b.op(AvgPoolGrad { dy: *g, dx, g: win });
                *g = dx;
            }
            Layer::Flatten => *g = flatten(b, *g, shape, rows, i, true),
            Layer::Activation { activation } => {
                let dx = b.temp(format!("grad of layer {i} input"), len);
                b.op(ActBackward {
                    act: activation,
                    y: saved.output_of[i],
                    dy: *g,
                    dx,
                    rows,
                    cols: shape.len(),
                });
                *g = dx;
            }
            Layer::Dropout { .. } => {
                if let Some(mask) = saved.kept[i] {
                    let dx = b.temp(format!("grad of layer {i} input"), len);
                    b.op(MaskMul {
                        x: *g,
                        mask,
                        y: dx,
                        n: len,
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
