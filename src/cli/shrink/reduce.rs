//! Candidate reductions of a scenario table: the passes, in the order the shrinker tries them
//! (those that remove the most first), each a list of elementary reductions ("atoms") that the
//! shrinker applies in chunks, ddmin-style.

use super::doc::{self, Names};
use roomsim_engine::scenario::{format_duration_us, parse_duration};
use std::collections::{BTreeMap, BTreeSet};
use toml::{Table, Value};

/// One step of a path into the table: a key, or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

fn k(key: &str) -> Seg {
    Seg::Key(key.to_string())
}

/// `rooms.0.power_levels.users."@u0:hs1"`.
fn show(path: &[Seg]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|s| match s {
            Seg::Key(key) if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => key.clone(),
            Seg::Key(key) => format!("{key:?}"),
            Seg::Index(i) => i.to_string(),
        })
        .collect();
    parts.join(".")
}

/// One edit of the table.
#[derive(Debug, Clone)]
pub enum Edit {
    RemoveServer(String),
    RemoveNotary(String),
    /// Sets `users` of `[[servers]]` entry `i` (`None`: of `[defaults]`).
    SetUsers(Option<usize>, i64),
    Set(Vec<Seg>, Value),
    RemoveKey(Vec<Seg>),
    /// Removes entry `i` of the array of tables at the path.
    RemoveEntry(Vec<Seg>, usize),
    /// Removes a user from the user selector at the path (absent: `"*"`), which is written out
    /// as user IDs.
    RemoveUser(Vec<Seg>, String),
}

/// An elementary reduction: its edits and how the step lines name it.
#[derive(Debug, Clone)]
pub struct Atom {
    pub edits: Vec<Edit>,
    pub label: String,
}

impl Atom {
    fn new(label: impl Into<String>, edits: Vec<Edit>) -> Atom {
        Atom { edits, label: label.into() }
    }
}

/// Counts something in a scenario (servers, actions, …).
pub type Count = fn(&Table) -> usize;

