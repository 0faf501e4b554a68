//! `[sweep]`: seeds × a parameter grid, enumerated in a fixed order and split into shards.
//!
//! A cell is described by `--set` overrides, so running a cell is parsing the same file with a
//! few more overrides: there is one code path for a single run and for a sweep.

use serde::de::IgnoredAny;
use toml::{Spanned, Value};

use super::error::{Problem, Res};
use super::model::{Scenario, SweepCell, SweepParam, SweepSpec};
use super::overrides::render_value;
use super::raw::{OrderedMap, RawSweep};
use super::resolve::OverrideCheck;
use super::MAX_SWEEP_CELLS;

/// At most this many grid values in all (each is checked by parsing the scenario once).
const MAX_GRID_VALUES: usize = 10_000;

pub(crate) fn resolve(raw: &Spanned<RawSweep>, default_seed: u64, check: Option<OverrideCheck>) -> Res<SweepSpec> {
    let sweep = raw.get_ref();
    let seeds = match &sweep.seeds {
        Some(seeds) => parse_seeds(seeds)?,
        None => vec![default_seed],
    };
    let mut grid = Vec::new();
    let mut cells = seeds.len();
    let mut grid_values = 0usize;
    for (key, values) in sweep.grid.iter().flat_map(|g| g.0.iter()) {
        grid_values += values.get_ref().len();
        if grid_values > MAX_GRID_VALUES {
            return Err(Problem::at(values.span(), format!("the grid has more than {MAX_GRID_VALUES} values in all")));
        }
        let param = grid_param(key, values, check)?;
        cells = cells.saturating_mul(param.values.len());
        if cells > MAX_SWEEP_CELLS {
            return Err(Problem::at(key.span(), format!("the sweep has more than {MAX_SWEEP_CELLS} cells")));
        }
        grid.push(param);
    }
    Ok(SweepSpec { seeds, grid })
}

/// `"a..b"` (both ends included), a list of seeds, or one seed.
fn parse_seeds(raw: &Spanned<Value>) -> Res<Vec<u64>> {
    let span = raw.span();
    let invalid = || Problem::at(span.clone(), "seeds must be a range \"a..b\" (both included) or a list of seeds");
    let seeds: Vec<u64> = match raw.get_ref() {
        Value::String(range) => {
            let (a, b) = range.split_once("..").ok_or_else(invalid)?;
            let (a, b): (u64, u64) =
                (a.trim().parse().map_err(|_| invalid())?, b.trim().parse().map_err(|_| invalid())?);
            if a > b {
                return Err(Problem::at(span, format!("empty seed range {a}..{b}: the first seed is after the last")));
            }
            if b - a >= MAX_SWEEP_CELLS as u64 {
                return Err(Problem::at(span, format!("too many seeds: at most {MAX_SWEEP_CELLS}")));
            }
            (a..=b).collect()
        }
        Value::Integer(seed) => vec![u64::try_from(*seed).map_err(|_| invalid())?],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_integer().and_then(|i| u64::try_from(i).ok()).ok_or_else(invalid))
            .collect::<Res<_>>()?,
        _ => return Err(invalid()),
    };
    if seeds.is_empty() {
        return Err(Problem::at(span, "the seed list is empty"));
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(Problem::at(span, "a seed is listed twice"));
    }
    Ok(seeds)
}

/// One grid key; each value is checked by parsing the scenario with it applied.
fn grid_param(
    key: &Spanned<String>,
    values: &Spanned<Vec<Spanned<Value>>>,
    check: Option<OverrideCheck>,
) -> Res<SweepParam> {
    let name = key.get_ref();
    if name.starts_with("sweep") || name == "scenario.seed" {
        let message = format!("\"{name}\" cannot be swept; seeds are swept with sweep.seeds");
        return Err(Problem::at(key.span(), message));
    }
    if values.get_ref().is_empty() {
        return Err(Problem::at(values.span(), format!("sweep.grid \"{name}\" has no values")));
    }
    let mut rendered = Vec::new();
    for value in values.get_ref() {
        let literal = render_value(value.get_ref());
        if let Some(check) = check {
            check(&format!("{name}={literal}")).map_err(|reason| {
                Problem::at(value.span(), format!("sweep value {name} = {literal} is invalid: {reason}"))
            })?;
        }
        rendered.push(literal);
    }
    Ok(SweepParam { key: name.clone(), values: rendered })
}

/// With overrides, the document is re-rendered with its tables' keys sorted; the grid goes back
/// to the order of the file (keys an override added come last), as cell order depends on it.
pub(crate) fn restore_file_order(spec: &mut SweepSpec, text: &str) {
    #[derive(serde::Deserialize)]
    struct Doc {
        sweep: Option<Sweep>,
    }
    #[derive(serde::Deserialize)]
    struct Sweep {
        grid: Option<OrderedMap<IgnoredAny>>,
    }
    let Ok(Doc { sweep: Some(Sweep { grid: Some(grid) }) }) = toml::from_str::<Doc>(text) else { return };
    let order: Vec<String> = grid.0.into_iter().map(|(key, _)| key.into_inner()).collect();
    // Stable, so keys absent from the file keep their relative order.
    spec.grid.sort_by_key(|param| order.iter().position(|k| *k == param.key).unwrap_or(usize::MAX));
}

/// Every cell of the scenario's sweep, in a fixed order: grid values row-major (the first key
/// varies slowest), seeds innermost. Without a `[sweep]`, one cell with the scenario's seed.
pub fn sweep_cells(scenario: &Scenario) -> Vec<SweepCell> {
    let (seeds, grid) = match &scenario.sweep {
        Some(sweep) => (sweep.seeds.clone(), sweep.grid.as_slice()),
        None => (vec![scenario.seed], &[][..]),
    };
    let mut cells = Vec::new();
    for point in grid_points(grid) {
        for &seed in &seeds {
            let mut overrides: Vec<String> = point.iter().map(|(k, v)| format!("{k}={v}")).collect();
            overrides.push(format!("scenario.seed={seed}"));
            let mut label: Vec<String> = point.iter().map(|(k, v)| format!("{k}={}", v.trim_matches('"'))).collect();
            label.push(format!("seed={seed}"));
            cells.push(SweepCell { index: cells.len(), seed, overrides, label: label.join(",") });
        }
    }
    cells
}

/// The cartesian product of the grid, first key slowest; one empty point for an empty grid.
fn grid_points(grid: &[SweepParam]) -> Vec<Vec<(&str, &str)>> {
    let mut points: Vec<Vec<(&str, &str)>> = vec![Vec::new()];
    for param in grid {
        points = points
            .iter()
            .flat_map(|point| {
                param.values.iter().map(move |value| {
                    let mut next = point.clone();
                    next.push((param.key.as_str(), value.as_str()));
                    next
                })
            })
            .collect();
    }
    points
}

/// The cells of shard `k` of `n` (k from 1): those whose index % n == k - 1. Empty when `k`
/// is not in 1..=n; [`parse_shard`] checks user input.
pub fn shard(cells: &[SweepCell], k: usize, n: usize) -> Vec<SweepCell> {
    if k == 0 || k > n {
        return Vec::new();
    }
    cells.iter().filter(|c| c.index % n == k - 1).cloned().collect()
}

/// Parses `--shard K/N` (1 <= K <= N).
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let invalid = || format!("invalid shard \"{text}\": expected K/N with 1 <= K <= N, e.g. 3/8");
    let (k, n) = text.split_once('/').ok_or_else(invalid)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| invalid())?, n.trim().parse().map_err(|_| invalid())?);
    if k == 0 || k > n {
        return Err(invalid());
    }
    Ok((k, n))
}
