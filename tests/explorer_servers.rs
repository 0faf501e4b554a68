//! The explorer's per-server data against what the simulated servers themselves reported: for
//! runs of bundled scenarios (a partition, a creator crashing while others join, backfill and
//! gap bridging, churn, a third-party invite, a byzantine fork), every server's forward extremities rebuilt from the log's decisions have the
//! size the server sampled in `metrics.csv` at every sample, and its current state at the end
//! has the digest `summary.json` gives for it.

mod explorer_page;

use std::path::Path;
use std::process::Command;

fn run(scenario: &str, out: &Path) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{scenario}.toml"));
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["run", path.to_str().unwrap(), "--no-progress", "--out"])
        .arg(out)
        .output()
        .expect("run roomsim");
    assert!(o.status.success(), "{scenario}: {}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join(scenario);
    let seed = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().file_name();
    dir.join(seed)
}

fn check_room(run: &Path, room: &str) {
    let data = explorer_page::embedded(&std::fs::read_to_string(run.join(format!("explorer/{room}.html"))).unwrap());
    let decisions = explorer_page::decisions(&data);
    let states = explorer_page::states(&data);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut samples = 0;
    for line in metrics.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[2] != room || f[3] != "forward_extremities" {
            continue;
        }
        let (t_us, server, want) = (f[0].parse::<u64>().unwrap() * 1000, f[1], f[4].parse::<f64>().unwrap() as usize);
        let s = explorer_page::server_index(&data, server);
        // A sample at time t may be taken before or after the decisions made at t.
        let after = explorer_page::extremities(&data, &decisions, s, t_us).len();
        let before = explorer_page::extremities(&data, &decisions, s, t_us.saturating_sub(1)).len();
        assert!(
            after == want || before == want,
            "{}: room {room}, {server} at {t_us} µs: {after} forward extremities rebuilt, the server had {want}",
            run.display()
        );
        samples += 1;
    }
    assert!(samples > 0, "{room}: samples compared");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let digests = summary["rooms"][room]["final_state_digests"].as_object().expect("final state digests");
    let end = u64::MAX;
    for (server, want) in digests {
        let s = explorer_page::server_index(&data, server);
        let got = explorer_page::digest(&explorer_page::current(&data, &states, s, end));
        assert_eq!(Some(got.as_str()), want.as_str(), "{room}: {server}'s current state at the end");
    }
}

#[test]
fn servers_extremities_and_current_states_are_the_servers_own() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 6] = [
        ("partition-heal", &["main"]),
        ("creator-crash", &["main"]),
        ("key-server-outage", &["main"]),
        ("churn", &["main"]),
        ("thirdparty-invite", &["club"]),
        ("equivocation", &["main"]),
    ];
    for (scenario, rooms) in cases {
        let dir = run(scenario, &tmp.path().join("out"));
        for room in rooms {
            check_room(&dir, room);
        }
    }
}
