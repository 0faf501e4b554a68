//! MSC4345 §5 (server participation) and MSC4348 §8.3 (portable accounts): the rule block
//! inserted after `m.federate` (v12 rule 4) and before the member rule (open question C9).
//!
//! Rule numbers are the MSC's own (`msc4345 1.1.1.3`, `msc4348 8.3.2`); where the text is
//! defective (MSC4345 §5.1 D1–D8) the reading is a field of
//! [`ParticipationRules`](crate::protocol::room_version::ParticipationRules), and a rejection
//! that depends on it names the defect too.
//!
//! Who "the sender's server" is comes from the signatures ([`signers::acting_server`]): under
//! MSC4345 the server key in the sender's user ID, under MSC4348 the key that co-signed the
//! event. Participation events are decided by this block alone (D5: "any localpart, whatever
//! its room membership"); every other event must act through an accepted server (MSC4345 rule
//! 2, MSC4348 8.3.1) and then passes all the usual rules.

use super::{is_creator, user_power_level, AuthResult, AuthState, Rejection};
use crate::protocol::ids;
use crate::protocol::pdu::{Membership, ParticipationContent, ParticipationState, Pdu, TypedContent};
use crate::protocol::room_version::{AcceptMode, AccountRevocation, RoomVersion, CREATOR_POWER_LEVEL};
use crate::protocol::signers;

/// The content flag that makes an account's own leave final (MSC4348 D4, knob
/// `account_revocation = "self_signed_leave_final"`).
pub const FINAL_LEAVE_FLAG: &str = "org.matrix.msc4348.final";

fn rej(msc: &str, rule: &str, reason: impl Into<String>) -> Rejection {
    Rejection { rule: format!("{msc} {rule}").into(), reason: reason.into().into() }
}

fn participation_of(pdu: Option<&Pdu>) -> Option<&ParticipationContent> {
    match pdu.map(|p| &p.content) {
        Some(TypedContent::Participation(c)) => Some(c),
        _ => None,
    }
}

fn state_of(pdu: Option<&Pdu>) -> Option<ParticipationState> {
    participation_of(pdu).and_then(|c| c.participation)
}

/// MSC4345 rule 2 and MSC4348 §8.3 for every event other than `m.server.participation`.
pub(super) fn check_acting_server(version: &RoomVersion, pdu: &Pdu, state: &AuthState) -> AuthResult {
    let msc = if version.portable_accounts { "msc4348" } else { "msc4345" };
    let rule = if version.portable_accounts { "8.3.1" } else { "2" };
    let Some(server) = signers::acting_server(version, pdu) else {
        return Err(rej(msc, rule, "cannot tell which server key the event acts through"));
    };
    if state_of(state.sender_server) != Some(ParticipationState::Accepted) {
        let now = state_of(state.sender_server).map_or("no participation", ParticipationState::as_str);
        return Err(rej(msc, rule, format!("server key {server} is not accepted in the room ({now})")));
    }
    if !version.portable_accounts {
        return Ok(());
    }
    let rules = &version.participation_rules;
    let own_membership = pdu.membership().is_some() && pdu.state_key.as_deref() == Some(pdu.sender.as_str());
    // MSC4348 D4: an account that left for good never joins again.
    if rules.account_revocation == AccountRevocation::SelfSignedLeaveFinal
        && own_membership
        && pdu.membership() == Some(Membership::Join)
        && state.sender_member.is_some_and(is_final_leave)
    {
        return Err(rej("msc4348", "D4", format!("account {} revoked itself with a final leave", pdu.sender)));
    }
    // 8.3.3: the account's own membership may go through any accepted server (a join through
    // another one is a move). 8.3.2: anything else goes through the server that co-signed its
    // current membership, unless the multi-server reading (D1) is chosen.
    if own_membership || rules.multi_server {
        return Ok(());
    }
    let Some(member) = state.sender_member else { return Ok(()) }; // the member rules refuse it
    let bound = signers::acting_server(version, member);
    if bound != Some(server) {
        return Err(rej(
            "msc4348",
            "8.3.2",
            format!(
                "{} is bound to server key {} (the co-signer of its membership), not {server}",
                pdu.sender,
                bound.unwrap_or("(none)")
            ),
        ));
    }
    Ok(())
}

