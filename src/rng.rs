//! Random numbers that are the same on every platform, every release and both backends.
//!
//! We keep our own small generators instead of `rand` because (1) a checkpoint must hold the
//! generator's whole state (here one `u64`), (2) a seed must give the same model and the same
//! shuffles in every release, which `rand` does not promise across versions of its
//! distributions, and (3) dropout masks are drawn on the GPU: [`hash3`] is written once here
//! and once in `shaders/dropout.wgsl`, with u32 arithmetic that is identical in both.

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-tested 64-bit generator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator starting from `seed` (any value, 0 included: SplitMix64 has no weak seeds).
    /// `Rng::new(g.state())` continues where `g` stands.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The whole state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) without modulo bias (Lemire's method).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        let n = n as u64;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= (n.wrapping_neg() % n) {
                return (m >> 64) as usize;
            }
        }
    }

    /// Standard normal (Box-Muller; one value per call, for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }

    /// An independent generator for a sub-task (so adding draws in one place does not move
    /// every other stream).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// PCG-style integer hash (the "PCG hash" of Jarzynski and Olano, 2020).
#[inline]
pub fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28).wrapping_add(4))) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// A counter-based random u32 from three words: a seed, a stream (step and layer) and an
/// element index. Mirrored exactly in `shaders/dropout.wgsl`.
#[inline]
pub fn hash3(seed: u32, stream: u32, index: u32) -> u32 {
    pcg_hash(index ^ pcg_hash(stream ^ pcg_hash(seed)))
}

/// Uniform in [0, 1) from the top 24 bits of a hash (exactly representable in f32).
#[inline]
pub fn hash_to_unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0, as published with the algorithm.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Rng::new(7);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[r.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = Rng::new(3);
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = Rng::new(11);
        let xs: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn hash_unit_is_uniformish() {
        let n = 100_000u32;
        let below_half = (0..n)
            .filter(|&i| hash_to_unit(hash3(1, 2, i)) < 0.5)
            .count();
        let frac = below_half as f64 / n as f64;
        assert!((frac - 0.5).abs() < 0.01, "{frac}");
    }
}
