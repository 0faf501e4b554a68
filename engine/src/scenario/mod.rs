//! The scenario file format: TOML in, a validated [`Scenario`] out.
//!
//! Only this module parses scenario files (see ARCHITECTURE.md). The pipeline:
//!
//! 1. `--set` overrides edit the parsed document (`overrides`); without overrides the file is
//!    used as is.
//! 2. serde deserialises the text into `raw` structs that keep source spans; unknown keys, wrong
//!    types and bad durations fail here, located by the TOML deserialiser.
//! 3. `resolve` checks names and values and fills in defaults, producing the plain typed
//!    [`Scenario`] the simulator consumes without re-validating.
//! 4. Every error is mapped back to the user's input (`locate`): `FILE:LINE:COL: message` for
//!    the file, `--set ARG: message` for an override.
//!
//! Public face: [`parse_scenario`], [`load_scenario`], [`scenario_table`], [`sweep_cells`],
//! [`shard`], the model types and [`ScenarioError`]. Everything else is internal.
//!
//! Parsing never panics, whatever the input: the tests feed it random mutations of a valid file.

mod duration;
mod error;
mod locate;
mod model;
mod names;
mod overrides;
mod raw;
mod resolve;
mod sweep;

pub use duration::{
    format_duration_us, parse_duration, parse_signed_duration, DurationUs, SignedDurationUs, MAX_DURATION_US,
};
pub use error::{ErrorLocation, ScenarioError};
pub use model::*;
pub use overrides::override_value_text;
pub use sweep::{parse_shard, shard, sweep_cells};

use error::Problem;

/// Limits that keep a scenario's resolution bounded whatever the file says.
pub const MAX_FILE_BYTES: usize = 16 << 20;
pub const MAX_SERVERS: usize = 100_000;
pub const MAX_USERS_PER_SERVER: usize = 10_000;
pub const MAX_USERS: usize = 1_000_000;
pub const MAX_ROOMS: usize = 10_000;
/// Timeline entries after expansion, including each room's creation and initial joins.
pub const MAX_ACTIONS: usize = 1_000_000;
/// Server or user names produced by expanding groups and `"*"`, per section.
pub const MAX_EXPANDED_NAMES: usize = 10_000_000;
pub const MAX_SWEEP_CELLS: usize = 1_000_000;
/// Scenario, room and group names become file and directory names (`out/<scenario>/`,
/// `rooms/<room>.pdus.jsonl`, `<scenario>-compare/`): file systems allow 255 bytes per name, and
/// the outputs add up to 24 bytes of suffix.
pub const MAX_IDENTIFIER_BYTES: usize = 200;
/// Message bodies and topics of `[[timeline]]` actions: the event must stay well inside the
/// Matrix spec's 65 536-byte limit on a PDU (Server-Server API, "Size limits").
pub const MAX_TEXT_BYTES: usize = 16_384;
/// Event types (keys of `power_levels.events`): the spec limits them to 255 bytes
/// (Client-Server API, "Size limits").
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// Parses and validates a scenario. `file_name` is only used in messages; `overrides` are
/// `key.path=value` strings (the CLI's `--set`), applied in order.
pub fn parse_scenario(file_name: &str, text: &str, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    parse(file_name, text, overrides, true)
}

/// Reads and parses a scenario file. A read failure is a [`ScenarioError`] too.
pub fn load_scenario(path: &std::path::Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::io(path, &e))?;
    parse_scenario(&path.display().to_string(), &text, overrides)
}

/// The scenario file as a TOML table with `overrides` applied in order, as [`parse_scenario`]
/// reads it, for tools that edit scenarios (`roomsim shrink`). Not validated: render the table
/// and parse that to check it.
pub fn scenario_table(file_name: &str, text: &str, overrides: &[String]) -> Result<toml::Table, ScenarioError> {
    let identity = locate::Locator::identity(file_name, text);
    let mut table: toml::Table = toml::from_str(text).map_err(|e| identity.file_error(Problem::from_toml(&e)))?;
    for argument in overrides {
        overrides::Override::parse(argument)?.apply(&mut table)?;
    }
    Ok(table)
}

/// `check_sweep`: whether to try every sweep grid value (false while doing exactly that).
fn parse(file_name: &str, text: &str, overrides: &[String], check_sweep: bool) -> Result<Scenario, ScenarioError> {
    if text.len() > MAX_FILE_BYTES {
        let message = format!("the file is larger than {MAX_FILE_BYTES} bytes");
        return Err(ScenarioError::in_file(file_name, text, None, message, None));
    }
    let (deserialised, locator) = overrides::prepare(file_name, text, overrides)?;
    let raw: raw::RawFile = toml::from_str(&deserialised).map_err(|e| locator.locate(Problem::from_toml(&e)))?;
    let source =
        ScenarioSource { file_name: file_name.to_string(), text: text.to_string(), overrides: overrides.to_vec() };
    // A sweep value is valid when the scenario parses with it as one more override.
    let check_value = |extra: &str| -> Result<(), String> {
        let mut all = overrides.to_vec();
        all.push(extra.to_string());
        parse(file_name, text, &all, false).map(|_| ()).map_err(|e| match e.location() {
            ErrorLocation::Override { .. } => e.message().to_string(),
            _ => e.to_string(),
        })
    };
    let check: Option<resolve::OverrideCheck> = if check_sweep { Some(&check_value) } else { None };
    let mut scenario = resolve::resolve(raw, source, check).map_err(|p| locator.locate(p))?;
    if let (Some(sweep), false) = (&mut scenario.sweep, overrides.is_empty()) {
        sweep::restore_file_order(sweep, text);
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests;