fn is_final_leave(member: &Pdu) -> bool {
    member.membership() == Some(Membership::Leave)
        && member.state_key.as_deref() == Some(member.sender.as_str())
        && member.json.get("content").and_then(|c| c.get(FINAL_LEAVE_FLAG)).and_then(|v| v.as_bool()) == Some(true)
}

/// D7 (open question C8): a server's implicit power level, the highest level of a user whose
/// user ID names its key. Auth events carry no member list, so the users are the ones
/// `m.room.power_levels` lists and the creators (v12: infinite); none: `users_default`. Under
/// MSC4348 user IDs name no server: `users_default`.
fn implicit_level(version: &RoomVersion, state: &AuthState, key: &str) -> i64 {
    let pl = state.power_levels.and_then(Pdu::power_levels);
    let default = pl.map_or(0, |p| p.users_default());
    if version.portable_accounts {
        return default;
    }
    let mut level = default;
    if let Some(create) = state.create {
        let mut creators = vec![create.sender.as_str()];
        if let TypedContent::Create(c) = &create.content {
            if let Ok(extra) = &c.additional_creators {
                creators.extend(extra.iter().map(String::as_str));
            }
        }
        if version.privileged_creators && creators.iter().any(|u| ids::server_key_of(u) == Some(key)) {
            return CREATOR_POWER_LEVEL;
        }
    }
    if let Some(pl) = pl {
        for (user, l) in &pl.users {
            if ids::server_key_of(user) == Some(key) {
                level = level.max(*l);
            }
        }
    }
    level
}

