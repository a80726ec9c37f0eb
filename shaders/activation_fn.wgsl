// Elementwise activations and their derivatives, shared by activation.wgsl and matmul.wgsl
// (their launchers prepend this file to them).

// Activation codes, as in src/backend/gpu/activation.rs.
const RELU: u32 = 0u;
const LEAKY_RELU: u32 = 1u;
const SIGMOID: u32 = 2u;
const TANH: u32 = 3u;
const LINEAR: u32 = 4u;

const LEAKY_SLOPE: f32 = 0.01;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// y = f(x).
fn act_apply(act: u32, x: f32) -> f32 {
    switch act {
        case RELU: {
            return max(x, 0.0);
        }
        case LEAKY_RELU: {
            return select(LEAKY_SLOPE * x, x, x > 0.0);
        }
        case SIGMOID: {
            return sigmoid(x);
        }
        case TANH: {
            // tanh saturates to ±1 in f32 well before ±10; clamping keeps implementations that
            // compute it from exp(2x) away from inf / inf.
            return tanh(clamp(x, -10.0, 10.0));
        }
        default: {
            return x;
        }
    }
}

// g · f'(x), with f'(x) expressed through the output y = f(x).
fn act_grad(act: u32, g: f32, y: f32) -> f32 {
    switch act {
        case RELU: {
            return select(0.0, g, y > 0.0);
        }
        case LEAKY_RELU: {
            return select(LEAKY_SLOPE * g, g, y > 0.0);
        }
        case SIGMOID: {
            return g * y * (1.0 - y);
        }
        case TANH: {
            return g * (1.0 - y * y);
        }
        default: {
            return g;
        }
    }
}
