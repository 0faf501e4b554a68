//! Redactions: which event a client's `redact` names, whether the user may send it, and
//! applying accepted redactions to stored events (Client-Server API §"Redactions"; room version
//! 11 §"Redactions": the redaction algorithm, and "Handling redactions").
//!
//! A redaction is an ordinary event for the auth rules. Whether to *apply* it is decided once
//! both it and its target are held: the redaction's sender has the `redact` level in the
//! redaction's own auth events, or its server is the target sender's server (the same-domain
//! rule). Until the target arrives the redaction waits. Applying replaces the stored event by its
//! redacted form, which keeps the event ID (the reference hash is over the redacted form) and
//! the signatures: from then on it is what this server serves (`get_missing_events`, `send_join`,
//! catch-up) and what its clients see, and what the rules read (as Synapse, whose event store
//! returns redacted events to state resolution and auth; see ARCHITECTURE.md).

use super::actions::Draft;
use super::{ClientAction, Output, RoomReplica, Server};
use crate::protocol::auth::{self, AuthState};
use crate::protocol::ids;
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::redaction;
use crate::sim::event::SimEvent;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One room's redactions as one server holds them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Redactions {
    /// Events stored redacted.
    applied: BTreeSet<String>,
    /// Target event ID → redactions held for it whose target has not arrived yet.
    waiting: BTreeMap<String, Vec<String>>,
}

/// The event a `redact` action names: the latest held message (a non-state event other than a
/// redaction, not rejected, not redacted already) sent by `whose`.
fn latest_redactable_by(room: &RoomReplica, book: Option<&Redactions>, whose: &str) -> Option<String> {
    room.dag
        .events()
        .filter(|(_, e)| {
            let p = &e.pdu;
            p.sender == whose && p.state_key.is_none() && p.event_type != "m.room.redaction" && !e.is_rejected()
        })
        .filter(|(_, e)| !book.is_some_and(|b| b.applied.contains(&e.pdu.event_id)))
        .last()
        .map(|(_, e)| e.pdu.event_id.clone())
}

/// The redaction a `redact` action sends: its target (`target`'s latest message, or the acting
/// user's), refused unless the user redacts their own event or has the `redact` level in the
/// current state (the Client-Server API lets nobody else redact; the same-domain rule only
/// decides whether a received redaction is applied).
pub(crate) fn redaction_draft(
    room: &RoomReplica,
    book: Option<&Redactions>,
    a: &ClientAction,
) -> Result<Draft, String> {
    let whose = a.target.as_deref().unwrap_or(&a.user);
    let victim = latest_redactable_by(room, book, whose).ok_or_else(|| format!("no message of {whose} to redact"))?;
    if whose != a.user {
        let state = AuthState {
            create: room.current_event("m.room.create", ""),
            power_levels: room.current_event("m.room.power_levels", ""),
            ..AuthState::default()
        };
        let level = auth::user_power_level(room.version, &state, &a.user);
        let redact = redact_level(state.power_levels);
        if level < redact {
            return Err(format!(
                "redacting another user's event needs the redact level {redact}; {} has {level}",
                a.user
            ));
        }
    }
    Ok(Draft {
        event_type: "m.room.redaction",
        state_key: None,
        sender: a.user.clone(),
        content: json!({ "redacts": victim }),
    })
}

/// The `redact` level of a power-levels event (50 without one or without the key).
fn redact_level(power_levels: Option<&Pdu>) -> i64 {
    power_levels.and_then(Pdu::power_levels).and_then(|pl| pl.named("redact")).unwrap_or(50)
}

/// Whether `redaction` may be applied to `target` (v11 "Handling redactions"): the sender has
/// the redact level in the redaction's own auth events, or the same server as the target's.
fn may_apply(room: &RoomReplica, redaction_idx: u32, target: &Pdu) -> bool {
    let redaction = room.dag.pdu(redaction_idx);
    let same_domain = ids::domain_of(&redaction.sender).is_some()
        && ids::domain_of(&redaction.sender) == ids::domain_of(&target.sender);
    if same_domain {
        return true;
    }
    let state = room.dag.auth_state_from_own_auth_events(redaction_idx);
    auth::user_power_level(room.version, &state, &redaction.sender) >= redact_level(state.power_levels)
}

impl Server {
    /// After events were judged: every non-rejected redaction among them is applied to its
    /// target (or waits for it), and every waiting redaction whose target is among them is
    /// applied now.
    pub(crate) fn apply_redactions(&mut self, room_id: &str, judged: &[String], out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let nothing_waits = self.redactions.get(room_id).is_none_or(|b| b.waiting.is_empty());
        let is_redaction =
            |id: &String| room.dag.index_of(id).is_some_and(|i| room.dag.pdu(i).event_type == "m.room.redaction");
        if nothing_waits && !judged.iter().any(is_redaction) {
            return; // the common case: no allocation
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        let book = self.redactions.entry(room_id.to_owned()).or_default();
        for id in judged {
            let Some(idx) = room.dag.index_of(id) else { continue };
            let e = room.dag.event(idx);
            if let (TypedContent::Redaction { redacts: Some(target) }, false) = (&e.pdu.content, e.is_rejected()) {
                if e.pdu.event_type == "m.room.redaction" {
                    if room.dag.contains(target) {
                        pairs.push((id.clone(), target.clone()));
                    } else {
                        book.waiting.entry(target.clone()).or_default().push(id.clone());
                    }
                }
            }
            if let Some(redactions) = book.waiting.remove(id) {
                pairs.extend(redactions.into_iter().map(|r| (r, id.clone())));
            }
        }
        for (redaction, target) in pairs {
            self.apply_redaction(room_id, &redaction, &target, out);
        }
    }

    fn apply_redaction(&mut self, room_id: &str, redaction_id: &str, target_id: &str, out: &mut Vec<Output>) {
        let room = self.rooms.get_mut(room_id).expect("caller holds the room");
        let book = self.redactions.entry(room_id.to_owned()).or_default();
        if book.applied.contains(target_id) {
            return;
        }
        let (Some(r), Some(t)) = (room.dag.index_of(redaction_id), room.dag.index_of(target_id)) else { return };
        let target = room.dag.event(t).pdu.clone();
        if !may_apply(room, r, &target) {
            return;
        }
        let Ok(redacted) = Pdu::from_object(redaction::redact(&target.json, room.version), room.version) else {
            return;
        };
        debug_assert_eq!(redacted.event_id, target.event_id, "redaction keeps the reference hash");
        room.replace_pdu(t, Arc::new(redacted));
        book.applied.insert(target_id.to_owned());
        let ev = SimEvent::Redacted {
            room: room_id.to_owned(),
            event: target_id.to_owned(),
            redaction: redaction_id.to_owned(),
        };
        self.record(out, ev);
    }

    /// Whether this server stores `event_id` of `room_id` redacted.
    pub fn is_redacted(&self, room_id: &str, event_id: &str) -> bool {
        self.redactions.get(room_id).is_some_and(|b| b.applied.contains(event_id))
    }
}
