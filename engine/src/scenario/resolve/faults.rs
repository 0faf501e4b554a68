//! `[[faults]]`: partitions, crashes, degraded links, clock jumps, healing, key rotations,
//! account erasures, and the identity servers' pepper rotations and key revocations.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;

use super::super::error::{Problem, Res};
use super::super::model::{EndCondition, FaultKind, FaultSpec, IdentityServerSpec};
use super::super::names::Names;
use super::super::raw::{FaultName, RawFault};
use super::super::MAX_EXPANDED_NAMES;
use super::network::latency;
use super::{probability, reject, require, time_within_end, One};

pub(super) fn resolve(
    raw: &[Spanned<RawFault>],
    names: &Names,
    end: &EndCondition,
    identity_servers: &[IdentityServerSpec],
) -> Res<Vec<FaultSpec>> {
    let mut faults = Vec::new();
    let mut expanded = 0usize;
    for entry in raw {
        let fault = entry.get_ref();
        let label = format!("fault \"{}\"", fault.kind.get_ref().as_str());
        let at_us = time_within_end(&fault.at, end, &label)?;
        let kind = kind(fault, names)?;
        expanded += servers_named(&kind);
        if expanded > MAX_EXPANDED_NAMES {
            return Err(Problem::at(
                entry.span(),
                format!("faults name too many servers in all: at most {MAX_EXPANDED_NAMES}"),
            ));
        }
        if let (FaultKind::HealAll, Some(duration)) = (&kind, &fault.duration) {
            return Err(Problem::at(duration.span(), "`duration` does not apply to fault \"heal_all\""));
        }
        if let (FaultKind::RotateKey { .. }, Some(duration)) = (&kind, &fault.duration) {
            return Err(Problem::at(
                duration.span(),
                "`duration` does not apply to fault \"rotate_key\" (a rotation is not undone)",
            ));
        }
        if let (
            FaultKind::EraseAccount { .. }
            | FaultKind::ReregisterAccount { .. }
            | FaultKind::RotatePepper { .. }
            | FaultKind::RevokeIdentityKey { .. },
            Some(duration),
        ) = (&kind, &fault.duration)
        {
            return Err(Problem::at(
                duration.span(),
                format!("`duration` does not apply to {label} (it is not undone)"),
            ));
        }
        let duration_us = match &fault.duration {
            Some(d) if d.get_ref().0 == 0 => {
                return Err(Problem::at(d.span(), "a fault's duration must be greater than 0"))
            }
            Some(d) => Some(d.get_ref().0),
            None => None,
        };
        faults.push(FaultSpec { at_us, duration_us, kind });
    }
    check_pepper_changes(raw, &faults, identity_servers)?;
    // Stable: faults at the same time keep their file order.
    faults.sort_by_key(|f| f.at_us);
    Ok(faults)
}

/// A `rotate_pepper` to the pepper the server already uses would change nothing: refused.
/// `faults` are `raw`'s, in file order. A rotation without `pepper` draws an unknown one.
fn check_pepper_changes(
    raw: &[Spanned<RawFault>],
    faults: &[FaultSpec],
    identity_servers: &[IdentityServerSpec],
) -> Res<()> {
    let mut rotations: Vec<(u64, &str, Option<&Spanned<String>>)> = raw
        .iter()
        .zip(faults)
        .filter_map(|(entry, fault)| match &fault.kind {
            FaultKind::RotatePepper { server, .. } => {
                Some((fault.at_us, server.as_str(), entry.get_ref().pepper.as_ref()))
            }
            _ => None,
        })
        .collect();
    rotations.sort_by_key(|r| r.0);
    let mut current: Vec<(&str, Option<&str>)> =
        identity_servers.iter().map(|s| (s.name.as_str(), Some(s.pepper.as_str()))).collect();
    for (_, server, pepper) in rotations {
        let Some(slot) = current.iter_mut().find(|(name, _)| *name == server) else { continue };
        let new = pepper.map(|p| p.get_ref().as_str());
        if let (Some(p), Some(old)) = (pepper, slot.1) {
            if p.get_ref() == old {
                let message = format!(
                    "fault \"rotate_pepper\" would change nothing: identity server \"{server}\" already uses pepper \"{old}\""
                );
                return Err(Problem::at(p.span(), message));
            }
        }
        slot.1 = new;
    }
    Ok(())
}

fn servers_named(kind: &FaultKind) -> usize {
    match kind {
        FaultKind::Partition { sides } => sides.iter().map(Vec::len).sum(),
        FaultKind::Degrade { from, to, .. } => from.len() + to.len(),
        _ => 1,
    }
}

