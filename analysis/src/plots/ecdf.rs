//! Empirical CDF across runs: the share of runs whose value (e.g. convergence time) is at most x.
//! Runs without a value (never converged) count in the denominator only, so each curve levels off
//! at the share of runs that did reach a value — the gap to 1 is visible at a glance.

use crate::plots::common::house_style;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{color_of, draw_empty, draw_legend, text, Ctx, LegendEntry, Mark, LEGEND_W, TITLE_PX};
use crate::fmt::tick;

#[derive(Clone, Debug, PartialEq)]
pub struct EcdfGroup {
    pub label: String,
    pub values: Vec<f64>,
    /// Runs without a value (e.g. never converged).
    pub missing: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EcdfChart {
    pub title: String,
    pub x_label: String,
    pub groups: Vec<EcdfGroup>,
}

impl EcdfGroup {
    /// The step curve as a polyline from x = 0 to `x_end`.
    pub fn steps(&self, x_end: f64) -> Vec<(f64, f64)> {
        let total = self.values.len() as f64 + f64::from(self.missing);
        if total == 0.0 {
            return Vec::new();
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let mut pts = vec![(sorted.first().copied().unwrap_or(0.0).min(0.0), 0.0)];
        for (i, v) in sorted.iter().enumerate() {
            pts.push((*v, i as f64 / total));
            pts.push((*v, (i + 1) as f64 / total));
        }
        pts.push((x_end, sorted.len() as f64 / total));
        pts
    }
}

pub(crate) fn draw<DB: DrawingBackend>(c: &EcdfChart, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    let all = || c.groups.iter().flat_map(|g| g.values.iter().copied());
    if c.groups.iter().all(|g| g.values.is_empty() && g.missing == 0) {
        return draw_empty(root, &c.title, "no runs");
    }
    root.fill(&WHITE).ctx()?;
    let (w, _) = root.dim_in_pixel();
    let (plot, legend) = root.split_horizontally(w.saturating_sub(LEGEND_W));
    let x_min = all().fold(0.0, f64::min);
    let x_max = all().fold(0.0, f64::max);
    let x_end = if x_max > x_min { x_max + (x_max - x_min) * 0.05 } else { x_min + 1.0 };
    let mut chart = ChartBuilder::on(&plot)
        .caption(&c.title, text(TITLE_PX))
        .margin(10)
        .x_label_area_size(54)
        .y_label_area_size(74)
        .build_cartesian_2d(x_min..x_end, 0.0..1.04)
        .ctx()?;
    house_style(
        chart
            .configure_mesh()
            .x_desc(c.x_label.as_str())
            .y_desc("share of runs ≤ x")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v)),
    )
    .draw()
    .ctx()?;
    let mut entries = Vec::new();
    for (i, g) in c.groups.iter().enumerate() {
        let color = color_of(i);
        chart.draw_series(LineSeries::new(g.steps(x_end), color.stroke_width(2))).ctx()?;
        let total = g.values.len() as u32 + g.missing;
        entries.push(LegendEntry { label: g.label.clone(), color, mark: Mark::Line });
        entries.push(LegendEntry {
            label: format!("  {}/{} reached", g.values.len(), total),
            color: WHITE,
            mark: Mark::Dot,
        });
    }
    draw_legend(&legend, &entries, 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_level_off_at_the_share_that_reached_a_value() {
        let g = EcdfGroup { label: "A".into(), values: vec![2.0, 1.0], missing: 2 };
        let s = g.steps(10.0);
        assert_eq!(s.first(), Some(&(0.0, 0.0)));
        assert_eq!(s[1..5], [(1.0, 0.0), (1.0, 0.25), (2.0, 0.25), (2.0, 0.5)]);
        assert_eq!(s.last(), Some(&(10.0, 0.5)));
    }
}
