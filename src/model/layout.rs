//! Where each Dense and convolution layer's weights and bias sit in the one flat buffer that holds all
//! parameters (and, laid out the same, their gradients and the optimizer's state).

use super::{Layer, ModelSpec};

/// Views into the flat parameter buffer start at multiples of this many elements (256 bytes),
/// the largest storage-buffer offset alignment of the adapters wgpu supports, so any view
/// could be bound on its own.
pub const PARAM_ALIGN: usize = 64;

/// Where one layer's parameters sit in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// Index of the layer in the spec's sequence.
    pub layer: usize,
    /// Columns of the weight as a matrix: a Dense layer's input width, a convolution's
    /// `in_channels·kh·kw` (its fan-in).
    pub inputs: usize,
    /// Rows of the weight: a Dense layer's output width, a convolution's output channels.
    pub outputs: usize,
    /// The weight's shape as saved: `[outputs, inputs]` for Dense layers (PyTorch's
    /// `nn.Linear`), `[out_channels, in_channels, kh, kw]` for convolutions (`nn.Conv2d`).
    pub shape: Vec<usize>,
    /// Weight (outputs, inputs), row-major; a convolution's held `(out, kh, kw, in)`, channels
    /// last like its patches (files hold PyTorch's `(out, in, kh, kw)`; `store` permutes).
    pub weight_offset: usize,
    /// Bias (outputs,).
    pub bias_offset: usize,
}

/// The flat parameter layout of a spec: every weight matrix first, then every bias, so the
/// weights are `[0, bias_start)` and the biases `[bias_start, total)` (the two parts the L1/L2
/// penalties treat apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// One slot per Dense layer, in the spec's order.
    pub slots: Vec<TensorSlot>,
    /// Where the biases start.
    pub bias_start: usize,
    /// Length of the flat buffer, padding included.
    pub total: usize,
}

impl ParamLayout {
    /// Lays out the Dense layers of `spec`, each view starting at a multiple of [`PARAM_ALIGN`]
    /// elements.
    pub fn new(spec: &ModelSpec) -> ParamLayout {
        let align = |x: usize| x.div_ceil(PARAM_ALIGN) * PARAM_ALIGN;
        // Every layer with parameters: its index, its weight's shape, fan-in and outputs.
        let dense: Vec<(usize, Vec<usize>, usize, usize)> = spec
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match *l {
                Layer::Dense { inputs, outputs } => {
                    Some((i, vec![outputs, inputs], inputs, outputs))
                }
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel: [kh, kw],
                    ..
                } => Some((
                    i,
                    vec![out_channels, in_channels, kh, kw],
                    in_channels * kh * kw,
                    out_channels,
                )),
                _ => None,
            })
            .collect();
        let mut at = 0;
        let mut weight_offsets = Vec::with_capacity(dense.len());
        for (_, _, inputs, outputs) in &dense {
            weight_offsets.push(at);
            at = align(at + *inputs * *outputs);
        }
        let bias_start = at;
        let mut slots = Vec::with_capacity(dense.len());
        for ((layer, shape, inputs, outputs), weight_offset) in
            dense.into_iter().zip(weight_offsets)
        {
            slots.push(TensorSlot {
                layer,
                inputs,
                outputs,
                shape,
                weight_offset,
                bias_offset: at,
            });
            at = align(at + outputs);
        }
        ParamLayout {
            slots,
            bias_start,
            total: at,
        }
    }
}
