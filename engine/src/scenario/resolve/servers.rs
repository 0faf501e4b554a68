//! `[defaults]`, `[[servers]]` (explicit servers and templates) and `[groups]`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;

use super::super::duration::{DurationUs, SignedDurationUs};
use super::super::error::{Problem, Res};
use super::super::model::{Byzantine, ServerSpec, SignatureMode};
use super::super::names::{abbreviate, Names};
use super::super::raw::{NameList, OrderedMap, RawKnobs, RawServer};
use super::super::{MAX_SERVERS, MAX_USERS, MAX_USERS_PER_SERVER};
use super::{check_identifier, positive_or, probability_or, One};

pub(super) fn resolve(raw: &[Spanned<RawServer>], defaults: &RawKnobs) -> Res<Vec<ServerSpec>> {
    if raw.is_empty() {
        return Err(Problem::nowhere("no [[servers]]: a scenario needs at least one server")
            .with_help("add e.g.\n[[servers]]\nprefix = \"hs\"\ncount = 2"));
    }
    let mut servers: Vec<ServerSpec> = Vec::new();
    let mut defined: BTreeSet<String> = BTreeSet::new();
    let mut total_users: usize = 0;
    for entry in raw {
        let template = settings(entry.get_ref(), defaults)?;
        for (name, span) in entry_names(entry)? {
            if defined.contains(&name) {
                return Err(Problem::at(
                    span,
                    format!("duplicate server name \"{name}\"; it is already defined above"),
                ));
            }
            if servers.len() >= MAX_SERVERS {
                return Err(Problem::at(span, format!("too many servers: at most {MAX_SERVERS}")));
            }
            check_id_lengths(&name, template.users.len(), &span)?;
            total_users += template.users.len();
            if total_users > MAX_USERS {
                return Err(Problem::at(span, format!("too many users in all: at most {MAX_USERS}")));
            }
            servers.push(named(&template, &name));
            defined.insert(name);
        }
    }
    Ok(servers)
}

/// A server spec whose user IDs end in `:<name>`.
fn named(template: &ServerSpec, name: &str) -> ServerSpec {
    let users = (0..template.users.len()).map(|i| format!("@u{i}:{name}")).collect();
    ServerSpec { name: name.to_string(), users, ..template.clone() }
}

/// The names one `[[servers]]` entry defines, each with the span to blame for a duplicate.
pub(super) fn entry_names(entry: &Spanned<RawServer>) -> Res<Vec<(String, Range<usize>)>> {
    let raw = entry.get_ref();
    match (&raw.name, &raw.prefix) {
        (Some(name), None) => {
            for (field, label) in [(&raw.count, "count"), (&raw.start, "start")] {
                if let Some(f) = field {
                    return Err(Problem::at(
                        f.span(),
                        format!("`{label}` only applies to templates (entries with `prefix`)"),
                    ));
                }
            }
            check_server_name(name.get_ref(), &name.span())?;
            Ok(vec![(name.get_ref().clone(), name.span())])
        }
        (None, Some(prefix)) => template_names(raw, prefix),
        (Some(name), Some(_)) => {
            Err(Problem::at(name.span(), "a [[servers]] entry has either `name` or `prefix`, not both"))
        }
        (None, None) => Err(Problem::at(
            entry.span(),
            "a [[servers]] entry needs `name` (one server) or `prefix` and `count` (a template)",
        )),
    }
}

/// `prefix` + `start` .. `prefix` + `start + count - 1`.
fn template_names(raw: &RawServer, prefix: &Spanned<String>) -> Res<Vec<(String, Range<usize>)>> {
    let Some(count) = &raw.count else {
        return Err(Problem::at(prefix.span(), "a template (`prefix`) needs `count`"));
    };
    let n = *count.get_ref();
    if n == 0 {
        return Err(Problem::at(count.span(), "count must be at least 1"));
    }
    if n as usize > MAX_SERVERS {
        return Err(Problem::at(count.span(), format!("count must be at most {MAX_SERVERS}")));
    }
    let start = raw.start.as_ref().map_or(1, |s| *s.get_ref());
    let Some(last) = start.checked_add(n - 1) else {
        return Err(Problem::at(count.span(), "start + count is too large"));
    };
    let names: Vec<String> = (start..=last).map(|i| format!("{}{i}", prefix.get_ref())).collect();
    check_server_name(&names[0], &prefix.span())?;
    Ok(names.into_iter().map(|name| (name, prefix.span())).collect())
}

