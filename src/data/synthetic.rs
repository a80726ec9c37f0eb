//! Small synthetic data sets from "Neural Networks from Scratch" (nnfs.io): the spiral for
//! classification and the sine wave for regression. They need no files and train in seconds,
//! which makes them the quickest end-to-end check of a model.

use super::{Dataset, Features, Targets};
use crate::rng::Rng;

/// Points per class in the default spiral training set.
pub const SPIRAL_TRAIN_PER_CLASS: usize = 1000;
/// Points per class in the default spiral test set (an independent draw).
pub const SPIRAL_TEST_PER_CLASS: usize = 300;
/// Classes (arms) of the default spiral.
pub const SPIRAL_CLASSES: usize = 3;
/// Points in the default sine training set, at `x = i / 1000`.
pub const SINE_TRAIN_SAMPLES: usize = 1000;
/// Points in the default sine test set, at `x = (i + 0.5) / 200`: between the training points,
/// so the test measures interpolation rather than recall.
pub const SINE_TEST_SAMPLES: usize = 200;

/// The nnfs.io spiral: `classes` arms of `points_per_class` points in 2-D, labelled by arm.
///
/// For class `j`, with `N = points_per_class`: `r = linspace(0, 1, N)`,
/// `t = linspace(4j, 4(j + 1), N) + 0.2 * randn`, and the point is
/// `(r sin(2.5 t), r cos(2.5 t))`. Rows are grouped by class.
pub fn spiral(points_per_class: usize, classes: usize, rng: &mut Rng) -> Dataset {
    let rows = points_per_class * classes;
    let mut features = Vec::with_capacity(rows * 2);
    let mut labels = Vec::with_capacity(rows);
    for class in 0..classes {
        let start = class as f64 * 4.0;
        for i in 0..points_per_class {
            let r = linspace(0.0, 1.0, points_per_class, i);
            let t = linspace(start, start + 4.0, points_per_class, i) + rng.normal() * 0.2;
            features.push((r * (t * 2.5).sin()) as f32);
            features.push((r * (t * 2.5).cos()) as f32);
            labels.push(class as u32);
        }
    }
    Dataset {
        rows,
        dim: 2,
        image_shape: (1, 2),
        features: Features::F32(features),
        targets: Targets::Classes {
            labels,
            num_classes: classes,
        },
    }
}

/// The nnfs.io sine wave: `x = i / samples` for `i` in `0..samples`, target `sin(2 pi x)`.
///
/// The set is a fixed grid, so `rng` is not drawn from; it is taken so that every synthetic set
/// is built the same way (and noise can be added later without changing callers).
pub fn sine(samples: usize, rng: &mut Rng) -> Dataset {
    let _ = rng;
    sine_grid(samples, 0.0)
}

/// The sine wave sampled at `x = (i + offset) / samples` for `i` in `0..samples`; `offset = 0.5`
/// gives the midpoints used by the default test set.
pub fn sine_grid(samples: usize, offset: f64) -> Dataset {
    let xs: Vec<f32> = (0..samples)
        .map(|i| ((i as f64 + offset) / samples as f64) as f32)
        .collect();
    // The target is computed from the f32 input the model sees, so it is an exact function of it.
    let ys = xs
        .iter()
        .map(|&x| (std::f64::consts::TAU * f64::from(x)).sin() as f32)
        .collect();
    Dataset {
        rows: samples,
        dim: 1,
        image_shape: (1, 1),
        features: Features::F32(xs),
        targets: Targets::Values { values: ys, dim: 1 },
    }
}

/// Element `i` of NumPy's `linspace(a, b, n)`: `n` evenly spaced values from `a` to `b`
/// inclusive (just `a` when `n == 1`).
fn linspace(a: f64, b: f64, n: usize, i: usize) -> f64 {
    if n <= 1 {
        a
    } else {
        a + (b - a) * i as f64 / (n - 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // np.linspace(0, 4, 5) == [0, 1, 2, 3, 4]; np.linspace(2, 3, 1) == [2].
        let v: Vec<f64> = (0..5).map(|i| linspace(0.0, 4.0, 5, i)).collect();
        assert_eq!(v, [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(linspace(2.0, 3.0, 1, 0), 2.0);
    }

    #[test]
    fn spiral_radius_grows_along_each_arm() {
        let ds = spiral(50, 3, &mut Rng::new(1));
        let Features::F32(x) = &ds.features else {
            panic!("spiral is f32")
        };
        for class in 0..3 {
            for i in 0..50 {
                let row = class * 50 + i;
                let r = f64::from(x[2 * row]).hypot(f64::from(x[2 * row + 1]));
                // The noise moves the angle only, so the radius is exactly linspace(0, 1, 50).
                assert!(
                    (r - i as f64 / 49.0).abs() < 1e-6,
                    "class {class} point {i}: r {r}"
                );
            }
        }
    }

    #[test]
    fn sine_targets_are_sin_of_inputs() {
        let ds = sine_grid(4, 0.0);
        assert_eq!(ds.features, Features::F32(vec![0.0, 0.25, 0.5, 0.75]));
        let Targets::Values { values, dim: 1 } = &ds.targets else {
            panic!("regression")
        };
        let expected = [0.0, 1.0, 0.0, -1.0];
        for (y, e) in values.iter().zip(expected) {
            assert!((y - e).abs() < 1e-6, "{values:?}");
        }
    }
}
