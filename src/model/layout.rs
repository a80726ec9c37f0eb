//! Where each Dense layer's weights and bias sit in the one flat buffer that holds all
//! parameters (and, laid out the same, their gradients and the optimizer's state).

use super::{Layer, ModelSpec};

/// Views into the flat parameter buffer start at multiples of this many elements (256 bytes),
/// the largest storage-buffer offset alignment of the adapters wgpu supports, so any view
/// could be bound on its own.
pub const PARAM_ALIGN: usize = 64;

/// Where one Dense layer's parameters sit in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// Index of the Dense layer in the spec's sequence.
    pub layer: usize,
    /// Columns of the weight: the layer's input width.
    pub inputs: usize,
    /// Rows of the weight: the layer's output width.
    pub outputs: usize,
    /// Weight (outputs, inputs), row-major.
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
        let dense: Vec<(usize, usize, usize)> = spec
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match *l {
                Layer::Dense { inputs, outputs } => Some((i, inputs, outputs)),
                _ => None,
            })
            .collect();
        let mut at = 0;
        let mut weight_offsets = Vec::with_capacity(dense.len());
        for &(_, inputs, outputs) in &dense {
            weight_offsets.push(at);
            at = align(at + inputs * outputs);
        }
        let bias_start = at;
        let mut slots = Vec::with_capacity(dense.len());
        for (&(layer, inputs, outputs), weight_offset) in dense.iter().zip(weight_offsets) {
            slots.push(TensorSlot {
                layer,
                inputs,
                outputs,
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
