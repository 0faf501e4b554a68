//! Pieces every chart shares: colours, text styles, the legend panel, axis ranges.

use std::fmt::Display;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::font::FAMILY;

/// The chart context every chart here draws on: f64 × f64.
pub(crate) type Chart2d<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Twelve distinguishable line colours (Tableau 10 and two darker ones), one per server shown.
pub(crate) const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
    RGBColor(99, 121, 57),
];

/// Fault band colours, drawn translucent ([`BAND_ALPHA`]) under the lines.
pub(crate) const FAULT_COLORS: [RGBColor; 5] = [
    RGBColor(230, 126, 34),
    RGBColor(142, 68, 173),
    RGBColor(192, 57, 43),
    RGBColor(22, 160, 133),
    RGBColor(100, 100, 100),
];
pub(crate) const BAND_ALPHA: f64 = 0.16;

pub(crate) const GRID: RGBColor = RGBColor(225, 225, 225);
pub(crate) const GRID_LIGHT: RGBColor = RGBColor(246, 246, 246);
pub(crate) const INK: RGBColor = RGBColor(40, 40, 40);

/// Width of the legend panel at the right of a chart.
pub(crate) const LEGEND_W: u32 = 190;

/// Text sizes (px). Large for an 800 px chart on purpose: the report shows two charts side by
/// side, scaled to about 70%, and they must stay legible there.
pub(crate) const TITLE_PX: u32 = 19;
pub(crate) const AXIS_PX: u32 = 16;
pub(crate) const TICK_PX: u32 = 15;
pub(crate) const SMALL_PX: u32 = 14;

/// The house style of every chart's mesh: tick and axis-title fonts, light grid lines.
pub(crate) fn house_style<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    DB: DrawingBackend,
{
    mesh.label_style(text(TICK_PX)).axis_desc_style(text(AXIS_PX)).light_line_style(GRID_LIGHT).bold_line_style(GRID)
}

pub(crate) fn text(size: u32) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&INK)
}

pub(crate) fn color_of(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Turns a plotters error into the message our error type carries.
pub(crate) trait Ctx<T> {
    fn ctx(self) -> Result<T, String>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    Line,
    Dashed,
    Band,
    Dot,
}

pub(crate) struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    pub mark: Mark,
}

/// Draws the legend entries top-down in `area`; entries that do not fit are summarised.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    top: i32,
) -> Result<(), String> {
    const ROW_H: i32 = 21;
    let (_, h) = area.dim_in_pixel();
    let rows_fit = ((h as i32 - top - 8) / ROW_H).max(1) as usize;
    let shown = if entries.len() > rows_fit { rows_fit - 1 } else { entries.len() };
    for (i, e) in entries.iter().take(shown).enumerate() {
        let y = top + i as i32 * ROW_H + ROW_H / 2;
        draw_mark(area, e, y)?;
        let label = truncate(&e.label, 20);
        area.draw(&Text::new(label, (30, y), text(SMALL_PX).pos(Pos::new(HPos::Left, VPos::Center)))).ctx()?;
    }
    if shown < entries.len() {
        let y = top + shown as i32 * ROW_H + ROW_H / 2;
        let more = format!("… {} more", entries.len() - shown);
        area.draw(&Text::new(more, (30, y), text(SMALL_PX).pos(Pos::new(HPos::Left, VPos::Center)))).ctx()?;
    }
    Ok(())
}

fn draw_mark<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, e: &LegendEntry, y: i32) -> Result<(), String> {
    let (x0, x1) = (4, 24);
    match e.mark {
        Mark::Line => area.draw(&PathElement::new(vec![(x0, y), (x1, y)], e.color.stroke_width(2))).ctx(),
        Mark::Dashed => {
            for x in [x0, x0 + 8, x0 + 16] {
                area.draw(&PathElement::new(vec![(x, y), (x + 5, y)], e.color.stroke_width(2))).ctx()?;
            }
            Ok(())
        }
        Mark::Band => {
            area.draw(&Rectangle::new([(x0, y - 6), (x1, y + 6)], e.color.mix(BAND_ALPHA * 2.0).filled())).ctx()
        }
        Mark::Dot => area.draw(&Circle::new(((x0 + x1) / 2, y), 4, e.color.filled())).ctx(),
    }
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max_chars - 1).collect();
    t.push('…');
    t
}

/// A y range that shows all `values` with some headroom. With `include_zero`, the range starts at
/// 0 when all values are non-negative (counts over time read wrongly on a truncated axis);
/// comparisons of values far from 0 leave it out.
pub(crate) fn y_range(values: impl Iterator<Item = f64>, include_zero: bool) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return 0.0..1.0;
    }
    if include_zero && lo >= 0.0 {
        lo = 0.0;
    }
    let span = hi - lo;
    if span == 0.0 {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        let below = if lo < 0.0 || !include_zero { pad } else { 0.0 };
        return (lo - below)..(hi + pad);
    }
    let lo = if lo < 0.0 || (!include_zero && lo > 0.0) { lo - span * 0.08 } else { lo };
    lo..(hi + span * 0.08)
}

/// Y tick count and label formatter: when every value is a whole number (counts) and the range is
/// small, ticks fall on whole numbers only (no "2.5 events").
pub(crate) fn y_ticks(values: impl Iterator<Item = f64>, range: &Range<f64>) -> (usize, bool) {
    let integral = values.into_iter().all(|v| v.fract() == 0.0);
    let span = range.end - range.start;
    if integral && span <= 12.0 {
        ((span.ceil() as usize + 1).max(2), true)
    } else {
        (10, false)
    }
}

/// The y tick label; fractional ticks are blank when `whole_only`.
pub(crate) fn y_tick_label(v: f64, whole_only: bool) -> String {
    if whole_only && v.fract().abs() > 1e-9 {
        return String::new();
    }
    crate::fmt::tick(v)
}

/// Draws category labels under the x axis at data positions `xs` (pixel positions come from
/// `to_px`), because plotters' numeric key points cannot be pinned to categories.
pub(crate) fn draw_category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &[(i32, i32, Vec<String>)],
) -> Result<(), String> {
    for (px, py, lines) in labels {
        for (i, line) in lines.iter().enumerate() {
            let style = text(if i == 0 { AXIS_PX } else { SMALL_PX }).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(line.clone(), (*px, py + 6 + i as i32 * 18), style)).ctx()?;
        }
    }
    Ok(())
}

/// A message in the middle of an empty chart.
pub(crate) fn draw_empty<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    message: &str,
) -> Result<(), String> {
    root.fill(&WHITE).ctx()?;
    let (w, h) = root.dim_in_pixel();
    let center = Pos::new(HPos::Center, VPos::Center);
    root.draw(&Text::new(title.to_string(), (w as i32 / 2, 20), text(TITLE_PX).pos(center))).ctx()?;
    root.draw(&Text::new(message.to_string(), (w as i32 / 2, h as i32 / 2), text(AXIS_PX).pos(center))).ctx()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_zero_and_headroom() {
        assert_eq!(y_range([2.0, 4.0].into_iter(), true).start, 0.0);
        assert!(y_range([2.0, 4.0].into_iter(), true).end > 4.0);
        assert_eq!(y_range(std::iter::empty(), true), 0.0..1.0);
        assert_eq!(y_range([0.0, 0.0].into_iter(), true), 0.0..1.0);
        let r = y_range([-2.0, 4.0].into_iter(), true);
        assert!(r.start < -2.0 && r.end > 4.0);
        let r = y_range([2400.0, 2800.0].into_iter(), false);
        assert!(r.start > 2300.0 && r.start < 2400.0 && r.end > 2800.0);
    }
}
