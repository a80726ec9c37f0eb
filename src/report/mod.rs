//! What training leaves behind for people: per-epoch metrics files and curves.

mod metrics_file;
mod plot;

pub use plot::plot_history;

pub use metrics_file::{
    MetricsRow, check_metrics_path, read_metrics, rows_from_history, write_metrics,
};
