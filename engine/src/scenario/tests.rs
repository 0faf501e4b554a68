//! Whole-file tests: the full example, overrides, sweeps, and random mutations.
//! The catalogue of located mistakes is in `engine/tests/scenario_errors.rs`.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

mod identity;

const FULL: &str = include_str!("testdata/full.toml");

fn parse(text: &str) -> Scenario {
    parse_scenario("full.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn full_example_resolves() {
    let s = parse(FULL);
    assert_eq!(s.name, "full-example");
    assert_eq!(s.seed, 7);
    assert_eq!(s.end, EndCondition::At(600_000_000));
    let names: Vec<&str> = s.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["hs1", "hs2", "hs3", "hs4"]);
    assert_eq!(s.servers[0].users, ["@u0:hs1", "@u1:hs1", "@u2:hs1"]);
    assert_eq!(s.servers[1].clock_skew_us, -5_000_000);
    assert_eq!(s.servers[0].clock_skew_us, 0);
    assert_eq!(s.servers[1].signatures, SignatureMode::Modelled);
    assert_eq!(s.servers[3].signature_cost_us, 40);
    assert_eq!(s.groups["eu"], ["hs1", "hs2"]);

    let main = s.room("main").unwrap();
    assert_eq!(main.members, ["@u0:hs2", "@u1:hs2", "@u0:hs3", "@u1:hs3", "@u0:hs4"]);
    assert_eq!(main.power_levels.users["@u0:hs2"], 50);
    assert_eq!(main.power_levels.state_default, Some(50));
    let side = s.room("side").unwrap();
    assert_eq!(side.version, RoomVersionId::V12);
    assert_eq!(side.additional_creators, ["@u0:hs3"]);

    assert_eq!(s.network.latency, LatencyDist::Lognormal { median_us: 40_000, sigma: 0.5 });
    assert_eq!(s.network.links[0].from, ["hs1", "hs2"]);
    assert_eq!(s.network.links[0].latency, Some(LatencyDist::Fixed { value_us: 120_000 }));
    assert_eq!(s.network.middleboxes[1].kind, MiddleboxKind::Cache { ttl_us: 300_000_000 });
    assert_eq!(
        s.faults[0].kind,
        FaultKind::Partition { sides: vec![vec!["hs1".into(), "hs2".into()], vec!["hs3".into(), "hs4".into()]] }
    );
    assert_eq!(s.faults[3].kind, FaultKind::ClockSkew { server: "hs3".into(), skew_us: -30_000_000 });
    assert_eq!(s.workloads[0].users.len(), 9);
    // `measures` limits the series to those named, in the order named.
    assert_eq!(
        s.metrics.measures,
        [
            Measure::DistinctStates,
            Measure::LargestAgreeingGroup,
            Measure::Agreement,
            Measure::ServersInRoom,
            Measure::EventLag,
            Measure::ForwardExtremities,
            Measure::AuthDisagreements
        ]
    );
    let sweep = s.sweep.as_ref().unwrap();
    assert_eq!(sweep.seeds, [1, 2, 3]);
    assert_eq!(sweep.grid[1].values, ["\"5ms\"", "\"20ms\""]);
}

