//! `[network]`: latency distributions, loss, duplication, reordering, links and middleboxes.

use toml::Spanned;

use super::super::duration::DurationUs;
use super::super::error::{Problem, Res};
use super::super::model::{LatencyDist, LinkSpec, MiddleboxKind, MiddleboxSpec, NetworkSpec};
use super::super::names::Names;
use super::super::raw::{DistName, RawLatency, RawLink, RawMiddlebox, RawNetwork};
use super::super::MAX_EXPANDED_NAMES;
use super::{duration_or, probability, probability_or, reject, require, One};

/// The latency of a network nobody described: a typical wide-area link.
const DEFAULT_LATENCY: LatencyDist = LatencyDist::Lognormal { median_us: 40_000, sigma: 0.5 };
const DEFAULT_SIGMA: f64 = 0.5;

pub(super) fn resolve(raw: RawNetwork, names: &Names) -> Res<NetworkSpec> {
    let min_latency_us = match &raw.min_latency {
        None => 5_000,
        Some(m) if m.get_ref().0 == 0 => {
            let message = "min_latency must be greater than 0: it is the width of the parallel window";
            return Err(Problem::at(m.span(), message));
        }
        Some(m) => m.get_ref().0,
    };
    Ok(NetworkSpec {
        latency: raw.latency.as_ref().map_or(Ok(DEFAULT_LATENCY), latency)?,
        min_latency_us,
        loss: probability_or(&raw.loss, 0.0, "loss", One::Excluded)?,
        duplicate: probability_or(&raw.duplicate, 0.0, "duplicate", One::Allowed)?,
        reorder: probability_or(&raw.reorder, 0.0, "reorder", One::Allowed)?,
        reorder_delay_us: duration_or(&raw.reorder_delay, 50_000),
        links: links(&raw.links, names)?,
        middleboxes: raw.middleboxes.iter().map(|m| middlebox(m.get_ref(), names)).collect::<Res<_>>()?,
    })
}

/// `{ dist = "fixed" | "uniform" | "lognormal", ... }` with exactly that distribution's parameters.
pub(super) fn latency(raw: &Spanned<RawLatency>) -> Res<LatencyDist> {
    let l = raw.get_ref();
    let dist_span = l.dist.span();
    match *l.dist.get_ref() {
        DistName::Fixed => {
            let kind = "dist = \"fixed\" (it takes `value`)";
            reject(&l.min, "min", kind)?;
            reject(&l.max, "max", kind)?;
            reject(&l.median, "median", kind)?;
            reject(&l.sigma, "sigma", kind)?;
            Ok(LatencyDist::Fixed { value_us: require(&l.value, "value", &dist_span, kind)?.get_ref().0 })
        }
        DistName::Uniform => {
            let kind = "dist = \"uniform\" (it takes `min` and `max`)";
            reject(&l.value, "value", kind)?;
            reject(&l.median, "median", kind)?;
            reject(&l.sigma, "sigma", kind)?;
            let min = require(&l.min, "min", &dist_span, kind)?;
            let max = require(&l.max, "max", &dist_span, kind)?;
            if min.get_ref() > max.get_ref() {
                let message = format!("uniform latency has min {} greater than max {}", min.get_ref(), max.get_ref());
                return Err(Problem::at(min.span(), message));
            }
            Ok(LatencyDist::Uniform { min_us: min.get_ref().0, max_us: max.get_ref().0 })
        }
        DistName::Lognormal => lognormal(l, &dist_span),
    }
}

fn lognormal(l: &RawLatency, dist_span: &std::ops::Range<usize>) -> Res<LatencyDist> {
    let kind = "dist = \"lognormal\" (it takes `median` and `sigma`)";
    reject(&l.value, "value", kind)?;
    reject(&l.min, "min", kind)?;
    reject(&l.max, "max", kind)?;
    let median = require(&l.median, "median", dist_span, kind)?;
    if median.get_ref().0 == 0 {
        return Err(Problem::at(median.span(), "lognormal median must be greater than 0"));
    }
    let sigma = match &l.sigma {
        None => DEFAULT_SIGMA,
        Some(s) if s.get_ref().is_finite() && (0.0..=10.0).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => return Err(Problem::at(s.span(), format!("sigma must be between 0 and 10; got {}", s.get_ref()))),
    };
    Ok(LatencyDist::Lognormal { median_us: median.get_ref().0, sigma })
}

fn links(raw: &[Spanned<RawLink>], names: &Names) -> Res<Vec<LinkSpec>> {
    let mut links = Vec::new();
    let mut expanded = 0usize;
    for entry in raw {
        let link = entry.get_ref();
        if link.latency.is_none() && link.loss.is_none() {
            return Err(Problem::at(entry.span(), "a [[network.links]] entry needs `latency` or `loss`"));
        }
        let spec = LinkSpec {
            from: names.servers_of_list(link.from.get_ref(), &link.from.span(), "network link `from`")?,
            to: names.servers_of_list(link.to.get_ref(), &link.to.span(), "network link `to`")?,
            symmetric: link.symmetric.unwrap_or(true),
            latency: link.latency.as_ref().map(latency).transpose()?,
            loss: link.loss.as_ref().map(|l| probability(l, "loss", One::Excluded)).transpose()?,
        };
        expanded += spec.from.len() + spec.to.len();
        if expanded > MAX_EXPANDED_NAMES {
            return Err(Problem::at(
                entry.span(),
                format!("links name too many servers in all: at most {MAX_EXPANDED_NAMES}"),
            ));
        }
        links.push(spec);
    }
    Ok(links)
}

fn middlebox(raw: &RawMiddlebox, names: &Names) -> Res<MiddleboxSpec> {
    use super::super::raw::MiddleboxName;
    let kind = match *raw.kind.get_ref() {
        MiddleboxName::ReverseProxy => {
            reject(&raw.cache_ttl, "cache_ttl", "kind = \"reverse_proxy\"")?;
            MiddleboxKind::ReverseProxy {
                drop_unknown_keys: raw.drop_unknown_keys.as_ref().is_some_and(|d| *d.get_ref()),
            }
        }
        MiddleboxName::Cache => {
            reject(&raw.drop_unknown_keys, "drop_unknown_keys", "kind = \"cache\"")?;
            MiddleboxKind::Cache { ttl_us: duration_or(&raw.cache_ttl, DurationUs(300_000_000).0) }
        }
    };
    if matches!(kind, MiddleboxKind::Cache { .. }) {
        reject(&raw.strip_account_entries, "strip_account_entries", "kind = \"cache\"")?;
        reject(&raw.strip_account_answers, "strip_account_answers", "kind = \"cache\"")?;
    } else {
        reject(&raw.cache_key, "cache_key", "kind = \"reverse_proxy\"")?;
    }
    Ok(MiddleboxSpec {
        server: names.node(raw.server.get_ref(), &raw.server.span(), "network middlebox")?,
        kind,
        timeout_probability: probability_or(&raw.timeout_probability, 0.0, "timeout_probability", One::Allowed)?,
        strip_account_entries: probability_or(&raw.strip_account_entries, 0.0, "strip_account_entries", One::Allowed)?,
        strip_account_answers: probability_or(&raw.strip_account_answers, 0.0, "strip_account_answers", One::Allowed)?,
        cache_key: raw.cache_key.as_ref().map_or_else(Default::default, |k| *k.get_ref()),
    })
}
