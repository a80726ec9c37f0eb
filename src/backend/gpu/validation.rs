//! `WGTRAIN_VALIDATION=1`: the Vulkan validation layers (Khronos, with synchronization
//! validation, which wgpu enables with the layer) check every call wgpu makes, and any message
//! they report becomes an error of the next GPU operation, so a test or a run fails on it.
//!
//! Lavapipe runs whatever it is given; the layer checks what a real driver may rely on (usage
//! flags, barriers between dependent dispatches, descriptor limits). wgpu-hal passes the
//! layer's messages to the `log` facade; this module installs a logger that keeps them. Without
//! the variable the layer stays off even where it is installed: wgpu would otherwise turn it on
//! in every build with debug assertions (the tests), at several times their cost.

use crate::{Error, Result};
use std::sync::Mutex;

/// The module whose log records are the layer's messages (wgpu-hal's debug-utils callback).
const LAYER_TARGET: &str = "wgpu_hal::vulkan::instance";

/// Messages reported and not yet returned as an error.
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether `WGTRAIN_VALIDATION=1` asks for the layer.
pub(super) fn requested() -> bool {
    std::env::var("WGTRAIN_VALIDATION").as_deref() == Ok("1")
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = format!("{}", record.args());
        if record.target() == LAYER_TARGET {
            eprintln!("vulkan validation: {text}");
            let mut m = MESSAGES.lock().unwrap_or_else(|p| p.into_inner());
            m.push(text);
        } else {
            // wgpu's own warnings, which no logger printed before: still shown.
            eprintln!("{}: {text}", record.target());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger that keeps the layer's messages: before the Vulkan instance is
/// created, since wgpu-hal asks the layer for warnings only where the log level admits them
/// then. An error where the program already has a logger of its own (which then gets the
/// messages instead, and nothing here could fail on them).
pub(super) fn install() -> Result<()> {
    static LOGGER: Capture = Capture;
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ours = *INSTALLED.get_or_init(|| {
        let ok = log::set_logger(&LOGGER).is_ok();
        if ok {
            log::set_max_level(log::LevelFilter::Warn);
        }
        ok
    });
    if ours {
        Ok(())
    } else {
        Err(Error::Config(
            "WGTRAIN_VALIDATION=1 needs wgtrain's logger to collect the layer's messages, but \
             this program installed its own `log` logger"
                .into(),
        ))
    }
}

/// The layer's messages since the last call, as one error.
pub(super) fn take() -> Result<()> {
    let mut m = MESSAGES.lock().unwrap_or_else(|p| p.into_inner());
    if m.is_empty() {
        return Ok(());
    }
    let all = std::mem::take(&mut *m);
    Err(Error::Device(format!(
        "the Vulkan validation layer reported {} message(s) (WGTRAIN_VALIDATION=1), the first: {}",
        all.len(),
        all[0]
    )))
}

#[cfg(test)]
mod tests {
    /// A message the layer reports (through wgpu-hal's callback, as a log record of its
    /// module) becomes the next check's error; other records do not.
    #[test]
    fn layer_messages_become_an_error() {
        super::install().unwrap();
        super::take().unwrap();
        log::warn!(target: "wgpu_core::device", "not the layer's");
        super::take().unwrap();
        log::error!(target: super::LAYER_TARGET, "VALIDATION [SYNC-HAZARD-READ-AFTER-WRITE]");
        let e = super::take().unwrap_err().to_string();
        assert!(
            e.contains("1 message(s)") && e.contains("SYNC-HAZARD"),
            "{e}"
        );
        super::take().unwrap();
    }
}
