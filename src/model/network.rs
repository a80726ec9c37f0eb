//! A model planned on a backend: every buffer it will ever use is allocated once, here, and a
//! training step only records ops on them.

use super::{Activation, Layer, ModelSpec};
use crate::backend::{ACC_LEN, Backend, Buf, DType, MatmulDims, STATS_PER_ROW};
use crate::{Error, Result};

/// Views into the flat parameter buffer start at multiples of this many elements (256 bytes):
/// the GPU can bind a view only at an offset aligned to the adapter's storage-buffer offset
/// alignment, which is at most 256 bytes on every adapter wgpu supports.
pub const PARAM_ALIGN: usize = 64;

/// Where one Dense layer's parameters sit in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// Index of the Dense layer in the spec's sequence.
    pub layer: usize,
    pub inputs: usize,
    pub outputs: usize,
    /// Weight (outputs, inputs), row-major.
    pub weight_offset: usize,
    /// Bias (outputs,).
    pub bias_offset: usize,
}

/// The flat parameter layout of a spec: the same for parameters, gradients and optimizer state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    pub slots: Vec<TensorSlot>,
    /// Length of the flat buffer, padding included.
    pub total: usize,
}

impl ParamLayout {
    pub fn new(spec: &ModelSpec) -> ParamLayout {
        let mut slots = Vec::new();
        let mut at = 0;
        let align = |x: usize| x.div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
        for (layer, l) in spec.layers.iter().enumerate() {
            if let Layer::Dense { inputs, outputs } = *l {
                let weight_offset = at;
                let bias_offset = align(weight_offset + inputs * outputs);
                at = align(bias_offset + outputs);
                slots.push(TensorSlot {
                    layer,
                    inputs,
                    outputs,
                    weight_offset,
                    bias_offset,
                });
            }
        }
        ParamLayout { slots, total: at }
    }
}

/// The per-layer buffers of the forward pass.
struct LayerBufs {
    /// The layer's output, (max_batch, width). Activation layers work in place on the Dense
    /// output before them, so they share its buffer.
    out: Buf,
    /// Dropout's mask, (max_batch, width).
    mask: Option<Buf>,
}

/// A model resident on a backend, with everything a training step needs.
pub struct Network {
    pub spec: ModelSpec,
    pub layout: ParamLayout,
    pub max_batch: usize,
    pub params: Buf,
    pub grads: Buf,
    /// Optimizer state (momentum / first moment / cache, and second moment).
    pub state1: Buf,
    pub state2: Buf,
    layers: Vec<LayerBufs>,
    /// The assembled input batch, (max_batch, inputs).
    pub input: Buf,
    /// Batch targets: labels (max_batch,) U32 for classes, (max_batch, outputs) F32 otherwise.
    pub targets: Buf,
    /// Ping-pong gradient buffers, (max_batch, widest layer).
    grad_a: Buf,
    grad_b: Buf,
    /// Per-row loss statistics, (max_batch, 2).
    pub stats: Buf,
}

