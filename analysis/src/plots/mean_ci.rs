//! A metric's mean against the values of one sweep parameter, with 95% CI bars. Parameter values
//! are categories (evenly spaced, in the order given), which also serves string-valued knobs such
//! as `account_query.design = "errcode" | "omit"`. One line per combination of the other
//! parameters.

use crate::plots::common::house_style;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::common::{
    color_of, draw_category_labels, draw_empty, draw_legend, text, truncate, y_range, Chart2d, Ctx, LegendEntry, Mark,
    LEGEND_W, SMALL_PX, TITLE_PX,
};
use crate::fmt::tick;

#[derive(Clone, Debug, PartialEq)]
pub struct MeanCiPoint {
    /// Index into [`MeanCiChart::categories`].
    pub category: usize,
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
    /// Cells with a value behind this point.
    pub n: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MeanCiLine {
    pub label: String,
    pub points: Vec<MeanCiPoint>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MeanCiChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub lines: Vec<MeanCiLine>,
    /// What the lines stand for (the other parameters' names), shown above the legend.
    pub legend_title: Option<String>,
}

pub(crate) fn draw<DB: DrawingBackend>(c: &MeanCiChart, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    if c.categories.is_empty() || c.lines.iter().all(|l| l.points.is_empty()) {
        return draw_empty(root, &c.title, "no values");
    }
    root.fill(&WHITE).ctx()?;
    let (w, _) = root.dim_in_pixel();
    let with_legend = c.lines.len() > 1;
    let (plot, legend) =
        if with_legend { root.split_horizontally(w.saturating_sub(LEGEND_W)) } else { root.split_horizontally(w) };
    let k = c.categories.len() as f64;
    let y = y_range(
        c.lines.iter().flat_map(|l| {
            l.points.iter().flat_map(|p| [p.mean, p.ci.map_or(p.mean, |c| c.0), p.ci.map_or(p.mean, |c| c.1)])
        }),
        false,
    );
    let mut chart = ChartBuilder::on(&plot)
        .caption(&c.title, text(TITLE_PX))
        .margin(10)
        .x_label_area_size(54)
        .y_label_area_size(74)
        .build_cartesian_2d(-0.5..k - 0.5, y.clone())
        .ctx()?;
    house_style(
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(c.x_label.as_str())
            .y_desc(c.y_label.as_str())
            .y_label_formatter(&|v| tick(*v)),
    )
    .draw()
    .ctx()?;
    // lines side by side around each category, so their bars do not hide each other
    let spread = 0.25_f64.min(0.5 / c.lines.len() as f64);
    let mut entries = Vec::new();
    for (i, line) in c.lines.iter().enumerate() {
        let offset = (i as f64 - (c.lines.len() - 1) as f64 / 2.0) * spread / 2.0;
        draw_line(&mut chart, line, color_of(i), offset)?;
        entries.push(LegendEntry { label: line.label.clone(), color: color_of(i), mark: Mark::Line });
    }
    let mut labels = Vec::new();
    for (i, cat) in c.categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y.start));
        labels.push((px, py, vec![cat.clone()]));
    }
    draw_category_labels(root, &labels)?;
    if with_legend {
        let mut top = 40;
        if let Some(title) = &c.legend_title {
            let style = text(SMALL_PX).pos(Pos::new(HPos::Left, VPos::Top));
            legend.draw(&Text::new(truncate(title, 24), (4, 36), style)).ctx()?;
            top = 58;
        }
        draw_legend(&legend, &entries, top)?;
    }
    Ok(())
}

/// One line through the means, a dot per mean and a capped bar per CI, shifted by `offset`.
fn draw_line<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    line: &MeanCiLine,
    color: RGBColor,
    offset: f64,
) -> Result<(), String> {
    let at = |p: &MeanCiPoint| p.category as f64 + offset;
    let path: Vec<(f64, f64)> = line.points.iter().map(|p| (at(p), p.mean)).collect();
    chart.draw_series(LineSeries::new(path, color.stroke_width(2))).ctx()?;
    for p in &line.points {
        let x = at(p);
        if let Some((lo, hi)) = p.ci {
            let bar =
                [vec![(x, lo), (x, hi)], vec![(x - 0.04, lo), (x + 0.04, lo)], vec![(x - 0.04, hi), (x + 0.04, hi)]];
            chart.draw_series(bar.into_iter().map(|seg| PathElement::new(seg, color.stroke_width(1)))).ctx()?;
        }
        chart.draw_series(std::iter::once(Circle::new((x, p.mean), 4, color.filled()))).ctx()?;
    }
    Ok(())
}
