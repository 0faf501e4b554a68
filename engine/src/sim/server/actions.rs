//! Client actions: what a user asks its server to do, turned into signed PDUs. A server refuses
//! (as the client-server API would, with 403) an action its current state does not authorise.

use super::{room_id_of, ClientAction, Output, RoomReplica, Server};
use crate::protocol::auth;
use crate::protocol::crypto;
use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::RoomVersion;
use crate::scenario::{ActionKind, RoomSpec, RoomVersionId};
use crate::sim::event::SimEvent;
use crate::sim::time::{origin_server_ts, SimTime};
use rand::Rng;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Fields of a new event, before prev/auth selection.
pub(crate) struct Draft {
    pub(crate) event_type: &'static str,
    pub(crate) state_key: Option<String>,
    pub(crate) sender: String,
    pub(crate) content: Value,
}

impl Draft {
    /// An `m.room.member` event by `sender` about `target`.
    pub(crate) fn member(sender: String, target: String, membership: &str) -> Draft {
        Draft {
            event_type: "m.room.member",
            state_key: Some(target),
            sender,
            content: json!({ "membership": membership }),
        }
    }
}

impl Server {
    pub(crate) fn on_action(&mut self, mut a: ClientAction, now: SimTime, out: &mut Vec<Output>) {
        // The record names users as the client did (account names in account-key rooms).
        let (user, target) = (a.user.clone(), a.target.clone());
        let translated = self.account_action(&mut a);
        self.portable_action(&mut a);
        let result = match (translated, a.kind) {
            (Err(why), _) => Err(why),
            (Ok(()), kind) => self.act(&a, kind, now, out),
        };
        let (event, pending, refused) = match result {
            Ok(Some(event_id)) => (Some(event_id), false, None),
            Ok(None) => (None, true, None),
            Err(why) => (None, false, Some(why)),
        };
        self.record(
            out,
            SimEvent::Action {
                action: a.kind.as_str().to_owned(),
                user,
                room: a.room_name.clone(),
                target,
                event,
                pending,
                refused,
            },
        );
    }

    fn act(
        &mut self,
        a: &ClientAction,
        kind: ActionKind,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let a = a.clone();
        match kind {
            ActionKind::CreateRoom => self.create_room(&a, now, out),
            ActionKind::Join => self.join(&a, now, out),
            ActionKind::Invite => self.invite(&a, now, out),
            ActionKind::Knock => self.knock(&a, now, out),
            ActionKind::Move => self.move_account(&a, now, out),
            ActionKind::InviteEmail => self.invite_email(&a, now, out),
            ActionKind::Bind => self.bind_address(&a, now, out),
            ActionKind::SetIdentityServer => self.set_identity_server(&a, now, out),
            ActionKind::Revoke => self.revoke_server(&a, now, out),
            ActionKind::AcceptKnock => self.accept_knock(&a, now, out),
            ActionKind::DenyKnock => self.deny_knock(&a, now, out),
            ActionKind::Leave | ActionKind::RejectInvite if self.leaves_remotely(&a) => self.remote_leave(&a, now, out),
            ActionKind::FinalLeave if self.leaves_remotely(&a) => {
                Err("a final leave is sent by the account's own server".into())
            }
            ActionKind::Ban if self.bans_by_name(&a) => {
                let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
                let target = a.target.clone().unwrap_or_default();
                self.account_invite(&room_id, &a.user, &target, true, now, out)
            }
            _ => self.simple_action(&a, now, out),
        }
    }

    /// A ban in an account-key room of a user named by account name (not in the room): the
    /// pre-emptive ban of MSC4243 §8 through the target's domain.
    fn bans_by_name(&self, a: &ClientAction) -> bool {
        let remote = |t: &str| crate::protocol::ids::domain_of(t) != Some(self.name.as_str());
        self.accounts.is_some()
            && self.directory.accounts.is_account_room(&a.room_name)
            && a.target.as_deref().is_some_and(|t| crate::protocol::ids::account_key_of(t).is_none() && remote(t))
    }

