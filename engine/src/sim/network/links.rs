//! Link parameters: the scenario's defaults plus sparse overrides from `[[network.links]]`, and
//! degraded sets of links (fault `degrade`).
//!
//! Memory is O(nodes + overrides): a link that nobody configured costs nothing. The scenario's
//! links apply in file order, each field (latency, loss) on its own, and a later link wins, so
//! a pair's parameters are exactly those that a full n×n matrix filled in file order would hold.

use crate::scenario::{LatencyDist, LinkSpec};
use std::collections::BTreeMap;

/// The parameters one message is routed with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LinkParams {
    pub latency: LatencyDist,
    pub loss: f64,
}

/// A link rule covering more (from, to) pairs than this is kept as a rule with two membership
/// sets instead of being expanded pair by pair (a `"*" -> "*"` link of 100 000 servers would
/// otherwise be 10¹⁰ entries).
const EXPAND_MAX_PAIRS: usize = 4096;

/// What the scenario's links set on one pair: for each field, the number of the last link (in
/// file order, from 1) that set it, and the value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Override {
    latency: Option<(u32, LatencyDist)>,
    loss: Option<(u32, f64)>,
}

impl Override {
    fn set(&mut self, rule: u32, latency: Option<LatencyDist>, loss: Option<f64>) {
        if let Some(l) = latency {
            self.latency = Some((rule, l));
        }
        if let Some(p) = loss {
            self.loss = Some((rule, p));
        }
    }
}

/// A link of the scenario too wide to expand: membership of senders and receivers.
#[derive(Debug, Clone)]
struct WideLink {
    rule: u32,
    from: Vec<bool>,
    to: Vec<bool>,
    symmetric: bool,
    latency: Option<LatencyDist>,
    loss: Option<f64>,
}

impl WideLink {
    fn hits(&self, from: usize, to: usize) -> bool {
        let has = |set: &[bool], i: usize| set.get(i).copied().unwrap_or(false);
        (has(&self.from, from) && has(&self.to, to)) || (self.symmetric && has(&self.from, to) && has(&self.to, from))
    }
}

/// Default link parameters plus the scenario's overrides.
#[derive(Debug, Clone)]
pub(super) struct Links {
    default: LinkParams,
    overrides: BTreeMap<(u32, u32), Override>,
    wide: Vec<WideLink>,
}

impl Links {
    /// `index` maps a server name to its index (None: not a server, ignored); `n` servers.
    pub fn new(default: LinkParams, specs: &[LinkSpec], index: impl Fn(&str) -> Option<u32>, n: usize) -> Links {
        let mut links = Links { default, overrides: BTreeMap::new(), wide: Vec::new() };
        for (i, spec) in specs.iter().enumerate() {
            let rule = i as u32 + 1;
            let from: Vec<u32> = spec.from.iter().filter_map(|s| index(s)).collect();
            let to: Vec<u32> = spec.to.iter().filter_map(|s| index(s)).collect();
            let pairs = from.len().saturating_mul(to.len()).saturating_mul(if spec.symmetric { 2 } else { 1 });
            if pairs > EXPAND_MAX_PAIRS {
                let members = |ids: &[u32]| {
                    let mut set = vec![false; n];
                    for &k in ids {
                        set[k as usize] = true;
                    }
                    set
                };
                links.wide.push(WideLink {
                    rule,
                    from: members(&from),
                    to: members(&to),
                    symmetric: spec.symmetric,
                    latency: spec.latency,
                    loss: spec.loss,
                });
                continue;
            }
            for &f in &from {
                for &t in &to {
                    for (a, b) in [(f, t), (t, f)].into_iter().take(if spec.symmetric { 2 } else { 1 }) {
                        links.overrides.entry((a, b)).or_default().set(rule, spec.latency, spec.loss);
                    }
                }
            }
        }
        links
    }

    /// The parameters of the link from `from` to `to`, before degrades.
    pub fn get(&self, from: u32, to: u32) -> LinkParams {
        let mut o = self.overrides.get(&(from, to)).copied().unwrap_or_default();
        for w in &self.wide {
            if w.hits(from as usize, to as usize) {
                // Later in file order than what the pair map holds: `w` wins.
                if !matches!(o.latency, Some((r, _)) if r > w.rule) {
                    if let Some(l) = w.latency {
                        o.latency = Some((w.rule, l));
                    }
                }
                if !matches!(o.loss, Some((r, _)) if r > w.rule) {
                    if let Some(p) = w.loss {
                        o.loss = Some((w.rule, p));
                    }
                }
            }
        }
        LinkParams {
            latency: o.latency.map_or(self.default.latency, |(_, l)| l),
            loss: o.loss.map_or(self.default.loss, |(_, p)| p),
        }
    }

    /// How many (from, to) pairs have their own parameters.
    pub fn override_count(&self) -> usize {
        self.overrides.len()
    }

