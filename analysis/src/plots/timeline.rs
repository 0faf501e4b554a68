//! The faults of a run as one lane per fault on a bar of simulated time. Plain SVG written by hand
//! (no plotters): it is a layout, not a chart, and wants text placed beside bars.

use std::fmt::Write;

use super::common::FAULT_COLORS;
use crate::fmt::{esc, tick};
use crate::summary::Fault;

const LANE_H: u32 = 26;
const PAD_X: f64 = 16.0;
const AXIS_H: u32 = 40;
/// Rough width of a 12 px sans-serif character, to decide where a label fits.
const CHAR_W: f64 = 6.8;

/// An SVG (for inlining: no namespace) showing each fault as a bar from its start to its end on
/// an axis from 0 to `end_ms`; faults still active at the end fade out at the right edge.
pub fn faults_timeline_svg(faults: &[Fault], end_ms: f64, width: u32) -> String {
    let last_ms = faults.iter().map(|f| f.end_ms.unwrap_or(f.start_ms)).fold(end_ms, f64::max);
    let end_s = if last_ms > 0.0 { last_ms / 1000.0 } else { 1.0 };
    let lanes = faults.len().max(1) as u32;
    let height = 8 + lanes * LANE_H + AXIS_H;
    let plot_w = f64::from(width) - 2.0 * PAD_X;
    let x = |s: f64| PAD_X + (s / end_s).clamp(0.0, 1.0) * plot_w;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img" aria-label="fault timeline">"#
    );
    out.push_str(r##"<defs><linearGradient id="fade-right"><stop offset="0" stop-color="#fff" stop-opacity="0"/><stop offset="1" stop-color="#fff" stop-opacity="0.9"/></linearGradient></defs>"##);
    for lane in 0..lanes {
        let y = 8 + lane * LANE_H;
        let _ =
            write!(out, r##"<rect x="{PAD_X}" y="{y}" width="{plot_w:.1}" height="{}" fill="#f2f2f2"/>"##, LANE_H - 6);
    }
    if faults.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">no faults injected</text>"##,
            PAD_X + plot_w / 2.0,
            8 + LANE_H / 2 + 1
        );
    }
    for (i, f) in faults.iter().enumerate() {
        lane_bar(&mut out, f, i, &x, end_s, plot_w);
    }
    axis(&mut out, end_s, height - AXIS_H + 4, &x);
    out.push_str("</svg>");
    out
}

fn lane_bar(out: &mut String, f: &Fault, i: usize, x: &impl Fn(f64) -> f64, end_s: f64, plot_w: f64) {
    let RgbHex(color) = RgbHex::of(FAULT_COLORS[i % FAULT_COLORS.len()]);
    let y = 8 + i as u32 * LANE_H;
    let bar_h = LANE_H - 6;
    let (start_s, stop_s) = (f.start_ms / 1000.0, f.end_ms.map_or(end_s, |e| e / 1000.0));
    let (x0, x1) = (x(start_s), x(stop_s).max(x(start_s) + 2.0));
    let _ = write!(
        out,
        r#"<rect x="{x0:.1}" y="{y}" width="{:.1}" height="{bar_h}" fill="{color}" fill-opacity="0.45"/>"#,
        x1 - x0
    );
    if f.end_ms.is_none() {
        let fade_w = (x1 - x0).min(40.0);
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{y}" width="{fade_w:.1}" height="{bar_h}" fill="url(#fade-right)"/>"#,
            x1 - fade_w
        );
    }
    let when = match f.end_ms {
        Some(e) => format!("{}–{} s", tick(start_s), tick(e / 1000.0)),
        None => format!("from {} s, not ended", tick(start_s)),
    };
    let mut label = format!("{} · {when}", f.kind);
    if !f.description.is_empty() {
        label = format!("{} · {} · {when}", f.kind, f.description);
    }
    let text_w = label.chars().count() as f64 * CHAR_W;
    let ty = y + bar_h / 2 + 4;
    // inside the bar if it fits, else right of it, else left of it
    let (tx, anchor) = if x1 - x0 >= text_w + 8.0 {
        (x0 + 4.0, "start")
    } else if PAD_X + plot_w - x1 >= text_w + 6.0 {
        (x1 + 4.0, "start")
    } else {
        (x0 - 4.0, "end")
    };
    let _ = write!(
        out,
        r##"<text x="{tx:.1}" y="{ty}" text-anchor="{anchor}" fill="#222"><title>{}</title>{}</text>"##,
        esc(&label),
        esc(&label)
    );
}

fn axis(out: &mut String, end_s: f64, y: u32, x: &impl Fn(f64) -> f64) {
    let _ = write!(out, r##"<line x1="{PAD_X}" y1="{y}" x2="{:.1}" y2="{y}" stroke="#444"/>"##, x(end_s));
    let step = nice_step(end_s, 10);
    let mut t = 0.0;
    while t <= end_s + step * 1e-9 {
        let px = x(t);
        let _ = write!(out, r##"<line x1="{px:.1}" y1="{y}" x2="{px:.1}" y2="{}" stroke="#444"/>"##, y + 5);
        let _ =
            write!(out, r##"<text x="{px:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##, y + 18, tick(t));
        t += step;
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">simulated time (s)</text>"##,
        x(end_s / 2.0),
        y + 33
    );
}

/// 1, 2 or 5 × 10^k, so that `span / step` is at most `max_ticks`.
pub(crate) fn nice_step(span: f64, max_ticks: u32) -> f64 {
    let raw = span / f64::from(max_ticks.max(1));
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

struct RgbHex(String);

impl RgbHex {
    fn of(c: plotters::style::RGBColor) -> Self {
        RgbHex(format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(60.0, 10), 10.0);
        assert_eq!(nice_step(120.0, 10), 20.0);
        assert_eq!(nice_step(7.0, 10), 1.0);
    }

    #[test]
    fn one_lane_per_fault_and_escaped_labels() {
        let faults = vec![
            Fault {
                kind: "partition".into(),
                start_ms: 30_000.0,
                end_ms: Some(45_000.0),
                description: "hs1 | <hs2>".into(),
            },
            Fault { kind: "crash".into(), start_ms: 50_000.0, end_ms: None, description: String::new() },
        ];
        let svg = faults_timeline_svg(&faults, 60_000.0, 800);
        assert!(svg.contains("partition · hs1 | &lt;hs2&gt; · 30–45 s"));
        assert!(svg.contains("crash · from 50 s, not ended"));
        assert!(!svg.contains("http"));
        assert!(faults_timeline_svg(&[], 60_000.0, 800).contains("no faults injected"));
    }
}
