//! From the file as written ([`RawFile`]) to the resolved [`Scenario`]: defaults filled in,
//! names checked and expanded, every constraint the simulator relies on checked here once.
//!
//! Sections are resolved in dependency order: servers (and their users), groups, then what
//! refers to them. Each check returns a [`Problem`] at the span of the offending value.

mod account_query;
mod faults;
mod identity;
mod keys;
mod network;
mod rooms;
mod servers;
mod timeline;
mod workload;

use std::ops::Range;

use toml::Spanned;

use super::duration::DurationUs;
use super::error::{Problem, Res};
use super::model::{EndCondition, Measure, MetricsSpec, Scenario, ScenarioSource};
use super::names::Names;
use super::raw::{RawEnd, RawFile, RawHeader, RawMetrics};
use super::sweep;

/// Checks that one `--set` override yields a valid scenario (used for sweep grid values).
pub(crate) type OverrideCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

pub(crate) fn resolve(raw: RawFile, source: ScenarioSource, check: Option<OverrideCheck>) -> Res<Scenario> {
    let header = raw.scenario.get_ref();
    let name = scenario_name(&header.name)?;
    let seed = header.seed.as_ref().map_or(1, |s| *s.get_ref());
    let end = end_condition(header)?;
    let mut servers = servers::resolve(&raw.servers, &raw.defaults.clone().unwrap_or_default())?;
    let groups = servers::groups(raw.groups.as_ref(), &servers)?;
    let keys = keys::resolve(raw.keys.as_ref(), &servers, &groups)?;
    keys::trusted_key_servers(&raw.servers, raw.defaults.as_ref(), &mut servers, &keys)?;
    let names = Names::new(&servers, groups.clone()).with_notaries(&keys.notaries);
    servers::withhold_targets(&raw.servers, &mut servers, &names)?;
    let identity_names = identity::names(&raw.identity_servers, &names)?;
    let names = names.with_identity_servers(&identity_names);
    let identity_servers = identity::servers(&raw.identity_servers, &names)?;
    let identity = identity::settings(raw.identity.as_ref(), &names)?;
    let rooms = rooms::resolve(&raw.rooms, &raw.timeline, &names, &end)?;
    let network = network::resolve(raw.network.unwrap_or_default(), &names)?;
    let faults = faults::resolve(&raw.faults, &names, &end, &identity_servers)?;
    let timeline = timeline::resolve(&raw.timeline, &rooms, &names, &identity, &end)?;
    let workloads = workload::resolve(&raw.workload, &rooms, &names, &end)?;
    timeline::provision_moved_accounts(&timeline, &rooms, &mut servers);
    let metrics = metrics(raw.metrics)?;
    let account_query = account_query::resolve(raw.account_query.as_ref())?;
    let participation = participation(raw.participation.as_ref(), &rooms, &names)?;
    let sweep = match &raw.sweep {
        Some(s) => Some(sweep::resolve(s, seed, check)?),
        None => None,
    };
    Ok(Scenario {
        name,
        description: header.description.clone(),
        seed,
        end,
        servers,
        groups,
        rooms,
        network,
        faults,
        timeline,
        workloads,
        metrics,
        keys,
        sweep,
        account_query,
        participation,
        identity_servers,
        identity,
        join_mode: raw.join.and_then(|j| j.mode).map_or_else(Default::default, |m| *m.get_ref()),
        source,
    })
}

fn scenario_name(name: &Spanned<String>) -> Res<String> {
    check_identifier(name, "scenario name")?;
    Ok(name.get_ref().clone())
}

/// Names of scenarios, rooms and groups: `[a-z0-9_-]+`, so they are safe in file paths.
pub(super) fn check_identifier(name: &Spanned<String>, what: &str) -> Res<()> {
    let text = name.get_ref();
    let valid =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        let message = format!("invalid {what} \"{text}\": use lowercase letters, digits, '_' and '-'");
        return Err(Problem::at(name.span(), message));
    }
    if text.len() > super::MAX_IDENTIFIER_BYTES {
        let message = format!(
            "{what} \"{}…\" is {} bytes long: at most {} (it names files and directories)",
            &text[..24],
            text.len(),
            super::MAX_IDENTIFIER_BYTES
        );
        return Err(Problem::at(name.span(), message));
    }
    Ok(())
}

fn end_condition(header: &RawHeader) -> Res<EndCondition> {
    match *header.end.get_ref() {
        RawEnd::At(at) => {
            for (field, name) in [(&header.max_time, "max_time"), (&header.quiet_period, "quiet_period")] {
                if let Some(f) = field {
                    let message = format!("`{name}` only applies when end = \"quiescence\"");
                    return Err(Problem::at(f.span(), message));
                }
            }
            if at.0 == 0 {
                return Err(Problem::at(header.end.span(), "the scenario must end after 0s"));
            }
            Ok(EndCondition::At(at.0))
        }
        RawEnd::Quiescence => Ok(EndCondition::Quiescence {
            max_us: positive_or(&header.max_time, DurationUs(3_600_000_000), "max_time")?,
            quiet_us: positive_or(&header.quiet_period, DurationUs(30_000_000), "quiet_period")?,
        }),
    }
}

