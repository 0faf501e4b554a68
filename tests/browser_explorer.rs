//! The run explorer opened in a real headless Chromium: the page of a small run's room draws
//! every event of the room without a console message or script error, and selecting an event
//! (`#event=<id>`) shows every server's decision on it.
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
        eprintln!("browser_explorer: no Chromium on this machine; the page was not opened");
    }
    found
}

/// Chromium headless with the flags this closed machine needs (no background networking);
/// console messages go to stderr.
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
            "--window-size=1280,900",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("start chromium")
}

/// The value of `name="..."` in the rendered DOM.
fn attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = dom.find(&key)? + key.len();
    Some(&dom[start..start + dom[start..].find('"')?])
}

/// Console messages (script errors included) Chromium logged while loading the page.
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect()
}

#[test]
fn the_explorer_of_a_run_draws_every_event_and_shows_an_events_decisions() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["run", scenario.to_str().unwrap(), "--seed", "1", "--no-progress", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .expect("run roomsim");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = tmp.path().join("out/quickstart/1");
    let page = run.join("explorer/lobby.html");
    assert!(page.is_file(), "explorer written");
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("href=\"explorer/lobby.html\""), "the report links to the explorer");
    let pdus = std::fs::read_to_string(run.join("rooms/lobby.pdus.jsonl")).unwrap();
    let events = pdus.lines().filter(|l| !l.trim().is_empty()).count();
    let profile = tmp.path().join("profile");

    let url = format!("file://{}", page.display());
    let dom = headless(&browser, &profile, &["--dump-dom".into(), url.clone()]);
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    assert_eq!(console_lines(&dom.stderr), Vec::<String>::new(), "no console messages");
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert_eq!(attribute(&html, "data-ready"), Some("1"), "the script ran to its end");
    assert_eq!(attribute(&html, "data-js-errors"), None, "no script error");
    assert_eq!(attribute(&html, "data-events-drawn"), Some(events.to_string().as_str()), "every event drawn");

    // Select the room's last event (line order: a late one, decided by every server).
    let last: serde_json::Value = serde_json::from_str(pdus.lines().last().unwrap()).unwrap();
    let data_start = std::fs::read_to_string(&page).unwrap();
    let id = {
        // The event ID is not in the PDU JSON: take it from the page's data (same line order
        // is not guaranteed, so match on the origin_server_ts and sender).
        let start = data_start.find("<script id=\"data\" type=\"application/json\">").unwrap();
        let rest = &data_start[start..];
        let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
        let data: serde_json::Value = serde_json::from_str(body).unwrap();
        let i = data["pdus"]
            .as_array()
            .unwrap()
            .iter()
            .position(|p| p["origin_server_ts"] == last["origin_server_ts"] && p["sender"] == last["sender"])
            .expect("the last PDU is in the page");
        data["events"][i]["id"].as_str().unwrap().to_owned()
    };
    let hash: String = id
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let dom = headless(&browser, &profile, &["--dump-dom".into(), format!("{url}#event={hash}")]);
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    assert_eq!(console_lines(&dom.stderr), Vec::<String>::new(), "no console messages");
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(html.contains(&id), "the selected event's ID is shown");
    let table = &html[html.find("<table id=\"decisions\"").expect("a decisions table")..];
    let table = &table[..table.find("</table>").unwrap()];
    for server in ["hs1", "hs2", "hs3", "hs4"] {
        assert!(table.contains(&format!("<td>{server}</td>")), "{server}'s decision shown: {table}");
    }
    assert!(table.contains("accepted"), "{table}");
}
