//! Loss and accuracy curves as a PNG. (Placeholder until the plotting helper lands.)

use super::MetricsRow;
use crate::model::Task;
use crate::{Error, Result};
use std::path::Path;

pub fn plot_history(_path: &Path, _rows: &[MetricsRow], _task: Task) -> Result<()> {
    Err(Error::Config("plotting is not built yet".into()))
}