    pub(crate) fn create_room(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let spec = a.create.as_ref().ok_or("create_room without a room specification")?;
        if a.allow.len() < spec.allow.len() {
            return Err(format!("a room of the allow list ({}) was not created", spec.allow.join(", ")));
        }
        let version = version_of(spec.version);
        let creator = spec.creator.clone();
        let mut create_content = json!({"room_version": version.id});
        if version.privileged_creators && !spec.additional_creators.is_empty() {
            create_content["additional_creators"] = json!(spec.additional_creators);
        }
        let room_id = if version.room_id_is_create_hash {
            // A14: deterministic entropy keeps two same-millisecond creations apart.
            create_content["org.roomsim.entropy"] = json!(format!("{:016x}", self.rng.gen::<u64>()));
            None
        } else {
            let opaque: String = (0..18).map(|_| (b'a' + self.rng.gen_range(0..26u8)) as char).collect();
            Some(format!("!{opaque}:{}", self.name))
        };
        let create = self.sign_new(
            version,
            room_id.as_deref(),
            Draft {
                event_type: "m.room.create",
                state_key: Some(String::new()),
                sender: creator.clone(),
                content: create_content,
            },
            vec![],
            vec![],
            1,
            now,
        );
        let room_id = room_id_of(&create);
        self.rooms.insert(room_id.clone(), RoomReplica::new(room_id.clone(), version));
        self.commit_local(&room_id, create, now, out);
        // MSC4345 §4: the creator's server accepts its own key before the creator joins.
        if version.participation {
            let d = self.bootstrap_draft(&room_id, &creator).ok_or("no server key for the room")?;
            self.create_and_send(&room_id, d, now, out)?;
        }
        let pl = default_power_levels(spec, version);
        let steps = [
            Draft::member(creator.clone(), creator.clone(), "join"),
            Draft {
                event_type: "m.room.power_levels",
                state_key: Some(String::new()),
                sender: creator.clone(),
                content: pl,
            },
            Draft {
                event_type: "m.room.join_rules",
                state_key: Some(String::new()),
                sender: creator.clone(),
                content: crate::sim::federation::restricted::join_rules_content(spec.join_rule.as_str(), &a.allow),
            },
            Draft {
                event_type: "m.room.history_visibility",
                state_key: Some(String::new()),
                sender: creator.clone(),
                content: json!({"history_visibility": "shared"}),
            },
        ];
        for d in steps {
            self.create_and_send(&room_id, d, now, out)?;
        }
        Ok(Some(room_id))
    }

