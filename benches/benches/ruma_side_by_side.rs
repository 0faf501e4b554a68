//! roomsim side by side with `ruma-state-res` 0.18 (the Rust library a user would pick
//! instead), on the same DAG in the same run: the 10 000-event reference fixture
//! `v11-e10000-s10-seed103`, one thread.
//!
//! * **auth checks**: every event, both receipt stages, no signatures. roomsim:
//!   `check_against_auth_events` + the rules against the state before. ruma:
//!   `check_state_independent_auth_rules`, then `check_state_dependent_auth_rules` against the
//!   event's own auth events, then against the state before. Both sides get their inputs
//!   prepared outside the timing (roomsim: its `RoomDag` with interned auth slots; ruma: a
//!   `(type, state_key) → event` map of each event's auth events and each state before as a
//!   `StateMap<OwnedEventId>`).
//! * **every merge**: the state before every event with two or more prev events, resolved from
//!   the states after its prev events (precomputed for both sides). ruma's API needs the full
//!   auth chain of every input state; building them (as ruma's own test factory does, walking
//!   `auth_events` from the state's events) is counted on ruma's side. roomsim's auth-chain
//!   index is built when events are inserted into its `RoomDag`, which is outside the timing on
//!   its side (it is part of the whole-`verify_dag` figures).
//!
//! Both sides' answers are compared outside the timing (verdicts and resolved states), then
//! criterion measures each kernel, then a final interleaved timing (median of 5 runs each)
//! prints the ratio roomsim/ruma.

/// The allocator the `roomsim` binary uses (see its `main.rs`), so that the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, Criterion, Throughput};
use js_int::UInt;
use roomsim_benches::fixtures::{self, FIXTURE_10K};
use roomsim_benches::prepared::{self, Prepared};
use roomsim_engine::protocol::dag::{EventIdx, StateMap as RsStateMap};
use roomsim_engine::protocol::pdu::TypedContent;
use roomsim_engine::protocol::verify;
use ruma_common::room_version_rules::{AuthorizationRules, RoomVersionRules, StateResolutionV2Rules};
use ruma_common::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use ruma_events::{StateEventType, TimelineEventType};
use ruma_state_res::utils::event_id_map::EventIdMap;
use ruma_state_res::utils::event_id_set::EventIdSet;
use ruma_state_res::{check_state_dependent_auth_rules, check_state_independent_auth_rules, Event, StateMap};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A PDU in the shape ruma-state-res reads (its `Event` trait).
struct RPdu {
    event_id: OwnedEventId,
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev: Vec<OwnedEventId>,
    auth: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    rejected: bool,
}

impl Event for RPdu {
    type Id = OwnedEventId;
    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

type AuthMap<'a> = HashMap<(StateEventType, String), &'a RPdu>;

/// Everything ruma needs, converted from the prepared DAG outside the timing.
struct RumaSide {
    rules: RoomVersionRules,
    /// In roomsim's topological order (index = roomsim `EventIdx`).
    order: Vec<OwnedEventId>,
    events: EventIdMap<OwnedEventId, RPdu>,
    /// State before each event.
    before: Vec<StateMap<OwnedEventId>>,
    /// States after the prev events of each merge (same order as `Prepared::merges`).
    merge_inputs: Vec<Vec<StateMap<OwnedEventId>>>,
    /// v12: the create event, implied by the room ID.
    implied_create: Option<OwnedEventId>,
}

fn event_id(s: &str) -> OwnedEventId {
    EventId::parse(s).expect("event ID")
}

fn to_ruma_state(p: &Prepared, state: &RsStateMap) -> StateMap<OwnedEventId> {
    state
        .iter()
        .map(|(k, e)| {
            let (t, s) = p.dag.key(*k);
            ((StateEventType::from(t), s.to_owned()), event_id(&p.dag.pdu(*e).event_id))
        })
        .collect()
}

impl RumaSide {
    fn new(p: &Prepared) -> RumaSide {
        let rules = match p.version.id {
            "11" => RoomVersionRules::V11,
            "12" => RoomVersionRules::V12,
            other => panic!("room version {other}"),
        };
        let mut events = EventIdMap::new();
        let mut order = Vec::with_capacity(p.dag.len());
        for (_, ev) in p.dag.events() {
            let pdu = &ev.pdu;
            let content = serde_json::to_string(&pdu.json["content"]).expect("content");
            let redacts = match &pdu.content {
                TypedContent::Redaction { redacts } => redacts.as_deref().map(event_id),
                _ => pdu.json.get("redacts").and_then(|r| r.as_str()).map(event_id),
            };
            let r = RPdu {
                event_id: event_id(&pdu.event_id),
                room_id: pdu.room_id.as_deref().map(|r| RoomId::parse(r).expect("room ID")),
                sender: UserId::parse(pdu.sender.as_str()).expect("user ID"),
                ts: MilliSecondsSinceUnixEpoch(UInt::try_from(pdu.origin_server_ts).expect("ts")),
                kind: TimelineEventType::from(pdu.event_type.as_str()),
                content: RawValue::from_string(content).expect("raw content"),
                state_key: pdu.state_key.clone(),
                prev: pdu.prev_events.iter().map(|e| event_id(e)).collect(),
                auth: pdu.auth_events.iter().map(|e| event_id(e)).collect(),
                redacts,
                rejected: ev.is_rejected(),
            };
            order.push(r.event_id.clone());
            events.insert(r.event_id.clone(), r);
        }
        let before = p.before.iter().map(|s| to_ruma_state(p, s)).collect();
        let mut after_cache: HashMap<EventIdx, StateMap<OwnedEventId>> = HashMap::new();
        let merge_inputs = p
            .merges
            .iter()
            .map(|m| {
                p.dag
                    .event(*m)
                    .prev
                    .iter()
                    .map(|prev| {
                        after_cache.entry(*prev).or_insert_with(|| to_ruma_state(p, &p.after[*prev as usize])).clone()
                    })
                    .collect()
            })
            .collect();
        let implied_create =
            (p.version.id == "12").then(|| p.dag.create()).flatten().map(|c| event_id(&p.dag.pdu(c).event_id));
        RumaSide { rules, order, events, before, merge_inputs, implied_create }
    }

