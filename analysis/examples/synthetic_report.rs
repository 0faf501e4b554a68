//! Writes synthetic run directories (the formats of docs/outputs.md) and the analysis outputs, to
//! look at the pages without running a simulation:
//!
//! ```text
//! cargo run -p roomsim-analysis --example synthetic_report -- run DIR [servers] [png]
//! cargo run -p roomsim-analysis --example synthetic_report -- compare DIR
//! cargo run -p roomsim-analysis --example synthetic_report -- sweep DIR
//! cargo run -p roomsim-analysis --example synthetic_report -- report RUN_DIR
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use roomsim_analysis as analysis;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: synthetic_report run|compare|sweep|report DIR [servers] [png]";
    let (mode, dir) = match args.as_slice() {
        [mode, dir, ..] => (mode.as_str(), PathBuf::from(dir)),
        _ => return Err(usage.into()),
    };
    match mode {
        "run" => run(&dir, args.get(2), args.get(3).map(String::as_str) == Some("png")),
        "compare" => compare(&dir),
        "sweep" => sweep(&dir),
        "report" => {
            // only (re)write the report of an existing run directory
            println!("{}", analysis::write_run_report(&dir)?.display());
            Ok(())
        }
        _ => Err(usage.into()),
    }
}

fn run(dir: &Path, servers: Option<&String>, png: bool) -> Result<()> {
    let servers = servers.map(|s| s.parse()).transpose()?.unwrap_or(4);
    common::write_run(dir, &common::Synthetic { servers, ..Default::default() });
    println!("{}", analysis::write_run_report(dir)?.display());
    if png {
        let size = analysis::PlotSize::default();
        for p in analysis::write_run_plots(dir, analysis::ImageFormat::Png, size)? {
            println!("{}", p.display());
        }
    }
    Ok(())
}

fn design(root: &Path, conv: impl Fn(u64) -> Option<u64>) -> Result<Vec<(u64, analysis::RunSummary)>> {
    let dirs: Vec<PathBuf> = (1..=40)
        .map(|seed| {
            let dir = root.join(seed.to_string());
            let s = common::Synthetic { seed, main_convergence_ms: conv(seed), ..Default::default() };
            common::write_run(&dir, &s);
            dir
        })
        .collect();
    Ok(analysis::read_run_summaries(&dirs)?)
}

fn compare(dir: &Path) -> Result<()> {
    let a = design(&dir.join("errcode"), |s| Some(3000 + (s * 7919 % 23) * 150))?;
    let b = design(&dir.join("omit"), |s| (s % 9 != 0).then_some(2400 + (s * 104_729 % 29) * 140))?;
    let t = analysis::compare(&a, &b, "errcode", "omit");
    print!("{}", t.to_text());
    t.write_csv(&dir.join("compare.csv"))?;
    t.write_html(&dir.join("compare.html"), true)?;
    println!("{}", dir.join("compare.html").display());
    Ok(())
}

fn sweep(dir: &Path) -> Result<()> {
    let mut index = 0;
    for loss in ["0", "0.05", "0.1", "0.25"] {
        for design in ["errcode", "omit"] {
            for seed in 1..=6u64 {
                let label = format!("{index:03}");
                let cell_dir = dir.join(if index % 2 == 0 { "shard1" } else { "shard2" }).join("cells").join(&label);
                std::fs::create_dir_all(&cell_dir)?;
                let loss_f: f64 = loss.parse()?;
                let base = 1500.0 + loss_f * 20_000.0 + if design == "omit" { -400.0 } else { 0.0 };
                let conv = (loss != "0.25" || seed % 3 != 0).then_some((base + (seed * 37 % 11) as f64 * 90.0) as u64);
                let s = common::Synthetic { seed, main_convergence_ms: conv, ..Default::default() };
                std::fs::write(cell_dir.join("summary.json"), common::summary_json(&s))?;
                let cell = format!(
                    r#"{{"index": {index}, "seed": {seed}, "overrides": ["network.loss={loss}", "account_query.design={design}"], "label": "{label}"}}"#
                );
                std::fs::write(cell_dir.join("cell.json"), cell)?;
                index += 1;
            }
        }
    }
    let out = analysis::merge_sweep(&[dir.join("shard1"), dir.join("shard2")], &dir.join("merged"))?;
    println!("{out:?}");
    Ok(())
}
