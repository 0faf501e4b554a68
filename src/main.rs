//! `roomsim`: the command-line front end. Thin: parsing arguments, reading and writing files,
//! rendering errors. Everything deterministic lives in `roomsim-engine`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the simulation and `dag verify` allocate many
/// small, short-lived objects (IDs, state maps, records); see BENCHMARKS.md for the measured
/// difference. Built without transparent huge pages (`no_thp`): with them, a 50k-event `dag verify`
/// spent 0.7–1.4 s of system time zeroing and compacting huge pages. The allocator decides no
/// result.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
