//! `[[rooms]]`: version, creator, initial members, power level overrides, creation time.

use std::collections::BTreeMap;

use toml::Spanned;

use super::super::error::{Problem, Res};
use super::super::model::{ActionKind, EndCondition, JoinRule, PowerLevelsOverride, RoomSpec, RoomVersionId};
use super::super::names::Names;
use super::super::raw::{OrderedMap, RawAction, RawPowerLevels, RawRoom};
use super::super::{MAX_ACTIONS, MAX_ROOMS};
use super::{check_identifier, check_within_end, reject};

/// Power levels are canonical JSON integers, which the Matrix spec limits to ±(2^53 - 1).
pub(super) const MAX_POWER_LEVEL: i64 = (1 << 53) - 1;

pub(super) fn resolve(
    raw: &[Spanned<RawRoom>],
    timeline: &[Spanned<RawAction>],
    names: &Names,
    end: &EndCondition,
) -> Res<Vec<RoomSpec>> {
    let mut rooms: Vec<RoomSpec> = Vec::new();
    // Each initial member becomes one or two timeline actions; bound them before they exist.
    let mut setup_actions = 0usize;
    for entry in raw {
        let room = entry.get_ref();
        check_identifier(&room.name, "room name")?;
        if rooms.iter().any(|r| r.name == *room.name.get_ref()) {
            let message = format!("duplicate room name \"{}\"; it is already defined above", room.name.get_ref());
            return Err(Problem::at(room.name.span(), message));
        }
        if rooms.len() >= MAX_ROOMS {
            return Err(Problem::at(room.name.span(), format!("too many rooms: at most {MAX_ROOMS}")));
        }
        let spec = resolve_room(room, timeline, names, end)?;
        let per_member = if spec.join_rule == JoinRule::Public { 1 } else { 2 };
        setup_actions += 1 + spec.members.len() * per_member;
        if setup_actions > MAX_ACTIONS {
            let message = format!("the rooms' initial members need more than {MAX_ACTIONS} timeline actions");
            return Err(Problem::at(room.name.span(), message));
        }
        rooms.push(spec);
    }
    for (entry, i) in raw.iter().zip(0..) {
        rooms[i].allow = allow_list(entry.get_ref(), &rooms[i], &rooms)?;
    }
    Ok(rooms)
}

/// A restricted room's `allow` list: room names, each of a room created strictly before this one
/// (the create action resolves them to room IDs, so each must exist by then), not the room itself.
fn allow_list(room: &RawRoom, spec: &RoomSpec, rooms: &[RoomSpec]) -> Res<Vec<String>> {
    let Some(list) = &room.allow else { return Ok(Vec::new()) };
    if !matches!(spec.join_rule, JoinRule::Restricted | JoinRule::KnockRestricted) {
        let message = format!(
            "`allow` needs join_rule \"restricted\" or \"knock_restricted\"; room \"{}\" is \"{}\"",
            spec.name,
            spec.join_rule.as_str()
        );
        return Err(Problem::at(list.span(), message));
    }
    if !spec.version.rules().restricted_joins {
        let message = format!("room version {} has no restricted rooms", spec.version.as_str());
        return Err(Problem::at(list.span(), message));
    }
    let mut names: Vec<String> = Vec::new();
    for name in list.get_ref() {
        let Some(other) = rooms.iter().find(|r| r.name == *name.get_ref()) else {
            let known: Vec<String> = rooms.iter().map(|r| r.name.clone()).collect();
            let message = format!(
                "unknown room \"{}\" in `allow`; rooms are {}",
                name.get_ref(),
                super::super::names::abbreviate(&known)
            );
            return Err(Problem::at(name.span(), message));
        };
        if other.name == spec.name {
            return Err(Problem::at(name.span(), "a room cannot allow its own members: they are already in it"));
        }
        if other.start_us >= spec.start_us {
            let message = format!(
                "room \"{}\" is created at {}, not before room \"{}\" ({}): its room ID is not known when the allow list is written",
                other.name,
                super::super::duration::DurationUs(other.start_us),
                spec.name,
                super::super::duration::DurationUs(spec.start_us)
            );
            return Err(Problem::at(name.span(), message));
        }
        if !names.contains(&other.name) {
            names.push(other.name.clone());
        }
    }
    Ok(names)
}

fn resolve_room(room: &RawRoom, timeline: &[Spanned<RawAction>], names: &Names, end: &EndCondition) -> Res<RoomSpec> {
    let name = room.name.get_ref();
    let version = RoomVersionId::from_id(&room.version.get_ref().0)
        .map_err(|e| Problem::at(room.version.span(), e.to_string()))?;
    let creator = names.user(room.creator.get_ref(), &room.creator.span(), &format!("creator of room \"{name}\""))?;
    let additional_creators = additional_creators(room, version, names)?;
    let members = match &room.members {
        Some(m) => names.users_of_list(m.get_ref(), &m.span(), &format!("members of room \"{name}\""))?,
        None => Vec::new(),
    };
    let creators: Vec<&str> =
        std::iter::once(creator.as_str()).chain(additional_creators.iter().map(String::as_str)).collect();
    let power_levels = match &room.power_levels {
        Some(p) => power_levels(p, names, version, &creators)?,
        None => PowerLevelsOverride::default(),
    };
    // MSC4348 rooms: invites, knocks and restricted joins are not simulated yet.
    if let (true, Some(rule)) = (version.rules().portable_accounts, &room.join_rule) {
        if *rule.get_ref() != JoinRule::Public {
            let message = format!(
                "room \"{name}\" has portable accounts (MSC4348): only join_rule \"public\" is simulated there (invites, \
                 knocks and restricted joins are not yet); got \"{}\"",
                rule.get_ref().as_str()
            );
            return Err(Problem::at(rule.span(), message));
        }
    }
    let start_us = start_time(room, timeline, &creator)?;
    check_within_end(
        start_us,
        room.start.as_ref().map_or_else(|| room.name.span(), Spanned::span),
        end,
        &format!("room \"{name}\" start"),
    )?;
    Ok(RoomSpec {
        name: name.clone(),
        version,
        members: members.into_iter().filter(|m| *m != creator).collect(),
        creator,
        additional_creators,
        join_rule: room.join_rule.as_ref().map_or(JoinRule::Public, |j| *j.get_ref()),
        power_levels,
        allow: Vec::new(),
        start_us,
    })
}

