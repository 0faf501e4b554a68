//! Reading an explorer page's embedded data in tests, as the page's script does: the JSON
//! block, its delta-encoded states, each server's forward extremities and current state at a
//! time (`analysis/src/explorer.rs` writes them, `docs/explorer.md` describes them).

#![allow(dead_code)] // each test file uses a part

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The JSON block a page embeds.
pub fn embedded(html: &str) -> Value {
    let start = html.find("<script id=\"data\" type=\"application/json\">").expect("data block");
    let rest = &html[start..];
    let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(body).expect("embedded JSON parses")
}

/// A state: (type, state_key) → event ID.
pub type State = BTreeMap<(String, String), String>;

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("an array").iter().map(|x| x.as_i64().expect("an integer")).collect()
}

/// Every entry of the page's state table, rebuilt (bases precede their entries).
pub fn states(data: &Value) -> Vec<State> {
    let bases = ints(&data["states"]["base"]);
    let mut out: Vec<State> = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let mut s = if *base >= 0 { out[*base as usize].clone() } else { State::new() };
        for c in ints(&data["states"]["delta"][i]).chunks(2) {
            let key = &data["keys"][c[0] as usize];
            let key = (key[0].as_str().unwrap().to_owned(), key[1].as_str().unwrap().to_owned());
            if c[1] < 0 {
                s.remove(&key);
            } else {
                s.insert(key, data["ids"][c[1] as usize].as_str().unwrap().to_owned());
            }
        }
        out.push(s);
    }
    out
}

/// `dag verify`'s state digest: sha256 over the sorted lines `type \0 state_key \0 event_id \n`,
/// first 16 hex digits.
pub fn digest(state: &State) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for ((t, k), e) in state {
        h.update(format!("{t}\0{k}\0{e}\n").as_bytes());
    }
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Decisions as the page has them: (event, server, time) with the extremity change
/// (entered, left) decoded.
pub struct Decisions {
    pub event: Vec<usize>,
    pub server: Vec<usize>,
    pub t_us: Vec<u64>,
    pub change: Vec<(bool, Vec<usize>)>,
}

pub fn decisions(data: &Value) -> Decisions {
    let dec = &data["dec"];
    let event: Vec<usize> = ints(&dec["e"]).into_iter().map(|e| e as usize).collect();
    let server = ints(&dec["s"]).into_iter().map(|s| s as usize).collect();
    let mut t = 0i64;
    let t_us = ints(&dec["t"])
        .into_iter()
        .map(|d| {
            t += d;
            t as u64
        })
        .collect();
    let change = dec["x"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, x)| match x.as_i64() {
            Some(0) => (false, vec![]),
            Some(1) => {
                let prev: BTreeSet<usize> = ints(&data["prev"][event[k]]).into_iter().map(|p| p as usize).collect();
                (true, prev.into_iter().collect())
            }
            Some(_) => (true, vec![]),
            None => {
                let l = ints(x);
                (l[0] == 1, l[1..].iter().map(|e| *e as usize).collect())
            }
        })
        .collect();
    Decisions { event, server, t_us, change }
}

/// A server's forward extremities after its decisions up to `t_us` (as event IDs, sorted).
pub fn extremities(data: &Value, d: &Decisions, server: usize, t_us: u64) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for k in 0..d.event.len() {
        if d.server[k] != server || d.t_us[k] > t_us {
            continue;
        }
        for r in &d.change[k].1 {
            set.remove(r);
        }
        if d.change[k].0 {
            set.insert(d.event[k]);
        }
    }
    set.into_iter().map(|e| data["ids"][e].as_str().unwrap().to_owned()).collect()
}

/// A server's current state at `t_us` (its last change point by then).
pub fn current(data: &Value, states: &[State], server: usize, t_us: u64) -> State {
    let points = ints(&data["current"][server]);
    let mut at = -1;
    for p in points.chunks(2) {
        if p[0] as u64 <= t_us {
            at = p[1];
        }
    }
    if at < 0 {
        State::new()
    } else {
        states[at as usize].clone()
    }
}

/// The index of a server on the page.
pub fn server_index(data: &Value, name: &str) -> usize {
    data["servers"].as_array().unwrap().iter().position(|s| s == name).expect("the server is on the page")
}
