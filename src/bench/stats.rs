//! Repeated measurements and their summary.

use crate::Result;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Median, min and max of repeated runs, in the figure's unit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median run.
    pub median: f64,
    /// The smallest run.
    pub min: f64,
    /// The largest run.
    pub max: f64,
}

impl Spread {
    /// The median, min and max of `v`, which must not be empty (it panics otherwise).
    pub fn of(mut v: Vec<f64>) -> Spread {
        assert!(!v.is_empty());
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// The same runs expressed as a rate `work / seconds` (min and max swap).
    pub fn rate(seconds: Spread, work: f64) -> Spread {
        Spread {
            median: work / seconds.median,
            min: work / seconds.max,
            max: work / seconds.min,
        }
    }
}

/// How many times to run something.
#[derive(Clone, Copy, Debug)]
pub struct Repeats {
    /// Unmeasured runs first, to warm caches, compile kernels and settle clocks.
    pub warmup: usize,
    /// The most measured runs.
    pub runs: usize,
    /// Stop adding runs once this many seconds were spent (at least one run is kept), so one
    /// slow adapter does not make the whole harness take minutes.
    pub budget_s: f64,
}

/// Runs `f` `warmup` times untimed, then up to `runs` times timed. `f` returns the seconds it
/// measured itself (it knows what to wait for).
pub fn repeat(r: Repeats, mut f: impl FnMut() -> Result<f64>) -> Result<Spread> {
    let started = Instant::now();
    for _ in 0..r.warmup {
        f()?;
    }
    let mut times = Vec::new();
    let timed_start = Instant::now();
    while times.len() < r.runs.max(1) {
        times.push(f()?);
        if timed_start.elapsed().as_secs_f64() > r.budget_s {
            break;
        }
    }
    let _ = started;
    Ok(Spread::of(times))
}
