//! Parameter initialisation, shared by both backends: values are drawn on the host from the
//! seeded generator and uploaded once, so a seed gives the same model everywhere.

use super::{ModelSpec, ParamLayout};
use crate::rng::Rng;

/// The flat parameter vector of `spec` laid out as `layout`: weights He-normal for layers
/// followed by the ReLU family, Xavier-uniform otherwise; biases zero; padding zero.
pub fn init_params(spec: &ModelSpec, layout: &ParamLayout, rng: &mut Rng) -> Vec<f32> {
    let mut flat = vec![0.0f32; layout.total];
    for slot in &layout.slots {
        // Fan-in and fan-out as PyTorch counts them: a convolution's window counts on both
        // sides (in·kh·kw in, out·kh·kw out).
        let window: usize = slot.shape[2..].iter().product();
        let (fan_in, fan_out) = (slot.inputs, slot.outputs * window);
        debug_assert!(spec.layers[slot.layer].has_params());
        let w = &mut flat[slot.weight_offset..slot.weight_offset + slot.inputs * slot.outputs];
        if spec.activation_after(slot.layer).wants_he_init() {
            let std = (2.0 / fan_in as f64).sqrt();
            w.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32);
        } else {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
            w.iter_mut()
                .for_each(|v| *v = ((rng.next_f64() * 2.0 - 1.0) * limit) as f32);
        }
    }
    flat
}
