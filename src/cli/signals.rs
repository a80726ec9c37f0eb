//! Stopping a training run from outside: Ctrl-C (SIGINT), and on Unix SIGTERM (what systemd,
//! Slurm, Kubernetes and `timeout` send) and SIGHUP (a closed terminal). The first ends
//! training after the current step with a checkpoint written; the process then exits with the
//! shell's status for that signal, 128 + its number (130, 143, 129). A second signal exits at
//! once, without a checkpoint.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the first signal: the training loop stops after the current step.
pub(super) static STOP: AtomicBool = AtomicBool::new(false);

/// The number of the signal that set [`STOP`] (0 before one came).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// SIGINT's number on every platform wgtrain builds for (Ctrl-C on Windows reports as it).
const SIGINT: i32 = 2;

/// The exit status of a run a signal stopped: 128 + the signal's number, as a shell reports a
/// process the signal killed (130 for Ctrl-C when no signal was recorded).
pub fn exit_status() -> u8 {
    let signal = match SIGNAL.load(Ordering::SeqCst) {
        0 => SIGINT,
        s => s,
    };
    u8::try_from(128 + signal).unwrap_or(130)
}

/// What a person reads when `signal` arrives.
fn name(signal: i32) -> &'static str {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGTERM};
        match signal {
            SIGTERM => return "SIGTERM",
            SIGHUP => return "SIGHUP",
            _ => {}
        }
    }
    let _ = signal;
    "interrupt"
}

fn on_signal(signal: i32) {
    if STOP.swap(true, Ordering::SeqCst) {
        eprintln!("\n{} again; exiting without a checkpoint", name(signal));
        std::process::exit(128 + signal);
    }
    SIGNAL.store(signal, Ordering::SeqCst);
    let again = if signal == SIGINT {
        "Ctrl-C again"
    } else {
        "send it again"
    };
    eprintln!(
        "\n{}: finishing the current step and writing a checkpoint ({again} to quit now)",
        name(signal)
    );
}

/// Routes SIGINT, SIGTERM and SIGHUP (Ctrl-C elsewhere) to [`STOP`], once per process.
pub(super) fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            // A thread reads the signals (a handler may not print or lock); a failure to
            // register leaves the default behaviour, which still ends the process.
            if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            {
                std::thread::spawn(move || {
                    for signal in signals.forever() {
                        on_signal(signal);
                    }
                });
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrlc::set_handler(|| on_signal(SIGINT));
        }
    });
}