/// A kind of reduction.
pub struct Pass {
    /// What the step line says before the atoms' labels: for one atom, for several.
    pub one: &'static str,
    pub many: &'static str,
    /// What the step lines count before and after (`4 servers → 3`).
    pub measure: Option<(&'static str, Count)>,
    /// The atoms, from the scenario and its run's summary.
    pub atoms: fn(&Table, &serde_json::Value) -> Vec<Atom>,
}

impl Pass {
    /// `removed servers hs2, hs3`.
    pub fn describe(&self, atoms: &[Atom]) -> String {
        let verb = if atoms.len() == 1 { self.one } else { self.many };
        let mut labels: Vec<&str> = atoms.iter().map(|a| a.label.as_str()).take(6).collect();
        if atoms.len() > 6 {
            labels.truncate(5);
            return format!("{verb} {}, … ({} in all)", labels.join(", "), atoms.len());
        }
        format!("{verb} {}", labels.join(", "))
    }
}

/// Every pass, in the order a round tries them.
pub fn passes() -> Vec<Pass> {
    vec![
        Pass {
            one: "removed server",
            many: "removed servers",
            measure: Some(("servers", servers)),
            atoms: |t, _| server_atoms(t),
        },
        Pass {
            one: "removed key notary",
            many: "removed key notaries",
            measure: Some(("notaries", notaries)),
            atoms: |t, _| notary_atoms(t),
        },
        Pass {
            one: "removed identity server",
            many: "removed identity servers",
            measure: Some(("identity servers", identity_servers)),
            atoms: |t, _| identity_server_atoms(t),
        },
        Pass { one: "users of", many: "users of", measure: Some(("users", users)), atoms: |t, _| user_atoms(t, |_| 1) },
        Pass {
            one: "users of",
            many: "users of",
            measure: Some(("users", users)),
            atoms: |t, _| user_atoms(t, |n| (n + 1) / 2),
        },
        Pass {
            one: "users of",
            many: "users of",
            measure: Some(("users", users)),
            atoms: |t, _| user_atoms(t, |n| n - 1),
        },
        Pass {
            one: "removed room",
            many: "removed rooms",
            measure: Some(("rooms", rooms)),
            atoms: |t, _| room_atoms(t),
        },
        Pass {
            one: "removed member",
            many: "removed members",
            measure: Some(("members", members)),
            atoms: |t, _| member_atoms(t),
        },
        Pass {
            one: "removed workload",
            many: "removed workloads",
            measure: Some(("workloads", workloads)),
            atoms: |t, _| workload_atoms(t),
        },
        Pass {
            one: "removed workload user",
            many: "removed workload users",
            measure: Some(("workload users", workload_users)),
            atoms: |t, _| workload_user_atoms(t),
        },
        Pass { one: "set to 0:", many: "set to 0:", measure: None, atoms: |t, _| rate_atoms(t, false) },
        Pass { one: "halved", many: "halved", measure: None, atoms: |t, _| rate_atoms(t, true) },
        Pass { one: "halved", many: "halved", measure: None, atoms: |t, _| window_atoms(t, true) },
        Pass { one: "halved", many: "halved", measure: None, atoms: |t, _| window_atoms(t, false) },
        Pass {
            one: "removed action",
            many: "removed actions",
            measure: Some(("actions", actions)),
            atoms: |t, _| timeline_atoms(t),
        },
        Pass {
            one: "repeated",
            many: "repeated",
            measure: Some(("actions", actions)),
            atoms: |t, _| count_atoms(t, false),
        },
        Pass {
            one: "repeated",
            many: "repeated",
            measure: Some(("actions", actions)),
            atoms: |t, _| count_atoms(t, true),
        },
        Pass {
            one: "removed fault",
            many: "removed faults",
            measure: Some(("faults", faults)),
            atoms: |t, _| fault_atoms(t),
        },
        Pass { one: "halved", many: "halved", measure: None, atoms: |t, _| fault_duration_atoms(t) },
        Pass {
            one: "removed",
            many: "removed",
            measure: Some(("links and middleboxes", links)),
            atoms: |t, _| link_atoms(t),
        },
        Pass { one: "no noise:", many: "no noise:", measure: None, atoms: |t, _| noise_atoms(t) },
        Pass {
            one: "back to its default:",
            many: "back to their defaults:",
            measure: None,
            atoms: |t, _| knob_atoms(t),
        },
        Pass { one: "halved", many: "halved", measure: None, atoms: end_atoms },
    ]
}

// ---- measures -------------------------------------------------------------------------------

pub fn servers(t: &Table) -> usize {
    Names::of(t).servers.len()
}

fn notaries(t: &Table) -> usize {
    Names::of(t).notaries.len()
}

pub fn users(t: &Table) -> usize {
    Names::of(t).servers.iter().map(|(_, n)| (*n).max(0) as usize).sum()
}

pub fn rooms(t: &Table) -> usize {
    doc::tables(t, "rooms").count()
}

fn members(t: &Table) -> usize {
    let names = Names::of(t);
    doc::tables(t, "rooms").map(|r| names.expand_users(&doc::strings(r.get("members"))).len()).sum()
}

pub fn workloads(t: &Table) -> usize {
    doc::tables(t, "workload").count()
}

fn workload_users(t: &Table) -> usize {
    let names = Names::of(t);
    doc::tables(t, "workload").map(|w| names.expand_users(&selector_or_all(w.get("users"))).len()).sum()
}

/// Timeline actions, `count` expanded.
pub fn actions(t: &Table) -> usize {
    doc::tables(t, "timeline").map(|a| a.get("count").and_then(Value::as_integer).unwrap_or(1).max(1) as usize).sum()
}

pub fn faults(t: &Table) -> usize {
    doc::tables(t, "faults").count()
}

fn links(t: &Table) -> usize {
    let net = t.get("network").and_then(Value::as_table);
    net.map_or(0, |n| doc::tables(n, "links").count() + doc::tables(n, "middleboxes").count())
}

// ---- atoms ----------------------------------------------------------------------------------

fn server_atoms(t: &Table) -> Vec<Atom> {
    Names::of(t).servers.into_iter().map(|(s, _)| Atom::new(s.clone(), vec![Edit::RemoveServer(s)])).collect()
}

fn identity_server_atoms(t: &Table) -> Vec<Atom> {
    doc::tables(t, "identity_servers")
        .enumerate()
        .map(|(i, s)| Atom::new(name_of(s), vec![Edit::RemoveEntry(vec![k("identity_servers")], i)]))
        .collect()
}

fn identity_servers(t: &Table) -> usize {
    doc::tables(t, "identity_servers").count()
}

fn notary_atoms(t: &Table) -> Vec<Atom> {
    Names::of(t).notaries.into_iter().map(|s| Atom::new(s.clone(), vec![Edit::RemoveNotary(s)])).collect()
}

/// Users down to `to(n)` on `[defaults]` and on each server entry (1, half, one fewer).
fn user_atoms(t: &Table, to: fn(i64) -> i64) -> Vec<Atom> {
    let mut out = Vec::new();
    let default = doc::default_users(t);
    let entries = doc::server_entries(t);
    if to(default) < default && entries.iter().any(|e| e.own_users.is_none()) {
        out.push(Atom::new(format!("[defaults] {default} → {}", to(default)), vec![Edit::SetUsers(None, to(default))]));
    }
    for (i, e) in entries.iter().enumerate() {
        if to(e.users) < e.users {
            out.push(Atom::new(
                format!("{} {} → {}", e.label(), e.users, to(e.users)),
                vec![Edit::SetUsers(Some(i), to(e.users))],
            ));
        }
    }
    out
}

fn name_of(t: &Table) -> &str {
    t.get("name").and_then(Value::as_str).unwrap_or("?")
}

fn room_atoms(t: &Table) -> Vec<Atom> {
    doc::tables(t, "rooms")
        .enumerate()
        .map(|(i, r)| Atom::new(name_of(r), vec![Edit::RemoveEntry(vec![k("rooms")], i)]))
        .collect()
}

fn member_atoms(t: &Table) -> Vec<Atom> {
    let names = Names::of(t);
    let mut out = Vec::new();
    for (i, r) in doc::tables(t, "rooms").enumerate() {
        let path = vec![k("rooms"), Seg::Index(i), k("members")];
        for u in names.expand_users(&doc::strings(r.get("members"))) {
            out.push(Atom::new(format!("{u} from {}", name_of(r)), vec![Edit::RemoveUser(path.clone(), u)]));
        }
    }
    out
}

/// A workload's user selector; absent means every user.
fn selector_or_all(v: Option<&Value>) -> Vec<String> {
    if v.is_none() {
        vec!["*".to_string()]
    } else {
        doc::strings(v)
    }
}

fn workload_label(i: usize, w: &Table) -> String {
    format!("{i} in room {}", w.get("room").and_then(Value::as_str).unwrap_or("?"))
}

fn workload_atoms(t: &Table) -> Vec<Atom> {
    doc::tables(t, "workload")
        .enumerate()
        .map(|(i, w)| Atom::new(workload_label(i, w), vec![Edit::RemoveEntry(vec![k("workload")], i)]))
        .collect()
}

fn workload_user_atoms(t: &Table) -> Vec<Atom> {
    let names = Names::of(t);
    let mut out = Vec::new();
    for (i, w) in doc::tables(t, "workload").enumerate() {
        let users = names.expand_users(&selector_or_all(w.get("users")));
        if users.len() < 2 {
            continue;
        }
        let path = vec![k("workload"), Seg::Index(i), k("users")];
        for u in users {
            out.push(Atom::new(format!("{u} from workload {i}"), vec![Edit::RemoveUser(path.clone(), u)]));
        }
    }
    out
}

const RATES: &[&str] = &["messages_per_minute", "state_changes_per_hour", "churn_per_hour", "power_changes_per_hour"];

fn number(v: &Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// A number as TOML: an integer when it is one.
fn number_value(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::Integer(x as i64)
    } else {
        Value::Float(x)
    }
}

/// Workload rates to 0 (or, with `halve`, halved while at least 0.02).
fn rate_atoms(t: &Table, halve: bool) -> Vec<Atom> {
    let mut out = Vec::new();
    for (i, w) in doc::tables(t, "workload").enumerate() {
        for rate in RATES {
            let Some(x) = w.get(*rate).and_then(number).filter(|x| *x > 0.0) else { continue };
            let path = vec![k("workload"), Seg::Index(i), k(rate)];
            if !halve {
                out.push(Atom::new(format!("workload {i} {rate}"), vec![Edit::RemoveKey(path)]));
            } else if x >= 0.04 {
                let half = x / 2.0;
                out.push(Atom::new(
                    format!("workload {i} {rate} {x} → {half}"),
                    vec![Edit::Set(path, number_value(half))],
                ));
            }
        }
    }
    out
}

fn duration(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_str).and_then(|s| parse_duration(s).ok()).map(|d| d.0)
}

