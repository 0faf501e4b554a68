//! `roomsim`: the command-line front end. Thin: parsing arguments, reading and writing files,
//! rendering errors. Everything deterministic lives in `roomsim-engine`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

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
