//! The `engine` command line: parses arguments, runs a command, and turns errors into messages
//! and exit codes (0 success, 1 failure, 2 bad usage, 130 interrupted).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_vulkan_device_select();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            cli::exit_code_for(&error)
        }
    }
}

/// Mesa's implicit Vulkan layer `device_select` only reorders adapters (we list and pick them
/// ourselves), yet on a headless machine it prints "error: XDG_RUNTIME_DIR is invalid" while
/// probing for a Wayland display. It honours `NODEVICE_SELECT=1`, unless the user set it.
fn quiet_vulkan_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
