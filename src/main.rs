#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    ferry::commands::main(ferry::cli::Cli::parse())
}