fn duration_value(us: u64) -> Value {
    Value::String(format_duration_us(us))
}

/// Half of a duration, in whole milliseconds when it is at least one.
fn half(us: u64) -> u64 {
    if us >= 2_000 {
        us / 2 / 1_000 * 1_000
    } else {
        us / 2
    }
}

/// Durations are halved while at least this long (100 ms: below that, little changes).
const MIN_HALVED_US: u64 = 200_000;

/// Each workload's active window halved, keeping its first half (or, with `first` false, its
/// second half).
fn window_atoms(t: &Table, first: bool) -> Vec<Atom> {
    let end = duration(t.get("scenario").and_then(|s| s.get("end")));
    let room_start = |room: Option<&str>| {
        doc::tables(t, "rooms")
            .find(|r| r.get("name").and_then(Value::as_str) == room)
            .and_then(|r| duration(r.get("start")))
    };
    let mut out = Vec::new();
    for (i, w) in doc::tables(t, "workload").enumerate() {
        if !RATES.iter().any(|rate| w.get(*rate).and_then(number).is_some_and(|x| x > 0.0)) {
            continue; // it does nothing, whatever its window
        }
        let start = duration(w.get("start")).or_else(|| room_start(w.get("room").and_then(Value::as_str))).unwrap_or(0);
        let Some(stop) = duration(w.get("stop")).or(end) else { continue };
        let Some(window) = stop.checked_sub(start).filter(|w| *w >= MIN_HALVED_US) else { continue };
        let (new_start, new_stop) = if first { (start, start + half(window)) } else { (stop - half(window), stop) };
        let label = format!(
            "workload {i} window {}–{} → {}–{}",
            format_duration_us(start),
            format_duration_us(stop),
            format_duration_us(new_start),
            format_duration_us(new_stop)
        );
        let at = |key: &str| vec![k("workload"), Seg::Index(i), k(key)];
        let edit = if first {
            Edit::Set(at("stop"), duration_value(new_stop))
        } else {
            Edit::Set(at("start"), duration_value(new_start))
        };
        out.push(Atom::new(label, vec![edit]));
    }
    out
}

fn action_label(a: &Table) -> String {
    let get = |key: &str| a.get(key).and_then(Value::as_str).unwrap_or("?");
    let mut label = format!("{} by {} at {}", get("action"), get("user"), get("at"));
    if let Some(target) = a.get("target").and_then(Value::as_str) {
        label = format!("{} {target} by {} at {}", get("action"), get("user"), get("at"));
    }
    label
}

fn timeline_atoms(t: &Table) -> Vec<Atom> {
    doc::tables(t, "timeline")
        .enumerate()
        .map(|(i, a)| Atom::new(action_label(a), vec![Edit::RemoveEntry(vec![k("timeline")], i)]))
        .collect()
}

