//! `[[timeline]]`: scripted client actions, plus the actions implied by `[[rooms]]`.

use std::ops::Range;

use toml::Spanned;

use super::super::duration::DurationUs;
use super::super::error::{Problem, Res};
use super::super::model::{ActionKind, ActionSpec, EndCondition, IdentitySpec, JoinRule, RoomSpec, ServerSpec};
use super::super::names::{abbreviate, Names};
use super::super::raw::RawAction;
use super::super::{MAX_ACTIONS, MAX_TEXT_BYTES};
use super::identity;
use super::rooms::level_value;
use super::{check_within_end, reject, require, time_within_end};

pub(super) fn resolve(
    raw: &[Spanned<RawAction>],
    rooms: &[RoomSpec],
    names: &Names,
    identity: &IdentitySpec,
    end: &EndCondition,
) -> Res<Vec<ActionSpec>> {
    let mut actions: Vec<ActionSpec> = rooms.iter().flat_map(room_setup).collect();
    for entry in raw {
        let action = entry.get_ref();
        let kind = *action.action.get_ref();
        let label = format!("action \"{}\"", kind.as_str());
        if is_identity_action(kind) && names.identity_servers().is_empty() {
            let message = format!("{label} needs identity servers: the scenario declares no [[identity_servers]]");
            return Err(Problem::at(action.action.span(), message));
        }
        let room = match (&action.room, is_roomless(kind)) {
            (Some(room), true) => {
                let message = format!("`room` does not apply to {label}: it is not done in a room");
                return Err(Problem::at(room.span(), message));
            }
            (None, true) => None,
            (Some(room), false) => Some(find_room(rooms, room)?),
            (None, false) => {
                let message = format!("`room` is required for {label}");
                return Err(Problem::at(action.action.span(), message));
            }
        };
        // `rooms::resolve` folded create_room into the room's start time, and `room_setup`
        // emitted it; the entry is not repeated.
        if kind == ActionKind::CreateRoom {
            continue;
        }
        let spec = resolve_action(action, room, names, identity, end)?;
        expand(action, spec, end, &mut actions)?;
    }
    // Stable: at equal times, room setup comes first and the file's order is kept.
    actions.sort_by_key(|a| a.at_us);
    Ok(actions)
}

/// Creation, then the invites (unless anyone may join) and joins of the initial members.
fn room_setup(room: &RoomSpec) -> Vec<ActionSpec> {
    let at = |action, user: &str, target: Option<&String>| ActionSpec {
        at_us: room.start_us,
        action,
        room: room.name.clone(),
        user: user.to_string(),
        target: target.cloned(),
        level: None,
        join_rule: None,
        text: None,
        via: Vec::new(),
        server: None,
        address: None,
        client: None,
        account_data: None,
    };
    let mut actions = vec![at(ActionKind::CreateRoom, &room.creator, None)];
    if room.join_rule != JoinRule::Public {
        actions.extend(room.members.iter().map(|m| at(ActionKind::Invite, &room.creator, Some(m))));
    }
    actions.extend(room.members.iter().map(|m| at(ActionKind::Join, m, None)));
    actions
}

pub(super) fn find_room<'r>(rooms: &'r [RoomSpec], name: &Spanned<String>) -> Res<&'r RoomSpec> {
    if let Some(room) = rooms.iter().find(|r| r.name == *name.get_ref()) {
        return Ok(room);
    }
    let known: Vec<String> = rooms.iter().map(|r| r.name.clone()).collect();
    let message = format!("unknown room \"{}\"; rooms are {}", name.get_ref(), abbreviate(&known));
    Err(Problem::at(name.span(), message))
}

/// Actions of the identity feature: refused in a scenario without identity servers.
fn is_identity_action(kind: ActionKind) -> bool {
    matches!(kind, ActionKind::InviteEmail | ActionKind::Bind | ActionKind::SetIdentityServer)
}

/// Actions done outside any room (their `room` is refused, and "" in the model).
fn is_roomless(kind: ActionKind) -> bool {
    matches!(kind, ActionKind::Bind | ActionKind::SetIdentityServer)
}

/// Which optional fields an action kind needs, allows or rejects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Required,
    Optional,
    Rejected,
}

/// (target, level, join_rule, text) for each kind.
fn fields(kind: ActionKind) -> [Field; 4] {
    use Field::*;
    match kind {
        ActionKind::Invite
        | ActionKind::Kick
        | ActionKind::Ban
        | ActionKind::Unban
        | ActionKind::AcceptKnock
        | ActionKind::DenyKnock => [Required, Rejected, Rejected, Rejected],
        ActionKind::Power => [Required, Required, Rejected, Rejected],
        ActionKind::JoinRule => [Rejected, Rejected, Required, Rejected],
        ActionKind::Topic | ActionKind::Name => [Rejected, Rejected, Rejected, Required],
        ActionKind::Message => [Rejected, Rejected, Rejected, Optional],
        ActionKind::Redact => [Optional, Rejected, Rejected, Rejected],
        ActionKind::Join
        | ActionKind::Leave
        | ActionKind::CreateRoom
        | ActionKind::Knock
        | ActionKind::RejectInvite
        | ActionKind::Move
        | ActionKind::Revoke
        | ActionKind::FinalLeave
        | ActionKind::InviteEmail
        | ActionKind::Bind
        | ActionKind::SetIdentityServer => [Rejected; 4],
    }
}

