//! The `wgtrain` binary: parse, run, and turn any error into one line and a non-zero exit.

use std::process::ExitCode;

/// mimalloc, for the small allocations of a GPU step's recording and submission: ours, wgpu's
/// and, on Linux, where its `override` feature replaces `malloc` in the whole process, the
/// Vulkan driver's. See its entry in Cargo.toml; a program embedding the library keeps its own
/// allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match wgtrain::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line: "loading data: file.gz: ...".
            eprintln!("error: {e:#}");
            match e.downcast_ref::<wgtrain::Error>() {
                // The shell's status of a program the signal stopped: 130 for SIGINT, 143 for
                // SIGTERM, 129 for SIGHUP.
                Some(wgtrain::Error::Interrupted(_)) => {
                    ExitCode::from(wgtrain::cli::interrupt_exit_status())
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}