/// The identifiers a server's name ends up in must fit the spec's 255-byte limit (Matrix spec,
/// Appendices, "Identifier grammar"): its users' IDs `@u<i>:<name>` and the room IDs it creates
/// (`!<18 letters>:<name>` in v11).
fn check_id_lengths(name: &str, users: usize, span: &Range<usize>) -> Res<()> {
    let longest_user = format!("@u{}:{name}", users.saturating_sub(1));
    let room_id_len = 1 + 18 + 1 + name.len();
    let max = crate::protocol::ids::MAX_ID_BYTES;
    if longest_user.len() <= max && room_id_len <= max {
        return Ok(());
    }
    Err(Problem::at(
        span.clone(),
        format!(
            "server name \"{}…\" ({} bytes) is too long: the user IDs (up to {} bytes) and room IDs ({} bytes) it makes must be at most {max} bytes; use a name of at most {} bytes",
            &name[..name.len().min(24)],
            name.len(),
            longest_user.len(),
            room_id_len,
            max - 20
        ),
    ))
}

/// [`check_server_name`], for the other sections that name nodes (key notaries).
pub(super) fn check_server_name_pub(name: &str, span: &Range<usize>) -> Res<()> {
    check_server_name(name, span)
}

/// Matrix server names as the simulator uses them: DNS-like labels and an optional port.
fn check_server_name(name: &str, span: &Range<usize>) -> Res<()> {
    let (host, port) = match name.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (name, None),
    };
    let host_ok =
        !host.is_empty() && host.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        return Ok(());
    }
    let message =
        format!("invalid server name \"{name}\": use lowercase letters, digits, '.' and '-', then an optional :port");
    Err(Problem::at(span.clone(), message))
}

/// Everything about a server but its name, from the entry and `[defaults]`.
fn settings(raw: &RawServer, defaults: &RawKnobs) -> Res<ServerSpec> {
    let knobs = raw.knobs().or(defaults);
    let users = bounded(&knobs.users, 2, 1..=MAX_USERS_PER_SERVER as u32, "users")?;
    let retries = bounded(&knobs.request_retries, 3, 0..=100, "request_retries")?;
    let backoff = destination_backoff(&knobs)?;
    Ok(ServerSpec {
        name: String::new(),
        // Placeholders: `named` gives the real IDs once the server's name is known.
        users: vec![String::new(); users as usize],
        signatures: knobs.signatures.as_ref().map_or(SignatureMode::Real, |s| *s.get_ref()),
        signature_cost_us: knobs.signature_cost.as_ref().map_or(0, |c| c.get_ref().0),
        clock_skew_us: knobs.clock_skew.as_ref().map_or(SignedDurationUs(0), |c| *c.get_ref()).0,
        byzantine: raw.byzantine.as_ref().map_or(Byzantine::None, |b| *b.get_ref()),
        byzantine_probability: probability_or(&raw.byzantine_probability, 1.0, "byzantine_probability", One::Allowed)?,
        // Resolved once groups are known (`withhold_targets`).
        withhold_from: None,
        missing_event_timeout_us: positive_or(
            &knobs.missing_event_timeout,
            DurationUs(30_000_000),
            "missing_event_timeout",
        )?,
        request_timeout_us: positive_or(&knobs.request_timeout, DurationUs(10_000_000), "request_timeout")?,
        request_retries: retries,
        transaction_retries: bounded(&knobs.transaction_retries, 10, 0..=100, "transaction_retries")?,
        destination_min_retry_interval_us: backoff.0,
        destination_retry_multiplier: backoff.1,
        destination_max_retry_interval_us: backoff.2,
        // Resolved once the notaries are known (`keys::trusted_key_servers`).
        trusted_key_servers: Vec::new(),
    })
}

