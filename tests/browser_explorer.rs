//! The run explorer opened in a real headless Chromium: the page of a small run's room draws
//! every event of the room without a console message or script error, and selecting an event
//! (`#event=<id>`) shows every server's decision on it and the state before it; on
//! partition-heal, diffing two servers of different sides (`#server=hs1&vs=hs5&t=…`) lists the
//! state entries their current states differ in during the partition and none at the end, and
//! the time axis carries the scenario's timeline actions and the time the servers agreed.
//!
//! Chromium is found as `$ROOMSIM_CHROMIUM`, `chromium` or `chromium-browser`. Without one the
//! test says so on stderr and passes, unless `ROOMSIM_REQUIRE_BROWSER=1` (set by `.ci/run`,
//! which installs Debian's `chromium`), where a missing browser is a failure.

mod explorer_page;

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

    // Select the room's last event in line order (a late one, decided by every server): the
    // page holds the PDU without its event ID, so match it on origin_server_ts and sender.
    let last: serde_json::Value = serde_json::from_str(pdus.lines().last().unwrap()).unwrap();
    let data = explorer_page::embedded(&std::fs::read_to_string(&page).unwrap());
    let id = {
        let i = data["pdus"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .position(|(i, p)| {
                p["origin_server_ts"] == last["origin_server_ts"]
                    && data["senders"][data["snd"][i].as_u64().unwrap() as usize] == last["sender"]
            })
            .expect("the last PDU is in the page");
        data["ids"][i].as_str().unwrap().to_owned()
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
    let before = &html[html.find("<table id=\"state-before\"").expect("a state-before table")..];
    let entries: usize = attribute(before, "data-entries").unwrap().parse().unwrap();
    assert!(entries >= 5, "create, power levels, join rules, members: {entries}");
    assert!(before[..before.find("</table>").unwrap()].contains("m.room.create"), "the create event is in the state");
}

/// The DOM of `page` with `hash`, checked for console messages and script errors.
fn open(browser: &Path, profile: &Path, page: &Path, hash: &str) -> String {
    let url = format!("file://{}{hash}", page.display());
    let dom = headless(browser, profile, &["--dump-dom".into(), url]);
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    assert_eq!(console_lines(&dom.stderr), Vec::<String>::new(), "{hash}: no console messages");
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert_eq!(attribute(&html, "data-ready"), Some("1"), "{hash}: the script ran to its end");
    assert_eq!(attribute(&html, "data-js-errors"), None, "{hash}: no script error");
    html
}

#[test]
fn partition_heal_shows_the_sides_differ_during_the_partition_and_agree_at_the_end() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/partition-heal.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["run", scenario.to_str().unwrap(), "--no-progress", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .expect("run roomsim");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = tmp.path().join("out/partition-heal/11");
    let page = run.join("explorer/main.html");
    let profile = tmp.path().join("profile");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rooms"]["main"]["agreed_at_end"], true, "the scenario heals");

    let html = open(&browser, &profile, &page, "");
    let events = std::fs::read_to_string(run.join("rooms/main.pdus.jsonl")).unwrap().lines().count();
    assert_eq!(attribute(&html, "data-events-drawn"), Some(events.to_string().as_str()), "every event drawn");
    let axis = &html[html.find("id=\"faults\"").unwrap()..];
    assert_eq!(attribute(axis, "data-faults"), Some("3"), "clock skew, partition, degraded link");
    assert_eq!(attribute(axis, "data-scripted"), Some("5"), "the room's creation and the four timeline actions");
    let agreed = attribute(&html[html.find("id=\"agreed\"").expect("an agreement mark")..], "data-t").unwrap();
    let agreed_ms = summary["rooms"]["main"]["agreement_reached_ms"].as_u64().unwrap();
    assert_eq!(agreed.parse::<u64>().unwrap(), agreed_ms * 1000);
    assert!(html.contains("id=\"soft-failed\""), "the soft-failed events are listed");

    // Mid-partition (30–120 s): hs1 and hs5 are on different sides.
    let html = open(&browser, &profile, &page, "#server=hs1&vs=hs5&t=75");
    let diff = &html[html.find("<h2 id=\"diff\"").expect("the diff panel")..];
    let differ: usize = attribute(diff, "data-diff-entries").unwrap().parse().unwrap();
    assert!(differ > 0, "the sides' current states differ mid-partition");
    assert!(attribute(diff, "data-only-a").unwrap() != "0" && attribute(diff, "data-only-b").unwrap() != "0");
    let table = &html[html.find("<table id=\"state-diff\"").expect("a table of differing entries")..];
    let rows = table[..table.find("</table>").unwrap()].matches("<tr>").count() - 1;
    assert_eq!(rows, differ, "one row per differing entry");

    // At the end they agree.
    let end = summary["sim_time_end_ms"].as_f64().unwrap() / 1000.0;
    let html = open(&browser, &profile, &page, &format!("#server=hs1&vs=hs5&t={end}"));
    let diff = &html[html.find("<h2 id=\"diff\"").expect("the diff panel")..];
    assert_eq!(attribute(diff, "data-diff-entries"), Some("0"), "they agree at the end");
    assert_eq!((attribute(diff, "data-only-a"), attribute(diff, "data-only-b")), (Some("0"), Some("0")));
    let panel = &diff[..diff.find("id=\"detail\"").unwrap()];
    assert!(!panel.contains("<table id=\"state-diff\""), "no table of differences");
}
