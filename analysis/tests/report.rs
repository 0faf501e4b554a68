//! `report.html` of a synthetic run: content, self-containment, escaping, determinism.

mod common;

use common::{write_run, Synthetic};
use roomsim_analysis::{write_run_plots, write_run_report, ImageFormat, PlotSize};

fn report_of(s: &Synthetic) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), s);
    let path = write_run_report(dir.path()).unwrap();
    assert_eq!(path, dir.path().join("report.html"));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn report_shows_verdict_tables_plots_dag_pointer_and_scenario() {
    let html = report_of(&Synthetic::default());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>roomsim report: quickstart — seed 1</title>"));
    assert!(html.contains("How to read this"));
    assert!(html.contains("class=\"verdict ok\""), "green verdict");
    assert!(html.contains("All 2 rooms reached agreement, 0 auth disagreements, no member missing"));
    // summary table values: run level and per room, including a field only one room has
    for v in [">803<", ">2410<", ">4000<", ">250<", ">7.5<", "proposal_<wbr>extra_<wbr>metric"] {
        assert!(html.contains(v), "missing {v}");
    }
    // one inline SVG chart per (room, measure), driven by the CSV: 6 measures × 2 rooms + 1
    let charts = html.matches("<svg width=\"800\" height=\"360\"").count();
    assert_eq!(charts, 13);
    assert!(html.contains("room main: distinct current states"));
    assert!(html.contains("room side: account-key mappings pending"), "unknown-to-engine measure plotted");
    assert!(html.contains("all rooms: federation deliveries (cumulative)"));
    // metrics.csv names room `main` by its ID; the report maps it back to the name
    assert!(!html.contains("room !main:hs1:"));
    // fault band label and timeline
    assert!(html.contains("partition · hs1,hs2 | hs3,hs4 · 20–35 s"));
    // DAG: no picture (no Graphviz); main's PDUs are linked, side has none in the directory
    assert!(html.contains("<a href=\"rooms/main.pdus.jsonl\">"));
    assert!(!html.contains("<a href=\"rooms/side.pdus.jsonl\">"));
    assert!(html.contains("roomsim dag dot rooms/main.pdus.jsonl --out rooms/main.dot"));
    assert!(html.contains("run explorer"));
    assert!(!html.contains("class=\"dag\""));
    // scenario text, escaped
    assert!(html.contains("<details><summary>scenario.toml"));
    assert!(html.contains("# a &lt; b &amp;&amp; c &gt; d, &quot;quoted&quot; &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script"), "no scripts, and scenario text cannot inject one");
}

#[test]
fn report_is_self_contained() {
    let html = report_of(&Synthetic::default());
    for needle in ["http://", "https://", "src=", "@import", "url(http", "<link"] {
        assert!(!html.contains(needle), "report references something outside itself: {needle}");
    }
}

#[test]
fn red_verdict_names_what_went_wrong() {
    let html = report_of(&Synthetic { main_convergence_ms: None, auth_disagreements: 3, ..Default::default() });
    assert!(html.contains("class=\"verdict bad\""));
    assert!(html.contains("Room main did not agree by the end (2 distinct final states)"));
    assert!(html.contains("room main: 3 auth disagreements"));
    assert!(html.contains(">did not agree by the end<"), "a null time to agreement said in words");
}

/// Invariant violations alone make the banner red, whatever the rooms did.
#[test]
fn invariant_violations_turn_the_banner_red() {
    let html = report_of(&Synthetic { invariant_violations: 5, ..Default::default() });
    assert!(html.contains("class=\"verdict bad\""));
    assert!(html.contains("5 invariant violations"));
}

/// A member the scenario meant to join who is not in the room: amber, named with the reason,
/// and listed in the members-missing table.
#[test]
fn missing_members_make_the_banner_amber_and_are_listed() {
    let html = report_of(&Synthetic { missing_member: true, ..Default::default() });
    assert!(html.contains("class=\"verdict warn\""));
    assert!(html.contains("Room main: 1 member missing: @u0:hs4 (join refused: not invited)"));
    assert!(html.contains("<h3>Members missing</h3>"));
}

