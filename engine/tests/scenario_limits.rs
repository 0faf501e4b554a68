//! Scenarios at the edges of what `check` accepts: names as long as the 255-byte identifier
//! limit allows, many servers and rooms, the largest rates, durations, latencies and loss the
//! docs allow. Each must pass validation, and a short run of it must finish without a panic:
//! a scenario `check` accepts is one `run` can run.

use proptest::prelude::*;
use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::LogWriter;

/// The parameters of one generated scenario.
#[derive(Debug, Clone)]
struct Edges {
    seed: u64,
    name_len: usize,
    server_name_len: usize,
    with_port: bool,
    servers: usize,
    users: u32,
    rooms: usize,
    room_name_len: usize,
    version: u32,
    end_ms: u64,
    latency: &'static str,
    min_latency: &'static str,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    reorder_delay: &'static str,
    messages_per_minute: f64,
    changes_per_hour: f64,
    skew: &'static str,
    fault_duration: &'static str,
    interval: &'static str,
    retries: u32,
    signature_cost: &'static str,
}

/// `len` bytes: `prefix` padded with `fill`.
fn padded(prefix: &str, fill: char, len: usize) -> String {
    let mut s = prefix.to_string();
    while s.len() < len {
        s.push(fill);
    }
    s.truncate(len.max(1));
    s
}

fn scenario_text(e: &Edges) -> String {
    // Server names of exactly `server_name_len` bytes: `<host>` or `<host>:8448`, each host
    // ending in its number. The room IDs `!<18 letters>:<name>` (v11) then reach 20 + len bytes.
    let port = if e.with_port { ":8448" } else { "" };
    let names: Vec<String> = (0..e.servers)
        .map(|i| {
            let suffix = format!("{i}{port}");
            format!("{}{suffix}", padded("s", 'x', e.server_name_len - suffix.len()))
        })
        .collect();
    let first = &names[0];
    let mut text = format!(
        "# edge cases of the scenario format\n[scenario]\nname = \"{}\"\nend = \"{}ms\"\n\n\
         [defaults]\nsignatures = \"modelled\"\nsignature_cost = \"{}\"\nusers = {}\n\
         request_retries = {}\nmissing_event_timeout = \"1us\"\nrequest_timeout = \"1000000h\"\n\
         transaction_retries = {}\ndestination_min_retry_interval = \"1us\"\n\
         destination_retry_multiplier = 100\ndestination_max_retry_interval = \"1000000h\"\n",
        padded("edge", 'e', e.name_len),
        e.end_ms,
        e.signature_cost,
        e.users,
        e.retries,
        e.retries
    );
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!("\n[[servers]]\nname = \"{name}\"\n"));
        if i == 0 {
            text.push_str(&format!("clock_skew = \"{}\"\n", e.skew));
        }
    }
    for r in 0..e.rooms {
        let room = padded(&format!("r{r}"), 'r', e.room_name_len);
        text.push_str(&format!(
            "\n[[rooms]]\nname = \"{room}\"\nversion = \"{}\"\ncreator = \"@u0:{first}\"\nmembers = \"*\"\n\
             power_levels = {{ events = {{ \"{}\" = 9007199254740991 }}, users_default = -9007199254740991 }}\n",
            e.version,
            padded("m.x", 'x', 255)
        ));
        text.push_str(&format!(
            "\n[[workload]]\nroom = \"{room}\"\nusers = \"@u0:{first}\"\nstop = \"300ms\"\n\
             messages_per_minute = {}\nstate_changes_per_hour = {}\nchurn_per_hour = {}\npower_changes_per_hour = {}\n",
            e.messages_per_minute, e.changes_per_hour, e.changes_per_hour, e.changes_per_hour
        ));
    }
    text.push_str(&format!(
        "\n[network]\nlatency = {}\nmin_latency = \"{}\"\nloss = {}\nduplicate = {}\nreorder = {}\nreorder_delay = \"{}\"\n",
        e.latency, e.min_latency, e.loss, e.duplicate, e.reorder, e.reorder_delay
    ));
    text.push_str(&format!(
        "\n[[network.middleboxes]]\nserver = \"{first}\"\nkind = \"cache\"\ncache_ttl = \"1000000h\"\ntimeout_probability = 0.5\n"
    ));
    let end = format!("{}ms", e.end_ms);
    text.push_str(&format!(
        "\n[[faults]]\nat = \"0s\"\nkind = \"crash\"\nserver = \"{}\"\nduration = \"{}\"\n\
         \n[[faults]]\nat = \"{end}\"\nkind = \"clock_skew\"\nserver = \"{first}\"\nskew = \"1000000h\"\n\
         \n[[faults]]\nat = \"0s\"\nkind = \"degrade\"\nfrom = \"*\"\nto = \"*\"\nloss = 1.0\nduration = \"1us\"\n\
         \n[[timeline]]\nat = \"{end}\"\naction = \"topic\"\nroom = \"{}\"\nuser = \"@u0:{first}\"\ntext = \"{}\"\n",
        names[names.len() - 1],
        e.fault_duration,
        padded("r0", 'r', e.room_name_len),
        "t".repeat(16_384)
    ));
    text.push_str(&format!("\n[metrics]\ninterval = \"{}\"\n", e.interval));
    text
}