/// One action of the entry (its first repetition). `room` is `None` for roomless actions.
fn resolve_action(
    action: &RawAction,
    room: Option<&RoomSpec>,
    names: &Names,
    identity: &IdentitySpec,
    end: &EndCondition,
) -> Res<ActionSpec> {
    let kind = *action.action.get_ref();
    let kind_span = action.action.span();
    let label = format!("action \"{}\"", kind.as_str());
    let [target, level, join_rule, text] = fields(kind);
    check_field(&action.target, "target", target, &kind_span, &label)?;
    check_field(&action.level, "level", level, &kind_span, &label)?;
    check_field(&action.join_rule, "join_rule", join_rule, &kind_span, &label)?;
    check_field(&action.text, "text", text, &kind_span, &label)?;
    let via = match &action.via {
        Some(list) if matches!(kind, ActionKind::Join | ActionKind::Knock) => {
            names.servers_of_list(list.get_ref(), &list.span(), &format!("`via` of {label}"))?
        }
        other => {
            reject(other, "via", &label)?;
            Vec::new()
        }
    };
    if let Some(t) = action.text.as_ref().filter(|t| t.get_ref().len() > MAX_TEXT_BYTES) {
        let message = format!("`text` of {label} is {} bytes long: at most {MAX_TEXT_BYTES}", t.get_ref().len());
        return Err(Problem::at(t.span(), message));
    }
    let server = match (&action.server, kind) {
        (Some(s), ActionKind::Move | ActionKind::Revoke) => {
            Some(names.server(s.get_ref(), &s.span(), &format!("`server` of {label}"))?)
        }
        (None, ActionKind::Move | ActionKind::Revoke) => {
            return Err(Problem::at(kind_span.clone(), format!("{label} needs `server`")));
        }
        (Some(s), ActionKind::Bind) => {
            Some(names.identity_server(s.get_ref(), &s.span(), &format!("`server` of {label}"))?)
        }
        (other, _) => {
            reject(other, "server", &label)?;
            None
        }
    };
    if let Some(room) = room {
        check_room_rules(kind, room, &label, &kind_span)?;
    }
    let user = require(&action.user, "user", &kind_span, &label)?;
    // Outside portable-account rooms a move is a new account on the other server (the person
    // starts over there): it cannot "move" to its own domain.
    let own_domain = crate::protocol::ids::domain_of(user.get_ref());
    let portable = room.is_some_and(|r| r.version.rules().portable_accounts);
    if kind == ActionKind::Move && !portable && server.as_deref() == own_domain {
        let message = format!(
            "{label}: {} is already on {}; outside rooms with portable accounts a move opens a new account on \
             another server",
            user.get_ref(),
            server.as_deref().unwrap_or_default()
        );
        return Err(Problem::at(kind_span.clone(), message));
    }
    let at_us = time_within_end(&action.at, end, &label)?;
    if let Some(room) = room.filter(|r| at_us < r.start_us) {
        let message = format!(
            "{label} in room \"{}\" at {} is before the room is created ({})",
            room.name,
            DurationUs(at_us),
            DurationUs(room.start_us)
        );
        return Err(Problem::at(action.at.span(), message));
    }
    let user = names.user(user.get_ref(), &user.span(), &label)?;
    let address = match (&action.address, kind) {
        (Some(a), ActionKind::InviteEmail | ActionKind::Bind) => {
            Some(identity::address(a, crate::protocol::identity::Medium::Email)?)
        }
        (None, ActionKind::InviteEmail | ActionKind::Bind) => {
            return Err(Problem::at(kind_span.clone(), format!("`address` is required for {label}")));
        }
        (other, _) => {
            reject(other, "address", &label)?;
            None
        }
    };
    let client = match &action.client {
        Some(c) if is_identity_action(kind) => {
            let clients = identity.clients_of(&user);
            if !clients.contains(c.get_ref()) {
                let message = format!(
                    "unknown client \"{}\" of {user} in {label}; its clients are {}",
                    c.get_ref(),
                    abbreviate(&clients)
                );
                return Err(Problem::at(c.span(), message));
            }
            Some(c.get_ref().clone())
        }
        other => {
            reject(other, "client", &label)?;
            None
        }
    };
    let account_data = match (&action.identity_server, kind) {
        (Some(value), ActionKind::SetIdentityServer) => {
            Some(identity::account_data(value, names, &format!("`identity_server` of {label}"), ["default", "none"])?)
        }
        (None, ActionKind::SetIdentityServer) => {
            return Err(Problem::at(kind_span.clone(), format!("`identity_server` is required for {label}")));
        }
        (other, _) => {
            reject(other, "identity_server", &label)?;
            None
        }
    };
    Ok(ActionSpec {
        at_us,
        action: kind,
        room: room.map_or_else(String::new, |r| r.name.clone()),
        user,
        target: action.target.as_ref().map(|t| names.user(t.get_ref(), &t.span(), &label)).transpose()?,
        level: action.level.as_ref().map(level_value).transpose()?,
        join_rule: action.join_rule.as_ref().map(|j| *j.get_ref()),
        text: action.text.as_ref().map(|t| t.get_ref().clone()),
        via,
        server,
        address,
        client,
        account_data,
    })
}

