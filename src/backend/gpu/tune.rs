//! Matmul autotuning per adapter: the first time a product of a new shape runs on an adapter,
//! each of the three kernels (32 x 32, 64 x 64 and 128 x 128 output tiles), and where the
//! output is small and k long the 32 x 32 and 64 x 64 kernels split over k ([`candidates`]),
//! is timed on it and the fastest is kept, in memory and in a JSON file in the user's cache
//! directory (`~/.cache/wgtrain/matmul-tiles.json` on Linux; `WGTRAIN_TUNE_CACHE` names
//! another file), under a key of adapter, driver and wgtrain version, so a new driver or a new
//! wgtrain tunes again. `WGTRAIN_TUNE=off` turns tuning off (each product then picks by the
//! rules of thumb of [`super::MatmulTiles::Auto`] and split-K); `WGTRAIN_MATMUL_TILES` and
//! `WGTRAIN_MATMUL_SPLIT` force a kernel whatever the cache says.
//!
//! A candidate is timed by timestamp queries around its dispatches where the adapter has them
//! (device time only, each dispatch in a compute pass of its own), else by the wall clock
//! around a sync (which includes a submission's fixed cost, the same for every candidate): one
//! untimed run of the very product (which compiles its pipelines; its output is written again
//! each time, which changes nothing: a product never reads what it writes), then one timed
//! run, and where that took under [`ONE_IS_ENOUGH_US`] the mean of [`REPEATS`] more in one
//! submission.
//!
//! The file is read once per backend and rewritten whole after each new choice: merged with
//! what is on disk at that moment, written to a temporary file beside it and renamed over it,
//! so concurrent runs never leave a torn file (at worst one run's new entries are lost and
//! tuned again). A file that cannot be read as a tuning cache is ignored with a one-line
//! notice and replaced; entries of the same adapter and driver from another wgtrain version
//! are dropped with a notice.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tile sides tried, as `WGTRAIN_MATMUL_TILES` names them.
pub const CANDIDATES: [usize; 3] = [32, 64, 128];

/// Split-K is tried on the two smaller tiles with up to this many workgroups in all: the
/// biggest GPUs have 100-odd compute units (an H200 132).
const SPLIT_WORKGROUPS: usize = 256;

/// Nor with fewer values of k per split than this.
const SPLIT_DEPTH: usize = 64;

/// The (tile side, splits) candidates for an m x k x n product; `splittable`: whether its
/// epilogue allows split-K. Besides the three kernels unsplit, each of the two smaller ones
/// split by the largest power of two that keeps to [`SPLIT_WORKGROUPS`] and [`SPLIT_DEPTH`]
/// (and [`super::matmul::MAX_SPLIT`]), and by its half and quarter (2 at least).
pub fn candidates(m: usize, k: usize, n: usize, splittable: bool) -> Vec<(usize, usize)> {
    let mut all: Vec<_> = CANDIDATES.iter().map(|&side| (side, 1)).collect();
    if !splittable {
        return all;
    }
    for side in [32, 64] {
        let top = super::matmul::most_splits(side, m, k, n, SPLIT_WORKGROUPS, SPLIT_DEPTH);
        for split in [top / 4, top / 2, top] {
            if split >= 2 {
                all.push((side, split));
            }
        }
    }
    all
}

/// A candidate's name in [`Choice::us`]: the tile side ("32"), and the splits where split
/// ("32 split 4").
pub fn candidate_name(side: usize, split: usize) -> String {
    if split > 1 {
        format!("{side} split {split}")
    } else {
        side.to_string()
    }
}

/// Dispatches timed together per candidate where one is short.
pub const REPEATS: usize = 5;

/// A dispatch at least this long (microseconds) is timed once: the products of a big model on
/// a slow device take seconds each.
pub const ONE_IS_ENOUGH_US: f64 = 5_000.0;

/// The file's format, bumped when its layout or the candidates change (an old file is then
/// replaced): 2 added split-K.
const FORMAT: u32 = 2;

/// What was measured for one shape, and the kernel chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The output tile side chosen: 32, 64 or 128.
    pub tiles: usize,
    /// The slices of k the product is split into (split-K; 1: not split).
    #[serde(default = "one")]
    pub split: usize,
    /// Microseconds per run of each candidate (both dispatches of a split one), by
    /// `candidate_name` ("32", "64", "128", "32 split 4", ...).
    pub us: BTreeMap<String, f64>,
    /// Whether `us` are device times from timestamp queries (else the wall clock around a
    /// sync, on adapters without them).
    #[serde(default)]
    pub timestamps: bool,
}

fn one() -> usize {
    1
}

/// The cache file: per adapter key, per shape, the choice.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    adapters: BTreeMap<String, BTreeMap<String, Choice>>,
}

