//! The authorization rules of room versions 11 and 12 (digest `auth-rules.md`).
//!
//! The rules never touch JSON: they read the typed content decoded when the PDU was parsed, and
//! the state they run against is an [`AuthState`] — one optional event per auth-type slot — so
//! the same code serves the event's own `auth_events`, the state before it, a server's current
//! state and state resolution's replay.
//!
//! Rule numbers in comments are v11's; v12's are given where they differ (see §7 of the digest:
//! v11 2.x → v12 3.x, 3 → 4, 4.x → 5.x, 5 → 6, …, 9.x → 10.x).

mod auth_events;
mod create;
mod member;
pub mod participation;
mod power_levels;
mod third_party_invite;

pub use auth_events::{check_auth_events_list, AuthEventRef};
pub use third_party_invite::verify_third_party_signed;

use super::pdu::{EventKind, Membership, Pdu, TypedContent};
use super::room_version::{RoomVersion, CREATOR_POWER_LEVEL};
use std::borrow::Cow;

/// Why an event fails the rules: the rule's number and a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// e.g. `"v11 4.3.3"` — the room version's own numbering.
    pub rule: Cow<'static, str>,
    pub reason: Cow<'static, str>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "auth rule {}: {}", self.rule, self.reason)
    }
}

pub type AuthResult = Result<(), Rejection>;

/// Builds a rejection citing the rule as numbered for `version` (`v11` numbers are given; the
/// v12 number is derived with the digest's numbering map).
pub(crate) fn reject(version: &RoomVersion, v11_rule: &'static str, reason: impl Into<Cow<'static, str>>) -> Rejection {
    let rule = if version.room_id_is_create_hash {
        Cow::Owned(format!("v12 {}", v12_number(v11_rule)))
    } else {
        Cow::Owned(format!("v11 {v11_rule}"))
    };
    Rejection { rule, reason: reason.into() }
}

/// Maps a v11 rule number to v12's (`auth-rules.md` §7 numbering map).
fn v12_number(v11: &str) -> String {
    let (head, tail) = v11.split_once('.').map_or((v11, None), |(h, t)| (h, Some(t)));
    let Ok(n) = head.parse::<u32>() else { return v11.to_owned() };
    let new_head = match n {
        1 => {
            return match tail {
                Some("4") => "1.5".into(),
                _ => v11.into(),
            }
        }
        2 => {
            return match tail {
                // v11 2.4 (no create event) is removed in v12; what fails there instead is rule 2
                // (room_id names no accepted create event).
                Some("4") => "2".into(),
                // v11 2.5 renders as v12 3.4 (the source numbers it 5; A6: cite rendered numbers).
                Some("5") => "3.4".into(),
                Some(t) => format!("3.{t}"),
                None => "3".into(),
            };
        }
        9 => {
            return match tail.and_then(|t| t.parse::<u32>().ok()) {
                Some(k) if k >= 4 => format!("10.{}", k + 1),
                Some(k) => format!("10.{k}"),
                None => "10".into(),
            }
        }
        n => n + 1,
    };
    match tail {
        Some(t) => format!("{new_head}.{t}"),
        None => new_head.to_string(),
    }
}

/// The auth-type slots of `auth-rules.md` §1: what a creating server selects for `auth_events`,
/// what receivers accept in it, and what state resolution consults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Create,
    PowerLevels,
    SenderMember,
    TargetMember,
    JoinRules,
    ThirdPartyInvite,
    AuthoriserMember,
    /// MSC4345 (open question C6): the participation of the server key the event acts through.
    SenderServer,
    /// The participation an `m.server.participation` event changes (its `state_key`).
    TargetServer,
    /// The participation of a request's `request_authorised_via_server`.
    ViaServer,
}

/// A state key `(type, state_key)` the rules consult, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKeyRef<'a> {
    pub event_type: &'static str,
    pub state_key: &'a str,
}