/// What the room's version allows of `kind`.
fn check_room_rules(kind: ActionKind, room: &RoomSpec, label: &str, kind_span: &Range<usize>) -> Res<()> {
    let invite_flows = [
        ActionKind::Invite,
        ActionKind::Knock,
        ActionKind::AcceptKnock,
        ActionKind::DenyKnock,
        ActionKind::RejectInvite,
        ActionKind::JoinRule,
        ActionKind::InviteEmail,
    ];
    if invite_flows.contains(&kind) && room.version.rules().portable_accounts {
        let message = format!(
            "{label} is not simulated in rooms with portable accounts (MSC4348) yet: room \"{}\" is version \"{}\"",
            room.name,
            room.version.as_str()
        );
        return Err(Problem::at(kind_span.clone(), message));
    }
    if kind == ActionKind::FinalLeave && !room.version.rules().portable_accounts {
        let message = format!(
            "{label} is MSC4348's account-key revocation: it needs a room with portable accounts \
             (version \"org.matrix.msc4348.12\", with \"-final-leave\" for the rules to make it final); room \"{}\" \
             is version \"{}\"",
            room.name,
            room.version.as_str()
        );
        return Err(Problem::at(kind_span.clone(), message));
    }
    Ok(())
}

fn check_field<T>(
    value: &Option<Spanned<T>>,
    name: &str,
    rule: Field,
    kind_span: &Range<usize>,
    label: &str,
) -> Res<()> {
    match rule {
        Field::Required => require(value, name, kind_span, label).map(|_| ()),
        Field::Optional => Ok(()),
        Field::Rejected => reject(value, name, label),
    }
}

/// Appends the `count` repetitions of `spec`, `every` apart.
fn expand(action: &RawAction, spec: ActionSpec, end: &EndCondition, actions: &mut Vec<ActionSpec>) -> Res<()> {
    let count = action.count.as_ref().map_or(1, |c| *c.get_ref());
    let count_span = action.count.as_ref().map_or_else(|| action.at.span(), Spanned::span);
    if count == 0 {
        return Err(Problem::at(count_span, "count must be at least 1"));
    }
    if actions.len() + count as usize > MAX_ACTIONS {
        return Err(Problem::at(count_span, format!("too many timeline actions: at most {MAX_ACTIONS} in all")));
    }
    let every_us = match (&action.every, count) {
        (_, 1) => 0,
        (None, _) => return Err(Problem::at(count_span, "`every` is required when count > 1")),
        (Some(every), _) if every.get_ref().0 == 0 => {
            return Err(Problem::at(every.span(), "every must be greater than 0"))
        }
        (Some(every), _) => every.get_ref().0,
    };
    let last_us = u64::from(count - 1)
        .checked_mul(every_us)
        .and_then(|offset| offset.checked_add(spec.at_us))
        .ok_or_else(|| Problem::at(count_span.clone(), "the repetitions run past any possible end"))?;
    check_within_end(last_us, count_span, end, "the last repetition")?;
    for i in 0..u64::from(count) {
        actions.push(ActionSpec { at_us: spec.at_us + i * every_us, ..spec.clone() });
    }
    Ok(())
}

/// Outside portable-account rooms a `move` opens a new account on the target server
/// ([`moved_account_id`]): it is added to that server's users here, after rooms and workloads
/// took their members, so that it exists (and has its keys) but stays out of the room until
/// the move joins it.
pub(super) fn provision_moved_accounts(timeline: &[ActionSpec], rooms: &[RoomSpec], servers: &mut [ServerSpec]) {
    for a in timeline.iter().filter(|a| a.action == ActionKind::Move) {
        let portable = rooms.iter().any(|r| r.name == a.room && r.version.rules().portable_accounts);
        let Some(target) = a.server.as_deref().filter(|_| !portable) else { continue };
        let alias = crate::scenario::moved_account_id(&a.user, target);
        if let Some(s) = servers.iter_mut().find(|s| s.name == target) {
            if !s.users.contains(&alias) {
                s.users.push(alias);
            }
        }
    }
}