/// The choices for one adapter, and where they are kept.
#[derive(Debug)]
pub struct Tuner {
    path: Option<PathBuf>,
    /// "adapter | driver | wgtrain version".
    key: String,
    /// "adapter | driver |": the key without the version, to spot stale entries.
    device: String,
    choices: BTreeMap<String, Choice>,
}

/// The cache file `WGTRAIN_TUNE_CACHE` names, else `matmul-tiles.json` in the user's cache
/// directory; `None` where there is none (the choices then last as long as the backend).
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("WGTRAIN_TUNE_CACHE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => dirs::cache_dir().map(|d| d.join("wgtrain").join("matmul-tiles.json")),
    }
}

/// Whether tuning is on by default: unless `WGTRAIN_TUNE` is `off`, `0` or `false`.
pub fn enabled_by_env() -> bool {
    !matches!(
        std::env::var("WGTRAIN_TUNE").as_deref(),
        Ok("off" | "0" | "false")
    )
}

/// The key of a product's shape: its form and sizes, e.g. "A·Bᵀ 128x784x256".
pub fn shape_key(trans_a: bool, trans_b: bool, m: usize, k: usize, n: usize) -> String {
    let form = match (trans_a, trans_b) {
        (false, false) => "A·B",
        (true, false) => "Aᵀ·B",
        (false, true) => "A·Bᵀ",
        (true, true) => "Aᵀ·Bᵀ",
    };
    format!("{form} {m}x{k}x{n}")
}

impl Tuner {
    /// The choices cached at `path` (none when `None`) for this adapter and driver.
    pub fn open(path: Option<PathBuf>, adapter: &str, driver: &str) -> Tuner {
        let device = format!("{adapter} | {driver} |");
        let key = format!("{device} wgtrain {}", env!("CARGO_PKG_VERSION"));
        let mut tuner = Tuner {
            path,
            key,
            device,
            choices: BTreeMap::new(),
        };
        if let Some(path) = tuner.path.clone() {
            let file = read(&path, true);
            let stale = file
                .adapters
                .keys()
                .any(|k| k.starts_with(&tuner.device) && *k != tuner.key);
            if stale {
                eprintln!(
                    "notice: {} holds matmul tuning from another wgtrain version for this \
                     adapter; tuning again",
                    path.display()
                );
            }
            tuner.choices = file.adapters.get(&tuner.key).cloned().unwrap_or_default();
        }
        tuner
    }

    /// The kernel chosen for `shape` (`shape_key`) as (tile side, splits), if tuned (a side
    /// or split that is no candidate, from a hand-edited file, counts as untuned).
    pub fn get(&self, shape: &str) -> Option<(usize, usize)> {
        let c = self.choices.get(shape)?;
        let splits = 1..=super::matmul::MAX_SPLIT;
        let valid = CANDIDATES.contains(&c.tiles) && splits.contains(&c.split);
        valid.then_some((c.tiles, c.split))
    }

    /// Every choice for this adapter, by shape.
    pub fn choices(&self) -> &BTreeMap<String, Choice> {
        &self.choices
    }

    /// Where the choices are kept, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Forgets this adapter's choices (on disk at the next [`Tuner::insert`]).
    pub fn clear(&mut self) {
        self.choices.clear();
    }

    /// Keeps `choice` for `shape` and writes the file. A file that cannot be written costs a
    /// one-line notice, once; the choice is kept in memory all the same.
    pub fn insert(&mut self, shape: String, choice: Choice) {
        self.choices.insert(shape, choice);
        let Some(path) = self.path.clone() else {
            return;
        };
        if let Err(e) = self.save(&path) {
            eprintln!(
                "notice: could not write the matmul tuning cache {}: {e}; tuning is kept for \
                 this run only",
                path.display()
            );
            self.path = None;
        }
    }

    fn save(&self, path: &Path) -> crate::Result<()> {
        // Merge with what other runs wrote meanwhile; drop this device's stale entries.
        let mut file = read(path, false);
        file.format = FORMAT;
        file.adapters
            .retain(|k, _| !k.starts_with(&self.device) || *k == self.key);
        let entry = file.adapters.entry(self.key.clone()).or_default();
        for (shape, choice) in &self.choices {
            entry.insert(shape.clone(), choice.clone());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        }
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| crate::Error::io(path, std::io::Error::other(e)))?;
        crate::store::write_atomic(path, (text + "\n").as_bytes())
    }
}