/// The auth types of `pdu` (§1), in slot order. For a member event about oneself the sender and
/// target slots name the same key; both are listed.
pub fn auth_types<'a>(version: &RoomVersion, pdu: &'a Pdu) -> Vec<(Slot, StateKeyRef<'a>)> {
    let mut out = Vec::with_capacity(6);
    if pdu.kind == EventKind::Create {
        return out;
    }
    // §1.1: v11 selects the create event; v12 never does (it is implied by room_id).
    if version.create_in_auth_events {
        out.push((Slot::Create, StateKeyRef { event_type: "m.room.create", state_key: "" }));
    }
    out.push((Slot::PowerLevels, StateKeyRef { event_type: "m.room.power_levels", state_key: "" }));
    out.push((Slot::SenderMember, StateKeyRef { event_type: "m.room.member", state_key: &pdu.sender }));
    if version.participation {
        // MSC4345 (open question C6): the participations rules 1 and 2 consult.
        const P: &str = "m.server.participation";
        if let Some(server) = super::signers::acting_server(version, pdu) {
            out.push((Slot::SenderServer, StateKeyRef { event_type: P, state_key: server }));
        }
        if let TypedContent::Participation(p) = &pdu.content {
            if let Some(target) = pdu.state_key.as_deref() {
                out.push((Slot::TargetServer, StateKeyRef { event_type: P, state_key: target }));
            }
            if let Some(via) = p.authorised_via_server.as_deref() {
                out.push((Slot::ViaServer, StateKeyRef { event_type: P, state_key: via }));
            }
        }
    }
    if let TypedContent::Member(member) = &pdu.content {
        let target = pdu.state_key.as_deref().unwrap_or("");
        out.push((Slot::TargetMember, StateKeyRef { event_type: "m.room.member", state_key: target }));
        let membership = member.membership;
        if matches!(membership, Some(Membership::Join | Membership::Invite | Membership::Knock)) {
            out.push((Slot::JoinRules, StateKeyRef { event_type: "m.room.join_rules", state_key: "" }));
        }
        if membership == Some(Membership::Invite) {
            if let Some(token) =
                member.third_party_signed.as_ref().and_then(|s| s.get("token")).and_then(|t| t.as_str())
            {
                out.push((
                    Slot::ThirdPartyInvite,
                    StateKeyRef { event_type: "m.room.third_party_invite", state_key: token },
                ));
            }
        }
        if membership == Some(Membership::Join) && version.restricted_joins {
            if let Some(Ok(user)) = &member.authorised_via {
                out.push((Slot::AuthoriserMember, StateKeyRef { event_type: "m.room.member", state_key: user }));
            }
        }
    }
    out
}

/// The state the rules read: one optional event per slot.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthState<'a> {
    pub create: Option<&'a Pdu>,
    pub power_levels: Option<&'a Pdu>,
    pub sender_member: Option<&'a Pdu>,
    pub target_member: Option<&'a Pdu>,
    pub join_rules: Option<&'a Pdu>,
    pub third_party_invite: Option<&'a Pdu>,
    pub authoriser_member: Option<&'a Pdu>,
    pub sender_server: Option<&'a Pdu>,
    pub target_server: Option<&'a Pdu>,
    pub via_server: Option<&'a Pdu>,
}

impl<'a> AuthState<'a> {
    pub fn set(&mut self, slot: Slot, pdu: Option<&'a Pdu>) {
        match slot {
            Slot::Create => self.create = pdu,
            Slot::PowerLevels => self.power_levels = pdu,
            Slot::SenderMember => self.sender_member = pdu,
            Slot::TargetMember => self.target_member = pdu,
            Slot::JoinRules => self.join_rules = pdu,
            Slot::ThirdPartyInvite => self.third_party_invite = pdu,
            Slot::AuthoriserMember => self.authoriser_member = pdu,
            Slot::SenderServer => self.sender_server = pdu,
            Slot::TargetServer => self.target_server = pdu,
            Slot::ViaServer => self.via_server = pdu,
        }
    }

    /// Fills every slot of `pdu`'s auth types from a lookup by state key.
    pub fn from_lookup(
        version: &RoomVersion,
        pdu: &'a Pdu,
        mut lookup: impl FnMut(&str, &str) -> Option<&'a Pdu>,
    ) -> AuthState<'a> {
        let mut state = AuthState::default();
        for (slot, key) in auth_types(version, pdu) {
            state.set(slot, lookup(key.event_type, key.state_key));
        }
        state
    }
}

/// Membership of a user as an auth event says (no event ⇒ none, treated as leave).
pub(crate) fn membership_of(member: Option<&Pdu>) -> Option<Membership> {
    member.and_then(Pdu::membership)
}

/// Whether `user` is a creator (v12, MSC4289): the create event's sender or an additional creator.
pub fn is_creator(create: Option<&Pdu>, user: &str) -> bool {
    let Some(create) = create else { return false };
    if create.sender == user {
        return true;
    }
    match &create.content {
        TypedContent::Create(c) => c.additional_creators.as_ref().is_ok_and(|list| list.iter().any(|u| u == user)),
        _ => false,
    }
}

/// Power level of `user` in `state` (§2 definitions; v12 creators are infinite).
pub fn user_power_level(version: &RoomVersion, state: &AuthState, user: &str) -> i64 {
    if version.privileged_creators && is_creator(state.create, user) {
        return CREATOR_POWER_LEVEL;
    }
    match state.power_levels.and_then(Pdu::power_levels) {
        Some(pl) => pl.users.get(user).copied().unwrap_or_else(|| pl.users_default()),
        // No power levels: the creator has 100 (v11; v12 creators were handled above).
        None => match state.create {
            Some(create) if create.sender == user => 100,
            _ => 0,
        },
    }
}

