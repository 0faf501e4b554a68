//! `roomsim-analysis`: turns the files of finished runs into tables, plots and HTML reports.
//!
//! What goes in: a run directory written by the engine (`summary.json`, `metrics.csv`,
//! `scenario.toml`, `rooms/<room>.pdus.jsonl`), or many of them, or sweep output directories
//! (`cells/<label>/{summary.json,cell.json}`). The formats are described in `docs/outputs.md`.
//! What comes out: `report.html` (one run), `compare.html`/`compare.csv` (two designs, paired
//! by seed) and `sweep.html`/`sweep.csv` (a merged parameter sweep).
//!
//! Invariants, stated as what is absent:
//! - analysis never runs a simulation and never changes a run's files other than adding its own
//!   outputs (`report.html`, optional `plots/`);
//! - no output depends on the wall clock, the machine, the thread count or hash-map order: every
//!   map that reaches an output is a `BTreeMap`, the bootstrap draws from ChaCha streams seeded by
//!   a constant and the metric's name;
//! - plots are driven by the measure names found in `metrics.csv` and the fields found in
//!   `summary.json`; nothing here hard-codes which measures exist (a table of known measures only
//!   supplies nicer titles and units).
//!
//! Public face: [`write_run_report`], [`compare()`], [`merge_sweep`], the parsed inputs
//! ([`RunSummary`], [`MetricsTable`]) and the chart types in [`plots`].

pub mod compare;
mod error;
pub mod explorer;
mod fmt;
mod font;
mod html;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod stats;
pub mod summary;
pub mod sweep;

pub use compare::{compare, find_run_dirs, read_run_summaries, CompareRow, CompareTable, PairedStats, SideStats};
pub use error::AnalysisError;
pub use metrics::{MetricsTable, Sample, SeriesKey};
pub use plots::PlotSize;
pub use report::{render_run_report, verdict, write_run_plots, write_run_report, ImageFormat, RunFiles, Verdict};
pub use summary::{Fault, FieldValue, RoomSummary, RunSummary};
pub use sweep::{merge_sweep, sweep_csv, sweep_html, MergeOutcome, SweepCell, SweepNotes};