impl Network {
    /// Plans `spec` for batches of up to `max_batch` rows and uploads `params` (the flat
    /// layout's vector, e.g. from [`super::init_params`]).
    pub fn new(
        b: &mut dyn Backend,
        spec: ModelSpec,
        max_batch: usize,
        params: &[f32],
    ) -> Result<Network> {
        spec.validate()?;
        if max_batch == 0 {
            return Err(Error::Config("the batch size must be at least 1".into()));
        }
        let layout = ParamLayout::new(&spec);
        if params.len() != layout.total {
            return Err(Error::Shape(format!(
                "parameter vector has {} values, the model's layout needs {}",
                params.len(),
                layout.total
            )));
        }
        // `max_batch` rows of `width` values, refused rather than overflowed when too many.
        let batch_of = |width: usize| {
            max_batch.checked_mul(width).ok_or_else(|| {
                Error::Config(format!(
                    "a batch of {max_batch} rows of {width} values is too large; use a smaller \
                     --batch-size"
                ))
            })
        };
        let total = layout.total;
        let p = b.alloc(DType::F32, total, "params")?;
        b.write_f32(p, params)?;
        let grads = b.alloc(DType::F32, total, "grads")?;
        let state1 = b.alloc(DType::F32, total, "optimizer state 1")?;
        let state2 = b.alloc(DType::F32, total, "optimizer state 2")?;

        let inputs = spec.inputs();
        let input = b.alloc(DType::F32, batch_of(inputs)?, "input batch")?;
        let targets = if spec.loss.is_classification() {
            b.alloc(DType::U32, max_batch, "labels")?
        } else {
            b.alloc(DType::F32, batch_of(spec.outputs())?, "targets")?
        };
        let mut layers: Vec<LayerBufs> = Vec::new();
        let mut width = inputs;
        let mut widest = inputs;
        for (i, l) in spec.layers.iter().enumerate() {
            let bufs = match *l {
                Layer::Dense { outputs, .. } => {
                    width = outputs;
                    LayerBufs {
                        out: b.alloc(DType::F32, batch_of(width)?, &format!("layer {i} out"))?,
                        mask: None,
                    }
                }
                Layer::Activation { .. } => LayerBufs {
                    out: layers[i - 1].out,
                    mask: None,
                },
                Layer::Dropout { .. } => LayerBufs {
                    out: b.alloc(DType::F32, batch_of(width)?, &format!("layer {i} out"))?,
                    mask: Some(b.alloc(
                        DType::F32,
                        batch_of(width)?,
                        &format!("layer {i} mask"),
                    )?),
                },
            };
            widest = widest.max(width);
            layers.push(bufs);
        }
        let grad_a = b.alloc(DType::F32, batch_of(widest)?, "grad a")?;
        let grad_b = b.alloc(DType::F32, batch_of(widest)?, "grad b")?;
        let stats = b.alloc(DType::F32, batch_of(STATS_PER_ROW)?, "loss stats")?;
        Ok(Network {
            spec,
            layout,
            max_batch,
            params: p,
            grads,
            state1,
            state2,
            layers,
            input,
            targets,
            grad_a,
            grad_b,
            stats,
        })
    }

    fn slot_views(&self, buf: Buf, slot: usize) -> (Buf, Buf) {
        let s = &self.layout.slots[slot];
        (
            buf.slice(s.weight_offset, s.inputs * s.outputs),
            buf.slice(s.bias_offset, s.outputs),
        )
    }

    /// Weight and bias views of Dense slot `slot` in the parameter buffer.
    pub fn param_views(&self, slot: usize) -> (Buf, Buf) {
        self.slot_views(self.params, slot)
    }

    /// Weight and bias views of Dense slot `slot` in the gradient buffer.
    pub fn grad_views(&self, slot: usize) -> (Buf, Buf) {
        self.slot_views(self.grads, slot)
    }

    /// The output buffer of the last layer (the logits), (max_batch, outputs).
    pub fn logits(&self) -> Buf {
        self.layers[self.layers.len() - 1].out
    }

    /// Runs the layers on `self.input` for `rows` rows; `train` turns dropout on, with masks
    /// drawn from `(seed, stream_base + layer)`. Returns the buffer each layer read, for the
    /// backward pass.
    pub fn forward(
        &self,
        b: &mut dyn Backend,
        rows: usize,
        train: bool,
        seed: u32,
        stream_base: u32,
    ) -> Result<Vec<Buf>> {
        debug_assert!(rows <= self.max_batch);
        let mut cur = self.input;
        let mut width = self.spec.inputs();
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut slot = 0;
        // Set when a Dense layer has applied the activation after it (one fused op).
        let mut applied = false;
        for (i, l) in self.spec.layers.iter().enumerate() {
            inputs.push(cur);
            let out = self.layers[i].out;
            match *l {
                Layer::Dense { inputs: k, outputs } => {
                    let (w, bias) = self.param_views(slot);
                    slot += 1;
                    // x: (rows, k) · Wᵀ with W: (outputs, k) -> (rows, outputs)
                    let dims = MatmulDims {
                        m: rows,
                        k,
                        n: outputs,
                        trans_a: false,
                        trans_b: true,
                    };
                    // The activation after the layer works in place on its output buffer, so
                    // the product can apply it on the way out.
                    match self.elementwise_activation(i + 1) {
                        Some(act) => {
                            b.matmul_act(cur, w, Some(bias), out, dims, act)?;
                            applied = true;
                        }
                        None => b.matmul(cur, w, Some(bias), out, dims)?,
                    }
                    width = outputs;
                    cur = out;
                }
                Layer::Activation { activation } => {
                    if !std::mem::take(&mut applied) {
                        b.act_forward(activation, cur, out, rows, width)?;
                    }
                    cur = out;
                }
                Layer::Dropout { p } => {
                    if train && p > 0.0 {
                        let mask = self.layers[i].mask.expect("dropout layers have a mask");
                        let stream = stream_base.wrapping_add(i as u32);
                        b.dropout_forward(cur, out, mask, rows * width, p, seed, stream)?;
                        cur = out;
                    }
                }
            }
        }
        Ok(inputs)
    }