/// Repeated actions down to one (or, with `halve`, to half as many).
fn count_atoms(t: &Table, halve: bool) -> Vec<Atom> {
    let mut out = Vec::new();
    for (i, a) in doc::tables(t, "timeline").enumerate() {
        let Some(n) = a.get("count").and_then(Value::as_integer).filter(|n| *n > 1) else { continue };
        let at = |key: &str| vec![k("timeline"), Seg::Index(i), k(key)];
        if !halve {
            out.push(Atom::new(
                format!("once: {} (was ×{n})", action_label(a)),
                vec![Edit::RemoveKey(at("count")), Edit::RemoveKey(at("every"))],
            ));
        } else if n >= 4 {
            out.push(Atom::new(
                format!("×{}: {} (was ×{n})", n / 2, action_label(a)),
                vec![Edit::Set(at("count"), Value::Integer(n / 2))],
            ));
        }
    }
    out
}

fn fault_label(f: &Table) -> String {
    let get = |key: &str| f.get(key).and_then(Value::as_str).unwrap_or("?");
    format!("{} at {}", get("kind"), get("at"))
}

fn fault_atoms(t: &Table) -> Vec<Atom> {
    doc::tables(t, "faults")
        .enumerate()
        .map(|(i, f)| Atom::new(fault_label(f), vec![Edit::RemoveEntry(vec![k("faults")], i)]))
        .collect()
}

fn fault_duration_atoms(t: &Table) -> Vec<Atom> {
    let mut out = Vec::new();
    for (i, f) in doc::tables(t, "faults").enumerate() {
        let Some(d) = duration(f.get("duration")).filter(|d| *d >= MIN_HALVED_US) else { continue };
        out.push(Atom::new(
            format!("{} duration {} → {}", fault_label(f), format_duration_us(d), format_duration_us(half(d))),
            vec![Edit::Set(vec![k("faults"), Seg::Index(i), k("duration")], duration_value(half(d)))],
        ));
    }
    out
}

fn link_atoms(t: &Table) -> Vec<Atom> {
    let mut out = Vec::new();
    let Some(net) = t.get("network").and_then(Value::as_table) else { return out };
    for (i, l) in doc::tables(net, "links").enumerate() {
        let ends = format!("{}–{}", doc::strings(l.get("from")).join(","), doc::strings(l.get("to")).join(","));
        out.push(Atom::new(format!("link {ends}"), vec![Edit::RemoveEntry(vec![k("network"), k("links")], i)]));
    }
    for (i, m) in doc::tables(net, "middleboxes").enumerate() {
        let what = m.get("kind").and_then(Value::as_str).unwrap_or("middlebox");
        let server = m.get("server").and_then(Value::as_str).unwrap_or("?");
        out.push(Atom::new(
            format!("{what} of {server}"),
            vec![Edit::RemoveEntry(vec![k("network"), k("middleboxes")], i)],
        ));
    }
    out
}

/// A latency table as a fixed latency (lognormal: its median; uniform: its midpoint).
fn fixed_latency(v: Option<&Value>) -> Option<(Value, String)> {
    let t = v?.as_table()?;
    let value = match t.get("dist").and_then(Value::as_str)? {
        "lognormal" => duration(t.get("median"))?,
        "uniform" => {
            let (min, max) = (duration(t.get("min"))?, duration(t.get("max"))?);
            min + half(max.saturating_sub(min))
        }
        _ => return None,
    };
    let mut fixed = Table::new();
    fixed.insert("dist".into(), Value::String("fixed".into()));
    fixed.insert("value".into(), duration_value(value));
    Some((Value::Table(fixed), format_duration_us(value)))
}

const MIDDLEBOX_NOISE: &[&str] = &["timeout_probability", "strip_account_entries", "strip_account_answers"];

fn noise_atoms(t: &Table) -> Vec<Atom> {
    let mut out = Vec::new();
    let net_path = |rest: &[Seg]| [vec![k("network")], rest.to_vec()].concat();
    let nonzero = |v: Option<&Value>| v.and_then(number).is_some_and(|x| x != 0.0);
    if let Some(net) = t.get("network").and_then(Value::as_table) {
        for key in ["loss", "duplicate"] {
            if nonzero(net.get(key)) {
                out.push(Atom::new(format!("network {key}"), vec![Edit::RemoveKey(net_path(&[k(key)]))]));
            }
        }
        if nonzero(net.get("reorder")) {
            let edits =
                vec![Edit::RemoveKey(net_path(&[k("reorder")])), Edit::RemoveKey(net_path(&[k("reorder_delay")]))];
            out.push(Atom::new("network reorder", edits));
        }
        if let Some((fixed, shown)) = fixed_latency(net.get("latency")) {
            out.push(Atom::new(
                format!("network latency fixed at {shown}"),
                vec![Edit::Set(net_path(&[k("latency")]), fixed)],
            ));
        }
        for (i, l) in doc::tables(net, "links").enumerate() {
            let at = |key: &str| net_path(&[k("links"), Seg::Index(i), k(key)]);
            if l.contains_key("loss") && l.contains_key("latency") {
                out.push(Atom::new(format!("link {i} loss"), vec![Edit::RemoveKey(at("loss"))]));
            }
            if let Some((fixed, shown)) = fixed_latency(l.get("latency")) {
                out.push(Atom::new(
                    format!("link {i} latency fixed at {shown}"),
                    vec![Edit::Set(at("latency"), fixed)],
                ));
            }
        }
        for (i, m) in doc::tables(net, "middleboxes").enumerate() {
            for key in MIDDLEBOX_NOISE {
                if nonzero(m.get(*key)) {
                    let path = net_path(&[k("middleboxes"), Seg::Index(i), k(key)]);
                    out.push(Atom::new(format!("middlebox {i} {key}"), vec![Edit::RemoveKey(path)]));
                }
            }
        }
    }
    for (i, f) in doc::tables(t, "faults").enumerate() {
        if let Some((fixed, shown)) = fixed_latency(f.get("latency")) {
            let path = vec![k("faults"), Seg::Index(i), k("latency")];
            out.push(Atom::new(format!("{} latency fixed at {shown}", fault_label(f)), vec![Edit::Set(path, fixed)]));
        }
    }
    out
}