#[test]
fn timeline_starts_with_room_setup_and_is_sorted() {
    let s = parse(FULL);
    let first: Vec<(u64, ActionKind, &str)> =
        s.timeline.iter().take(3).map(|a| (a.at_us, a.action, a.user.as_str())).collect();
    assert_eq!(
        first,
        [(0, ActionKind::CreateRoom, "@u0:hs1"), (0, ActionKind::Join, "@u0:hs2"), (0, ActionKind::Join, "@u1:hs2")]
    );
    // The invite-only room "side" invites its members before they join.
    let side: Vec<ActionKind> = s.timeline.iter().filter(|a| a.room == "side").map(|a| a.action).collect();
    assert_eq!(side[..2], [ActionKind::CreateRoom, ActionKind::Invite]);
    assert!(s.timeline.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    let messages: Vec<u64> = s.timeline.iter().filter(|a| a.action == ActionKind::Message).map(|a| a.at_us).collect();
    assert_eq!(messages, [5_000_000, 6_000_000, 7_000_000]);
    let power = s.timeline.iter().find(|a| a.action == ActionKind::Power).unwrap();
    assert_eq!((power.target.as_deref(), power.level), (Some("@u0:hs3"), Some(50)));
}

#[test]
fn resolved_scenario_serialises_to_json() {
    let json = serde_json::to_value(parse(FULL)).unwrap();
    assert_eq!(json["end"], serde_json::json!({ "at": 600_000_000u64 }));
    assert_eq!(json["rooms"][0]["version"], "11");
    assert_eq!(json["network"]["latency"]["dist"], "lognormal");
    assert_eq!(json["timeline"][0]["action"], "create_room");
    assert!(json["source"].get("text").is_none());
}

#[test]
fn overrides_change_values() {
    let overrides =
        ["network.loss=0.2", "servers.0.users=4", "scenario.end=30m", "rooms.0.version=\"12\""].map(String::from);
    let s = parse_scenario("full.toml", FULL, &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.network.loss, 0.2);
    assert_eq!(s.servers[0].users.len(), 4);
    assert_eq!(s.end, EndCondition::At(1_800_000_000));
    assert_eq!(s.rooms[0].version, RoomVersionId::V12);
    assert_eq!(s.source.overrides, overrides);
}

#[test]
fn file_errors_keep_their_location_when_overrides_are_given() {
    let text = FULL.replace("duplicate = 0.01", "duplicate = 1.5");
    let error = parse_scenario("full.toml", &text, &["network.loss=0.2".into()]).unwrap_err();
    let line = text.lines().position(|l| l.starts_with("duplicate")).unwrap() + 1;
    assert_eq!(error.line_column(), Some((line, 13)), "{error}");
}

#[test]
fn quiescence_end_has_defaults_and_bounds() {
    let text = FULL.replace("end = \"10m\"", "end = \"quiescence\"\nmax_time = \"2h\"");
    let s = parse(&text);
    assert_eq!(s.end, EndCondition::Quiescence { max_us: 7_200_000_000, quiet_us: 30_000_000 });
}

#[test]
fn minimal_scenario_gets_defaults() {
    let s = parse("[scenario]\nname = \"m\"\nend = \"1m\"\n[[servers]]\nname = \"a\"\n");
    assert_eq!(s.seed, 1);
    assert_eq!(s.servers[0].users, ["@u0:a", "@u1:a"]);
    assert_eq!(s.servers[0].request_timeout_us, 10_000_000);
    assert_eq!(s.network.min_latency_us, 5_000);
    assert_eq!(s.metrics.interval_us, 1_000_000);
    assert!(s.sweep.is_none());
    let cells = sweep_cells(&s);
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].overrides, ["scenario.seed=1"]);
}

#[test]
fn sweep_cells_are_row_major_with_seeds_innermost() {
    let s = parse(FULL);
    let cells = sweep_cells(&s);
    assert_eq!(cells.len(), 3 * 2 * 3);
    assert!(cells.iter().enumerate().all(|(i, c)| c.index == i));
    assert_eq!(cells[0].overrides, ["network.loss=0.0", "network.min_latency=\"5ms\"", "scenario.seed=1"]);
    assert_eq!(cells[1].seed, 2);
    assert_eq!(cells[3].overrides[1], "network.min_latency=\"20ms\"");
    assert_eq!(cells[6].overrides[0], "network.loss=0.05");
    assert_eq!(cells[6].label, "network.loss=0.05,network.min_latency=5ms,seed=1");
    // A cell re-parses into its own scenario.
    let cell = parse_scenario("full.toml", FULL, &cells[7].overrides).unwrap();
    assert_eq!((cell.network.loss, cell.network.min_latency_us, cell.seed), (0.05, 5_000, 2));
}

#[test]
fn overrides_keep_the_grid_in_file_order() {
    // Rendering the overridden document sorts keys, which would put "network.loss" first.
    let loss = "\"network.loss\" = [0.0, 0.05, 0.1]\n";
    let latency = "\"network.min_latency\" = [\"5ms\", \"20ms\"]\n";
    let text = FULL.replace(&format!("{loss}{latency}"), &format!("{latency}{loss}"));
    let s = parse_scenario("full.toml", &text, &["network.duplicate=0.0".into()]).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = s.sweep.as_ref().unwrap().grid.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["network.min_latency", "network.loss"]);
    assert_eq!(sweep_cells(&s), sweep_cells(&parse(&text)));
}

