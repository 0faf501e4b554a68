//! Byzantine behaviour of a misbehaving server: withholding its events from chosen servers,
//! equivocating (a conflicting twin of an event to half of the destinations), or (in
//! `actions::sign_new`) signing with a wrong key.

use super::actions::content_of;
use super::{Output, Server};
use crate::protocol::crypto;
use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::RoomVersion;
use crate::scenario::Byzantine;
use crate::sim::event::SimEvent;
use crate::sim::time::SimTime;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::Arc;

impl Server {
    /// Sends a new event to the room, applying this server's byzantine behaviour if any.
    pub(crate) fn send_with_behaviour(&mut self, room_id: &str, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        // `equivocate_accounts` misbehaves in its `/query/accounts` answers, not in its PDUs.
        let misbehave = !matches!(self.config.byzantine, Byzantine::None | Byzantine::EquivocateAccounts)
            && self.rng.gen_bool(self.config.byzantine_probability.clamp(0.0, 1.0));
        if !misbehave {
            self.broadcast(room_id, pdu, None, now, out);
            return;
        }
        match self.config.byzantine {
            Byzantine::Withhold => self.withhold(room_id, pdu, now, out),
            Byzantine::Equivocate => self.equivocate(room_id, pdu, now, out),
            Byzantine::BadSignatures | Byzantine::None | Byzantine::EquivocateAccounts => {
                self.broadcast(room_id, pdu, None, now, out)
            }
        }
    }

    /// Sends `pdu` only to the destinations outside `withhold_from` (all of them are withheld
    /// when it is not set). The withheld servers can still learn of the event later, by fetching
    /// it (`get_missing_events`) from a server whose event references it.
    fn withhold(&mut self, room_id: &str, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        self.record(out, SimEvent::Byzantine { behaviour: "withhold".into(), event: pdu.event_id.clone(), twin: None });
        let Some(withheld) = &self.config.withhold_from else { return };
        let dests: Vec<_> = self
            .destinations(room_id, &pdu)
            .into_iter()
            .filter(|d| !withheld.contains(&self.directory.names[*d as usize]))
            .collect();
        for d in dests {
            self.queue_for(d, pdu.clone(), now, out);
        }
    }

    /// Sends `pdu` to half the destinations and a conflicting twin (same prev events, other
    /// content) to the other half.
    pub(crate) fn equivocate(&mut self, room_id: &str, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        let version = self.rooms[room_id].version;
        let mut content = Value::Object(content_of(&pdu));
        content["org.roomsim.fork"] = json!(1);
        let twin = self.resign_with_content(&pdu, content, version);
        self.record(
            out,
            SimEvent::Byzantine {
                behaviour: "equivocate".into(),
                event: pdu.event_id.clone(),
                twin: Some(twin.event_id.clone()),
            },
        );
        out.push(Output::Created { room_id: room_id.to_owned(), pdu: twin.clone() });
        let dests = self.destinations(room_id, &pdu);
        for (i, d) in dests.into_iter().enumerate() {
            let which = if i % 2 == 0 { pdu.clone() } else { twin.clone() };
            self.queue_for(d, which, now, out);
        }
    }

    pub(crate) fn resign_with_content(&self, pdu: &Pdu, content: Value, version: &RoomVersion) -> Arc<Pdu> {
        let mut map = pdu.json.clone();
        map.insert("content".into(), content);
        map.remove("signatures");
        map.remove("hashes");
        crypto::set_content_hash(&mut map);
        self.sign_own(map, version).expect("re-signed event is well-formed")
    }
}