/// Removes the keys of the table at `path` other than `keep` (each back to its default).
fn drop_keys(out: &mut Vec<Atom>, t: Option<&Value>, path: Vec<Seg>, keep: &[&str]) {
    let Some(t) = t.and_then(Value::as_table) else { return };
    for key in t.keys().filter(|key| !keep.contains(&key.as_str())) {
        let p = [path.clone(), vec![k(key)]].concat();
        out.push(Atom::new(show(&p), vec![Edit::RemoveKey(p)]));
    }
}

/// The room version every room falls back to (the latest stable version).
const PLAIN_VERSION: &str = "12";

fn knob_atoms(t: &Table) -> Vec<Atom> {
    let mut out = Vec::new();
    // `quiet_period` and `max_time` are the end pass's: their defaults are longer.
    if t.get("scenario").and_then(|s| s.get("description")).is_some() {
        let p = vec![k("scenario"), k("description")];
        out.push(Atom::new(show(&p), vec![Edit::RemoveKey(p)]));
    }
    drop_keys(&mut out, t.get("defaults"), vec![k("defaults")], &["users"]);
    for (i, s) in t.get("servers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        drop_keys(&mut out, Some(s), vec![k("servers"), Seg::Index(i)], &["name", "prefix", "count", "start", "users"]);
    }
    drop_keys(&mut out, t.get("keys"), vec![k("keys")], &["notaries"]);
    for (i, r) in doc::tables(t, "rooms").enumerate() {
        let at = |rest: &[Seg]| [vec![k("rooms"), Seg::Index(i)], rest.to_vec()].concat();
        if let Some(v) = r.get("version").and_then(Value::as_str).filter(|v| *v != PLAIN_VERSION) {
            out.push(Atom::new(
                format!("{} version {v} → {PLAIN_VERSION}", show(&at(&[]))),
                vec![Edit::Set(at(&[k("version")]), Value::String(PLAIN_VERSION.into()))],
            ));
        }
        drop_keys(&mut out, Some(&Value::Table(r.clone())), at(&[]), &["name", "version", "creator", "members"]);
        drop_keys(&mut out, r.get("power_levels"), at(&[k("power_levels")]), &["users"]);
        drop_keys(
            &mut out,
            r.get("power_levels").and_then(|p| p.get("users")),
            at(&[k("power_levels"), k("users")]),
            &[],
        );
    }
    if let Some(net) = t.get("network").and_then(Value::as_table) {
        for key in ["min_latency", "reorder_delay"].into_iter().filter(|key| net.contains_key(*key)) {
            let p = vec![k("network"), k(key)];
            out.push(Atom::new(show(&p), vec![Edit::RemoveKey(p)]));
        }
        for (i, l) in net.get("links").and_then(Value::as_array).into_iter().flatten().enumerate() {
            drop_keys(
                &mut out,
                Some(l),
                vec![k("network"), k("links"), Seg::Index(i)],
                &["from", "to", "latency", "loss"],
            );
        }
        for (i, m) in net.get("middleboxes").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let keep = [&["server", "kind"], MIDDLEBOX_NOISE].concat();
            drop_keys(&mut out, Some(m), vec![k("network"), k("middleboxes"), Seg::Index(i)], &keep);
        }
    }
    for (i, f) in doc::tables(t, "faults").enumerate() {
        for key in ["symmetric", "pepper"].into_iter().filter(|key| f.contains_key(*key)) {
            let p = vec![k("faults"), Seg::Index(i), k(key)];
            out.push(Atom::new(show(&p), vec![Edit::RemoveKey(p)]));
        }
    }
    for (i, a) in doc::tables(t, "timeline").enumerate() {
        for key in ["text", "via"].into_iter().filter(|key| a.contains_key(*key)) {
            let p = vec![k("timeline"), Seg::Index(i), k(key)];
            out.push(Atom::new(show(&p), vec![Edit::RemoveKey(p)]));
        }
    }
    for section in ["join", "participation", "account_query", "metrics"] {
        drop_keys(&mut out, t.get(section), vec![k(section)], &[]);
    }
    drop_keys(&mut out, t.get("identity"), vec![k("identity")], &["accounts"]);
    for (i, a) in
        t.get("identity").and_then(|x| x.get("accounts")).and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        drop_keys(&mut out, Some(a), vec![k("identity"), k("accounts"), Seg::Index(i)], &["user"]);
    }
    for (i, s) in t.get("identity_servers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        drop_keys(&mut out, Some(s), vec![k("identity_servers"), Seg::Index(i)], &["name", "bindings"]);
    }
    out
}