/// Each kind takes its own fields and rejects the others'.
fn kind(fault: &RawFault, names: &Names) -> Res<FaultKind> {
    let name = *fault.kind.get_ref();
    let label = format!("fault \"{}\"", name.as_str());
    let allowed: &[&str] = match name {
        FaultName::Partition => &["groups"],
        FaultName::Crash => &["server"],
        FaultName::Degrade => &["from", "to", "symmetric", "loss", "latency"],
        FaultName::ClockSkew => &["server", "skew"],
        FaultName::HealAll => &[],
        FaultName::RotateKey => &["server", "keep_old"],
        FaultName::EraseAccount | FaultName::ReregisterAccount => &["user"],
        FaultName::RotatePepper => &["server", "pepper"],
        FaultName::RevokeIdentityKey => &["server"],
    };
    reject_unless(allowed, "groups", &fault.groups, &label)?;
    reject_unless(allowed, "server", &fault.server, &label)?;
    reject_unless(allowed, "from", &fault.from, &label)?;
    reject_unless(allowed, "to", &fault.to, &label)?;
    reject_unless(allowed, "symmetric", &fault.symmetric, &label)?;
    reject_unless(allowed, "loss", &fault.loss, &label)?;
    reject_unless(allowed, "latency", &fault.latency, &label)?;
    reject_unless(allowed, "skew", &fault.skew, &label)?;
    reject_unless(allowed, "keep_old", &fault.keep_old, &label)?;
    reject_unless(allowed, "user", &fault.user, &label)?;
    reject_unless(allowed, "pepper", &fault.pepper, &label)?;
    let kind_span = fault.kind.span();
    match name {
        FaultName::Partition => partition(fault, names, &kind_span, &label),
        FaultName::Crash => {
            let server = require(&fault.server, "server", &kind_span, &label)?;
            Ok(FaultKind::Crash { server: names.any_node(server.get_ref(), &server.span(), &label)? })
        }
        FaultName::Degrade => degrade(fault, names, &kind_span, &label),
        FaultName::ClockSkew => {
            let server = require(&fault.server, "server", &kind_span, &label)?;
            let skew = require(&fault.skew, "skew", &kind_span, &label)?;
            let server = names.server(server.get_ref(), &server.span(), &label)?;
            Ok(FaultKind::ClockSkew { server, skew_us: skew.get_ref().0 })
        }
        FaultName::HealAll => Ok(FaultKind::HealAll),
        FaultName::RotateKey => {
            let server = require(&fault.server, "server", &kind_span, &label)?;
            let keep_old = require(&fault.keep_old, "keep_old", &kind_span, &label)?;
            let server = names.server(server.get_ref(), &server.span(), &label)?;
            Ok(FaultKind::RotateKey { server, keep_old: *keep_old.get_ref() })
        }
        FaultName::EraseAccount | FaultName::ReregisterAccount => {
            let user = require(&fault.user, "user", &kind_span, &label)?;
            let user = names.user(user.get_ref(), &user.span(), &label)?;
            Ok(match name {
                FaultName::EraseAccount => FaultKind::EraseAccount { user },
                _ => FaultKind::ReregisterAccount { user },
            })
        }
        FaultName::RotatePepper | FaultName::RevokeIdentityKey => {
            let server = require(&fault.server, "server", &kind_span, &label)?;
            let server = names.identity_server(server.get_ref(), &server.span(), &label)?;
            if name == FaultName::RevokeIdentityKey {
                return Ok(FaultKind::RevokeIdentityKey { server });
            }
            let pepper = match &fault.pepper {
                Some(p) if p.get_ref().is_empty() => {
                    return Err(Problem::at(p.span(), format!("the `pepper` of {label} must not be empty")))
                }
                other => other.as_ref().map(|p| p.get_ref().clone()),
            };
            Ok(FaultKind::RotatePepper { server, pepper })
        }
    }
}

fn reject_unless<T>(allowed: &[&str], name: &str, field: &Option<Spanned<T>>, label: &str) -> Res<()> {
    if allowed.contains(&name) {
        return Ok(());
    }
    reject(field, name, label)
}

/// The listed sides, plus one side of every server not listed.
fn partition(fault: &RawFault, names: &Names, kind_span: &Range<usize>, label: &str) -> Res<FaultKind> {
    let groups = require(&fault.groups, "groups", kind_span, label)?;
    let context = "partition group";
    let mut placed = BTreeSet::new();
    let mut sides = Vec::new();
    for side in groups.get_ref() {
        let mut servers = Vec::new();
        for (name, span) in side.get_ref().spanned(&side.span()) {
            let own_node = names.is_notary(&name) || names.is_identity_server(&name);
            let listed = if own_node { vec![name.clone()] } else { names.servers_of(&name, &span, context)? };
            for server in listed {
                if !placed.insert(server.clone()) {
                    return Err(Problem::at(span, format!("server \"{server}\" is on two sides of the partition")));
                }
                servers.push(server);
            }
        }
        if servers.is_empty() {
            return Err(Problem::at(side.span(), "a partition side is empty"));
        }
        sides.push(servers);
    }
    // Notaries and identity servers not listed are with the servers not listed.
    let rest: Vec<String> = names
        .all_servers()
        .iter()
        .chain(names.notaries())
        .chain(names.identity_servers())
        .filter(|s| !placed.contains(*s))
        .cloned()
        .collect();
    if !rest.is_empty() {
        sides.push(rest);
    }
    if sides.len() < 2 {
        return Err(Problem::at(groups.span(), "this partition puts every server on one side, so it cuts nothing"));
    }
    Ok(FaultKind::Partition { sides })
}

fn degrade(fault: &RawFault, names: &Names, kind_span: &Range<usize>, label: &str) -> Res<FaultKind> {
    let from = require(&fault.from, "from", kind_span, label)?;
    let to = require(&fault.to, "to", kind_span, label)?;
    if fault.loss.is_none() && fault.latency.is_none() {
        return Err(Problem::at(kind_span.clone(), format!("{label} needs `loss` or `latency`")));
    }
    Ok(FaultKind::Degrade {
        from: names.servers_of_list(from.get_ref(), &from.span(), "degrade `from`")?,
        to: names.servers_of_list(to.get_ref(), &to.span(), "degrade `to`")?,
        symmetric: fault.symmetric.as_ref().is_none_or(|s| *s.get_ref()),
        loss: fault.loss.as_ref().map(|l| probability(l, "loss", One::Allowed)).transpose()?,
        latency: fault.latency.as_ref().map(latency).transpose()?,
    })
}