#[test]
fn shards_partition_the_cells() {
    let cells = sweep_cells(&parse(FULL));
    for n in 1..=7 {
        let mut union: Vec<usize> = (1..=n).flat_map(|k| shard(&cells, k, n)).map(|c| c.index).collect();
        let total = union.len();
        union.sort_unstable();
        union.dedup();
        assert_eq!(union.len(), total, "shards of {n} overlap");
        assert_eq!(union, (0..cells.len()).collect::<Vec<_>>());
    }
    assert!(shard(&cells, 0, 3).is_empty());
    assert!(shard(&cells, 4, 3).is_empty());
    assert_eq!(parse_shard("2/5"), Ok((2, 5)));
    assert!(parse_shard("0/5").is_err());
    assert!(parse_shard("6/5").is_err());
}

#[test]
fn invalid_sweep_values_point_at_the_value() {
    let text = FULL.replace("[0.0, 0.05, 0.1]", "[0.0, 1.5]");
    let error = parse_scenario("full.toml", &text, &[]).unwrap_err();
    let line = text.lines().position(|l| l.starts_with("\"network.loss\"")).unwrap() + 1;
    assert_eq!(error.line_column(), Some((line, 24)), "{error}");
    assert!(error.message().contains("loss must be a probability in [0, 1); got 1.5"), "{error}");
}

#[test]
fn load_scenario_reports_missing_files() {
    let error = load_scenario(std::path::Path::new("/nonexistent/x.toml"), &[]).unwrap_err();
    assert_eq!(error.location(), &ErrorLocation::Io);
    assert!(error.to_string().starts_with("/nonexistent/x.toml: cannot read"), "{error}");
}

const DOCS: &str = include_str!("../../../docs/scenarios.md");

#[test]
fn docs_example_is_the_full_example() {
    let after = DOCS.split("## Complete example").nth(1).expect("docs have a complete example");
    let block = after.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
    assert_eq!(block, FULL, "docs/scenarios.md and testdata/full.toml differ");
}

/// Every key the format accepts is documented: serde lists them when it meets an unknown one.
#[test]
fn docs_mention_every_key() {
    let anchors = [
        "[scenario]\n",
        "[defaults]\n",
        "[[servers]]\n",
        "[[rooms]]\n",
        "power_levels = { ",
        "[network]\n",
        "latency = { dist = \"lognormal\", ",
        "[[network.links]]\n",
        "[[network.middleboxes]]\n",
        "[[faults]]\n",
        "[[timeline]]\n",
        "[[workload]]\n",
        "[metrics]\n",
        "[sweep]\n",
    ];
    let unknown = "zzz_unknown = 1";
    let mut texts = vec![format!("{unknown}\n{FULL}")];
    for anchor in anchors {
        let separator = if anchor.ends_with('\n') { "\n" } else { ", " };
        texts.push(FULL.replacen(anchor, &format!("{anchor}{unknown}{separator}"), 1));
    }
    for text in texts {
        let error = parse_scenario("full.toml", &text, &[]).unwrap_err();
        let expected =
            error.message().split_once("expected").map(|(_, list)| list).unwrap_or_else(|| panic!("{error}"));
        for key in expected.split('`').skip(1).step_by(2) {
            // As `key`, or as a table header ending in `key]`.
            let documented = DOCS.contains(&format!("`{key}`")) || DOCS.contains(&format!("{key}]"));
            assert!(documented, "key `{key}` is not in docs/scenarios.md");
        }
    }
}

/// Random edits of the full example must give a scenario or an error, never a panic, and every
/// error must point inside the file.
#[test]
fn random_mutations_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5ce0a410);
    let mut accepted = 0;
    for _ in 0..3_000 {
        let text = mutate(FULL, &mut rng);
        match parse_scenario("mutant.toml", &text, &[]) {
            Ok(_) => accepted += 1,
            Err(e) => {
                if let Some((line, _)) = e.line_column() {
                    assert!(line <= text.lines().count() + 1, "{e}");
                }
            }
        }
    }
    // The mutations must not all be syntax errors, or the later stages go untested.
    assert!(accepted > 50, "only {accepted} mutants parsed");
}