/// The run's end halved. With `end = "quiescence"` the run ends by itself: its `quiet_period`
/// is halved, and its `max_time` only while the run still ends before it (halving the bound
/// further would only cut the run short, which says nothing of the scenario).
fn end_atoms(t: &Table, summary: &serde_json::Value) -> Vec<Atom> {
    let ended_us = summary["sim_time_end_ms"].as_u64().map(|ms| ms * 1000);
    let mut out = Vec::new();
    let Some(s) = t.get("scenario").and_then(Value::as_table) else { return out };
    let mut halve = |key: &str, default: Option<u64>, floor: u64| {
        let Some(d) = duration(s.get(key)).or(default).filter(|d| *d >= 2_000_000 && half(*d) > floor) else {
            return;
        };
        out.push(Atom::new(
            format!("{key} {} → {}", format_duration_us(d), format_duration_us(half(d))),
            vec![Edit::Set(vec![k("scenario"), k(key)], duration_value(half(d)))],
        ));
    };
    if s.get("end").and_then(Value::as_str) == Some("quiescence") {
        halve("max_time", Some(3_600_000_000), ended_us.unwrap_or(u64::MAX));
        halve("quiet_period", Some(30_000_000), 0);
    } else {
        halve("end", None, 0);
        if let Some(end) = out.first_mut() {
            end.edits.extend(after_end(t, duration(s.get("end")).map_or(0, half)));
        }
    }
    out
}

/// What an earlier end leaves outside the run, cut to fit: workloads stop at the end (or go,
/// when they would start after it), later actions and faults go.
fn after_end(t: &Table, end: u64) -> Vec<Edit> {
    let mut edits = Vec::new();
    for (i, w) in doc::tables(t, "workload").enumerate() {
        if duration(w.get("start")).is_some_and(|start| start >= end) {
            edits.push(Edit::RemoveEntry(vec![k("workload")], i));
        } else if duration(w.get("stop")).is_some_and(|stop| stop > end) {
            edits.push(Edit::Set(vec![k("workload"), Seg::Index(i), k("stop")], duration_value(end)));
        }
    }
    for key in ["timeline", "faults"] {
        for (i, e) in doc::tables(t, key).enumerate() {
            if duration(e.get("at")).is_some_and(|at| at > end) {
                edits.push(Edit::RemoveEntry(vec![k(key)], i));
            }
        }
    }
    edits
}

// ---- applying atoms -------------------------------------------------------------------------

fn get_mut<'t>(t: &'t mut Table, path: &[Seg]) -> Option<&'t mut Value> {
    let (Seg::Key(first), rest) = path.split_first()? else { return None };
    let mut here = t.get_mut(first)?;
    for seg in rest {
        here = match (seg, here) {
            (Seg::Key(key), Value::Table(t)) => t.get_mut(key)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(here)
}

/// The table holding the last key of `path`, and that key.
fn parent_mut<'t>(t: &'t mut Table, path: &[Seg]) -> Option<(&'t mut Table, String)> {
    let (Seg::Key(last), parent) = path.split_last()? else { return None };
    if parent.is_empty() {
        return Some((t, last.clone()));
    }
    Some((get_mut(t, parent)?.as_table_mut()?, last.clone()))
}

