//! Charts, drawn with plotters into SVG strings (for the HTML reports) or PNG files (for papers
//! and slides). A chart is a plain data value ([`Chart`]); building it from run files and drawing
//! it are separate, so tests can check the data and the writers can pick the format.
//!
//! One file per chart kind: [`time_series`] (a measure over simulated time, one line per server,
//! fault intervals shaded), [`ecdf`] (convergence time across runs), [`strip`] (design A vs B
//! values per seed), [`mean_ci`] (metric mean vs a sweep parameter with CI bars), and
//! [`timeline`] (the fault intervals of a run as a plain hand-written SVG bar).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::write_file;
use crate::{font, AnalysisError};

mod common;
pub mod ecdf;
pub mod mean_ci;
pub mod measures;
pub mod strip;
pub mod time_series;
pub mod timeline;

pub use ecdf::{EcdfChart, EcdfGroup};
pub use mean_ci::{MeanCiChart, MeanCiLine, MeanCiPoint};
pub use measures::{describe_measure, MeasureInfo};
pub use strip::{StripChart, StripGroup};
pub use time_series::{FaultBand, LineKind, TimeSeriesChart, TimeSeriesLine, MAX_SERVER_LINES};

/// Pixel size of a chart (SVG user units equal pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlotSize {
    pub width: u32,
    pub height: u32,
}

impl PlotSize {
    pub const fn new(width: u32, height: u32) -> Self {
        PlotSize { width, height }
    }
}

impl Default for PlotSize {
    /// 800 × 360: readable on a laptop screen, two fit a printed page.
    fn default() -> Self {
        PlotSize::new(800, 360)
    }
}

/// Any chart this crate draws.
#[derive(Clone, Debug, PartialEq)]
pub enum Chart {
    TimeSeries(TimeSeriesChart),
    Ecdf(EcdfChart),
    Strip(StripChart),
    MeanCi(MeanCiChart),
}

impl Chart {
    pub fn title(&self) -> &str {
        match self {
            Chart::TimeSeries(c) => &c.title,
            Chart::Ecdf(c) => &c.title,
            Chart::Strip(c) => &c.title,
            Chart::MeanCi(c) => &c.title,
        }
    }

    /// Draws the chart as an SVG document.
    pub fn to_svg(&self, size: PlotSize) -> Result<String, AnalysisError> {
        font::ensure_registered()?;
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (size.width, size.height)).into_drawing_area();
            self.draw(&root).map_err(|m| self.plot_error(m))?;
            root.present().map_err(|e| self.plot_error(e.to_string()))?;
        }
        Ok(buf)
    }

    /// Draws the chart into a PNG file (parent directories are created).
    pub fn write_png(&self, size: PlotSize, path: &Path) -> Result<(), AnalysisError> {
        font::ensure_registered()?;
        // create the directory (and check it is writable) before plotters opens the file
        write_file(path, &[])?;
        let root = BitMapBackend::new(path, (size.width, size.height)).into_drawing_area();
        self.draw(&root).map_err(|m| self.plot_error(m))?;
        root.present().map_err(|e| self.plot_error(format!("{}: {e}", path.display())))
    }

    /// Draws the chart as an SVG ready to inline into HTML (no XML prolog, no namespaces).
    pub fn to_inline_svg(&self, size: PlotSize) -> Result<String, AnalysisError> {
        Ok(crate::fmt::inline_svg(&self.to_svg(size)?))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        match self {
            Chart::TimeSeries(c) => time_series::draw(c, root),
            Chart::Ecdf(c) => ecdf::draw(c, root),
            Chart::Strip(c) => strip::draw(c, root),
            Chart::MeanCi(c) => mean_ci::draw(c, root),
        }
    }

    fn plot_error(&self, message: String) -> AnalysisError {
        AnalysisError::Plot { what: format!("chart \"{}\"", self.title()), message }
    }
}
