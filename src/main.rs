//! The `wgtrain` binary: parse, run, and turn any error into one line and a non-zero exit.

use std::process::ExitCode;

fn main() -> ExitCode {
    match wgtrain::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line: "loading data: file.gz: ...".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
