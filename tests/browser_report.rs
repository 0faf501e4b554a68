//! The run report opened in a real headless Chromium: the page a researcher reads renders
//! (the DOM after layout holds the verdict, the run table, the account-key table and every
//! chart) and a screenshot of it is a real picture.
//!
//! Chromium is found as `$ROOMSIM_CHROMIUM`, `chromium` or `chromium-browser`. Without one the
//! test says so on stderr and passes, unless `ROOMSIM_REQUIRE_BROWSER=1` (set by `.ci/run`,
//! which installs Debian's `chromium`), where a missing browser is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("ROOMSIM_CHROMIUM").map(PathBuf::from);
    let found = named.into_iter().chain(["chromium", "chromium-browser"].into_iter().filter_map(|n| {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths).map(|d| d.join(n)).find(|p| p.is_file())
    }));
    let found = found.into_iter().next();
    if found.is_none() {
        assert!(
            std::env::var("ROOMSIM_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ROOMSIM_REQUIRE_BROWSER=1 but no Chromium (install Debian's chromium, or set ROOMSIM_CHROMIUM)"
        );
        eprintln!("browser_report: no Chromium on this machine; the page was not opened");
    }
    found
}

/// Chromium headless with the flags this closed machine needs (no background networking).
fn headless(browser: &Path, profile: &Path, args: &[String]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("start chromium")
}

#[test]
fn the_report_of_an_account_key_run_renders_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/account-keys-proxy.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["run", scenario.to_str().unwrap(), "--seed", "1", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .expect("run roomsim");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = tmp.path().join("out/account-keys-proxy/1/report.html");
    assert!(report.is_file(), "report written");
    let url = format!("file://{}", report.display());
    let profile = tmp.path().join("profile");

    let dom = headless(&browser, &profile, &["--dump-dom".into(), url.clone()]);
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for expected in [
        "account-keys-proxy — seed 1",
        "The room reached agreement",
        "Account keys (MSC4243)",
        "wrongly_unverified_keys",
        "room version org.matrix.msc4243.12",
    ] {
        assert!(dom.contains(expected), "the rendered page lacks {expected:?}");
    }
    // Every chart the report draws is an inline SVG in the rendered DOM.
    let charts = dom.matches("<svg").count();
    assert!(charts >= 5, "{charts} charts rendered");

    let shot = tmp.path().join("report.png");
    let o = headless(&browser, &profile, &[format!("--screenshot={}", shot.display()), url]);
    assert!(o.status.success(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // A blank page compresses to a few kB; the report's tables and charts do not.
    assert!(png.len() > 50_000, "screenshot of {} bytes looks blank", png.len());
}

#[test]
fn the_report_of_a_portable_account_run_shows_the_participation_and_client_view_tables() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/participation-moves.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["run", scenario.to_str().unwrap(), "--seed", "1", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .expect("run roomsim");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = tmp.path().join("out/participation-moves/1/report.html");
    let url = format!("file://{}", report.display());
    let dom = headless(&browser, &tmp.path().join("profile"), &["--dump-dom".into(), url]);
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for expected in [
        "Participation and moves (MSC4345, MSC4348)",
        "move_completion_ms.p95",
        "outside_requests.by_endpoint.key_v3_query",
        "Client view (MSC4348)",
        "reverified_after_move_ms.p50",
    ] {
        assert!(dom.contains(expected), "the rendered page lacks {expected:?}");
    }
    assert!(!dom.contains("Account keys (MSC4243)"), "no account-key table without account-key rooms");
}
