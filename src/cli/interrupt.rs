//! Ctrl-C, SIGTERM and SIGHUP: the first asks the running command to stop cleanly (the run
//! ends KILLED, `engine ui` stops its server), a second exits at once, killing any MLflow server
//! the process started first.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Installs a handler for Ctrl-C (SIGINT), SIGTERM and SIGHUP once per process and returns the
/// flag it sets.
/// The training loop polls the flag, stops, and ends the run KILLED.
/// A second Ctrl-C exits at once with status 130. Later calls return the same flag.
pub fn install_interrupt_flag() -> Arc<AtomicBool> {
    install_with_message(
        "interrupt: finishing the current step, then ending the run as KILLED (Ctrl-C again to exit now)",
    )
}

/// [`install_interrupt_flag`], printing `message` on the first interrupt (the first install's
/// message is the one kept).
pub fn install_with_message(message: &'static str) -> Arc<AtomicBool> {
    use std::sync::OnceLock;
    use std::sync::atomic::Ordering;
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // Written without `eprintln!`, which panics when stderr is closed: the handler would
        // die with its thread and a second interrupt could no longer stop the process.
        let say = |text: &str| {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{text}");
        };
        let res = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                say("interrupted again: exiting now");
                engine::tracking::kill_started_servers();
                std::process::exit(130);
            }
            say(message);
        });
        if let Err(e) = res {
            eprintln!("warning: cannot install the Ctrl-C handler: {e}");
        }
        flag
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_flag_is_installed_once() {
        let a = install_interrupt_flag();
        let b = install_interrupt_flag();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!a.load(std::sync::atomic::Ordering::SeqCst));
    }
}
