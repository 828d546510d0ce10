//! `cargo xtask <command>`: the project's automation. Each command lives in its own
//! module; this file only parses flags and dispatches.

mod data;
mod fs_util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Automation for the CAM robustness toolkit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a data source and print its counts per class and per split.
    Data(data::SourceArgs),
    /// Build fixtures/mnist-mini from the full MNIST files.
    Fixtures(data::FixturesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(args) => data::print_counts(&args),
        Command::Fixtures(args) => data::make_fixtures(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