    fn auth_rules(&self) -> &AuthorizationRules {
        &self.rules.authorization
    }

    fn state_res_rules(&self) -> &StateResolutionV2Rules {
        self.rules.state_res.v2_rules().expect("v2 state resolution")
    }

    /// Each event's own auth events as a `(type, state_key)` map (prepared outside timing).
    fn auth_maps(&self) -> Vec<AuthMap<'_>> {
        self.order
            .iter()
            .map(|id| {
                let ev = &self.events[id];
                ev.auth
                    .iter()
                    .filter_map(|a| self.events.get(a))
                    .filter_map(|a| Some(((StateEventType::from(a.kind.to_string()), a.state_key.clone()?), a)))
                    .collect()
            })
            .collect()
    }

    /// Both receipt stages for every event; returns whether each was accepted.
    fn auth_check_all(&self, auth_maps: &[AuthMap<'_>]) -> Vec<bool> {
        let rules = self.auth_rules();
        let fetch = |id: &EventId| self.events.get(id);
        self.order
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let ev = &self.events[id];
                if check_state_independent_auth_rules(rules, ev, fetch).is_err() {
                    return false;
                }
                let own = &auth_maps[i];
                let from_auth_events = |t: &StateEventType, k: &str| {
                    own.get(&(t.clone(), k.to_owned())).copied().or_else(|| self.implied_create(t, k))
                };
                if check_state_dependent_auth_rules(rules, ev, from_auth_events).is_err() {
                    return false;
                }
                let before = &self.before[i];
                let from_state = |t: &StateEventType, k: &str| {
                    before.get(&(t.clone(), k.to_owned())).and_then(|e| self.events.get(e))
                };
                check_state_dependent_auth_rules(rules, ev, from_state).is_ok()
            })
            .collect()
    }

    /// v12: the create event is named by the room ID, not listed in `auth_events`; a server
    /// has it when checking an event against the event's own auth events.
    fn implied_create(&self, t: &StateEventType, k: &str) -> Option<&RPdu> {
        if *t != StateEventType::RoomCreate || !k.is_empty() {
            return None;
        }
        self.implied_create.as_ref().and_then(|id| self.events.get(id))
    }

    /// The first rule ruma says an event breaks, for the agreement report.
    fn explain(&self, i: usize, auth_maps: &[AuthMap<'_>]) -> String {
        let rules = self.auth_rules();
        let ev = &self.events[&self.order[i]];
        if let Err(e) = check_state_independent_auth_rules(rules, ev, |id: &EventId| self.events.get(id)) {
            return format!("state-independent: {e}");
        }
        let own = &auth_maps[i];
        let from_auth_events = |t: &StateEventType, k: &str| {
            own.get(&(t.clone(), k.to_owned())).copied().or_else(|| self.implied_create(t, k))
        };
        if let Err(e) = check_state_dependent_auth_rules(rules, ev, from_auth_events) {
            return format!("own auth events: {e}");
        }
        let before = &self.before[i];
        let from_state =
            |t: &StateEventType, k: &str| before.get(&(t.clone(), k.to_owned())).and_then(|e| self.events.get(e));
        match check_state_dependent_auth_rules(rules, ev, from_state) {
            Err(e) => format!("state before: {e}"),
            Ok(()) => "accepted".into(),
        }
    }

    /// The full auth chain of a state (its events and all their auth ancestors), walked the way
    /// ruma's own test factory does it.
    fn full_auth_chain(&self, state: &StateMap<OwnedEventId>) -> EventIdSet<OwnedEventId> {
        let mut chain = EventIdSet::new();
        let mut stack: Vec<OwnedEventId> = state.values().cloned().collect();
        while let Some(id) = stack.pop() {
            if let Some(ev) = self.events.get(&id) {
                stack.extend(ev.auth.iter().filter(|a| !chain.contains(a)).cloned());
            }
            chain.insert(id);
        }
        chain
    }

    /// v2.1's conflicted state subgraph (events on an auth path between two conflicted events),
    /// which ruma asks its caller for. Unused for room v11.
    fn conflicted_subgraph(&self, conflicted: &StateMap<Vec<OwnedEventId>>) -> EventIdSet<OwnedEventId> {
        let targets: std::collections::HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
        let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
        fn walk(
            side: &RumaSide,
            id: &OwnedEventId,
            targets: &std::collections::HashSet<&OwnedEventId>,
            memo: &mut HashMap<OwnedEventId, bool>,
        ) -> bool {
            if let Some(r) = memo.get(id) {
                return *r;
            }
            let mut r = false;
            if let Some(ev) = side.events.get(id) {
                for a in &ev.auth {
                    r |= targets.contains(a) | walk(side, a, targets, memo);
                }
            }
            memo.insert(id.clone(), r);
            r
        }
        let mut out = EventIdSet::new();
        for c in &targets {
            walk(self, c, &targets, &mut reaches);
        }
        for (id, r) in reaches {
            if r || targets.contains(&id) {
                out.insert(id);
            }
        }
        for c in targets {
            out.insert(c.clone());
        }
        out
    }

    fn resolve_one(
        &self,
        inputs: &[StateMap<OwnedEventId>],
        chains: Vec<EventIdSet<OwnedEventId>>,
    ) -> StateMap<OwnedEventId> {
        let fetch = |id: &EventId| self.events.get(id);
        ruma_state_res::resolve(self.auth_rules(), self.state_res_rules(), inputs.iter(), chains, fetch, |c| {
            Some(self.conflicted_subgraph(c))
        })
        .expect("ruma resolves")
    }

    /// Resolves every merge, auth chains included. Returns the resolved states.
    fn resolve_all_merges(&self) -> Vec<StateMap<OwnedEventId>> {
        self.merge_inputs
            .iter()
            .map(|inputs| self.resolve_one(inputs, inputs.iter().map(|s| self.full_auth_chain(s)).collect()))
            .collect()
    }

    /// The time spent in `ruma_state_res::resolve` alone over every merge: the auth chains are
    /// built before each call and left out of the time (as if the caller had them for free).
    fn resolve_all_merges_chains_free(&self) -> Duration {
        let mut total = Duration::ZERO;
        for inputs in &self.merge_inputs {
            let chains = inputs.iter().map(|s| self.full_auth_chain(s)).collect();
            let t = Instant::now();
            black_box(self.resolve_one(inputs, chains));
            total += t.elapsed();
        }
        total
    }
}

