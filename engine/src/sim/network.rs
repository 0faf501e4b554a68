//! The network model: per-link latency distributions, loss, duplication, reordering, partitions
//! and degraded links. Every draw comes from the sending server's own stream
//! (`network/<server>`), taken in the world's fixed merge order.

use super::federation::{Message, Outcome, Request, RequestId, ServerIdx};
use super::rng::RngStreams;
use super::time::SimTime;
use crate::scenario::MiddleboxKind;
use crate::scenario::{LatencyDist, NetworkSpec};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// What happens to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Delivered at these times (two with duplication).
    Deliver(Vec<SimTime>),
    Drop(&'static str),
}

#[derive(Debug, Clone)]
struct LinkParams {
    latency: LatencyDist,
    loss: f64,
}

/// A degraded set of links (fault `degrade`): which senders and receivers, and what changes.
#[derive(Debug, Clone)]
pub struct Degrade {
    pub id: usize,
    pub from: Vec<bool>,
    pub to: Vec<bool>,
    pub symmetric: bool,
    pub loss: Option<f64>,
    pub latency: Option<LatencyDist>,
}

/// What a middlebox does with a message passing through it.
#[derive(Debug, Clone)]
pub enum Middleboxed {
    Forward(Message),
    Drop(&'static str, Message),
    /// A cache answered instead of the server behind it (the reply goes back to the sender).
    Answer(Message),
}

/// A reverse proxy or cache in front of a server: it sees requests to the server and the
/// server's answers. All non-PDU federation calls pass through it, so later lookups
/// (`/query/accounts`, key validity, identity) get proxy and cache behaviour without any change
/// to the scheduler.
struct Middlebox {
    server: ServerIdx,
    kind: MiddleboxKind,
    timeout_probability: f64,
    rng: ChaCha8Rng,
    /// Requests seen going in: (requester, request id) → cache key.
    open: BTreeMap<(ServerIdx, RequestId), Option<String>>,
    /// Cached answers: key → (stored at, answer).
    cache: BTreeMap<String, (SimTime, Outcome)>,
}

pub struct Network {
    min_latency_us: u64,
    duplicate: f64,
    reorder: f64,
    reorder_delay_us: u64,
    /// Base parameters per (from, to), links of the scenario applied in file order.
    links: Vec<Vec<LinkParams>>,
    /// Side of each server in the active partition (None: no partition).
    partition: Option<(usize, Vec<u32>)>,
    degrades: Vec<Degrade>,
    rngs: Vec<ChaCha8Rng>,
    middleboxes: Vec<Middlebox>,
}

impl Network {
    pub fn new(spec: &NetworkSpec, names: &[String], streams: &RngStreams) -> Network {
        let n = names.len();
        let base = LinkParams { latency: spec.latency, loss: spec.loss };
        let mut links = vec![vec![base; n]; n];
        let idx = |name: &String| names.iter().position(|x| x == name);
        for link in &spec.links {
            for f in link.from.iter().filter_map(idx) {
                for t in link.to.iter().filter_map(idx) {
                    for (a, b) in [(f, t), (t, f)].into_iter().take(if link.symmetric { 2 } else { 1 }) {
                        if let Some(l) = link.latency {
                            links[a][b].latency = l;
                        }
                        if let Some(p) = link.loss {
                            links[a][b].loss = p;
                        }
                    }
                }
            }
        }
        Network {
            min_latency_us: spec.min_latency_us.max(1),
            duplicate: spec.duplicate,
            reorder: spec.reorder,
            reorder_delay_us: spec.reorder_delay_us,
            links,
            partition: None,
            degrades: Vec::new(),
            rngs: names.iter().map(|n| streams.stream(&format!("network/{n}"))).collect(),
            middleboxes: spec
                .middleboxes
                .iter()
                .filter_map(|m| {
                    let server = names.iter().position(|n| *n == m.server)? as ServerIdx;
                    Some(Middlebox {
                        server,
                        kind: m.kind,
                        timeout_probability: m.timeout_probability,
                        rng: streams.stream(&format!("middlebox/{}", m.server)),
                        open: BTreeMap::new(),
                        cache: BTreeMap::new(),
                    })
                })
                .collect(),
        }
    }

