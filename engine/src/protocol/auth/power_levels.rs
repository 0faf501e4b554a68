//! v11 auth rule 9 / v12 auth rule 10: `m.room.power_levels`.

use super::{is_creator, reject, AuthResult, AuthState};
use crate::protocol::pdu::{Pdu, PowerLevelsContent, NAMED_LEVELS};
use crate::protocol::room_version::RoomVersion;
use std::collections::BTreeMap;

pub(super) fn check_power_levels(version: &RoomVersion, pdu: &Pdu, state: &AuthState, sender_level: i64) -> AuthResult {
    let Some(new) = pdu.power_levels() else {
        return Err(reject(version, "9", "not a power levels event"));
    };
    // v11 auth rules 9.1–9.3: integer levels, user-ID keys.
    if let Some(why) = &new.invalid {
        let rule = if why.contains("rule 9.1") {
            "9.1"
        } else if why.contains("rule 9.2") {
            "9.2"
        } else {
            "9.3"
        };
        return Err(reject(version, rule, why.clone()));
    }
    // v12 auth rule 10.4: creators may not be listed in `users`.
    if version.privileged_creators {
        if let Some(listed) = new.users.keys().find(|u| is_creator(state.create, u)) {
            return Err(Rejection_v12_10_4(listed));
        }
    }
    // v11 auth rule 9.4: the first power levels event is allowed.
    let Some(old) = state.power_levels.and_then(Pdu::power_levels) else {
        return Ok(());
    };
    check_named_levels(version, old, new, sender_level)?;
    // MSC4345 §3.1 (open question C11): `accept` changes like the named levels.
    if version.participation {
        let (before, after) = (old.accept.and_then(Result::ok), new.accept.and_then(Result::ok));
        if before != after && (before.is_some_and(|v| v > sender_level) || after.is_some_and(|v| v > sender_level)) {
            return Err(reject(version, "9.5", format!("changing accept beyond the sender's level {sender_level}")));
        }
    }
    check_level_map(version, "events", &old.events, &new.events, sender_level)?;
    check_level_map(version, "notifications", &old.notifications, &new.notifications, sender_level)?;
    check_users(version, pdu, old, new, sender_level)
}

#[allow(non_snake_case)]
fn Rejection_v12_10_4(user: &str) -> super::Rejection {
    super::Rejection { rule: "v12 10.4".into(), reason: format!("users lists the creator {user}").into() }
}

/// v11 auth rule 9.5: added, changed or removed named levels, old and new, must not exceed the
/// sender's level (raw presence compared, not defaults).
fn check_named_levels(
    version: &RoomVersion,
    old: &PowerLevelsContent,
    new: &PowerLevelsContent,
    sender: i64,
) -> AuthResult {
    for (i, name) in NAMED_LEVELS.iter().enumerate() {
        let (before, after) = (old.named[i], new.named[i]);
        if before == after {
            continue;
        }
        if before.is_some_and(|v| v > sender) || after.is_some_and(|v| v > sender) {
            return Err(reject(version, "9.5", format!("changing {name} beyond the sender's level {sender}")));
        }
    }
    Ok(())
}

/// v11 auth rules 9.6 / 9.7: `events` and `notifications` entries.
fn check_level_map(
    version: &RoomVersion,
    what: &str,
    old: &BTreeMap<String, i64>,
    new: &BTreeMap<String, i64>,
    sender: i64,
) -> AuthResult {
    for (key, before, after) in changed_entries(old, new) {
        if before.is_some_and(|v| v > sender) {
            return Err(reject(
                version,
                "9.6",
                format!("{what}[{key}] was {} above the sender's {sender}", before.unwrap_or(0)),
            ));
        }
        if after.is_some_and(|v| v > sender) {
            return Err(reject(
                version,
                "9.7",
                format!("{what}[{key}] set to {} above the sender's {sender}", after.unwrap_or(0)),
            ));
        }
    }
    Ok(())
}

/// v11 auth rules 9.8 / 9.9: `users` entries.
fn check_users(
    version: &RoomVersion,
    pdu: &Pdu,
    old: &PowerLevelsContent,
    new: &PowerLevelsContent,
    sender: i64,
) -> AuthResult {
    for (user, before, after) in changed_entries(&old.users, &new.users) {
        // 9.8: other users' entries that are changed or removed must be below the sender's.
        if user != pdu.sender && before.is_some_and(|v| v >= sender) {
            return Err(reject(
                version,
                "9.8",
                format!("cannot change {user}, whose level {} is not below {sender}", before.unwrap_or(0)),
            ));
        }
        // Synapse also refuses to lower one's own entry from above one's own level, which only
        // happens when the entry disagrees with the level used (never for a consistent state).
        if before.is_some_and(|v| v > sender) {
            return Err(reject(version, "9.8", format!("{user}'s old level is above the sender's {sender}")));
        }
        // 9.9: new values may not exceed the sender's level.
        if after.is_some_and(|v| v > sender) {
            return Err(reject(
                version,
                "9.9",
                format!("cannot raise {user} to {} above {sender}", after.unwrap_or(0)),
            ));
        }
    }
    Ok(())
}

/// Entries added, changed or removed between two maps, in key order: (key, old, new).
fn changed_entries<'a>(
    old: &'a BTreeMap<String, i64>,
    new: &'a BTreeMap<String, i64>,
) -> impl Iterator<Item = (&'a str, Option<i64>, Option<i64>)> + 'a {
    let removed_or_changed = old.iter().filter_map(move |(k, v)| match new.get(k) {
        Some(n) if n == v => None,
        n => Some((k.as_str(), Some(*v), n.copied())),
    });
    let added = new.iter().filter(move |(k, _)| !old.contains_key(*k)).map(|(k, v)| (k.as_str(), None, Some(*v)));
    removed_or_changed.chain(added)
}