fn edges() -> impl Strategy<Value = Edges> {
    (
        (0u64..1_000_000, 1usize..=200, 2usize..=235, any::<bool>(), 1usize..=24),
        (prop_oneof![Just(1u32), Just(3), Just(10_000)], 1usize..=5, 2usize..=200, prop_oneof![Just(11u32), Just(12)]),
        (
            1u64..=2_000,
            prop_oneof![
                Just("{ dist = \"fixed\", value = \"1us\" }"),
                Just("{ dist = \"fixed\", value = \"1000000h\" }"),
                Just("{ dist = \"uniform\", min = \"0s\", max = \"1000000h\" }"),
                Just("{ dist = \"lognormal\", median = \"1us\", sigma = 10 }"),
                Just("{ dist = \"lognormal\", median = \"1000000h\", sigma = 0 }"),
            ],
            prop_oneof![Just("1us"), Just("5ms"), Just("1000000h")],
        ),
        (
            prop_oneof![Just(0.0f64), Just(0.5), Just(0.999_999)],
            prop_oneof![Just(0.0f64), Just(1.0)],
            prop_oneof![Just(0.0f64), Just(1.0)],
            prop_oneof![Just("0s"), Just("1us"), Just("1000000h")],
        ),
        (
            prop_oneof![Just(0.0f64), Just(600.0), Just(60_000.0)],
            prop_oneof![Just(0.0f64), Just(3_600_000.0)],
            prop_oneof![Just("-1000000h"), Just("0s"), Just("1000000h")],
            prop_oneof![Just("1us"), Just("1000000h")],
        ),
        (
            prop_oneof![Just("100ms"), Just("1s"), Just("1000000h")],
            prop_oneof![Just(0u32), Just(100)],
            prop_oneof![Just("0s"), Just("1000000h")],
        ),
    )
        .prop_map(|(a, b, c, d, f, g)| {
            let (seed, name_len, server_name_len, with_port, servers) = a;
            let (users, rooms, room_name_len, version) = b;
            // 10 000 users per server: few servers and rooms, or the initial joins alone would
            // pass the 1 000 000 timeline actions (a limit, tested in scenario_errors).
            let (servers, rooms) = if users == 10_000 { (servers.min(3), rooms.min(2)) } else { (servers, rooms) };
            let with_port = with_port && server_name_len >= 8;
            Edges {
                seed,
                name_len,
                server_name_len,
                with_port,
                servers,
                users,
                rooms,
                room_name_len,
                version,
                end_ms: c.0,
                latency: c.1,
                min_latency: c.2,
                loss: d.0,
                duplicate: d.1,
                reorder: d.2,
                reorder_delay: d.3,
                messages_per_minute: f.0,
                changes_per_hour: f.1,
                skew: f.2,
                fault_duration: f.3,
                interval: g.0,
                retries: g.1,
                signature_cost: g.2,
            }
        })
}

// Inside `mod scenario` so that `cargo test -p roomsim-engine scenario` runs these too.
mod scenario {
    use super::*;

    proptest! {
        // A fixed generator seed: CI draws the same cases every time (`PROPTEST_RNG_SEED=<n>
        // PROPTEST_CASES=<m>` explores others locally). Few cases, short runs: this is a
        // check of the edges, not a load test.
        #![proptest_config(ProptestConfig {
            cases: 10,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
            ..ProptestConfig::default()
        })]

        #[test]
        fn scenarios_at_the_limits_pass_check_and_run(e in edges()) {
            let text = scenario_text(&e);
            let sc = parse_scenario("edges.toml", &text, &[])
                .map_err(|err| TestCaseError::fail(format!("check refused a legal scenario: {err}\n{e:?}")))?;
            prop_assert_eq!(sc.servers.len(), e.servers);
            let longest = sc.user_ids().map(str::len).max().unwrap_or(0);
            prop_assert!(longest <= 255, "user ID of {} bytes", longest);
            let mut world = instrumented_world(&sc, e.seed, LogWriter::sink());
            world.run();
            let result = world.finish(true).map_err(|err| TestCaseError::fail(format!("{err}\n{e:?}")))?;
            prop_assert!(result.summary["sim_time_end_ms"].as_u64().unwrap() <= e.end_ms);
        }
    }

    #[test]
    fn the_longest_legal_server_name_and_one_byte_more() {
        // 235 bytes: room IDs `!<18>:<name>` are 255 bytes, the limit; 236 is refused, located.
        let e = Edges {
            seed: 1,
            name_len: 200,
            server_name_len: 235,
            with_port: false,
            servers: 2,
            users: 3,
            rooms: 1,
            room_name_len: 200,
            version: 11,
            end_ms: 50,
            latency: "{ dist = \"fixed\", value = \"1us\" }",
            min_latency: "1us",
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: "0s",
            messages_per_minute: 600.0,
            changes_per_hour: 0.0,
            skew: "0s",
            fault_duration: "1us",
            interval: "1s",
            retries: 2,
            signature_cost: "0s",
        };
        parse_scenario("edges.toml", &scenario_text(&e), &[]).unwrap_or_else(|err| panic!("{err}"));
        let err = parse_scenario("edges.toml", &scenario_text(&Edges { server_name_len: 236, ..e }), &[]).unwrap_err();
        assert!(err.to_string().starts_with("edges.toml:"), "{err}");
        assert!(err.line_column().is_some(), "{err}");
        assert!(err.message().contains("(236 bytes) is too long"), "{err}");
    }
}