/// Room version 12 (MSC4289) lets the create event name more creators; earlier versions do not.
fn additional_creators(room: &RawRoom, version: RoomVersionId, names: &Names) -> Res<Vec<String>> {
    let Some(list) = &room.additional_creators else { return Ok(Vec::new()) };
    if !version.has_creator_power() {
        let message = format!("additional_creators needs room version 12; this room is version {}", version.as_str());
        return Err(Problem::at(list.span(), message));
    }
    let context = format!("additional_creators of room \"{}\"", room.name.get_ref());
    let mut creators = Vec::new();
    for (id, span) in list.get_ref().spanned(&list.span()) {
        creators.push(names.user(&id, &span, &context)?);
    }
    Ok(super::super::names::dedup(creators))
}

fn power_levels(
    raw: &RawPowerLevels,
    names: &Names,
    version: RoomVersionId,
    creators: &[&str],
) -> Res<PowerLevelsOverride> {
    let mut users = BTreeMap::new();
    for (id, level) in raw.users.iter().flat_map(|u| u.0.iter()) {
        let user = names.user(id.get_ref(), &id.span(), "power_levels.users")?;
        // v12 auth rules reject power levels that list a creator: creators' power is unlimited.
        if version.has_creator_power() && creators.contains(&user.as_str()) {
            let message = format!("in room version 12, creators have unlimited power and cannot appear in power_levels.users (\"{user}\")");
            return Err(Problem::at(id.span(), message));
        }
        users.insert(user, level_value(level)?);
    }
    let single = |field: &Option<Spanned<i64>>| field.as_ref().map(level_value).transpose();
    Ok(PowerLevelsOverride {
        users,
        users_default: single(&raw.users_default)?,
        events_default: single(&raw.events_default)?,
        state_default: single(&raw.state_default)?,
        ban: single(&raw.ban)?,
        kick: single(&raw.kick)?,
        redact: single(&raw.redact)?,
        invite: single(&raw.invite)?,
        events: event_levels(raw.events.as_ref())?,
    })
}

fn event_levels(raw: Option<&OrderedMap<Spanned<i64>>>) -> Res<BTreeMap<String, i64>> {
    let mut events = BTreeMap::new();
    for (event_type, level) in raw.iter().flat_map(|e| e.0.iter()) {
        let max = super::super::MAX_EVENT_TYPE_BYTES;
        if event_type.get_ref().len() > max {
            let message = format!(
                "event type in power_levels.events is {} bytes long: at most {max}",
                event_type.get_ref().len()
            );
            return Err(Problem::at(event_type.span(), message));
        }
        events.insert(event_type.get_ref().clone(), level_value(level)?);
    }
    Ok(events)
}

pub(super) fn level_value(level: &Spanned<i64>) -> Res<i64> {
    let v = *level.get_ref();
    if (-MAX_POWER_LEVEL..=MAX_POWER_LEVEL).contains(&v) {
        return Ok(v);
    }
    Err(Problem::at(level.span(), format!("power level {v} is outside the canonical JSON integer range ±(2^53 - 1)")))
}

/// The room's `start`, or the time of a `create_room` action for it (not both).
fn start_time(room: &RawRoom, timeline: &[Spanned<RawAction>], creator: &str) -> Res<u64> {
    let name = room.name.get_ref();
    let mut creations = timeline.iter().map(Spanned::get_ref).filter(|a| {
        *a.action.get_ref() == ActionKind::CreateRoom && a.room.as_ref().is_some_and(|r| r.get_ref() == name)
    });
    let Some(action) = creations.next() else {
        return Ok(room.start.as_ref().map_or(0, |s| s.get_ref().0));
    };
    if let Some(again) = creations.next() {
        return Err(Problem::at(again.action.span(), format!("room \"{name}\" is created twice")));
    }
    if let Some(start) = &room.start {
        let message = format!("room \"{name}\" has both `start` and a create_room action; keep one");
        return Err(Problem::at(start.span(), message));
    }
    check_create_action(action, creator)?;
    Ok(action.at.get_ref().0)
}

/// A `create_room` action only says when; the room's entry says the rest.
fn check_create_action(action: &RawAction, creator: &str) -> Res<()> {
    let kind = "action \"create_room\" (the [[rooms]] entry describes the room)";
    reject(&action.target, "target", kind)?;
    reject(&action.level, "level", kind)?;
    reject(&action.join_rule, "join_rule", kind)?;
    reject(&action.text, "text", kind)?;
    reject(&action.count, "count", kind)?;
    reject(&action.every, "every", kind)?;
    match &action.user {
        Some(user) if user.get_ref() != creator => {
            let message = format!("create_room must be done by the room's creator, {creator}");
            Err(Problem::at(user.span(), message))
        }
        _ => Ok(()),
    }
}