/// MSC4345 §5 rule 1: an `m.server.participation` event.
pub(super) fn check_participation(version: &RoomVersion, pdu: &Pdu, state: &AuthState) -> AuthResult {
    let msc = "msc4345";
    let rules = &version.participation_rules;
    let TypedContent::Participation(content) = &pdu.content else {
        return Err(rej(msc, "1", "not a participation event"));
    };
    let Some(target) = pdu.state_key.as_deref().and_then(ids::as_key) else {
        return Err(rej(msc, "1", "state_key is not a server key"));
    };
    let Some(wanted) = content.participation else {
        return Err(rej(msc, "1.4", "participation is not requested, accepted or revoked"));
    };
    let current = state.target_server.filter(|_| state_of(state.target_server).is_some());
    let current_state = state_of(current);
    let acting = signers::acting_server(version, pdu);
    // 1.1: the sender's signature corresponds to the state_key (the subject acting on itself).
    if acting == Some(target) {
        if current_state.is_none() {
            // 1.1.1.1: a creator's server bootstraps the room.
            if wanted == ParticipationState::Accepted && is_creator(state.create, &pdu.sender) {
                return Ok(());
            }
            if wanted != ParticipationState::Requested {
                return Err(rej(
                    msc,
                    "1.1.1.2",
                    format!("a first participation must be requested, not {}", wanted.as_str()),
                ));
            }
            let Some(via) = content.authorised_via_server.as_deref() else {
                return Err(rej(msc, "1.1.1.3", "a request names no request_authorised_via_server"));
            };
            if state_of(state.via_server) != Some(ParticipationState::Accepted) {
                return Err(rej(msc, "1.1.1.3", format!("request_authorised_via_server {via} is not accepted")));
            }
            // 1.1.1.4: the co-signature is a required signature (protocol::signers), so an
            // event without it never reaches the rules; checked again for clarity.
            if !has_signature(pdu, via) {
                return Err(rej(msc, "1.1.1.4", format!("not co-signed by {via}")));
            }
            // 1.1.1.5 (D1): as written, "reject".
            if !rules.fix_request_rule {
                return Err(rej(
                    msc,
                    "1.1.1.5",
                    "a co-signed request is rejected as written (D1, fix_request_rule = false)",
                ));
            }
            return Ok(());
        }
        // 1.1.2: self-revocation from any state but revoked.
        if wanted == ParticipationState::Revoked && current_state != Some(ParticipationState::Revoked) {
            return Ok(());
        }
        // C2 `self_after_request`: the joining server accepts itself after its request.
        if rules.accept_mode == AcceptMode::SelfAfterRequest
            && wanted == ParticipationState::Accepted
            && current_state == Some(ParticipationState::Requested)
        {
            return check_same_domain(rules.accept_requires_request, current, content, "C2");
        }
        return Err(rej(
            msc,
            "1.1.3",
            format!(
                "the key cannot set itself {} from {}",
                wanted.as_str(),
                current_state.map_or("nothing", |s| s.as_str())
            ),
        ));
    }
    // Someone else acts on the key. MSC4348 8.3.1: through an accepted server of its own.
    if version.portable_accounts && state_of(state.sender_server) != Some(ParticipationState::Accepted) {
        return Err(rej("msc4348", "8.3.1", "the sender's co-signing server is not accepted"));
    }
    let sender_level = user_power_level(version, state, &pdu.sender);
    let accept_level = state.power_levels.and_then(Pdu::power_levels).map_or(100, |p| p.accept());
    match wanted {
        ParticipationState::Revoked => {
            // 1.2.1: a state the target set itself is final (D2: only a self-revocation, by
            // default, so that admins can revoke a pending request).
            let self_set = current.is_some_and(|c| signers::acting_server(version, c) == Some(target));
            let blocked = if rules.admin_revokes_pending {
                self_set && current_state == Some(ParticipationState::Revoked)
            } else {
                self_set
            };
            if blocked {
                return Err(rej(msc, "1.2.1", "the target key's own participation state is final"));
            }
            // 1.2.2 (D3): the accept level and above the target server's implicit level.
            let implicit = implicit_level(version, state, target);
            let above = if rules.revoke_strictly_above { sender_level > implicit } else { sender_level >= implicit };
            if sender_level >= accept_level && above {
                return Ok(());
            }
            let cmp = if rules.revoke_strictly_above { ">" } else { "≥" };
            Err(rej(
                msc,
                "1.2.2",
                format!(
                    "revoking needs the accept level {accept_level} and a level {cmp} the server's implicit {}; sender has {}",
                    super::show_level(implicit),
                    super::show_level(sender_level)
                ),
            ))
        }
        ParticipationState::Accepted => {
            if rules.accept_mode == AcceptMode::SelfAfterRequest {
                return Err(rej(msc, "C2", "only the key itself accepts (accept_mode = self_after_request)"));
            }
            match current_state {
                Some(ParticipationState::Accepted) => return Err(rej(msc, "1.3.1", "the key is already accepted")),
                Some(ParticipationState::Revoked) => return Err(rej(msc, "1.3.2", "a revoked key stays revoked")),
                _ => {}
            }
            check_same_domain(rules.accept_requires_request, current, content, "D4")?;
            if sender_level >= accept_level {
                return Ok(());
            }
            Err(rej(
                msc,
                "1.3.3",
                format!("accepting needs level {accept_level}, sender has {}", super::show_level(sender_level)),
            ))
        }
        ParticipationState::Requested => Err(rej(msc, "1.4", "only the key itself requests participation")),
    }
}

/// D4 (C5): `accepted` needs a current `requested` with the same `unverified_domain`.
fn check_same_domain(
    required: bool,
    current: Option<&Pdu>,
    content: &ParticipationContent,
    defect: &str,
) -> AuthResult {
    if !required {
        return Ok(());
    }
    let Some(request) = participation_of(current).filter(|c| c.participation == Some(ParticipationState::Requested))
    else {
        return Err(rej("msc4345", defect, "accepted needs a current request (accept_requires_request)"));
    };
    if request.unverified_domain != content.unverified_domain {
        return Err(rej(
            "msc4345",
            defect,
            format!(
                "unverified_domain {:?} differs from the request's {:?}",
                content.unverified_domain, request.unverified_domain
            ),
        ));
    }
    Ok(())
}

fn has_signature(pdu: &Pdu, entity: &str) -> bool {
    pdu.json.get("signatures").and_then(|s| s.get(entity)).is_some()
}