    /// Passes a message through the middleboxes in front of its receiver (requests) or its
    /// sender (answers). PDU transactions pass untouched: proxies forward `/send` as is.
    pub fn through_middleboxes(
        &mut self,
        from: ServerIdx,
        to: ServerIdx,
        message: Message,
        at: SimTime,
    ) -> Middleboxed {
        let mut message = message;
        for mb in self.middleboxes.iter_mut() {
            match &mut message {
                Message::Request { body: Request::Transaction { .. }, .. } => {}
                Message::Request { id, body } if mb.server == to => {
                    if mb.timeout_probability > 0.0 && mb.rng.gen_bool(mb.timeout_probability.min(1.0)) {
                        return Middleboxed::Drop("middlebox timeout", message);
                    }
                    let key = body.cache_key();
                    if let (MiddleboxKind::Cache { ttl_us }, Some(k)) = (mb.kind, &key) {
                        if let Some((stored, outcome)) = mb.cache.get(k) {
                            if at.saturating_sub(*stored) < ttl_us {
                                return Middleboxed::Answer(Message::Response { id: *id, outcome: outcome.clone() });
                            }
                        }
                    }
                    mb.open.insert((from, *id), key);
                }
                Message::Response { id, outcome } if mb.server == from => {
                    let Some(key) = mb.open.remove(&(to, *id)) else { continue };
                    if let Outcome::Ok(response) = outcome {
                        if let MiddleboxKind::ReverseProxy { drop_unknown_keys: true } = mb.kind {
                            response.drop_unknown_entries();
                        }
                    }
                    if let (MiddleboxKind::Cache { .. }, Some(k)) = (mb.kind, key) {
                        mb.cache.insert(k, (at, outcome.clone()));
                    }
                }
                _ => {}
            }
        }
        Middleboxed::Forward(message)
    }

    /// The lower bound on every latency: the width of the parallel windows.
    pub fn min_latency_us(&self) -> u64 {
        self.min_latency_us
    }

    pub fn link_up(&self, from: ServerIdx, to: ServerIdx) -> bool {
        match &self.partition {
            Some((_, sides)) => sides[from as usize] == sides[to as usize],
            None => true,
        }
    }

    /// Starts partition `id`: `sides[i]` is server i's side.
    pub fn partition(&mut self, id: usize, sides: Vec<u32>) {
        self.partition = Some((id, sides));
    }

    /// Heals partition `id` if it is still the active one.
    pub fn heal_partition(&mut self, id: usize) {
        if self.partition.as_ref().is_some_and(|(p, _)| *p == id) {
            self.partition = None;
        }
    }

    pub fn degrade(&mut self, degrade: Degrade) {
        self.degrades.push(degrade);
    }

    pub fn end_degrade(&mut self, id: usize) {
        self.degrades.retain(|d| d.id != id);
    }

    pub fn heal_all(&mut self) {
        self.partition = None;
        self.degrades.clear();
    }

    fn params(&self, from: usize, to: usize) -> LinkParams {
        let mut p = self.links[from][to].clone();
        for d in &self.degrades {
            let hit = (d.from[from] && d.to[to]) || (d.symmetric && d.from[to] && d.to[from]);
            if hit {
                if let Some(l) = d.loss {
                    p.loss = l;
                }
                if let Some(l) = d.latency {
                    p.latency = l;
                }
            }
        }
        p
    }

