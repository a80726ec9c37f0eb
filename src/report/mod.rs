//! What training leaves behind for people: per-epoch metrics files, and (with the `cli`
//! feature) their curves drawn as a PNG.

mod metrics_file;
#[cfg(feature = "cli")]
mod plot;

#[cfg(feature = "cli")]
pub use plot::plot_history;

pub use metrics_file::{
    MetricsRow, check_metrics_path, read_metrics, rows_from_history, write_metrics,
};
