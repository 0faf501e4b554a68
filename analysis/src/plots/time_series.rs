//! A measure over simulated time: one line per server (at most [`MAX_SERVER_LINES`], the rest
//! folded into one "max of N others" line), or one line for a room-wide measure; fault intervals
//! shaded behind the lines.

use crate::plots::common::house_style;
use std::collections::BTreeMap;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::common::{
    color_of, draw_legend, text, y_range, y_tick_label, y_ticks, Chart2d, Ctx, LegendEntry, Mark, AXIS_PX, BAND_ALPHA,
    FAULT_COLORS, LEGEND_W, SMALL_PX, TITLE_PX,
};
use super::measures::describe_measure;
use crate::fmt::{natural_cmp, tick};
use crate::metrics::{MeasureSeries, SeriesKey};
use crate::summary::Fault;

/// Servers drawn as their own line; more are folded into a "max of N others" line.
pub const MAX_SERVER_LINES: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// One server's (or the room's) values.
    Server,
    /// The maximum over the servers not drawn individually.
    MaxOfOthers,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimeSeriesLine {
    pub label: String,
    pub kind: LineKind,
    /// (simulated time in seconds, value), sorted by time.
    pub points: Vec<(f64, f64)>,
}

/// A shaded fault interval, in seconds of simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultBand {
    pub kind: String,
    pub start_s: f64,
    /// None: still active at the end of the run; the band runs to the right edge.
    pub end_s: Option<f64>,
}