    /// Backpropagates the loss gradient in `grad` (rows, outputs) through the layers, writing
    /// parameter gradients into `self.grads`. `inputs` is what [`Self::forward`] returned.
    pub fn backward(
        &self,
        b: &mut dyn Backend,
        rows: usize,
        train: bool,
        inputs: &[Buf],
    ) -> Result<()> {
        let (mut g, mut spare) = (self.grad_a, self.grad_b);
        let mut slot = self.layout.slots.len();
        let first_dense = self.layout.slots[0].layer;
        // Set when a Dense layer's input gradient already went through the activation before
        // it (one fused op).
        let mut applied = false;
        for (i, l) in self.spec.layers.iter().enumerate().rev() {
            match *l {
                Layer::Dense { inputs: k, outputs } => {
                    slot -= 1;
                    let (dw, db) = self.grad_views(slot);
                    // dW = dYᵀ · X: (outputs, rows) · (rows, k) -> (outputs, k), and
                    // db = Σ_rows dY: (rows, outputs) -> (outputs,)
                    b.matmul_col_sum(
                        g,
                        inputs[i],
                        dw,
                        MatmulDims {
                            m: outputs,
                            k: rows,
                            n: k,
                            trans_a: true,
                            trans_b: false,
                        },
                        db,
                    )?;
                    if i > first_dense {
                        let (w, _) = self.param_views(slot);
                        // dX = dY · W: (rows, outputs) · (outputs, k) -> (rows, k)
                        let dims = MatmulDims {
                            m: rows,
                            k: outputs,
                            n: k,
                            trans_a: false,
                            trans_b: false,
                        };
                        // Times f'(x) of the activation before the layer, read through its
                        // output, which is this layer's input.
                        match self.elementwise_activation(i - 1) {
                            Some(act) => {
                                b.matmul_act_grad(g, w, inputs[i], spare, dims, act)?;
                                applied = true;
                            }
                            None => b.matmul(g, w, None, spare, dims)?,
                        }
                        std::mem::swap(&mut g, &mut spare);
                    }
                }
                Layer::Activation { activation } => {
                    if !std::mem::take(&mut applied) {
                        let width = self.width_before(i);
                        b.act_backward(activation, self.layers[i].out, g, g, rows, width)?;
                    }
                }
                Layer::Dropout { p } => {
                    if train && p > 0.0 {
                        let mask = self.layers[i].mask.expect("dropout layers have a mask");
                        b.mul_inplace(g, mask, rows * self.width_before(i))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The activation of layer `i` when it is an elementwise one (softmax is row-wise) that a
    /// neighbouring Dense layer can fuse.
    fn elementwise_activation(&self, i: usize) -> Option<Activation> {
        match self.spec.layers.get(i) {
            Some(&Layer::Activation { activation }) if activation != Activation::Softmax => {
                Some(activation)
            }
            _ => None,
        }
    }

    /// The gradient buffer the loss writes into, (max_batch, outputs).
    pub fn loss_grad(&self) -> Buf {
        self.grad_a
    }

    /// Width of the data flowing into layer `i`.
    fn width_before(&self, i: usize) -> usize {
        self.spec.layers[..i]
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Dense { outputs, .. } => Some(*outputs),
                _ => None,
            })
            .unwrap_or_else(|| self.spec.inputs())
    }

    /// A metrics accumulator of [`ACC_LEN`] slots.
    pub fn new_accumulator(b: &mut dyn Backend) -> Result<Buf> {
        b.alloc(DType::F32, ACC_LEN, "metrics accumulator")
    }
}