/// A power level for messages: creators' infinite level reads as such.
pub(crate) fn show_level(level: i64) -> String {
    if level == CREATOR_POWER_LEVEL {
        "creator (infinite)".to_owned()
    } else {
        level.to_string()
    }
}

fn named_level(state: &AuthState, name: &str, default: i64) -> i64 {
    state.power_levels.and_then(Pdu::power_levels).and_then(|pl| pl.named(name)).unwrap_or(default)
}

/// The authorization rules that depend on room state: v11 rules 1 and 3–10 (v12 1 and 4–11),
/// run against `state`. The rules about the `auth_events` list itself (v11 rule 2, v12 rules
/// 2–3) are in [`check_auth_events_list`].
pub fn check_state_dependent(version: &RoomVersion, pdu: &Pdu, state: &AuthState) -> AuthResult {
    // v11 auth rule 1: create events are judged on their own.
    if pdu.kind == EventKind::Create {
        return create::check_create(version, pdu);
    }
    let Some(create) = state.create else {
        // v11 auth rule 2.4: no create event among the auth events.
        return Err(reject(version, "2.4", "no m.room.create event in the state"));
    };
    check_federate(version, pdu, create)?;
    // MSC4345 §5 / MSC4348 §8.3, after m.federate and before the member rule (C9).
    if version.participation {
        if pdu.kind == EventKind::Participation {
            return participation::check_participation(version, pdu, state);
        }
        participation::check_acting_server(version, pdu, state)?;
    }
    if pdu.kind == EventKind::Member {
        return member::check_member(version, pdu, state, create);
    }
    // v11 auth rule 5: the sender must be joined.
    if membership_of(state.sender_member) != Some(Membership::Join) {
        return Err(reject(version, "5", format!("sender {} is not joined to the room", pdu.sender)));
    }
    let sender_level = user_power_level(version, state, &pdu.sender);
    // v11 auth rule 6: third-party invites need the invite level.
    if pdu.kind == EventKind::ThirdPartyInvite {
        let invite_level = named_level(state, "invite", 0);
        if sender_level < invite_level {
            return Err(reject(
                version,
                "6",
                format!("sender level {sender_level} is below the invite level {invite_level}"),
            ));
        }
        return Ok(());
    }
    // v11 auth rule 7: the required level for the event type.
    let required = state
        .power_levels
        .and_then(Pdu::power_levels)
        .map_or(if pdu.is_state() { 50 } else { 0 }, |pl| pl.required_level(&pdu.event_type, pdu.is_state()));
    if sender_level < required {
        return Err(reject(
            version,
            "7",
            format!("{} needs level {required}, sender has {sender_level}", pdu.event_type),
        ));
    }
    // v11 auth rule 8: state keyed by a user ID belongs to that user.
    if let Some(key) = &pdu.state_key {
        if key.starts_with('@') && key != &pdu.sender {
            return Err(reject(version, "8", format!("state_key {key} is another user's")));
        }
    }
    // v11 auth rule 9: power levels changes.
    if pdu.kind == EventKind::PowerLevels {
        return power_levels::check_power_levels(version, pdu, state, sender_level);
    }
    // v11 auth rule 10.
    Ok(())
}

/// v11 auth rule 3 (v12 4): `m.federate: false` keeps other servers out. As Synapse does (A2.3),
/// a membership whose target is on another server is refused too.
fn check_federate(version: &RoomVersion, pdu: &Pdu, create: &Pdu) -> AuthResult {
    let federate = match &create.content {
        TypedContent::Create(c) => c.federate,
        _ => true,
    };
    if federate {
        return Ok(());
    }
    // MSC4348 D5: user IDs name no server; the co-signing server keys are compared.
    if version.portable_accounts {
        let ours = super::signers::acting_server(version, create);
        if super::signers::acting_server(version, pdu) != ours {
            return Err(reject(version, "3", "the room is not federated (m.federate is false): another server key"));
        }
        return Ok(());
    }
    let creator_domain = super::ids::domain_of(&create.sender);
    let sender_domain = super::ids::domain_of(&pdu.sender);
    let target_domain =
        if pdu.kind == EventKind::Member { pdu.state_key.as_deref().and_then(super::ids::domain_of) } else { None };
    if sender_domain != creator_domain || target_domain.is_some_and(|d| Some(d) != creator_domain) {
        return Err(reject(version, "3", "the room is not federated (m.federate is false)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