#[test]
fn report_is_deterministic_and_independent_of_the_directory() {
    let a = report_of(&Synthetic::default());
    let b = report_of(&Synthetic::default());
    assert_eq!(a, b);
}

#[test]
fn many_servers_are_capped_with_a_max_line() {
    let html = report_of(&Synthetic { servers: 15, ..Default::default() });
    assert!(html.contains("max of 3 others"));
    assert!(html.contains("\nhs12\n</text>"), "legend lists the first 12 servers");
    assert!(!html.contains("\nhs13\n</text>"));
}

#[test]
fn png_plots_render() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &Synthetic::default());
    let size = PlotSize::default();
    let paths = write_run_plots(dir.path(), ImageFormat::Png, size).unwrap();
    assert_eq!(paths.len(), 13);
    assert!(paths.contains(&dir.path().join("plots/main/event_lag.png")));
    assert!(paths.contains(&dir.path().join("plots/server-wide/deliveries.png")));
    for p in &paths {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
        // IHDR: width and height
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), size.width);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), size.height);
        assert!(bytes.len() > 5_000, "a chart with text, not a blank image");
    }
    let svgs = write_run_plots(dir.path(), ImageFormat::Svg, size).unwrap();
    assert!(std::fs::read_to_string(&svgs[0]).unwrap().starts_with("<svg"));
}

#[test]
fn a_bare_summary_still_makes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summary.json"), r#"{"seed": 3, "servers": 2}"#).unwrap();
    let html = std::fs::read_to_string(write_run_report(dir.path()).unwrap()).unwrap();
    assert!(html.contains("class=\"verdict warn\""));
    assert!(html.contains("no <code>metrics.csv</code>"));
    assert!(html.contains("No <code>scenario.toml</code>"));
    assert!(html.contains("no faults injected"));
}

#[test]
fn missing_or_broken_summary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_run_report(dir.path()).unwrap_err().to_string();
    assert!(err.contains("summary.json"), "{err}");
    std::fs::write(dir.path().join("summary.json"), "{\"seed\": ").unwrap();
    let err = write_run_report(dir.path()).unwrap_err().to_string();
    assert!(err.contains("summary.json: invalid JSON"), "{err}");
}

#[test]
fn every_chart_kind_renders_to_png() {
    use roomsim_analysis::plots::*;
    let dir = tempfile::tempdir().unwrap();
    let charts = [
        Chart::Ecdf(EcdfChart {
            title: "ecdf".into(),
            x_label: "convergence time (s)".into(),
            groups: vec![EcdfGroup { label: "A".into(), values: vec![1.0, 2.0, 2.5], missing: 1 }],
        }),
        Chart::Strip(StripChart {
            title: "strip".into(),
            y_label: "ms".into(),
            groups: vec![
                StripGroup { label: "A".into(), points: vec![(1, 3.0), (2, 4.0)], nulls: 0 },
                StripGroup { label: "B".into(), points: vec![(1, 2.0), (2, 3.5)], nulls: 1 },
            ],
            connect_pairs: true,
            null_word: "not converged".into(),
        }),
        Chart::MeanCi(MeanCiChart {
            title: "mean".into(),
            x_label: "network.loss".into(),
            y_label: "ms".into(),
            categories: vec!["0".into(), "0.1".into()],
            lines: vec![MeanCiLine {
                label: "all cells".into(),
                points: vec![
                    MeanCiPoint { category: 0, mean: 1.0, ci: Some((0.5, 1.5)), n: 3 },
                    MeanCiPoint { category: 1, mean: 2.0, ci: None, n: 1 },
                ],
            }],
            legend_title: None,
        }),
    ];
    for (i, chart) in charts.iter().enumerate() {
        let path = dir.path().join(format!("{i}.png"));
        chart.write_png(PlotSize::new(560, 340), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG");
        assert!(chart.to_svg(PlotSize::default()).unwrap().contains(chart.title()));
    }
}
