//! Progress display for training: an indicatif bar per epoch and one line after each.

use crate::model::Task;
use crate::train::{Callback, Control, EpochReport, Metrics, Trainer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Console {
    pub task: Task,
    pub epochs: usize,
    pub quiet: bool,
    bar: Option<ProgressBar>,
    /// Set by the Ctrl-C handler: stop after the current step.
    pub stop: &'static AtomicBool,
}

impl Console {
    pub fn new(task: Task, epochs: usize, quiet: bool, stop: &'static AtomicBool) -> Self {
        Console {
            task,
            epochs,
            quiet,
            bar: None,
            stop,
        }
    }

    fn metric_name(&self) -> &'static str {
        match self.task {
            Task::Classification => "acc",
            Task::Regression => "mae",
        }
    }

    fn fmt_metric(&self, v: f64) -> String {
        match self.task {
            Task::Classification => format!("{:.2}%", 100.0 * v),
            Task::Regression => format!("{v:.4}"),
        }
    }
}

/// An epoch cut short by an error leaves no half-drawn bar above the error message.
impl Drop for Console {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Callback for Console {
    fn epoch_start(&mut self, epoch: usize, rows: usize) {
        if self.quiet || self.should_stop() {
            return;
        }
        // indicatif draws nothing when stderr is not a terminal, so logs stay clean.
        let bar = ProgressBar::with_draw_target(Some(rows as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:28.cyan/blue}] {pos}/{len} {msg} {per_sec} ETA {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        self.bar = Some(bar);
    }

    fn step(&mut self, rows_done: usize, live: Option<Metrics>) {
        if let Some(bar) = &self.bar {
            bar.set_position(rows_done as u64);
            if let Some(m) = live {
                bar.set_message(format!(
                    "loss {:.4} {} {}",
                    m.loss,
                    self.metric_name(),
                    self.fmt_metric(m.metric)
                ));
            }
        }
    }

    fn epoch_end(&mut self, _: &mut Trainer, r: &EpochReport) -> crate::Result<Control> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.quiet {
            return Ok(Control::Continue);
        }
        let width = self.epochs.to_string().len();
        let mut line = format!(
            "epoch {:>width$}/{}  loss {:.4}",
            r.epoch, self.epochs, r.train_loss
        );
        if r.reg_loss > 0.0 {
            line += &format!(" (+reg {:.4})", r.reg_loss);
        }
        line += &format!(
            "  train {} {}",
            self.metric_name(),
            self.fmt_metric(r.train_metric)
        );
        for (name, m) in [("val", r.val), ("test", r.test)] {
            if let Some(e) = m {
                line += &format!(
                    "  {name} loss {:.4} {} {}",
                    e.loss,
                    self.metric_name(),
                    self.fmt_metric(e.metric)
                );
            }
        }
        line += &format!("  {:.2} s  {:.0} samples/s", r.seconds, r.samples_per_sec);
        println!("{line}");
        Ok(Control::Continue)
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn refresh(&self) -> Duration {
        if self.quiet {
            Duration::MAX
        } else {
            Duration::from_millis(250)
        }
    }
}