impl FaultBand {
    pub fn from_fault(f: &Fault) -> Self {
        FaultBand { kind: f.kind.clone(), start_s: f.start_ms / 1000.0, end_s: f.end_ms.map(|e| e / 1000.0) }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimeSeriesChart {
    pub title: String,
    pub y_label: String,
    /// Right end of the x axis in seconds (the run's simulated end time).
    pub x_end_s: f64,
    /// Fixed y range (shares use 0..1); None fits the data.
    pub y_fixed: Option<(f64, f64)>,
    pub lines: Vec<TimeSeriesLine>,
    pub faults: Vec<FaultBand>,
    /// Divergence episodes, marked as a strip along the x axis (the agreement chart).
    pub episodes: Vec<FaultBand>,
}

impl TimeSeriesChart {
    /// The chart of one (room, measure) of `metrics.csv`. `x_end_ms` is the run's end (the axis
    /// also covers every sample).
    pub fn from_series(key: &SeriesKey, series: &MeasureSeries, faults: &[Fault], x_end_ms: f64) -> Self {
        let info = describe_measure(&key.measure);
        let scope = match &key.room {
            Some(room) => format!("room {room}"),
            None => "all rooms".to_string(),
        };
        let last_sample_ms = series.lines.values().filter_map(|p| p.last().map(|p| p.0)).fold(0.0, f64::max);
        TimeSeriesChart {
            title: format!("{scope}: {}", info.title),
            y_label: info.unit,
            x_end_s: x_end_ms.max(last_sample_ms) / 1000.0,
            y_fixed: info.is_share.then_some((0.0, 1.05)),
            lines: lines_of(series),
            faults: faults.iter().map(FaultBand::from_fault).collect(),
            episodes: Vec::new(),
        }
    }
}

fn lines_of(series: &MeasureSeries) -> Vec<TimeSeriesLine> {
    let seconds = |pts: &[(f64, f64)]| pts.iter().map(|(t, v)| (t / 1000.0, *v)).collect();
    let mut servers: Vec<&String> = series.lines.keys().collect();
    servers.sort_by(|a, b| natural_cmp(a, b));
    let mut lines: Vec<TimeSeriesLine> = servers
        .iter()
        .take(MAX_SERVER_LINES)
        .map(|s| TimeSeriesLine {
            label: if s.is_empty() { "room-wide".into() } else { (*s).clone() },
            kind: LineKind::Server,
            points: seconds(&series.lines[*s]),
        })
        .collect();
    let others = &servers[servers.len().min(MAX_SERVER_LINES)..];
    if !others.is_empty() {
        // the maximum over the other servers at every sample time (times in integer µs)
        let mut max_at: BTreeMap<i64, f64> = BTreeMap::new();
        for s in others {
            for (t, v) in &series.lines[*s] {
                let slot = max_at.entry((t * 1000.0).round() as i64).or_insert(*v);
                *slot = slot.max(*v);
            }
        }
        lines.push(TimeSeriesLine {
            label: format!("max of {} others", others.len()),
            kind: LineKind::MaxOfOthers,
            points: max_at.into_iter().map(|(t, v)| (t as f64 / 1e6, v)).collect(),
        });
    }
    lines
}

/// Lines longer than this are thinned for drawing (min and max per x bucket, so spikes stay).
pub const MAX_DRAWN_POINTS: usize = 1200;

pub(crate) fn draw<DB: DrawingBackend>(c: &TimeSeriesChart, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    root.fill(&WHITE).ctx()?;
    let (w, _) = root.dim_in_pixel();
    let (plot, legend) = root.split_horizontally(w.saturating_sub(LEGEND_W));
    let x_end = if c.x_end_s > 0.0 { c.x_end_s } else { 1.0 };
    let values = || c.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (y, y_count, whole_only) = match c.y_fixed {
        Some((lo, hi)) => (lo..hi, 10, false),
        None => {
            let y = y_range(values(), true);
            let (count, whole) = y_ticks(values(), &y);
            (y, count, whole)
        }
    };
    let y_fmt = move |v: &f64| y_tick_label(*v, whole_only);
    let mut chart = ChartBuilder::on(&plot)
        .caption(&c.title, text(TITLE_PX))
        .margin(10)
        .x_label_area_size(54)
        .y_label_area_size(74)
        .build_cartesian_2d(0.0..x_end, y.clone())
        .ctx()?;
    house_style(
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc(c.y_label.as_str())
            .x_label_formatter(&|v| tick(*v))
            .y_labels(y_count)
            .y_label_formatter(&y_fmt),
    )
    .draw()
    .ctx()?;
    draw_faults(c, root, &mut chart, x_end, &y)?;
    draw_lines(c, &mut chart)?;
    if c.lines.iter().all(|l| l.points.is_empty()) {
        let (px, py) = chart.backend_coord(&(x_end / 2.0, (y.start + y.end) / 2.0));
        let style = text(AXIS_PX).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new("no samples", (px, py), style)).ctx()?;
    }
    draw_legend(&legend, &legend_entries(c), 40)
}

/// Translucent bands under the lines, each labelled with its kind at its top-left.
fn draw_faults<DB: DrawingBackend>(
    c: &TimeSeriesChart,
    root: &DrawingArea<DB, Shift>,
    chart: &mut Chart2d<'_, DB>,
    x_end: f64,
    y: &Range<f64>,
) -> Result<(), String> {
    for (i, f) in c.faults.iter().enumerate() {
        let start = f.start_s.clamp(0.0, x_end);
        let end = f.end_s.unwrap_or(x_end).clamp(start, x_end);
        let color = FAULT_COLORS[i % FAULT_COLORS.len()];
        let band = Rectangle::new([(start, y.start), (end, y.end)], color.mix(BAND_ALPHA).filled());
        chart.draw_series(std::iter::once(band)).ctx()?;
        // staggered so the labels of overlapping bands stay legible
        let (px, py) = chart.backend_coord(&(start, y.end));
        let label_pos = (px + 4, py + 4 + (i % 3) as i32 * 17);
        let style = text(SMALL_PX).color(&color).pos(Pos::new(HPos::Left, VPos::Top));
        root.draw(&Text::new(f.kind.clone(), label_pos, style)).ctx()?;
    }
    // Episodes: a strip along the bottom 6 % of the plot.
    let strip_top = y.start + (y.end - y.start) * 0.06;
    for e in &c.episodes {
        let start = e.start_s.clamp(0.0, x_end);
        let end = e.end_s.unwrap_or(x_end).clamp(start, x_end);
        let band = Rectangle::new([(start, y.start), (end, strip_top)], EPISODE_COLOR.mix(0.75).filled());
        chart.draw_series(std::iter::once(band)).ctx()?;
    }
    Ok(())
}

/// The colour of divergence episodes.
const EPISODE_COLOR: RGBColor = RGBColor(200, 30, 30);

fn draw_lines<DB: DrawingBackend>(c: &TimeSeriesChart, chart: &mut Chart2d<'_, DB>) -> Result<(), String> {
    for (i, line) in c.lines.iter().enumerate() {
        let points = thin(&line.points, MAX_DRAWN_POINTS);
        match line.kind {
            LineKind::Server => {
                let color = color_of(i);
                chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).ctx()?;
                if points.len() == 1 {
                    chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).ctx()?;
                }
            }
            LineKind::MaxOfOthers => {
                let style = BLACK.stroke_width(2);
                chart.draw_series(DashedLineSeries::new(points, 6, 4, style)).ctx()?;
            }
        }
    }
    Ok(())
}

