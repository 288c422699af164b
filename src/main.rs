//! The `engine` command line: parses arguments, runs a command, and turns errors into messages
//! and exit codes (0 success, 1 failure, 2 bad usage, 130 interrupted).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            cli::exit_code_for(&error)
        }
    }
}
