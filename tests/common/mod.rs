//! Helpers shared by the tests that drive the real binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `wgtrain` with `args` in `dir` (or the current directory).
pub fn wgtrain(args: &[&str], dir: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgtrain"));
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().expect("the binary runs")
}

/// Runs `wgtrain` and returns the JSON object on the last line of stdout, asserting success.
pub fn wgtrain_json(args: &[&str], dir: Option<&Path>) -> serde_json::Value {
    let out = wgtrain(args, dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wgtrain {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
