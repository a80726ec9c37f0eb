// Counter-based random numbers, shared by the shaders that draw them (their launchers prepend
// this file): the same u32 arithmetic as src/rng.rs (WGSL's u32 multiplication and addition
// wrap, like Rust's wrapping_mul / wrapping_add), so both backends draw identical numbers.

// PCG hash (Jarzynski and Olano, 2020); src/rng.rs `pcg_hash`.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn hash3(seed: u32, stream: u32, index: u32) -> u32 {
    return pcg_hash(index ^ pcg_hash(stream ^ pcg_hash(seed)));
}

// Uniform in [0, 1) from the top 24 bits (exact in f32).
fn hash_to_unit(h: u32) -> f32 {
    return f32(h >> 8u) * (1.0 / 16777216.0);
}