/// Synapse's per-destination backoff settings and their defaults (10 minutes, ×2, a week):
/// the first interval, the multiplier (1..=100: below 1 the backoff would shrink), the cap
/// (not below the first interval).
fn destination_backoff(knobs: &RawKnobs) -> Res<(u64, f64, u64)> {
    let min =
        positive_or(&knobs.destination_min_retry_interval, DurationUs(600_000_000), "destination_min_retry_interval")?;
    let max = positive_or(
        &knobs.destination_max_retry_interval,
        DurationUs(604_800_000_000),
        "destination_max_retry_interval",
    )?;
    if let (Some(v), true) = (&knobs.destination_max_retry_interval, max < min) {
        let message = "destination_max_retry_interval must not be below destination_min_retry_interval";
        return Err(Problem::at(v.span(), message));
    }
    if max < min {
        let v = knobs.destination_min_retry_interval.as_ref().expect("only a set minimum exceeds the default cap");
        let message =
            "destination_min_retry_interval must not be above destination_max_retry_interval (default a week)";
        return Err(Problem::at(v.span(), message));
    }
    let multiplier = match &knobs.destination_retry_multiplier {
        None => 2.0,
        Some(v) if v.get_ref().is_finite() && (1.0..=100.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            let message = format!("destination_retry_multiplier must be between 1 and 100; got {}", v.get_ref());
            return Err(Problem::at(v.span(), message));
        }
    };
    Ok((min, multiplier, max))
}

/// An optional integer within `range`, or `default`.
fn bounded(value: &Option<Spanned<u32>>, default: u32, range: std::ops::RangeInclusive<u32>, what: &str) -> Res<u32> {
    let Some(value) = value else { return Ok(default) };
    let v = *value.get_ref();
    if range.contains(&v) {
        return Ok(v);
    }
    let message = format!("{what} must be between {} and {}; got {v}", range.start(), range.end());
    Err(Problem::at(value.span(), message))
}

/// `withhold_from` of each `[[servers]]` entry (server names, groups or `"*"`): the servers a
/// `withhold` server keeps its events from. Only `withhold` servers take it; a template's server
/// never counts itself.
pub(super) fn withhold_targets(raw: &[Spanned<RawServer>], servers: &mut [ServerSpec], names: &Names) -> Res<()> {
    let mut next = 0;
    for entry in raw {
        let count = entry_names(entry)?.len();
        let specs = &mut servers[next..next + count];
        next += count;
        let Some(list) = &entry.get_ref().withhold_from else { continue };
        if specs[0].byzantine != Byzantine::Withhold {
            return Err(Problem::at(
                list.span(),
                "`withhold_from` only applies to servers with byzantine = \"withhold\"",
            ));
        }
        let targets = names.servers_of_list(list.get_ref(), &list.span(), "withhold_from")?;
        for spec in specs {
            let others: Vec<String> = targets.iter().filter(|t| **t != spec.name).cloned().collect();
            if others.is_empty() {
                let message = format!("server \"{}\" would withhold its events from nobody but itself", spec.name);
                return Err(Problem::at(list.span(), message));
            }
            spec.withhold_from = Some(others);
        }
    }
    Ok(())
}

/// `[groups]`: each group a list of server names.
pub(super) fn groups(
    raw: Option<&OrderedMap<Spanned<NameList>>>,
    servers: &[ServerSpec],
) -> Res<BTreeMap<String, Vec<String>>> {
    let Some(raw) = raw else { return Ok(BTreeMap::new()) };
    // Groups refer to servers only, so they are resolved against a scope without groups.
    let server_scope = Names::new(servers, BTreeMap::new());
    let mut groups = BTreeMap::new();
    for (name, members) in &raw.0 {
        check_identifier(name, "group name")?;
        if server_scope.is_server(name.get_ref()) {
            let message = format!(
                "group \"{}\" has the name of a server; servers are {}",
                name.get_ref(),
                abbreviate(server_scope.all_servers())
            );
            return Err(Problem::at(name.span(), message));
        }
        let mut expanded = Vec::new();
        for (server, span) in members.get_ref().spanned(&members.span()) {
            let context = format!("group \"{}\"", name.get_ref());
            expanded.push(server_scope.server(&server, &span, &context)?);
        }
        if expanded.is_empty() {
            return Err(Problem::at(members.span(), format!("group \"{}\" is empty", name.get_ref())));
        }
        groups.insert(name.get_ref().clone(), super::super::names::dedup(expanded));
    }
    Ok(groups)
}