    /// Leave, kick, ban, unban, message, topic, name, power, join rule, redact.
    pub(crate) fn simple_action(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let room = self.rooms.get(&room_id).ok_or("this server is not in the room")?;
        let member = |target: &str, membership: &str| Draft::member(a.user.clone(), target.to_owned(), membership);
        let target = a.target.clone().unwrap_or_default();
        let text = a.text.clone().unwrap_or_else(|| "hello".into());
        let d = match a.kind {
            ActionKind::Leave => member(&a.user, "leave"),
            // MSC4348 account-key revocation: the account's own leave, flagged final (whether
            // it is final is the room version's `final-leave` reading).
            ActionKind::FinalLeave => {
                let mut d = member(&a.user, "leave");
                d.content[crate::protocol::auth::participation::FINAL_LEAVE_FLAG] = serde_json::Value::Bool(true);
                d
            }
            ActionKind::RejectInvite => {
                let current = room.current_event("m.room.member", &a.user).and_then(Pdu::membership);
                if current != Some(crate::protocol::pdu::Membership::Invite) {
                    return Err("no invite to reject".into());
                }
                member(&a.user, "leave")
            }
            ActionKind::Kick | ActionKind::Unban => member(&target, "leave"),
            ActionKind::Ban => member(&target, "ban"),
            ActionKind::Message => Draft {
                event_type: "m.room.message",
                state_key: None,
                sender: a.user.clone(),
                content: json!({"msgtype": "m.text", "body": text}),
            },
            ActionKind::Topic => Draft {
                event_type: "m.room.topic",
                state_key: Some(String::new()),
                sender: a.user.clone(),
                content: json!({"topic": text}),
            },
            ActionKind::Name => Draft {
                event_type: "m.room.name",
                state_key: Some(String::new()),
                sender: a.user.clone(),
                content: json!({"name": text}),
            },
            ActionKind::JoinRule => {
                let rule = a.join_rule.map(|r| r.as_str()).unwrap_or("invite");
                Draft {
                    event_type: "m.room.join_rules",
                    state_key: Some(String::new()),
                    sender: a.user.clone(),
                    content: json!({"join_rule": rule}),
                }
            }
            ActionKind::Power => {
                let mut content = room
                    .current_event("m.room.power_levels", "")
                    .map(|p| Value::Object(content_of(p)))
                    .unwrap_or_else(|| json!({}));
                let level = a.level.ok_or("power action without a level")?;
                if !content["users"].is_object() {
                    content["users"] = json!({});
                }
                content["users"][&target] = json!(level);
                Draft {
                    event_type: "m.room.power_levels",
                    state_key: Some(String::new()),
                    sender: a.user.clone(),
                    content,
                }
            }
            ActionKind::Redact => super::redactions::redaction_draft(room, self.redactions.get(&room_id), a)?,
            ActionKind::CreateRoom
            | ActionKind::Move
            | ActionKind::Revoke
            | ActionKind::Join
            | ActionKind::Invite
            | ActionKind::Knock
            | ActionKind::AcceptKnock
            | ActionKind::DenyKnock
            | ActionKind::InviteEmail
            | ActionKind::Bind
            | ActionKind::SetIdentityServer => unreachable!("handled by the caller"),
        };
        self.create_and_send(&room_id, d, now, out).map(Some)
    }

    /// Builds, checks against the current state, stores and sends a new event.
    pub(crate) fn create_and_send(
        &mut self,
        room_id: &str,
        d: Draft,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<String, String> {
        let pdu = self.build_checked(room_id, d, now)?;
        let id = pdu.event_id.clone();
        self.commit_local(room_id, pdu.clone(), now, out);
        self.send_with_behaviour(room_id, pdu, now, out);
        Ok(id)
    }

    /// Stores an event this server made (or co-signed) and reports it to the world's store.
    pub(crate) fn commit_local(&mut self, room_id: &str, pdu: Arc<Pdu>, _now: SimTime, out: &mut Vec<Output>) {
        out.push(Output::Created { room_id: room_id.to_owned(), pdu: pdu.clone() });
        let room = self.rooms.get_mut(room_id).expect("caller holds the room");
        if room.has(&pdu.event_id) {
            return;
        }
        room.add_pending(pdu);
        self.drain_pending(room_id, out);
    }

    /// Builds a new event on the current state and checks it would be authorised there.
    pub(crate) fn build_checked(&mut self, room_id: &str, d: Draft, now: SimTime) -> Result<Arc<Pdu>, String> {
        let (map, version) = self.draft_on_current(room_id, d, now)?;
        let pdu = self.sign_or_forge(map, version);
        self.check_on_current(room_id, &pdu)?;
        Ok(pdu)
    }

    /// The unsigned JSON of a new event on the current state (prev and auth events, depth),
    /// and the room's version: what an event becomes before the name → key step of MSC4243 §8.
    pub(crate) fn draft_on_current(
        &self,
        room_id: &str,
        d: Draft,
        now: SimTime,
    ) -> Result<(Map<String, Value>, &'static RoomVersion), String> {
        // MSC4348: this server co-signs its own users' events.
        let own = self.rooms.get(room_id).filter(|r| r.version.portable_accounts).and_then(|_| {
            let name = self.directory.portable.owner_of(&d.sender)?;
            self.acts_for(name).then(|| self.room_key(room_id)).flatten().map(|k| k.entity)
        });
        self.draft_on_current_with(room_id, d, own, now)
    }

    /// [`Self::draft_on_current`] for an event `cosigner` will co-sign (MSC4348: the server
    /// key the event acts through, whose participation is among its auth events).
    pub(crate) fn draft_on_current_with(
        &self,
        room_id: &str,
        d: Draft,
        cosigner: Option<String>,
        now: SimTime,
    ) -> Result<(Map<String, Value>, &'static RoomVersion), String> {
        let room = self.rooms.get(room_id).ok_or("this server is not in the room")?;
        let version = room.version;
        let prev = room.prev_events_for_new(10);
        let depth =
            prev.iter().filter_map(|p| room.dag.index_of(p)).map(|i| room.dag.pdu(i).depth).max().unwrap_or(0) + 1;
        let auth_events = select_auth_events(room, version, &d, cosigner.as_deref())?;
        Ok((self.event_object(version, Some(room_id), d, prev, auth_events, depth, now), version))
    }

    /// Whether `pdu` would be authorised on the room's current state.
    pub(crate) fn check_on_current(&self, room_id: &str, pdu: &Pdu) -> Result<(), String> {
        let room = self.rooms.get(room_id).ok_or("this server is not in the room")?;
        let version = room.version;
        let mut state = auth::AuthState::from_lookup(version, pdu, |t, s| room.current_event(t, s));
        if !version.create_in_auth_events {
            state.create = room.dag.create().map(|c| room.dag.pdu(c));
        }
        auth::check_state_dependent(version, pdu, &state).map_err(|r| r.to_string())
    }

    /// Builds and signs a PDU (bad signatures if this server is byzantine that way).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sign_new(
        &mut self,
        version: &RoomVersion,
        room_id: Option<&str>,
        d: Draft,
        prev: Vec<String>,
        auth_events: Vec<String>,
        depth: i64,
        now: SimTime,
    ) -> Arc<Pdu> {
        let map = self.event_object(version, room_id, d, prev, auth_events, depth, now);
        self.sign_or_forge(map, version)
    }

