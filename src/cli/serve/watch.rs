//! `engine serve --watch`: a thread polls the registry for the version an alias points to and,
//! when it moves, loads and verifies that version, then hands it to the batcher, which swaps it
//! in between two batches. Until the new version is ready the old one keeps answering; a version
//! that cannot be loaded, or a registry that cannot be reached, is logged once and retried at
//! the next poll.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use engine::serve::BatchHandle;

use super::Loader;
use crate::cli::locate::resolve_version;

/// The polling thread; dropped or stopped, it ends at its next wake-up.
pub struct Watcher {
    stop: mpsc::Sender<()>,
}

impl Watcher {
    /// Stops polling. A download in progress is abandoned, not awaited.
    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// Polls every `interval`, starting from `version`, the one being served.
pub fn start(loader: Loader, version: String, interval: Duration, batcher: BatchHandle) -> anyhow::Result<Watcher> {
    let (stop, stopped) = mpsc::channel();
    std::thread::Builder::new().name("engine-watch".into()).spawn(move || {
        let mut watch = Watch { loader, serving: version, failed: None, last_error: None };
        eprintln!("serve: watching {} every {} s", watch.loader.input, interval.as_secs_f64());
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
            if !watch.poll(&batcher) {
                break;
            }
        }
    })?;
    Ok(Watcher { stop })
}

struct Watch {
    loader: Loader,
    /// The version being served.
    serving: String,
    /// A version that failed to load, not to be reported again.
    failed: Option<String>,
    /// The last registry error reported, not to be repeated.
    last_error: Option<String>,
}

impl Watch {
    /// One poll; false once the batcher is gone.
    fn poll(&mut self, batcher: &BatchHandle) -> bool {
        let version = match resolve_version(&self.loader.input, &self.loader.uri, &self.loader.tracking) {
            Ok((_, found)) => {
                self.last_error = None;
                found.version
            }
            Err(e) => {
                let message = format!("{e:#}");
                if self.last_error.as_ref() != Some(&message) {
                    eprintln!(
                        "serve: cannot read {}: {message}; still serving version {}",
                        self.loader.input, self.serving
                    );
                    self.last_error = Some(message);
                }
                return true;
            }
        };
        if version == self.serving {
            return true;
        }
        match self.loader.load_version(&version) {
            Ok(model) => {
                eprintln!("serve: {} moved to version {version}; swapping it in", self.loader.input);
                if batcher.swap(model).is_err() {
                    return false;
                }
                self.serving = version;
                self.failed = None;
            }
            Err(e) if self.failed.as_ref() != Some(&version) => {
                eprintln!("serve: cannot load version {version}: {e:#}; still serving version {}", self.serving);
                self.failed = Some(version);
            }
            Err(_) => {}
        }
        true
    }
}