    /// How many links of the scenario are kept as membership sets.
    #[cfg(test)]
    pub fn wide_count(&self) -> usize {
        self.wide.len()
    }
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

impl Degrade {
    /// Whether the degrade covers the link from `from` to `to`.
    pub fn hits(&self, from: usize, to: usize) -> bool {
        let has = |set: &[bool], i: usize| set.get(i).copied().unwrap_or(false);
        (has(&self.from, from) && has(&self.to, to)) || (self.symmetric && has(&self.from, to) && has(&self.to, from))
    }

    pub(super) fn apply(&self, p: &mut LinkParams) {
        if let Some(l) = self.loss {
            p.loss = l;
        }
        if let Some(l) = self.latency {
            p.latency = l;
        }
    }
}

/// The parameters of a link with the active degrades applied in the order they started.
pub(super) fn degraded(base: LinkParams, degrades: &[Degrade], from: usize, to: usize) -> LinkParams {
    let mut p = base;
    for d in degrades {
        if d.hits(from, to) {
            d.apply(&mut p);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: LinkParams = LinkParams { latency: LatencyDist::Fixed { value_us: 10 }, loss: 0.0 };

    fn fixed(value_us: u64) -> Option<LatencyDist> {
        Some(LatencyDist::Fixed { value_us })
    }

    fn link(from: &[&str], to: &[&str], symmetric: bool, latency: Option<LatencyDist>, loss: Option<f64>) -> LinkSpec {
        LinkSpec {
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.iter().map(|s| s.to_string()).collect(),
            symmetric,
            latency,
            loss,
        }
    }

    /// Servers named "0", "1", …: the index is the name.
    fn index(s: &str) -> Option<u32> {
        s.parse().ok()
    }

    #[test]
    fn overrides_apply_only_to_their_pairs() {
        let links = Links::new(BASE, &[link(&["0"], &["1"], false, fixed(99), Some(0.5))], index, 3);
        assert_eq!(links.get(0, 1), LinkParams { latency: LatencyDist::Fixed { value_us: 99 }, loss: 0.5 });
        for (a, b) in [(1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (0, 0), (1, 1)] {
            assert_eq!(links.get(a, b), BASE, "{a} -> {b}");
        }
        assert_eq!(links.override_count(), 1);
    }

    #[test]
    fn a_symmetric_override_applies_both_ways() {
        let links = Links::new(BASE, &[link(&["0"], &["2"], true, fixed(7), None)], index, 3);
        let want = LinkParams { latency: LatencyDist::Fixed { value_us: 7 }, loss: 0.0 };
        assert_eq!(links.get(0, 2), want);
        assert_eq!(links.get(2, 0), want);
        assert_eq!(links.get(0, 1), BASE);
        assert_eq!(links.override_count(), 2);
    }

    #[test]
    fn later_links_win_field_by_field_and_unknown_names_are_ignored() {
        let specs = [
            link(&["0"], &["1"], false, fixed(5), Some(0.1)),
            link(&["0", "nobody"], &["1"], false, None, Some(0.2)),
            link(&["0"], &["1", "2"], false, fixed(6), None),
        ];
        let links = Links::new(BASE, &specs, index, 3);
        assert_eq!(links.get(0, 1), LinkParams { latency: LatencyDist::Fixed { value_us: 6 }, loss: 0.2 });
        assert_eq!(links.get(0, 2), LinkParams { latency: LatencyDist::Fixed { value_us: 6 }, loss: 0.0 });
    }

    #[test]
    fn wide_links_are_kept_as_sets_and_keep_file_order() {
        let n = 100;
        let all: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let specs = [
            link(&["0"], &["1"], false, fixed(5), Some(0.1)),
            link(&all, &all, false, fixed(50), None),
            link(&["0"], &["2"], false, fixed(6), None),
        ];
        let links = Links::new(BASE, &specs, index, n);
        assert_eq!((links.override_count(), links.wide_count()), (2, 1));
        assert_eq!(links.get(0, 1), LinkParams { latency: LatencyDist::Fixed { value_us: 50 }, loss: 0.1 });
        assert_eq!(links.get(0, 2), LinkParams { latency: LatencyDist::Fixed { value_us: 6 }, loss: 0.0 });
        assert_eq!(links.get(7, 3), LinkParams { latency: LatencyDist::Fixed { value_us: 50 }, loss: 0.0 });
    }

    #[test]
    fn degrades_hit_their_links_and_stack_in_order() {
        let d = |id, from: Vec<bool>, to: Vec<bool>, symmetric, loss| Degrade {
            id,
            from,
            to,
            symmetric,
            loss,
            latency: None,
        };
        let ds = [
            d(0, vec![true, false, false], vec![false, true, false], true, Some(0.3)),
            d(1, vec![true, false, false], vec![false, true, true], false, Some(0.6)),
        ];
        assert_eq!(degraded(BASE, &ds, 0, 1).loss, 0.6);
        assert_eq!(degraded(BASE, &ds, 1, 0).loss, 0.3, "only the symmetric one applies backwards");
        assert_eq!(degraded(BASE, &ds, 2, 0).loss, 0.0);
    }
}