    /// Signs a new event's JSON (bad signatures if this server is byzantine that way).
    fn sign_or_forge(&mut self, map: Map<String, Value>, version: &RoomVersion) -> Arc<Pdu> {
        let forge = self.forger.is_some() && self.rng.gen_bool(self.config.byzantine_probability.clamp(0.0, 1.0));
        match self.forger.as_ref().filter(|_| forge) {
            // `bad_signatures`: a well-formed ed25519 signature, by a key that is not its own.
            Some(wrong) => {
                let mut map = map;
                crypto::sign_event(&mut map, version, wrong);
                Arc::new(Pdu::from_object(map, version).expect("a PDU the server built is well-formed"))
            }
            None => self.sign_own(map, version).expect("a PDU the server built is well-formed"),
        }
    }

    /// The JSON of a new event, content hash set, not signed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn event_object(
        &self,
        version: &RoomVersion,
        room_id: Option<&str>,
        d: Draft,
        prev: Vec<String>,
        auth_events: Vec<String>,
        depth: i64,
        now: SimTime,
    ) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("auth_events".into(), json!(auth_events));
        map.insert("content".into(), d.content);
        map.insert("depth".into(), json!(depth));
        map.insert("origin_server_ts".into(), json!(origin_server_ts(now, self.config.clock_skew_us)));
        map.insert("prev_events".into(), json!(prev));
        if let Some(r) = room_id.filter(|_| !(version.room_id_is_create_hash && d.event_type == "m.room.create")) {
            map.insert("room_id".into(), json!(r));
        }
        map.insert("sender".into(), json!(d.sender));
        if let Some(s) = d.state_key {
            map.insert("state_key".into(), json!(s));
        }
        map.insert("type".into(), json!(d.event_type));
        crypto::set_content_hash(&mut map);
        map
    }

    /// Signs an event with this server's key and enters the signature in the directory's
    /// ledger (what modelled checks look up); co-signing keeps the other signatures. In rooms
    /// with account keys (MSC4243 §3) the server key signs nothing: the account keys of its
    /// users the event needs sign instead ([`Server::sign_with_accounts`]).
    pub(crate) fn sign_own(
        &self,
        mut map: Map<String, Value>,
        version: &RoomVersion,
    ) -> Result<Arc<Pdu>, crate::protocol::pdu::PduError> {
        if version.portable_accounts {
            self.sign_portable(&mut map, version);
            map.entry("signatures").or_insert_with(|| json!({}));
            return Pdu::from_object(map, version).map(Arc::new);
        }
        if version.account_keys {
            self.sign_with_accounts(&mut map, version);
            // A template for a remote user (make_join, make_knock) carries no signature yet.
            map.entry("signatures").or_insert_with(|| json!({}));
            return Pdu::from_object(map, version).map(Arc::new);
        }
        crypto::sign_event(&mut map, version, &self.key);
        let pdu = Pdu::from_object(map, version)?;
        self.directory.record_signature(self.index, &self.key, &pdu);
        Ok(Arc::new(pdu))
    }
}

