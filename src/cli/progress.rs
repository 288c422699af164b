//! Progress display for long loops: a bar with loss and throughput on a terminal, nothing
//! when its stream is a pipe or a file (logs stay clean). With `--json` the bar goes to stderr,
//! so that stdout holds the JSON document alone.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    on_stderr: bool,
}

impl Progress {
    /// A display on stdout, or on stderr when `on_stderr`.
    pub fn new(on_stderr: bool) -> Progress {
        Progress { bar: None, on_stderr }
    }

    /// Starts a bar of `steps` steps labelled `prefix`; hidden unless its stream is a terminal.
    pub fn start(&mut self, prefix: String, steps: usize) {
        let terminal = if self.on_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
        if !terminal {
            return;
        }
        let target = if self.on_stderr { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::stdout() };
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(steps as u64), target).with_style(style);
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
