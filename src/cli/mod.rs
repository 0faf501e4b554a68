//! Subcommands.

mod dag;
pub mod files;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "roomsim", version, about = "Deterministic simulator of Matrix federation")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work on room DAGs given as JSON Lines of federation PDUs.
    Dag {
        #[command(subcommand)]
        command: dag::DagCommand,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Dag { command } => dag::run(command),
    }
}

/// Sets the size of rayon's global pool (`--threads`); 0 = rayon's default.
pub fn set_threads(threads: usize) {
    if threads > 0 {
        // Fails only if the pool was built already, in which case the first setting stands.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
}
