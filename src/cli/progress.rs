//! Progress display for long loops: a bar with loss and throughput on a terminal, nothing
//! when stdout is a pipe or a file (logs and `--json` stay clean).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { bar: None }
    }

    /// Starts a bar of `steps` steps labelled `prefix`; hidden unless stdout is a terminal.
    pub fn start(&mut self, prefix: String, steps: usize) {
        if !std::io::stdout().is_terminal() {
            return;
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stdout()).with_style(style);
        bar.set_prefix(prefix);
        self.bar = Some(bar);
    }

    pub fn step(&self, position: usize, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(position as u64);
            bar.set_message(message);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