/// At most about `max_points` points with the same look: the points are cut into `max_points / 2`
/// runs of equal count and each run keeps its minimum and maximum, in time order.
pub fn thin(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points || max_points < 4 {
        return points.to_vec();
    }
    let buckets = max_points / 2;
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(buckets * 2 + 1);
    for run in points.chunks(per) {
        let lo = run.iter().min_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let hi = run.iter().max_by(|a, b| a.1.total_cmp(&b.1)).copied();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let (first, second) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
            out.push(first);
            if second != first {
                out.push(second);
            }
        }
    }
    // keep the real end of the line
    if out.last() != points.last() {
        out.extend(points.last().copied());
    }
    out
}

fn legend_entries(c: &TimeSeriesChart) -> Vec<LegendEntry> {
    let mut entries: Vec<LegendEntry> = c
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| LegendEntry {
            label: l.label.clone(),
            color: if l.kind == LineKind::MaxOfOthers { BLACK } else { color_of(i) },
            mark: if l.kind == LineKind::MaxOfOthers { Mark::Dashed } else { Mark::Line },
        })
        .collect();
    for (i, f) in c.faults.iter().enumerate() {
        let label = match f.end_s {
            Some(e) => format!("{} {}–{} s", f.kind, tick(f.start_s), tick(e)),
            None => format!("{} from {} s", f.kind, tick(f.start_s)),
        };
        entries.push(LegendEntry { label, color: FAULT_COLORS[i % FAULT_COLORS.len()], mark: Mark::Band });
    }
    if !c.episodes.is_empty() {
        let label = format!("divergence episodes ({})", c.episodes.len());
        entries.push(LegendEntry { label, color: EPISODE_COLOR, mark: Mark::Band });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(servers: usize) -> MeasureSeries {
        let mut s = MeasureSeries::default();
        for i in 1..=servers {
            let pts = vec![(0.0, i as f64), (1000.0, (i * 2) as f64)];
            s.lines.insert(format!("hs{i}"), pts);
        }
        s
    }

    #[test]
    fn caps_server_lines_and_adds_the_max_of_the_rest() {
        let key = SeriesKey { room: Some("main".into()), measure: "event_lag".into() };
        let c = TimeSeriesChart::from_series(&key, &series(15), &[], 500.0);
        assert_eq!(c.lines.len(), MAX_SERVER_LINES + 1);
        assert_eq!(c.lines[1].label, "hs2", "natural order: hs2 before hs10");
        let max = c.lines.last().unwrap();
        assert_eq!(max.label, "max of 3 others");
        assert_eq!(max.points, [(0.0, 15.0), (1.0, 30.0)]);
        assert_eq!(c.x_end_s, 1.0, "axis covers the last sample");
        assert_eq!(c.title, "room main: event lag");
    }

    #[test]
    fn thinning_keeps_extremes_and_ends() {
        let pts: Vec<(f64, f64)> =
            (0..10_000).map(|i| (i as f64, if i == 4321 { 99.0 } else { (i % 7) as f64 })).collect();
        let t = thin(&pts, 400);
        assert!(t.len() <= 402, "{}", t.len());
        assert!(t.contains(&(4321.0, 99.0)), "the spike survives");
        assert_eq!(t.first(), Some(&(0.0, 0.0)));
        assert_eq!(t.last(), pts.last());
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "time order");
        assert_eq!(thin(&pts[..10], 400), pts[..10]);
    }

    #[test]
    fn room_wide_measures_have_one_line() {
        let key = SeriesKey { room: Some("main".into()), measure: "distinct_states".into() };
        let mut s = MeasureSeries::default();
        s.lines.insert(String::new(), vec![(0.0, 1.0)]);
        let c = TimeSeriesChart::from_series(&key, &s, &[], 60_000.0);
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.lines[0].label, "room-wide");
        assert_eq!(c.x_end_s, 60.0);
    }
}