fn median_secs(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

/// `ROOMSIM_REPLAY_DAG=BASE` (a `gen_dag` output: `BASE.jsonl`, `BASE.keys.json`): instead of
/// the kernels, time the whole replay of that DAG on both sides, interleaved,
/// `ROOMSIM_REPLAY_RUNS` times (default 3). roomsim: what `dag verify --keys --report` does
/// after reading the files — parse every line, [`verify::verify_dag`] with keys and state
/// digests, the report serialised to JSON, on a 1-thread and on a 2-thread rayon pool. ruma: both receipt stages for every event plus the resolution of every merge
/// (auth chains counted) and of the forward extremities, on inputs prepared outside the timing;
/// no parsing, hashes, signatures or report (ruma-state-res has none of them), so the ratio
/// favours ruma.
fn replay_side_by_side(base: &std::path::Path) {
    let jsonl = base.with_extension("jsonl");
    let keys = base.with_extension("keys.json");
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fx = fixtures::load_files(&name, &jsonl, &keys);
    let runs: usize = std::env::var("ROOMSIM_REPLAY_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let t = Instant::now();
    let p = Prepared::new(fx.version, fx.pdus.clone());
    let ruma = RumaSide::new(&p);
    let auth_maps = ruma.auth_maps();
    let final_inputs: Vec<StateMap<OwnedEventId>> =
        p.extremities.iter().map(|e| to_ruma_state(&p, &p.after[*e as usize])).collect();
    eprintln!(
        "[setup] {name}: room v{}, {} events, {} merges, {} forward extremities; prepared in {:.1} s",
        fx.version.id,
        p.dag.len(),
        p.merges.len(),
        p.extremities.len(),
        t.elapsed().as_secs_f64()
    );
    let roomsim_run = || {
        let (version, lines) = verify::parse_lines(&fx.text).expect("parses");
        let options =
            verify::VerifyOptions { keys: Some(fx.keys.clone()), skip_state_digests: false, ..Default::default() };
        let verified = verify::verify_dag(version, lines.into_iter().map(|(_, p)| p).collect(), &options);
        let json = verify::report_json(&verified.report);
        (verified, json)
    };
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("thread pool");
    let (pool1, pool2) = (pool(1), pool(2));
    let (mut t_rs1, mut t_rs, mut t_ru) = (vec![], vec![], vec![]);
    for run in 0..runs {
        // (Freeing the result is left out of the time, as the CLI leaves it out.)
        let t = Instant::now();
        let one = black_box(pool1.install(roomsim_run));
        t_rs1.push(t.elapsed().as_secs_f64());
        drop(one);
        let t = Instant::now();
        let (verified, json) = black_box(pool2.install(roomsim_run));
        t_rs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let verdicts = black_box(ruma.auth_check_all(&auth_maps));
        let states = black_box(ruma.resolve_all_merges());
        let final_state =
            black_box(ruma.resolve_one(&final_inputs, final_inputs.iter().map(|s| ruma.full_auth_chain(s)).collect()));
        t_ru.push(t.elapsed().as_secs_f64());
        eprintln!(
            "[run {run}] roomsim {:.3} s on 1 thread, {:.3} s on 2; ruma {:.3} s",
            t_rs1[run], t_rs[run], t_ru[run]
        );
        if run == 0 {
            let verdict_diffs =
                verdicts.iter().zip(p.dag.events()).filter(|(ok, (_, e))| **ok == e.is_rejected()).count();
            let state_diffs =
                p.merges.iter().zip(&states).filter(|(m, r)| to_ruma_state(&p, &p.before[**m as usize]) != **r).count();
            assert_eq!(verified.report.accepted, p.accepted, "keys change verdicts");
            for (i, (_, e)) in p.dag.events().enumerate().filter(|(i, (_, e))| verdicts[*i] == e.is_rejected()).take(3)
            {
                eprintln!(
                    "[check] event {i} {}: roomsim {}, ruma: {}",
                    e.pdu.event_id,
                    if e.is_rejected() { "rejects" } else { "accepts" },
                    ruma.explain(i, &auth_maps)
                );
            }
            eprintln!(
                "[check] report {} bytes; verdicts differ on {verdict_diffs} events; merged states differ on {state_diffs} of {} merges; final states {}",
                json.len(),
                p.merges.len(),
                if to_ruma_state(&p, &p.final_state) == final_state { "agree" } else { "DIFFER" }
            );
        }
        drop((verified, json, verdicts, states, final_state));
    }
    let (rs1, rs2, ru) = (median_secs(t_rs1), median_secs(t_rs), median_secs(t_ru));
    println!();
    println!("whole replay of {name} ({} events), median of {runs} interleaved runs:", p.dag.len());
    println!("| roomsim threads | roomsim `dag verify --keys --report` (in memory) | ruma-state-res 0.18 replay | roomsim speed-up (target ≥ 30×) |");
    println!("|---|---|---|---|");
    println!("| 1 | {:.3} s | {:.2} s | {:.1}× |", rs1, ru, ru / rs1);
    println!("| 2 | {:.3} s | {:.2} s | {:.1}× |", rs2, ru, ru / rs2);
    println!("roomsim 1 → 2 threads: {:.2}× (target ≥ 1.6×)", rs1 / rs2);
}

fn main() {
    if let Some(base) = std::env::var_os("ROOMSIM_REPLAY_DAG") {
        replay_side_by_side(std::path::Path::new(&base));
        return;
    }
    let fx = fixtures::load(FIXTURE_10K);
    let p = Prepared::new(fx.version, fx.pdus.clone());
    prepared::check_against_verify(&p, fx.pdus.clone());
    let ruma = RumaSide::new(&p);
    let auth_maps = ruma.auth_maps();
    let n = p.dag.len();
    let merges = p.merges.len();

    // Agreement, outside the timing.
    let ruma_verdicts = ruma.auth_check_all(&auth_maps);
    let roomsim_verdicts: Vec<bool> = p.dag.events().map(|(_, e)| !e.is_rejected()).collect();
    let verdict_diffs = ruma_verdicts.iter().zip(&roomsim_verdicts).filter(|(a, b)| a != b).count();
    let ruma_states = ruma.resolve_all_merges();
    let state_diffs = p
        .merges
        .iter()
        .zip(&ruma_states)
        .filter(|(m, r)| {
            let ours = roomsim_engine::protocol::state_res::resolve(&p.dag, &p.merge_inputs(**m));
            to_ruma_state(&p, &ours) != **r
        })
        .count();
    eprintln!(
        "[setup] {}: {n} events, {merges} merges; ruma accepts {} events, roomsim {}; verdicts differ on {verdict_diffs} events; resolved states differ on {state_diffs} of {merges} merges",
        fx.name,
        ruma_verdicts.iter().filter(|v| **v).count(),
        p.accepted,
    );

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("side_by_side_auth_checks");
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(20);
        g.bench_function("roomsim", |b| b.iter(|| black_box(p.auth_check_all())));
        g.bench_function("ruma_state_res_0.18", |b| b.iter(|| black_box(ruma.auth_check_all(&auth_maps))));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("side_by_side_every_merge");
        g.throughput(Throughput::Elements(merges as u64));
        g.sample_size(10);
        g.bench_function("roomsim", |b| b.iter(|| black_box(p.resolve_all_merges())));
        g.bench_function("ruma_state_res_0.18", |b| b.iter(|| black_box(ruma.resolve_all_merges())));
        g.bench_function("ruma_state_res_0.18_resolve_only_chains_free", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| ruma.resolve_all_merges_chains_free()).sum())
        });
        g.finish();
    }
    c.final_summary();

    // Ratios: interleaved runs, median of 5 each (criterion's own estimates are above).
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let runs = 5;
    let (mut a_rs, mut a_ru, mut m_rs, mut m_ru, mut m_ru_free) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        black_box(p.auth_check_all());
        a_rs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(ruma.auth_check_all(&auth_maps));
        a_ru.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(p.resolve_all_merges());
        m_rs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(ruma.resolve_all_merges());
        m_ru.push(t.elapsed().as_secs_f64());
        m_ru_free.push(ruma.resolve_all_merges_chains_free().as_secs_f64());
    }
    let m_ru_free = median_secs(m_ru_free);
    let (a_rs, a_ru, m_rs, m_ru) = (median_secs(a_rs), median_secs(a_ru), median_secs(m_rs), median_secs(m_ru));
    println!();
    println!("side by side on {} ({n} events, {merges} merges), 1 thread, median of {runs} interleaved runs:", fx.name);
    println!("| kernel | roomsim | ruma-state-res 0.18 | roomsim speed-up (target ≥ 10×) |");
    println!("|---|---|---|---|");
    println!(
        "| auth checks, both stages | {:.2} ms ({:.0}k ev/s) | {:.2} ms ({:.0}k ev/s) | {:.1}× |",
        a_rs * 1e3,
        n as f64 / a_rs / 1e3,
        a_ru * 1e3,
        n as f64 / a_ru / 1e3,
        a_ru / a_rs
    );
    println!(
        "| resolve every merge | {:.2} ms | {:.2} ms (auth chains included) | {:.1}× |",
        m_rs * 1e3,
        m_ru * 1e3,
        m_ru / m_rs
    );
    println!(
        "| resolve every merge, ruma's auth chains for free | {:.2} ms | {:.2} ms (`resolve` calls only) | {:.1}× |",
        m_rs * 1e3,
        m_ru_free * 1e3,
        m_ru_free / m_rs
    );
    println!("agreement: verdicts differ on {verdict_diffs} of {n} events; resolved states differ on {state_diffs} of {merges} merges");
}
