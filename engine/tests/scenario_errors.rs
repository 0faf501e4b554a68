//! A catalogue of scenario mistakes, each with the place and message the user should see.

use roomsim_engine::scenario::{parse_scenario, ErrorLocation, ScenarioError};

/// A small valid scenario; each case edits one part of it.
const BASE: &str = r#"[scenario]
name = "quickstart"
end = "10m"

[[servers]]
prefix = "hs"
count = 4

[groups]
eu = ["hs1", "hs2"]
us = ["hs3", "hs4"]

[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
members = "*"

[network]
loss = 0.0
min_latency = "5ms"

[[faults]]
at = "30s"
kind = "partition"
groups = [["eu"], ["us"]]

[[timeline]]
at = "5s"
action = "message"
room = "main"
user = "@u1:hs2"
"#;

/// `BASE` with `from` replaced (exactly once) by `to`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?} must occur once in BASE");
    BASE.replace(from, to)
}

fn error_of(text: &str, overrides: &[&str]) -> ScenarioError {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    match parse_scenario("quickstart.toml", text, &overrides) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// The error is at `line:column` and its message contains `message`.
fn assert_at(error: &ScenarioError, line: usize, column: usize, message: &str) {
    let shown = error.to_string();
    assert!(shown.starts_with(&format!("quickstart.toml:{line}:{column}: ")), "wrong place: {shown}");
    assert!(error.message().contains(message), "{shown}\n  does not contain: {message}");
}

// Inside `mod scenario` so that `cargo test -p roomsim-engine scenario` runs these too.
mod scenario {
    use super::*;

    #[test]
    fn base_is_valid() {
        let s = parse_scenario("quickstart.toml", BASE, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.servers.len(), 4);
    }

    #[test]
    fn unknown_key() {
        let e = error_of(&edit("loss = 0.0", "los = 0.0"), &[]);
        assert_at(&e, 20, 1, "unknown field `los`");
        assert_eq!(e.help_text(), Some("did you mean `loss`?"));
    }

    #[test]
    fn wrong_type() {
        let e = error_of(&edit("count = 4", "count = \"4\""), &[]);
        assert_at(&e, 7, 9, "invalid type: string \"4\"");
    }

    #[test]
    fn bad_duration() {
        let e = error_of(&edit("at = \"30s\"", "at = \"30 seconds\""), &[]);
        assert_at(&e, 24, 6, "unknown unit \" seconds\"");
        let e = error_of(&edit("end = \"10m\"", "end = 600"), &[]);
        assert_at(&e, 3, 7, "durations need a unit");
        let e = error_of(&edit("at = \"5s\"", "at = \"-5s\""), &[]);
        assert_at(&e, 29, 6, "negative");
    }

    #[test]
    fn unknown_server_in_partition() {
        let e = error_of(&edit("[[\"eu\"], [\"us\"]]", "[[\"eu\"], [\"hs9\"]]"), &[]);
        assert_at(
            &e,
            26,
            20,
            "unknown server or group \"hs9\" in partition group; servers are hs1..hs4; groups are eu, us",
        );
    }

    #[test]
    fn unknown_server_without_groups_matches_the_style_guide() {
        let text = edit("[groups]\neu = [\"hs1\", \"hs2\"]\nus = [\"hs3\", \"hs4\"]\n", "")
            .replace("[[\"eu\"], [\"us\"]]", "[[\"hs1\"], [\"hs9\"]]");
        let e = error_of(&text, &[]);
        assert_eq!(
            e.to_string(),
            "quickstart.toml:23:21: unknown server \"hs9\" in partition group; servers are hs1..hs4"
        );
    }

    #[test]
    fn unknown_group_in_group_definition() {
        let e = error_of(&edit("us = [\"hs3\", \"hs4\"]", "us = [\"hs3\", \"asia\"]"), &[]);
        assert_at(&e, 11, 14, "unknown server \"asia\" in group \"us\"; servers are hs1..hs4");
    }

    #[test]
    fn unknown_group_in_link() {
        let e = error_of(
            &edit(
                "min_latency = \"5ms\"\n",
                "min_latency = \"5ms\"\n[[network.links]]\nfrom = \"eu\"\nto = \"asia\"\nloss = 0.1\n",
            ),
            &[],
        );
        assert_at(&e, 24, 6, "unknown server or group \"asia\" in network link `to`");
    }

    #[test]
    fn duplicate_room() {
        let room = "[[rooms]]\nname = \"main\"\nversion = \"11\"\ncreator = \"@u0:hs1\"\n";
        let e = error_of(&edit("[network]\n", &format!("{room}\n[network]\n")), &[]);
        assert_at(&e, 20, 8, "duplicate room name \"main\"");
    }

    #[test]
    fn duplicate_server() {
        let e = error_of(&edit("count = 4\n", "count = 4\n\n[[servers]]\nname = \"hs2\"\n"), &[]);
        assert_at(&e, 10, 8, "duplicate server name \"hs2\"");
    }

    #[test]
    fn probability_above_one() {
        let e = error_of(&edit("loss = 0.0", "loss = 1.5"), &[]);
        assert_at(&e, 20, 8, "loss must be a probability in [0, 1); got 1.5");
    }

    #[test]
    fn zero_min_latency() {
        let e = error_of(&edit("min_latency = \"5ms\"", "min_latency = \"0ms\""), &[]);
        assert_at(&e, 21, 15, "min_latency must be greater than 0");
    }

    #[test]
    fn destination_backoff_out_of_range() {
        let e = error_of(&edit("count = 4\n", "count = 4\ndestination_retry_multiplier = 0.5\n"), &[]);
        assert_at(&e, 8, 32, "destination_retry_multiplier must be between 1 and 100; got 0.5");
        let below = "count = 4\ndestination_min_retry_interval = \"2h\"\ndestination_max_retry_interval = \"1h\"\n";
        let e = error_of(&edit("count = 4\n", below), &[]);
        assert_at(&e, 9, 34, "destination_max_retry_interval must not be below destination_min_retry_interval");
    }

    #[test]
    fn invite_without_target() {
        let e = error_of(&edit("action = \"message\"", "action = \"invite\""), &[]);
        assert_at(&e, 30, 10, "`target` is required for action \"invite\"");
    }

    #[test]
    fn power_without_level() {
        let e = error_of(&edit("action = \"message\"", "action = \"power\"\ntarget = \"@u0:hs3\""), &[]);
        assert_at(&e, 30, 10, "`level` is required for action \"power\"");
    }

    #[test]
    fn field_that_does_not_apply() {
        let e = error_of(&edit("user = \"@u1:hs2\"", "user = \"@u1:hs2\"\nlevel = 50"), &[]);
        assert_at(&e, 33, 9, "`level` does not apply to action \"message\"");
    }

    #[test]
    fn bad_room_version() {
        let e = error_of(&edit("version = \"11\"", "version = \"13\""), &[]);
        assert_at(&e, 15, 11, "unsupported room version \"13\"; supported versions are \"11\", \"12\"");
        // The known IDs come from the room-version table, experimental entries listed apart.
        assert!(e.message().contains("not simulated yet, `dag verify` only: \"org.matrix.msc4345.12\""), "{e}");
        let e = error_of(&edit("version = \"11\"", "version = 11"), &[]);
        assert_at(&e, 15, 11, "room versions are strings");
    }

    #[test]
    fn experimental_room_version_not_simulated_is_refused() {
        let e = error_of(&edit("version = \"11\"", "version = \"org.matrix.msc4345.12\""), &[]);
        // MSC4345 is judged by `dag verify` but not simulated yet: a located refusal naming
        // the missing flag.
        assert_at(
            &e,
            15,
            11,
            "room version \"org.matrix.msc4345.12\" is experimental and the simulator does not run it yet",
        );
        assert!(e.message().contains("participation (MSC4345)"), "{e}");
        // MSC4243 (account keys) is simulated.
        assert!(parse_scenario(
            "quickstart.toml",
            &edit("version = \"11\"", "version = \"org.matrix.msc4243.12\""),
            &[]
        )
        .is_ok());
        let e = error_of(BASE, &["rooms.0.version=\"org.matrix.msc4345.12-multi-server\""]);
        assert!(e.to_string().contains("the simulator does not run it yet"), "{e}");
        assert!(matches!(e.location(), ErrorLocation::Override { .. }), "{e}");
    }

    #[test]
    fn additional_creators_on_v11() {
        let e = error_of(&edit("members = \"*\"", "members = \"*\"\nadditional_creators = [\"@u0:hs2\"]"), &[]);
        assert_at(&e, 18, 23, "additional_creators needs room version 12");
    }

    #[test]
    fn unknown_user() {
        let e = error_of(&edit("user = \"@u1:hs2\"", "user = \"@u7:hs2\""), &[]);
        assert_at(&e, 32, 8, "unknown user \"@u7:hs2\" in action \"message\"; hs2 has users @u0:hs2, @u1:hs2");
        let e = error_of(&edit("creator = \"@u0:hs1\"", "creator = \"@u0:hs8\""), &[]);
        assert_at(&e, 16, 11, "there is no server \"hs8\"");
    }

    #[test]
    fn action_before_room_start() {
        let e = error_of(&edit("members = \"*\"", "members = \"*\"\nstart = \"1m\""), &[]);
        assert_at(&e, 30, 6, "before the room is created (1m)");
    }

    #[test]
    fn fault_after_the_end() {
        let e = error_of(&edit("at = \"30s\"", "at = \"11m\""), &[]);
        assert_at(&e, 24, 6, "fault \"partition\" at 11m is after the end of the scenario (10m)");
    }

    #[test]
    fn unknown_measure_lists_valid_names() {
        let e = error_of(&format!("{BASE}\n[metrics]\nmeasures = [\"event_lag\", \"lag\"]\n"), &[]);
        assert_at(&e, 35, 26, "unknown variant `lag`, expected one of `distinct_states`");
    }

    #[test]
    fn count_zero_and_users_too_many() {
        let e = error_of(&edit("count = 4", "count = 0"), &[]);
        assert_at(&e, 7, 9, "count must be at least 1");
        let e = error_of(&edit("count = 4", "count = 4\nusers = 20000"), &[]);
        assert_at(&e, 8, 9, "users must be between 1 and 10000");
    }

    #[test]
    fn missing_end_and_empty_servers() {
        let e = error_of(&edit("end = \"10m\"\n", ""), &[]);
        assert_at(&e, 1, 1, "missing field `end`");
        let e = error_of("[scenario]\nname = \"x\"\nend = \"1m\"\n", &[]);
        assert_eq!(e.location(), &ErrorLocation::WholeFile);
        assert!(e.message().contains("no [[servers]]"), "{e}");
    }

    #[test]
    fn names_texts_and_durations_over_their_limits() {
        // 201 bytes: scenario names become directory names (at most 200).
        let long = "q".repeat(201);
        let e = error_of(&edit("name = \"quickstart\"", &format!("name = \"{long}\"")), &[]);
        assert_at(&e, 2, 8, "scenario name \"qqqqqqqqqqqqqqqqqqqqqqqq…\" is 201 bytes long: at most 200");
        let e = error_of(&edit("name = \"main\"", &format!("name = \"{}\"", "m".repeat(201))), &[]);
        assert_at(&e, 14, 8, "room name");
        // durations: at most 1 000 000 h, so no sum of times overflows the µs clock
        let e = error_of(&edit("end = \"10m\"", "end = \"1000001h\""), &[]);
        assert_at(&e, 3, 7, "duration \"1000001h\" is too large: at most 1000000h");
        // a message body over 16 384 bytes: the PDU must stay under the spec's 65 536 bytes
        let text = format!("user = \"@u1:hs2\"\ntext = \"{}\"", "x".repeat(16_385));
        let e = error_of(&edit("user = \"@u1:hs2\"", &text), &[]);
        assert_at(&e, 33, 8, "`text` of action \"message\" is 16385 bytes long: at most 16384");
        // event types: at most 255 bytes
        let pl = format!("members = \"*\"\npower_levels = {{ events = {{ \"{}\" = 0 }} }}", "t".repeat(256));
        let e = error_of(&edit("members = \"*\"", &pl), &[]);
        assert_at(&e, 18, 29, "event type in power_levels.events is 256 bytes long: at most 255");
    }

    #[test]
    fn syntax_error() {
        let e = error_of(&edit("[network]", "[network"), &[]);
        assert_at(&e, 19, 9, "invalid table header");
    }

    #[test]
    fn override_to_unknown_path() {
        let e = error_of(BASE, &["network.lose=0.2"]);
        assert_eq!(e.location(), &ErrorLocation::Override { argument: "network.lose=0.2".into() });
        assert!(e.to_string().starts_with("--set network.lose=0.2: unknown field `lose`"), "{e}");
        let e = error_of(BASE, &["servers.3.count=2"]);
        assert_eq!(
            e.to_string(),
            "--set servers.3.count=2: `servers` has no entry 3; indices start at 0 and the list has 1"
        );
    }

    #[test]
    fn override_with_wrong_type() {
        let e = error_of(BASE, &["servers.0.count=many"]);
        assert!(e.to_string().starts_with("--set servers.0.count=many: invalid type: string \"many\""), "{e}");
        let e = error_of(BASE, &["network.loss=1.5"]);
        assert_eq!(e.to_string(), "--set network.loss=1.5: loss must be a probability in [0, 1); got 1.5");
    }

    #[test]
    fn errors_render_as_miette_reports() {
        let e = error_of(&edit("loss = 0.0", "loss = 1.5"), &[]);
        let report = format!("{:?}", miette::Report::new(e));
        assert!(report.contains("quickstart.toml:20:8"), "{report}");
    }
}

#[test]
fn a_server_name_too_long_for_its_ids_is_refused_where_it_is_written() {
    let long = "a".repeat(254);
    let text =
        edit("prefix = \"hs\"\ncount = 4", &format!("prefix = \"hs\"\ncount = 4\n\n[[servers]]\nname = \"{long}\""));
    let e = error_of(&text, &[]);
    assert_at(&e, 10, 8, "is too long");
    assert!(e.message().contains("at most 255 bytes"), "{e}");
    // 235 bytes is the longest name whose v11 room IDs fit.
    let ok = edit(
        "prefix = \"hs\"\ncount = 4",
        &format!("prefix = \"hs\"\ncount = 4\n\n[[servers]]\nname = \"{}\"", "a".repeat(235)),
    );
    assert!(parse_scenario("quickstart.toml", &ok, &[]).is_ok());
}

/// `BASE` with a restricted room "annex" after "main"; its `allow` list is on line 25, the list
/// at column 9, its first name at column 10.
fn with_annex(join_rule: &str, start: &str, allow: &str) -> String {
    edit(
        "members = \"*\"\n",
        &format!(
            "members = \"*\"\n\n[[rooms]]\nname = \"annex\"\nversion = \"11\"\ncreator = \"@u0:hs1\"\njoin_rule = \"{join_rule}\"\nstart = \"{start}\"\nallow = [{allow}]\n"
        ),
    )
}

#[test]
fn allow_lists_name_earlier_rooms_of_restricted_rooms() {
    let ok = parse_scenario("quickstart.toml", &with_annex("restricted", "1s", "\"main\""), &[]).unwrap();
    assert_eq!(ok.rooms[1].allow, ["main"]);
    let ok = parse_scenario("quickstart.toml", &with_annex("knock_restricted", "1s", "\"main\""), &[]).unwrap();
    assert_eq!(ok.rooms[1].allow, ["main"]);
    let e = error_of(&with_annex("public", "1s", "\"main\""), &[]);
    assert_at(
        &e,
        25,
        9,
        "`allow` needs join_rule \"restricted\" or \"knock_restricted\"; room \"annex\" is \"public\"",
    );
    let e = error_of(&with_annex("restricted", "1s", "\"mian\""), &[]);
    assert_at(&e, 25, 10, "unknown room \"mian\" in `allow`; rooms are main, annex");
    let e = error_of(&with_annex("restricted", "0s", "\"main\""), &[]);
    assert_at(&e, 25, 10, "not before room \"annex\"");
    let e = error_of(&with_annex("restricted", "1s", "\"annex\""), &[]);
    assert_at(&e, 25, 10, "a room cannot allow its own members");
}

#[test]
fn knock_actions_take_only_the_keys_they_use() {
    let knock = |extra: &str| {
        edit(
            "action = \"message\"\nroom = \"main\"\nuser = \"@u1:hs2\"\n",
            &format!("action = \"knock\"\nroom = \"main\"\nuser = \"@u1:hs2\"\n{extra}"),
        )
    };
    assert!(parse_scenario("quickstart.toml", &knock(""), &[]).is_ok());
    let e = error_of(&knock("target = \"@u0:hs1\"\n"), &[]);
    assert!(e.message().contains("target"), "{e}");
    let deny = edit("action = \"message\"", "action = \"deny_knock\"");
    let e = error_of(&deny, &[]);
    assert!(e.message().contains("target"), "deny_knock needs a target: {e}");
}

mod join_via {
    use super::*;

    /// The line a key appended to `BASE`'s last timeline entry lands on.
    fn appended_line() -> usize {
        BASE.lines().count() + 1
    }

    #[test]
    fn via_names_known_servers() {
        let e = error_of(&(edit("action = \"message\"", "action = \"join\"") + "via = [\"hs2\", \"hs9\"]\n"), &[]);
        assert_at(&e, appended_line(), 15, "unknown server or group \"hs9\" in `via` of action \"join\"");
    }

    #[test]
    fn via_applies_only_to_joins() {
        let e = error_of(&format!("{BASE}via = [\"hs2\"]\n"), &[]);
        assert_at(&e, appended_line(), 7, "`via` does not apply to action \"message\"");
    }
}