pub(crate) fn version_of(id: RoomVersionId) -> &'static RoomVersion {
    id.rules()
}

pub(crate) fn content_of(pdu: &Pdu) -> Map<String, Value> {
    pdu.json.get("content").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `auth-rules.md` §1: the auth events of a draft, from the current state.
pub(crate) fn select_auth_events(
    room: &RoomReplica,
    version: &RoomVersion,
    d: &Draft,
    cosigner: Option<&str>,
) -> Result<Vec<String>, String> {
    // The selection depends only on type, sender, state_key and membership content; build a
    // throw-away PDU shell to reuse the one implementation of the auth types.
    let mut shell = Map::new();
    shell.insert("type".into(), json!(d.event_type));
    shell.insert("sender".into(), json!(d.sender));
    if let Some(s) = &d.state_key {
        shell.insert("state_key".into(), json!(s));
    }
    shell.insert("content".into(), d.content.clone());
    for (k, v) in [
        ("auth_events", json!([])),
        ("prev_events", json!([])),
        ("depth", json!(1)),
        ("origin_server_ts", json!(0)),
        ("hashes", json!({"sha256": ""})),
        ("signatures", json!({})),
        ("room_id", json!(room.room_id)),
    ] {
        shell.insert(k.into(), v);
    }
    // MSC4348: who co-signs decides whose participation the rules read.
    if let Some(c) = cosigner {
        shell.insert("signatures".into(), json!({ c: {} }));
    }
    let pdu = Pdu::from_object(shell, version).map_err(|e| e.to_string())?;
    let mut ids: Vec<String> = Vec::new();
    for (_, key) in auth::auth_types(version, &pdu) {
        if let Some(e) = room.current_event(key.event_type, key.state_key) {
            if !ids.contains(&e.event_id) {
                ids.push(e.event_id.clone());
            }
        }
    }
    Ok(ids)
}

/// The first power levels of a room: the creator at 100 (v11) or implied (v12), the
/// scenario's overrides merged in; v12 gives `m.room.tombstone` 150 by convention.
pub(crate) fn default_power_levels(spec: &RoomSpec, version: &RoomVersion) -> Value {
    let o = &spec.power_levels;
    let mut users = serde_json::Map::new();
    if !version.privileged_creators {
        users.insert(spec.creator.clone(), json!(100));
    }
    for (u, l) in &o.users {
        let is_creator = *u == spec.creator || spec.additional_creators.contains(u);
        if !(version.privileged_creators && is_creator) {
            users.insert(u.clone(), json!(l));
        }
    }
    let mut events =
        json!({"m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.name": 50, "m.room.topic": 50});
    if version.privileged_creators {
        events["m.room.tombstone"] = json!(150);
    }
    for (t, l) in &o.events {
        events[t] = json!(l);
    }
    let mut pl = json!({"users": users, "events": events, "users_default": o.users_default.unwrap_or(0),
        "events_default": o.events_default.unwrap_or(0), "state_default": o.state_default.unwrap_or(50),
        "ban": o.ban.unwrap_or(50), "kick": o.kick.unwrap_or(50), "redact": o.redact.unwrap_or(50), "invite": o.invite.unwrap_or(0)});
    if pl["users"].as_object().is_some_and(|u| u.is_empty()) {
        pl["users"] = json!({});
    }
    pl
}
