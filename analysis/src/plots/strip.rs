//! Strip plot with box: one column per design, one dot per run (jittered by seed, so the same
//! seed sits at the same offset in every column), a box from the first to the third quartile with
//! the median, whiskers to min and max, and faint lines joining the runs of a seed (the pairs the
//! paired comparison uses).

use crate::plots::common::house_style;
use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::common::{color_of, draw_category_labels, draw_empty, text, y_range, Chart2d, Ctx, INK, TITLE_PX};
use crate::fmt::{fnv1a64, tick};
use crate::stats::{quantile_sorted, sorted};

#[derive(Clone, Debug, PartialEq)]
pub struct StripGroup {
    pub label: String,
    /// (seed, value) of every run with a value.
    pub points: Vec<(u64, f64)>,
    /// Runs without a value (null in summary.json).
    pub nulls: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StripChart {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<StripGroup>,
    /// Join points of the same seed in neighbouring columns.
    pub connect_pairs: bool,
    /// What a run without a value means, e.g. "not converged" (shown under the column).
    pub null_word: String,
}

const BOX_HALF_W: f64 = 0.18;
const JITTER: f64 = 0.13;

fn jitter(seed: u64) -> f64 {
    let u = (fnv1a64(&seed.to_string()) % 10_000) as f64 / 10_000.0;
    (u - 0.5) * 2.0 * JITTER
}

pub(crate) fn draw<DB: DrawingBackend>(c: &StripChart, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    if c.groups.is_empty() {
        return draw_empty(root, &c.title, "no runs");
    }
    root.fill(&WHITE).ctx()?;
    let k = c.groups.len() as f64;
    let y = y_range(c.groups.iter().flat_map(|g| g.points.iter().map(|p| p.1)), false);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, text(TITLE_PX))
        .margin(10)
        .x_label_area_size(56)
        .y_label_area_size(74)
        .build_cartesian_2d(0.0..k, y.clone())
        .ctx()?;
    house_style(
        chart.configure_mesh().disable_x_mesh().x_labels(0).y_desc(c.y_label.as_str()).y_label_formatter(&|v| tick(*v)),
    )
    .draw()
    .ctx()?;

    if c.connect_pairs {
        for (i, pair) in c.groups.windows(2).enumerate() {
            let i = i as f64;
            let right: BTreeMap<u64, f64> = pair[1].points.iter().copied().collect();
            for (seed, va) in &pair[0].points {
                if let Some(vb) = right.get(seed) {
                    let xa = i + 0.5 + jitter(*seed);
                    let line = vec![(xa, *va), (xa + 1.0, *vb)];
                    chart.draw_series(std::iter::once(PathElement::new(line, INK.mix(0.12)))).ctx()?;
                }
            }
        }
    }
    let mut labels = Vec::new();
    for (i, g) in c.groups.iter().enumerate() {
        let center = i as f64 + 0.5;
        let color = color_of(i);
        draw_box(&mut chart, g, center, color)?;
        chart
            .draw_series(
                g.points.iter().map(|(seed, v)| Circle::new((center + jitter(*seed), *v), 3, color.mix(0.75).filled())),
            )
            .ctx()?;
        let (px, py) = chart.backend_coord(&(center, y.start));
        let mut sub = format!("n={}", g.points.len());
        if g.nulls > 0 {
            sub.push_str(&format!(", null: {}/{}", g.nulls, g.points.len() as u32 + g.nulls));
        }
        labels.push((px, py, vec![g.label.clone(), sub]));
    }
    draw_category_labels(root, &labels)
}

fn draw_box<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    g: &StripGroup,
    center: f64,
    color: RGBColor,
) -> Result<(), String> {
    let values = sorted(&g.points.iter().map(|p| p.1).collect::<Vec<_>>());
    let (Some(q1), Some(med), Some(q3)) =
        (quantile_sorted(&values, 0.25), quantile_sorted(&values, 0.5), quantile_sorted(&values, 0.75))
    else {
        return Ok(());
    };
    let (lo, hi) = (values[0], values[values.len() - 1]);
    let (l, r) = (center - BOX_HALF_W, center + BOX_HALF_W);
    let stroke = color.stroke_width(2);
    chart.draw_series(std::iter::once(Rectangle::new([(l, q1), (r, q3)], color.mix(0.12).filled()))).ctx()?;
    chart.draw_series(std::iter::once(Rectangle::new([(l, q1), (r, q3)], stroke))).ctx()?;
    let segments = [
        vec![(l, med), (r, med)],
        vec![(center, q3), (center, hi)],
        vec![(center, q1), (center, lo)],
        vec![(center - 0.06, hi), (center + 0.06, hi)],
        vec![(center - 0.06, lo), (center + 0.06, lo)],
    ];
    for seg in segments {
        chart.draw_series(std::iter::once(PathElement::new(seg, stroke))).ctx()?;
    }
    Ok(())
}