    /// Decides the fate of a message sent at `at`.
    pub fn route(&mut self, from: ServerIdx, to: ServerIdx, at: SimTime) -> Route {
        if !self.link_up(from, to) {
            return Route::Drop("partition");
        }
        let p = self.params(from as usize, to as usize);
        let min = self.min_latency_us;
        let (dup, reorder, reorder_delay) = (self.duplicate, self.reorder, self.reorder_delay_us);
        let rng = &mut self.rngs[from as usize];
        if p.loss > 0.0 && rng.gen_bool(p.loss.min(1.0)) {
            return Route::Drop("loss");
        }
        let mut times = Vec::with_capacity(2);
        let copies = if dup > 0.0 && rng.gen_bool(dup.min(1.0)) { 2 } else { 1 };
        for _ in 0..copies {
            let mut latency = sample_latency(&p.latency, rng).max(min);
            if reorder > 0.0 && reorder_delay > 0 && rng.gen_bool(reorder.min(1.0)) {
                latency += rng.gen_range(0..=reorder_delay);
            }
            times.push(at + latency);
        }
        Route::Deliver(times)
    }
}

/// One latency draw (µs).
pub fn sample_latency(dist: &LatencyDist, rng: &mut ChaCha8Rng) -> u64 {
    match *dist {
        LatencyDist::Fixed { value_us } => value_us,
        LatencyDist::Uniform { min_us, max_us } => rng.gen_range(min_us..=max_us.max(min_us)),
        LatencyDist::Lognormal { median_us, sigma } => {
            // Box–Muller: one standard normal draw from two uniforms.
            let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = rng.gen();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let v = median_us as f64 * (sigma * z).exp();
            v.clamp(0.0, 3.6e9) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NetworkSpec {
        NetworkSpec {
            latency: LatencyDist::Lognormal { median_us: 40_000, sigma: 0.5 },
            min_latency_us: 5_000,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_us: 0,
            links: vec![],
            middleboxes: vec![],
        }
    }

    #[test]
    fn latency_never_below_the_window_and_reproducible() {
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let mut n1 = Network::new(&spec(), &names, &RngStreams::new(1));
        let mut n2 = Network::new(&spec(), &names, &RngStreams::new(1));
        for t in 0..1000 {
            let r1 = n1.route(0, 1, t);
            assert_eq!(r1, n2.route(0, 1, t));
            let Route::Deliver(times) = r1 else { panic!("no loss configured") };
            assert!(times.iter().all(|x| *x >= t + 5_000));
        }
    }

    #[test]
    fn a_middlebox_that_times_out_swallows_requests_but_not_transactions() {
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let mut spec = spec();
        spec.middleboxes.push(crate::scenario::MiddleboxSpec {
            server: "b".into(),
            kind: MiddleboxKind::ReverseProxy { drop_unknown_keys: true },
            timeout_probability: 1.0,
        });
        let mut n = Network::new(&spec, &names, &RngStreams::new(1));
        let join =
            Message::Request { id: 1, body: Request::MakeJoin { room_id: "!r:a".into(), user_id: "@u:a".into() } };
        assert!(matches!(n.through_middleboxes(0, 1, join, 0), Middleboxed::Drop(..)));
        let txn = Message::Request { id: 2, body: Request::Transaction { pdus: vec![] } };
        assert!(matches!(n.through_middleboxes(0, 1, txn, 0), Middleboxed::Forward(_)));
        let reverse =
            Message::Request { id: 3, body: Request::MakeJoin { room_id: "!r:b".into(), user_id: "@u:b".into() } };
        assert!(
            matches!(n.through_middleboxes(1, 0, reverse, 0), Middleboxed::Forward(_)),
            "only requests to b pass b's box"
        );
    }

    #[test]
    fn partitions_drop_and_heal() {
        let names: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut n = Network::new(&spec(), &names, &RngStreams::new(1));
        n.partition(7, vec![0, 0, 1]);
        assert!(n.link_up(0, 1));
        assert_eq!(n.route(0, 2, 0), Route::Drop("partition"));
        n.heal_partition(8);
        assert!(!n.link_up(0, 2), "another partition's end does not heal this one");
        n.heal_partition(7);
        assert!(n.link_up(0, 2));
    }
}