/// `t` with every edit of `atoms` made, then whatever names a removed thing dropped
/// ([`doc::prune`]). Paths and indices refer to `t`.
pub fn apply(t: &Table, atoms: &[&Atom]) -> Table {
    let names = Names::of(t);
    let mut out = t.clone();
    let edits: Vec<&Edit> = atoms.iter().flat_map(|a| &a.edits).collect();
    let mut removed_users: BTreeMap<&[Seg], BTreeSet<&str>> = BTreeMap::new();
    let mut removed_entries: BTreeMap<&[Seg], BTreeSet<usize>> = BTreeMap::new();
    let mut removed_servers = BTreeSet::new();
    for edit in &edits {
        match edit {
            Edit::RemoveUser(path, u) => {
                removed_users.entry(path).or_default().insert(u);
            }
            Edit::RemoveEntry(path, i) => {
                removed_entries.entry(path).or_default().insert(*i);
            }
            Edit::RemoveServer(s) => {
                removed_servers.insert(s.clone());
            }
            _ => {}
        }
    }
    for (path, gone) in removed_users {
        let current = if get_mut(&mut out, path).is_none() && path.last() == Some(&k("users")) {
            vec!["*".to_string()]
        } else {
            get_mut(&mut out, path).map(|v| doc::strings(Some(v))).unwrap_or_default()
        };
        let kept: Vec<Value> = names
            .expand_users(&current)
            .into_iter()
            .filter(|u| !gone.contains(u.as_str()))
            .map(Value::String)
            .collect();
        if let Some((parent, key)) = parent_mut(&mut out, path) {
            // No members left: just the creator (`members` absent).
            if kept.is_empty() && key == "members" {
                parent.remove(&key);
            } else {
                parent.insert(key, Value::Array(kept));
            }
        }
    }
    for edit in &edits {
        match edit {
            Edit::Set(path, v) => {
                if let Some((parent, key)) = parent_mut(&mut out, path) {
                    parent.insert(key, v.clone());
                }
            }
            Edit::RemoveKey(path) => {
                if let Some((parent, key)) = parent_mut(&mut out, path) {
                    parent.remove(&key);
                }
            }
            Edit::SetUsers(entry, n) => {
                let path = match entry {
                    None => vec![k("defaults"), k("users")],
                    Some(i) => vec![k("servers"), Seg::Index(*i), k("users")],
                };
                if entry.is_none() && !out.contains_key("defaults") {
                    out.insert("defaults".into(), Value::Table(Table::new()));
                }
                if let Some((parent, key)) = parent_mut(&mut out, &path) {
                    parent.insert(key, Value::Integer(*n));
                }
            }
            Edit::RemoveNotary(name) => {
                if let Some(Value::Table(keys)) = out.get_mut("keys") {
                    if let Some(Value::Array(list)) = keys.get_mut("notaries") {
                        list.retain(|v| v.as_str() != Some(name.as_str()));
                        if list.is_empty() {
                            keys.remove("notaries");
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (path, gone) in removed_entries {
        if let Some(Value::Array(items)) = get_mut(&mut out, path) {
            let mut i = 0;
            items.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
            if items.is_empty() {
                if let Some((parent, key)) = parent_mut(&mut out, path) {
                    parent.remove(&key);
                }
            }
        }
    }
    if !removed_servers.is_empty() {
        remove_servers(&mut out, &removed_servers);
    }
    if edits.iter().any(|e| matches!(e, Edit::SetUsers(..))) {
        redundant_users(&mut out);
    }
    doc::drop_empty_tables(&mut out);
    doc::prune(&mut out);
    out
}

/// Drops `users` where it says what the default says: on `[defaults]` when it is 2, on a
/// server entry when it is `[defaults]`'s.
fn redundant_users(t: &mut Table) {
    let default = doc::default_users(t);
    if let Some(Value::Array(entries)) = t.get_mut("servers") {
        for e in entries.iter_mut().filter_map(Value::as_table_mut) {
            if e.get("users").and_then(Value::as_integer) == Some(default) {
                e.remove("users");
            }
        }
    }
    if default == doc::DEFAULT_USERS {
        if let Some(Value::Table(d)) = t.get_mut("defaults") {
            d.remove("users");
        }
    }
}

/// Removes servers from `[[servers]]`: single entries go, templates keep their other servers
/// (as contiguous templates, or a single entry where one server is left).
fn remove_servers(t: &mut Table, gone: &BTreeSet<String>) {
    let Some(Value::Array(entries)) = t.get_mut("servers") else { return };
    let mut kept = Vec::new();
    for entry in entries.drain(..) {
        let Value::Table(e) = entry else {
            kept.push(entry);
            continue;
        };
        if let Some(name) = e.get("name").and_then(Value::as_str) {
            if !gone.contains(name) {
                kept.push(Value::Table(e));
            }
            continue;
        }
        let prefix = e.get("prefix").and_then(Value::as_str).unwrap_or("").to_string();
        let start = e.get("start").and_then(Value::as_integer).unwrap_or(1);
        let count = e.get("count").and_then(Value::as_integer).unwrap_or(0).clamp(0, 100_000);
        let numbers: Vec<i64> = (start..start + count).filter(|n| !gone.contains(&format!("{prefix}{n}"))).collect();
        // Maximal runs of consecutive numbers.
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for n in numbers {
            match runs.last_mut() {
                Some((first, len)) if *first + *len == n => *len += 1,
                _ => runs.push((n, 1)),
            }
        }
        for (first, len) in runs {
            let mut x = e.clone();
            if len == 1 {
                for key in ["prefix", "start", "count"] {
                    x.remove(key);
                }
                x.insert("name".into(), Value::String(format!("{prefix}{first}")));
            } else {
                if first != 1 || x.contains_key("start") {
                    x.insert("start".into(), Value::Integer(first));
                }
                x.insert("count".into(), Value::Integer(len));
            }
            kept.push(Value::Table(x));
        }
    }
    if kept.is_empty() {
        t.remove("servers");
    } else {
        *entries = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[scenario]
name = "t"
end = "2m"

[[servers]]
prefix = "hs"
count = 4
users = 3

[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
members = ["*"]

[network]
latency = { dist = "uniform", min = "20ms", max = "120ms" }
loss = 0.1

[[faults]]
at = "5s"
kind = "crash"
server = "hs3"
duration = "10s"

[[timeline]]
at = "10s"
action = "message"
room = "main"
user = "@u2:hs2"
count = 6
every = "1s"

[[workload]]
room = "main"
start = "1s"
stop = "61s"
messages_per_minute = 5
"#;

    fn table() -> Table {
        toml::from_str(TEXT).unwrap()
    }

    fn first(pass: fn(&Table) -> Vec<Atom>, t: &Table) -> Table {
        let atoms = pass(t);
        assert!(!atoms.is_empty());
        apply(t, &[&atoms[0]])
    }

    #[test]
    fn removing_servers_splits_templates() {
        let t = table();
        let atoms = server_atoms(&t);
        assert_eq!(atoms.iter().map(|a| a.label.as_str()).collect::<Vec<_>>(), ["hs1", "hs2", "hs3", "hs4"]);
        let out = apply(&t, &[&atoms[1]]);
        let text = doc::render(&out);
        assert!(text.contains("[[servers]]\nname = \"hs1\"\nusers = 3\n"), "{text}");
        assert!(text.contains("[[servers]]\nprefix = \"hs\"\ncount = 2\nstart = 3\nusers = 3\n"), "{text}");
        assert!(out.get("timeline").is_none(), "the action's user was on hs2");
        let out = apply(&t, &[&atoms[2], &atoms[3]]);
        assert!(out.get("faults").is_none(), "the crash named hs3");
        assert_eq!(servers(&out), 2);
    }

    #[test]
    fn users_members_and_workload_users() {
        let t = table();
        let out = first(|t| user_atoms(t, |_| 1), &t);
        assert_eq!(users(&out), 4);
        assert!(out.get("timeline").is_none(), "@u2:hs2 is gone");
        let atoms = member_atoms(&t);
        assert_eq!(atoms.len(), 12);
        let out = apply(&t, &[&atoms[0], &atoms[5]]);
        assert_eq!(members(&out), 10);
        let atoms = workload_user_atoms(&t);
        let out = apply(&t, &[&atoms[11]]);
        assert_eq!(doc::strings(out["workload"][0].get("users")).len(), 11);
    }

    #[test]
    fn halving_rates_windows_counts_faults_and_end() {
        let t = table();
        let out = first(|t| rate_atoms(t, true), &t);
        assert_eq!(out["workload"][0]["messages_per_minute"].as_float(), Some(2.5));
        assert!(first(|t| rate_atoms(t, false), &t)["workload"][0].get("messages_per_minute").is_none());
        assert_eq!(first(|t| window_atoms(t, true), &t)["workload"][0]["stop"].as_str(), Some("31s"));
        assert_eq!(first(|t| window_atoms(t, false), &t)["workload"][0]["start"].as_str(), Some("31s"));
        let once = first(|t| count_atoms(t, false), &t);
        assert!(once["timeline"][0].get("count").is_none() && once["timeline"][0].get("every").is_none());
        assert_eq!(first(|t| count_atoms(t, true), &t)["timeline"][0]["count"].as_integer(), Some(3));
        assert_eq!(first(fault_duration_atoms, &t)["faults"][0]["duration"].as_str(), Some("5s"));
        assert_eq!(first(|t| end_atoms(t, &serde_json::Value::Null), &t)["scenario"]["end"].as_str(), Some("1m"));
        let mut quiet = t.clone();
        quiet["scenario"].as_table_mut().unwrap().insert("end".into(), Value::String("quiescence".into()));
        let ended = |ms: u64| serde_json::json!({ "sim_time_end_ms": ms });
        let labels = |ms| end_atoms(&quiet, &ended(ms)).into_iter().map(|a| a.label).collect::<Vec<_>>();
        assert_eq!(labels(1_000_000), ["max_time 1h → 30m", "quiet_period 30s → 15s"]);
        assert_eq!(labels(1_800_000), ["quiet_period 30s → 15s"], "the run would be cut short");
        // A fixed end halved to 30 s: the action at 10 s stays, the workload stops at 30 s.
        let mut short = t.clone();
        short["scenario"].as_table_mut().unwrap().insert("end".into(), Value::String("1m".into()));
        let out = first(|t| end_atoms(t, &serde_json::Value::Null), &short);
        assert_eq!(out["scenario"]["end"].as_str(), Some("30s"));
        assert_eq!(out["workload"][0]["stop"].as_str(), Some("30s"));
        assert_eq!(actions(&out), 6);
        let out = first(|t| end_atoms(t, &serde_json::Value::Null), &out);
        assert_eq!((out["workload"][0]["stop"].as_str(), actions(&out), faults(&out)), (Some("15s"), 6, 1));
        let out = first(|t| end_atoms(t, &serde_json::Value::Null), &out);
        assert_eq!((actions(&out), faults(&out)), (0, 1), "the action at 10 s is after the end at 7.5 s");
    }

    #[test]
    fn noise_and_knobs() {
        let t = table();
        let atoms = noise_atoms(&t);
        let out = apply(&t, &atoms.iter().collect::<Vec<_>>());
        assert!(out["network"].get("loss").is_none());
        assert_eq!(
            doc::render(&out).lines().find(|l| l.starts_with("latency")),
            Some("latency = { dist = \"fixed\", value = \"70ms\" }")
        );
        let atoms = knob_atoms(&t);
        let labels: Vec<&str> = atoms.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["rooms.0 version 11 → 12"]);
    }

    #[test]
    fn every_pass_applies_to_every_bundled_scenario_without_panicking() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "large.toml") {
                continue;
            }
            let t: Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for pass in passes() {
                let atoms = (pass.atoms)(&t, &serde_json::Value::Null);
                if !atoms.is_empty() {
                    let all: Vec<&Atom> = atoms.iter().collect();
                    let _ = doc::render(&apply(&t, &all));
                    let _ = doc::render(&apply(&t, &all[..1]));
                }
            }
        }
    }
}
