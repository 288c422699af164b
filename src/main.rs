//! The `engine` command line: parses arguments, runs a command, and turns errors into messages
//! and exit codes (0 success, 1 failure, 2 bad usage, 130 interrupted).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_vulkan_device_select();
    keep_freed_memory();
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

/// Every tensor op allocates its output, and a CNN's activations (12 MiB at a batch of 128) are
/// past glibc's threshold for handing memory back to the kernel on each free: every step then
/// paid page faults to map and zero them again, a tenth of a CPU training step. Large blocks are
/// kept in the heap for reuse instead (the peak is unchanged: the same buffers, recycled).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator settings; called before any allocation that
    // depends on them and before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