/// The same with `--set` overrides, some of them broken, so the span mapping is exercised.
#[test]
fn random_mutations_with_overrides_never_panic() {
    let arguments = [
        "network.loss=0.1",
        "servers.0.users=1",
        "servers.9.users=1",
        "rooms.0.version=\"12\"",
        "scenario.end=30s",
        "network.latency={ dist = \"fixed\", value = \"9ms\" }",
        "groups.eu=[\"hs1\"]",
        "timeline.0.count=0",
        "faults.0=3",
        "a.b.c",
        "=1",
        "scenario..x=1",
        "network.lose=2",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(0x0e44);
    for _ in 0..1_000 {
        let text = if rng.next_u32() % 2 == 0 { FULL.to_string() } else { mutate(FULL, &mut rng) };
        let chosen: Vec<String> = (0..=rng.next_u32() % 3)
            .map(|_| arguments[rng.next_u32() as usize % arguments.len()].to_string())
            .collect();
        if let Err(e) = parse_scenario("mutant.toml", &text, &chosen) {
            assert!(!e.to_string().is_empty());
        }
    }
}

fn mutate(text: &str, rng: &mut ChaCha8Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..=(rng.next_u32() % 3) {
        let i = rng.next_u32() as usize % lines.len();
        let j = rng.next_u32() as usize % lines.len();
        match rng.next_u32() % 8 {
            0 => drop(lines.remove(i)),
            1 => lines.insert(i, lines[j].clone()),
            2 => lines.swap(i, j),
            3 => lines[i] = replace_digit(&lines[i], rng),
            4 => lines[i] = replace_char(&lines[i], rng),
            5 => lines[i] = lines[i].replace("hs", &format!("hs{}", rng.next_u32() % 10)),
            6 => lines[i] = lines[i].replace('"', ""),
            _ => lines[i] = swap_value(&lines[i], &lines[j]),
        }
        if lines.is_empty() {
            break;
        }
    }
    lines.join("\n")
}

fn replace_digit(line: &str, rng: &mut ChaCha8Rng) -> String {
    let digits = ["0", "1", "9", "-1", "99999999999", "1.5", "0.0"];
    let replacement = digits[rng.next_u32() as usize % digits.len()];
    match line.find(|c: char| c.is_ascii_digit()) {
        Some(at) => format!("{}{replacement}{}", &line[..at], &line[at + 1..]),
        None => line.to_string(),
    }
}

fn replace_char(line: &str, rng: &mut ChaCha8Rng) -> String {
    let chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return line.to_string();
    }
    let at = rng.next_u32() as usize % chars.len();
    let pool = ['[', ']', '{', '}', '=', '"', ',', 'x', '.', 'µ', '\'', '#'];
    let mut out = chars.clone();
    out[at] = pool[rng.next_u32() as usize % pool.len()];
    out.into_iter().collect()
}

/// `key = <value of another line>`: plausible type errors.
fn swap_value(line: &str, other: &str) -> String {
    match (line.split_once('='), other.split_once('=')) {
        (Some((key, _)), Some((_, value))) => format!("{key}={value}"),
        _ => line.to_string(),
    }
}

/// `[join] mode`: `state` by default, `full_history` on request (also by `--set`), anything
/// else refused at the value.
#[test]
fn join_mode_defaults_to_state_and_refuses_unknown_modes() {
    let base = "[scenario]\nname = \"j\"\nend = \"1s\"\n[[servers]]\nname = \"hs1\"\n";
    assert_eq!(parse(base).join_mode, JoinMode::State);
    let full = format!("{base}[join]\nmode = \"full_history\"\n");
    assert_eq!(parse(&full).join_mode, JoinMode::FullHistory);
    let set = parse_scenario("j.toml", base, &["join.mode=full_history".to_owned()]).expect("override");
    assert_eq!(set.join_mode, JoinMode::FullHistory);
    let bad = format!("{base}[join]\nmode = \"partial\"\n");
    let err = parse_scenario("j.toml", &bad, &[]).expect_err("unknown mode").to_string();
    assert!(err.contains("j.toml:7:8") && err.contains("full_history"), "{err}");
}