/// The cache at `path`: empty where it does not exist, or (with a notice when `loud`) where it
/// is not a tuning cache of this format.
fn read(path: &Path, loud: bool) -> CacheFile {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheFile::default(),
        Err(e) => {
            if loud {
                eprintln!(
                    "notice: ignoring the matmul tuning cache {}: {e}",
                    path.display()
                );
            }
            return CacheFile::default();
        }
    };
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(f) if f.format == FORMAT => f,
        Ok(_) | Err(_) => {
            if loud {
                eprintln!(
                    "notice: {} is not a matmul tuning cache wgtrain can read; it will be \
                     rewritten",
                    path.display()
                );
            }
            CacheFile::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(tiles: usize) -> Choice {
        Choice {
            tiles,
            split: 1,
            us: CANDIDATES.iter().map(|c| (c.to_string(), 1.0)).collect(),
            timestamps: true,
        }
    }

    #[test]
    fn split_candidates_fill_a_big_gpu_at_most() {
        let split = |m, k, n| -> Vec<(usize, usize)> {
            candidates(m, k, n, true)
                .into_iter()
                .filter(|c| c.1 > 1)
                .collect()
        };
        // The standard MLP's first product at batch 128: 32 tiles of 32 x 32, 8 of 64 x 64;
        // k / 8 = 98 >= 64.
        assert_eq!(
            split(128, 784, 256),
            [(32, 2), (32, 4), (32, 8), (64, 2), (64, 4), (64, 8)]
        );
        // The CNN's first weight gradient: one tile, k = 100352: up to 256 splits.
        assert_eq!(
            split(32, 100_352, 9),
            [
                (32, 64),
                (32, 128),
                (32, 256),
                (64, 64),
                (64, 128),
                (64, 256)
            ]
        );
        // Short k: 2 only, or nothing.
        assert_eq!(split(10, 128, 10), [(32, 2), (64, 2)]);
        assert!(split(10, 127, 10).is_empty());
        // Enough tiles already (1024 of 32 x 32, 256 of 64 x 64), and the loss's product,
        // which cannot split.
        assert!(split(1024, 4096, 1024).is_empty());
        assert_eq!(
            candidates(128, 784, 10, false),
            [(32, 1), (64, 1), (128, 1)]
        );
    }

    #[test]
    fn choices_persist_per_adapter_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("tiles.json");
        let mut a = Tuner::open(Some(path.clone()), "gpu a", "driver 1");
        a.insert(shape_key(false, true, 128, 784, 256), choice(32));
        let mut b = Tuner::open(Some(path.clone()), "gpu b", "driver 1");
        b.insert("A·B 1x1x1".into(), choice(128));
        // Reopened: each adapter sees its own; another driver sees nothing.
        let a2 = Tuner::open(Some(path.clone()), "gpu a", "driver 1");
        assert_eq!(a2.get("A·Bᵀ 128x784x256"), Some((32, 1)));
        assert_eq!(a2.get("A·B 1x1x1"), None);
        assert_eq!(
            Tuner::open(Some(path.clone()), "gpu b", "driver 1").get("A·B 1x1x1"),
            Some((128, 1))
        );
        assert!(
            Tuner::open(Some(path.clone()), "gpu a", "driver 2")
                .choices()
                .is_empty()
        );
        // Another wgtrain version's entries for this device are stale: dropped when written.
        let text = std::fs::read_to_string(&path).unwrap();
        let old = text.replace(env!("CARGO_PKG_VERSION"), "0.0.0-old");
        std::fs::write(&path, old).unwrap();
        let mut c = Tuner::open(Some(path.clone()), "gpu a", "driver 1");
        assert!(c.choices().is_empty());
        c.insert("A·B 2x2x2".into(), choice(64));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("gpu a | driver 1 | wgtrain 0.0.0-old"),
            "{text}"
        );
        // Other devices' entries survive, whatever their version.
        assert!(
            text.contains("gpu b | driver 1 | wgtrain 0.0.0-old"),
            "{text}"
        );
        // No temporary file is left beside it.
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn a_corrupt_cache_is_ignored_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiles.json");
        std::fs::write(&path, "{ not json").unwrap();
        let mut t = Tuner::open(Some(path.clone()), "gpu", "driver");
        assert!(t.choices().is_empty());
        t.insert("A·B 3x3x3".into(), choice(32));
        let reread = Tuner::open(Some(path.clone()), "gpu", "driver");
        assert_eq!(reread.get("A·B 3x3x3"), Some((32, 1)));
        // A side that is no kernel's is no choice.
        t.insert("A·B 5x5x5".into(), choice(77));
        assert_eq!(t.get("A·B 5x5x5"), None);
        // JSON of another layout is no cache either.
        std::fs::write(&path, "[1, 2, 3]").unwrap();
        assert!(
            Tuner::open(Some(path), "gpu", "driver")
                .choices()
                .is_empty()
        );
    }

    #[test]
    fn an_unwritable_cache_keeps_the_choice_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: writing fails.
        let path = dir.path().join("tiles.json");
        std::fs::create_dir(&path).unwrap();
        let mut t = Tuner::open(Some(path), "gpu", "driver");
        t.insert("A·B 4x4x4".into(), choice(64));
        assert_eq!(t.get("A·B 4x4x4"), Some((64, 1)));
        assert!(t.path().is_none());
    }
}
