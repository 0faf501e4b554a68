//! v11 auth rule 4 / v12 auth rule 5: `m.room.member`.

use super::{membership_of, named_level, reject, show_level, user_power_level, AuthResult, AuthState};
use crate::protocol::pdu::{JoinRule, Membership, Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;

pub(super) fn check_member(version: &RoomVersion, pdu: &Pdu, state: &AuthState, create: &Pdu) -> AuthResult {
    let TypedContent::Member(content) = &pdu.content else {
        return Err(reject(version, "4.1", "not a member event"));
    };
    // v11 auth rule 4.1: a state_key and a membership are required.
    let (Some(target), Some(membership)) = (pdu.state_key.as_deref(), content.membership) else {
        return Err(reject(version, "4.1", "member event without state_key or membership"));
    };
    // v11 auth rule 4.2.1 (the authorising server's signature) is checked with the other
    // signatures, before the rules, as Synapse does (A2.4): its failure drops the event.
    match membership {
        Membership::Join => check_join(version, pdu, state, create, target),
        Membership::Invite => check_invite(version, pdu, state, target),
        Membership::Leave => check_leave(version, pdu, state, target),
        Membership::Ban => check_ban(version, pdu, state, target),
        Membership::Knock => check_knock(version, pdu, state, target),
        // v11 auth rule 4.8: any other membership is rejected.
        Membership::Unknown => Err(reject(version, "4.8", "unknown membership value")),
    }
}

fn join_rule(state: &AuthState) -> JoinRule {
    match state.join_rules.map(|e| &e.content) {
        Some(TypedContent::JoinRules(rule)) => *rule,
        // A1: no join rules in the state reads as invite (Synapse, ruma).
        _ => JoinRule::Invite,
    }
}

fn check_join(version: &RoomVersion, pdu: &Pdu, state: &AuthState, create: &Pdu, target: &str) -> AuthResult {
    // v11 auth rule 4.3.1: the creator's first join, right after the create event.
    if pdu.prev_events.len() == 1 && pdu.prev_events[0] == create.event_id && target == create.sender {
        return Ok(());
    }
    // MSC4345 §4 "Room creation" puts the creator's server's participation between the create
    // event and the creator's join, which 4.3.1 does not foresee (roomsim's reading): the
    // creator's first join may follow that participation instead, when it directly follows the
    // create event.
    if version.participation && target == create.sender {
        if let Some(bootstrap) = state.sender_server {
            if pdu.prev_events == [bootstrap.event_id.clone()] && bootstrap.prev_events == [create.event_id.clone()] {
                return Ok(());
            }
        }
    }
    // v11 auth rule 4.3.2: nobody joins for someone else.
    if pdu.sender != target {
        return Err(reject(version, "4.3.2", "sender differs from state_key on a join"));
    }
    let current = membership_of(state.sender_member);
    // v11 auth rule 4.3.3: banned users cannot join.
    if current == Some(Membership::Ban) {
        return Err(reject(version, "4.3.3", format!("{} is banned", pdu.sender)));
    }
    let invited_or_joined = matches!(current, Some(Membership::Invite | Membership::Join));
    match join_rule(state) {
        // v11 auth rule 4.3.4.
        JoinRule::Invite | JoinRule::Knock => {
            if invited_or_joined {
                Ok(())
            } else {
                Err(reject(version, "4.3.7", "join rule requires an invite and the sender has none"))
            }
        }
        // v11 auth rule 4.3.5.
        JoinRule::Restricted | JoinRule::KnockRestricted => {
            if invited_or_joined {
                return Ok(()); // 4.3.5.1
            }
            check_restricted_authoriser(version, pdu, state)
        }
        // v11 auth rule 4.3.6.
        JoinRule::Public => Ok(()),
        // v11 auth rule 4.3.7.
        JoinRule::Private | JoinRule::Unknown => Err(reject(version, "4.3.7", "join rule does not allow joining")),
    }
}

/// v11 auth rule 4.3.5.2: a restricted join names a joined authoriser with the invite level.
fn check_restricted_authoriser(version: &RoomVersion, pdu: &Pdu, state: &AuthState) -> AuthResult {
    let TypedContent::Member(content) = &pdu.content else { unreachable!("checked by caller") };
    let Some(Ok(authoriser)) = &content.authorised_via else {
        return Err(reject(version, "4.3.5.2", "restricted join without join_authorised_via_users_server"));
    };
    if membership_of(state.authoriser_member) != Some(Membership::Join) {
        return Err(reject(version, "4.3.5.2", format!("authorising user {authoriser} is not joined")));
    }
    let level = user_power_level(version, state, authoriser);
    let invite_level = named_level(state, "invite", 0);
    if level < invite_level {
        return Err(reject(
            version,
            "4.3.5.2",
            format!("authorising user level {level} is below the invite level {invite_level}"),
        ));
    }
    Ok(()) // 4.3.5.3
}

fn check_invite(version: &RoomVersion, pdu: &Pdu, state: &AuthState, target: &str) -> AuthResult {
    let TypedContent::Member(content) = &pdu.content else { unreachable!("checked by caller") };
    let target_membership = membership_of(state.target_member);
    // v11 auth rule 4.4.1: an invite made from a third-party invite.
    if content.has_third_party_invite {
        if target_membership == Some(Membership::Ban) {
            return Err(reject(version, "4.4.1.1", format!("{target} is banned")));
        }
        return super::third_party_invite::check_third_party_invite(version, pdu, state, target);
    }
    // v11 auth rule 4.4.2: the inviter must be joined.
    if membership_of(state.sender_member) != Some(Membership::Join) {
        return Err(reject(version, "4.4.2", format!("inviter {} is not joined", pdu.sender)));
    }
    // v11 auth rule 4.4.3: cannot invite someone joined or banned.
    if matches!(target_membership, Some(Membership::Join | Membership::Ban)) {
        return Err(reject(version, "4.4.3", format!("{target} is already joined or banned")));
    }
    // v11 auth rule 4.4.4 / 4.4.5: the invite level.
    let level = user_power_level(version, state, &pdu.sender);
    let invite_level = named_level(state, "invite", 0);
    if level >= invite_level {
        Ok(())
    } else {
        Err(reject(version, "4.4.5", format!("sender level {level} is below the invite level {invite_level}")))
    }
}

fn check_leave(version: &RoomVersion, pdu: &Pdu, state: &AuthState, target: &str) -> AuthResult {
    let sender_membership = membership_of(state.sender_member);
    // v11 auth rule 4.5.1: leaving, rejecting an invite or retracting a knock.
    if pdu.sender == target {
        return if matches!(sender_membership, Some(Membership::Invite | Membership::Join | Membership::Knock)) {
            Ok(())
        } else {
            Err(reject(version, "4.5.1", "cannot leave: not invited, joined or knocking"))
        };
    }
    // v11 auth rule 4.5.2: kicking needs the sender joined.
    if sender_membership != Some(Membership::Join) {
        return Err(reject(version, "4.5.2", format!("sender {} is not joined", pdu.sender)));
    }
    let sender_level = user_power_level(version, state, &pdu.sender);
    // v11 auth rule 4.5.3: unbanning needs the ban level.
    if membership_of(state.target_member) == Some(Membership::Ban) {
        let ban_level = named_level(state, "ban", 50);
        if sender_level < ban_level {
            return Err(reject(
                version,
                "4.5.3",
                format!("unban needs level {ban_level}, sender has {}", show_level(sender_level)),
            ));
        }
    }
    // v11 auth rule 4.5.4: kick level and more power than the target.
    let kick_level = named_level(state, "kick", 50);
    let target_level = user_power_level(version, state, target);
    if sender_level >= kick_level && target_level < sender_level {
        Ok(())
    } else {
        Err(reject(
            version,
            "4.5.5",
            format!(
                "kick needs level {kick_level} and more than the target's {}; sender has {}",
                show_level(target_level),
                show_level(sender_level)
            ),
        ))
    }
}

fn check_ban(version: &RoomVersion, pdu: &Pdu, state: &AuthState, target: &str) -> AuthResult {
    // v11 auth rule 4.6.1.
    if membership_of(state.sender_member) != Some(Membership::Join) {
        return Err(reject(version, "4.6.1", format!("sender {} is not joined", pdu.sender)));
    }
    // v11 auth rule 4.6.2 / 4.6.3.
    let sender_level = user_power_level(version, state, &pdu.sender);
    let ban_level = named_level(state, "ban", 50);
    let target_level = user_power_level(version, state, target);
    if sender_level >= ban_level && target_level < sender_level {
        Ok(())
    } else {
        Err(reject(
            version,
            "4.6.3",
            format!(
                "ban needs level {ban_level} and more than the target's {}; sender has {}",
                show_level(target_level),
                show_level(sender_level)
            ),
        ))
    }
}

fn check_knock(version: &RoomVersion, pdu: &Pdu, state: &AuthState, target: &str) -> AuthResult {
    // v11 auth rule 4.7.1: knocking needs a knock join rule.
    if !matches!(join_rule(state), JoinRule::Knock | JoinRule::KnockRestricted) {
        return Err(reject(version, "4.7.1", "the join rule does not allow knocking"));
    }
    // v11 auth rule 4.7.2.
    if pdu.sender != target {
        return Err(reject(version, "4.7.2", "cannot knock for someone else"));
    }
    // v11 auth rule 4.7.3 / 4.7.4.
    match membership_of(state.sender_member) {
        Some(m @ (Membership::Ban | Membership::Invite | Membership::Join)) => {
            Err(reject(version, "4.7.4", format!("cannot knock while {}", m.as_str())))
        }
        _ => Ok(()),
    }
}