fn metrics(raw: Option<RawMetrics>) -> Res<MetricsSpec> {
    let Some(raw) = raw else {
        return Ok(MetricsSpec { interval_us: 1_000_000, measures: Measure::ALL.to_vec() });
    };
    let interval_us = positive_or(&raw.interval, DurationUs(1_000_000), "metrics.interval")?;
    let Some(listed) = raw.measures else {
        return Ok(MetricsSpec { interval_us, measures: Measure::ALL.to_vec() });
    };
    let mut measures = Vec::new();
    for measure in listed {
        if measures.contains(measure.get_ref()) {
            return Err(Problem::at(measure.span(), "measure listed twice"));
        }
        measures.push(*measure.get_ref());
    }
    Ok(MetricsSpec { interval_us, measures })
}

// ---- checks shared by the sections ----

/// A duration that must be > 0, or `default` when absent.
pub(super) fn positive_or(value: &Option<Spanned<DurationUs>>, default: DurationUs, what: &str) -> Res<u64> {
    match value {
        None => Ok(default.0),
        Some(v) if v.get_ref().0 == 0 => Err(Problem::at(v.span(), format!("{what} must be greater than 0"))),
        Some(v) => Ok(v.get_ref().0),
    }
}

/// The value of an optional duration, or `default`.
pub(super) fn duration_or(value: &Option<Spanned<DurationUs>>, default: u64) -> u64 {
    value.as_ref().map_or(default, |v| v.get_ref().0)
}

/// Whether 1.0 is a valid probability: it is not for loss (nothing would ever arrive).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum One {
    Allowed,
    Excluded,
}

pub(super) fn probability(value: &Spanned<f64>, what: &str, one: One) -> Res<f64> {
    let v = *value.get_ref();
    let valid = v.is_finite() && v >= 0.0 && (v < 1.0 || (one == One::Allowed && v == 1.0));
    if valid {
        return Ok(v);
    }
    let interval = if one == One::Allowed { "[0, 1]" } else { "[0, 1)" };
    Err(Problem::at(value.span(), format!("{what} must be a probability in {interval}; got {v}")))
}

pub(super) fn probability_or(value: &Option<Spanned<f64>>, default: f64, what: &str, one: One) -> Res<f64> {
    value.as_ref().map_or(Ok(default), |v| probability(v, what, one))
}

/// A rate (events per minute or hour): finite and not negative.
pub(super) fn rate_or_zero(value: &Option<Spanned<f64>>, what: &str, max: f64) -> Res<f64> {
    let Some(value) = value else { return Ok(0.0) };
    let v = *value.get_ref();
    if v.is_finite() && (0.0..=max).contains(&v) {
        return Ok(v);
    }
    Err(Problem::at(value.span(), format!("{what} must be between 0 and {max}; got {v}")))
}

/// A time at which something happens: not after the scenario's end.
pub(super) fn time_within_end(at: &Spanned<DurationUs>, end: &EndCondition, what: &str) -> Res<u64> {
    let at_us = at.get_ref().0;
    check_within_end(at_us, at.span(), end, what)?;
    Ok(at_us)
}

pub(super) fn check_within_end(at_us: u64, span: Range<usize>, end: &EndCondition, what: &str) -> Res<()> {
    if at_us <= end.bound_us() {
        return Ok(());
    }
    let bound = match end {
        EndCondition::At(_) => "the end of the scenario",
        EndCondition::Quiescence { .. } => "scenario.max_time",
    };
    let message = format!("{what} at {} is after {bound} ({})", DurationUs(at_us), DurationUs(end.bound_us()));
    Err(Problem::at(span, message))
}

/// A field that must be present for this kind of entry; the error points at the kind.
pub(super) fn require<'a, T>(
    field: &'a Option<Spanned<T>>,
    name: &str,
    kind_span: &Range<usize>,
    kind: &str,
) -> Res<&'a Spanned<T>> {
    field.as_ref().ok_or_else(|| Problem::at(kind_span.clone(), format!("`{name}` is required for {kind}")))
}

/// A field that has no meaning for this kind of entry: better an error than silently ignored.
pub(super) fn reject<T>(field: &Option<Spanned<T>>, name: &str, kind: &str) -> Res<()> {
    match field {
        Some(f) => Err(Problem::at(f.span(), format!("`{name}` does not apply to {kind}"))),
        None => Ok(()),
    }
}

/// `[participation]`: refused where no room has portable accounts (nothing would read it).
fn participation(
    raw: Option<&Spanned<super::raw::RawParticipation>>,
    rooms: &[super::model::RoomSpec],
    names: &Names,
) -> Res<super::model::ParticipationSpec> {
    let mut spec = super::model::ParticipationSpec::default();
    let Some(raw) = raw else { return Ok(spec) };
    if !rooms.iter().any(|r| r.version.rules().portable_accounts) {
        return Err(Problem::at(
            raw.span(),
            "[participation] needs a room with portable accounts (version \"org.matrix.msc4348.12\"): \
             no room of this scenario has them",
        ));
    }
    let raw = raw.get_ref();
    if let Some(a) = &raw.acceptor {
        spec.acceptor = Some(names.user(a.get_ref(), &a.span(), "`acceptor` of [participation]")?);
    }
    spec.accept_delay_us = duration_or(&raw.accept_delay, spec.accept_delay_us);
    Ok(spec)
}
