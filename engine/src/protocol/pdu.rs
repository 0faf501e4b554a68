//! The PDU (federation event) type: parsed once, with the content the auth rules read decoded
//! into typed structs, and the full JSON kept so that re-serialisation is byte-exact.

use super::crypto;
use super::ids;
use super::json::{self, MAX_PDU_BYTES, MAX_SAFE_INT};
use super::room_version::RoomVersion;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Event types the rules single out, decoded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Member,
    PowerLevels,
    JoinRules,
    ThirdPartyInvite,
    Redaction,
    /// MSC4345 §3.2 `m.server.participation`, in rooms with participation only.
    Participation,
    Other,
}

/// MSC4345 §3.2: the state of a server key's participation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipationState {
    Requested,
    Accepted,
    Revoked,
}

impl ParticipationState {
    pub fn parse(value: &str) -> Option<ParticipationState> {
        match value {
            "requested" => Some(ParticipationState::Requested),
            "accepted" => Some(ParticipationState::Accepted),
            "revoked" => Some(ParticipationState::Revoked),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipationState::Requested => "requested",
            ParticipationState::Accepted => "accepted",
            ParticipationState::Revoked => "revoked",
        }
    }
}

/// `m.server.participation` content, decoded (MSC4345 §3.2; open question C10 puts
/// `request_authorised_via_server` in `content`).
#[derive(Debug, Clone, Default)]
pub struct ParticipationContent {
    /// `None`: absent or not one of the three states.
    pub participation: Option<ParticipationState>,
    pub unverified_domain: Option<String>,
    /// The accepted server key that co-signs a request.
    pub authorised_via_server: Option<String>,
}

impl EventKind {
    fn of(event_type: &str, version: &RoomVersion) -> EventKind {
        match event_type {
            "m.server.participation" if version.participation => EventKind::Participation,
            "m.room.create" => EventKind::Create,
            "m.room.member" => EventKind::Member,
            "m.room.power_levels" => EventKind::PowerLevels,
            "m.room.join_rules" => EventKind::JoinRules,
            "m.room.third_party_invite" => EventKind::ThirdPartyInvite,
            "m.room.redaction" => EventKind::Redaction,
            _ => EventKind::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
    /// A `membership` value the spec does not define (v11 auth rule 4.8 rejects it).
    Unknown,
}

impl Membership {
    pub fn parse(value: &str) -> Membership {
        match value {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "leave" => Membership::Leave,
            "ban" => Membership::Ban,
            "knock" => Membership::Knock,
            _ => Membership::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
            Membership::Knock => "knock",
            Membership::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRule {
    Public,
    Invite,
    Knock,
    Restricted,
    KnockRestricted,
    Private,
    Unknown,
}

impl JoinRule {
    pub fn parse(value: &str) -> JoinRule {
        match value {
            "public" => JoinRule::Public,
            "invite" => JoinRule::Invite,
            "knock" => JoinRule::Knock,
            "restricted" => JoinRule::Restricted,
            "knock_restricted" => JoinRule::KnockRestricted,
            "private" => JoinRule::Private,
            _ => JoinRule::Unknown,
        }
    }
}

/// `m.room.create` content the rules read.
#[derive(Debug, Clone)]
pub struct CreateContent {
    /// `content.room_version`; absent means "1". `None` when present but not a string.
    pub room_version: Option<String>,
    /// `m.federate`: any value other than `true` counts as false (A2.3, Synapse).
    pub federate: bool,
    /// v12 `additional_creators`; `Err` when malformed (v12 auth rule 1.4).
    pub additional_creators: Result<Vec<String>, String>,
}

/// `m.room.member` content the rules read.
#[derive(Debug, Clone)]
pub struct MemberContent {
    /// `None` when `membership` is absent or not a string (v11 auth rule 4.1).
    pub membership: Option<Membership>,
    /// `join_authorised_via_users_server`: `Some(Err)` when present but not a string.
    pub authorised_via: Option<Result<String, ()>>,
    /// `third_party_invite` is present (any type).
    pub has_third_party_invite: bool,
    /// `third_party_invite.signed` when it is an object.
    pub third_party_signed: Option<Map<String, Value>>,
}

/// A named level key of `m.room.power_levels`, in the order the rules list them.
pub const NAMED_LEVELS: [&str; 7] =
    ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"];

/// `m.room.power_levels` content, decoded. Raw presence is kept because rule 9.5 compares
/// presence, not defaults.
#[derive(Debug, Clone, Default)]
pub struct PowerLevelsContent {
    /// Values of [`NAMED_LEVELS`], `None` when absent.
    pub named: [Option<i64>; 7],
    pub events: BTreeMap<String, i64>,
    pub notifications: BTreeMap<String, i64>,
    pub users: BTreeMap<String, i64>,
    /// MSC4345 §3.1 `accept` (rooms with participation only; open question C11): `None`
    /// absent, `Some(Err(()))` present but not an integer.
    pub accept: Option<Result<i64, ()>>,
    /// v11 auth rules 9.1–9.3: why the content is not acceptable, if it is not.
    pub invalid: Option<String>,
}

impl PowerLevelsContent {
    pub fn named(&self, name: &str) -> Option<i64> {
        NAMED_LEVELS.iter().position(|n| *n == name).and_then(|i| self.named[i])
    }
    pub fn ban(&self) -> i64 {
        self.named[3].unwrap_or(50)
    }
    pub fn redact(&self) -> i64 {
        self.named[4].unwrap_or(50)
    }
    pub fn kick(&self) -> i64 {
        self.named[5].unwrap_or(50)
    }
    pub fn invite(&self) -> i64 {
        self.named[6].unwrap_or(0)
    }
    pub fn users_default(&self) -> i64 {
        self.named[0].unwrap_or(0)
    }
    /// MSC4345 §3.1: the level needed to accept participation requests (default 100).
    pub fn accept(&self) -> i64 {
        self.accept.and_then(Result::ok).unwrap_or(100)
    }
    /// Level required to send an event of `event_type` (state or not).
    pub fn required_level(&self, event_type: &str, is_state: bool) -> i64 {
        if let Some(level) = self.events.get(event_type) {
            return *level;
        }
        if is_state {
            self.named[2].unwrap_or(50)
        } else {
            self.named[1].unwrap_or(0)
        }
    }
}

/// `m.room.third_party_invite` content: the public keys, in the order Synapse tries them
/// (`public_key` first, then each `public_keys[i].public_key`).
#[derive(Debug, Clone, Default)]
pub struct ThirdPartyInviteContent {
    pub public_keys: Vec<String>,
}

/// The decoded content, by event kind.
#[derive(Debug, Clone)]
pub enum TypedContent {
    Create(CreateContent),
    Member(MemberContent),
    PowerLevels(Box<PowerLevelsContent>),
    JoinRules(JoinRule),
    ThirdPartyInvite(ThirdPartyInviteContent),
    Redaction { redacts: Option<String> },
    Participation(ParticipationContent),
    Other,
}

/// One PDU. Immutable once built; shared (`Arc`) by every observer.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: String,
    pub room_id: Option<String>,
    pub sender: String,
    pub event_type: String,
    pub kind: EventKind,
    pub state_key: Option<String>,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    pub content: TypedContent,
    /// The full federation object (no `event_id`), sorted keys: its canonical bytes are the
    /// PDU's wire form.
    pub json: Map<String, Value>,
    /// Whether the content hash matches, computed once (the PDU is immutable and shared).
    hash_ok: std::sync::OnceLock<bool>,
    /// The bytes an event signature covers, computed once.
    signing_bytes: std::sync::OnceLock<Vec<u8>>,
}

/// A malformed PDU: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PduError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> PduError {
    PduError { field: field.into(), message: message.into() }
}

impl Pdu {
    /// Parses one PDU from its JSON text (strict canonical-compatible JSON, size limit).
    pub fn from_json_bytes(bytes: &[u8], version: &RoomVersion) -> Result<Pdu, PduError> {
        let value = json::parse_strict(bytes).map_err(|e| err("(json)", e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(err("(json)", "a PDU must be a JSON object"));
        };
        Pdu::from_object(map, version)
    }

    /// Builds a PDU from a JSON object, checking the v11/v12 format (receipt check 1).
    /// The event ID is computed (reference hash); a stray `event_id` field is dropped.
    pub fn from_object(mut map: Map<String, Value>, version: &RoomVersion) -> Result<Pdu, PduError> {
        map.remove("event_id");
        let size = json::object_to_canonical_bytes(&map).len();
        if size > MAX_PDU_BYTES {
            return Err(err("(pdu)", format!("{size} bytes exceeds the {MAX_PDU_BYTES}-byte PDU limit")));
        }
        let event_type = string_field(&map, "type", true)?.expect("required");
        let kind = EventKind::of(&event_type, version);
        let state_key = string_field(&map, "state_key", false)?;
        let sender = string_field(&map, "sender", true)?.expect("required");
        ids::check_user_id_in(version, &sender).map_err(|e| err("sender", e.why))?;
        let room_id = string_field(&map, "room_id", false)?;
        check_room_id_presence(&room_id, kind, version)?;
        let origin_server_ts = int_field(&map, "origin_server_ts")?;
        let depth = int_field(&map, "depth")?;
        if depth < 0 {
            return Err(err("depth", "must be between 0 and 2^53-1"));
        }
        let prev_events = event_id_list(&map, "prev_events", 20)?;
        let auth_events = event_id_list(&map, "auth_events", 10)?;
        check_object_field(&map, "hashes")?;
        match map.get("hashes").and_then(|h| h.get("sha256")) {
            Some(Value::String(_)) => {}
            _ => return Err(err("hashes.sha256", "missing or not a string")),
        }
        check_object_field(&map, "signatures")?;
        if map.get("unsigned").is_some_and(|u| !u.is_object()) {
            return Err(err("unsigned", "must be an object"));
        }
        let content_obj = match map.get("content") {
            Some(Value::Object(c)) => c,
            Some(_) => return Err(err("content", "must be an object")),
            None => return Err(err("content", "missing")),
        };
        let content = decode_content(kind, content_obj, version);
        // The signing bytes are computed once: their hash is the event ID, and they are the
        // message of every signature check.
        let signing = crypto::event_signing_bytes(&map, version);
        let event_id = crypto::event_id_from_signing_bytes(&signing);
        Ok(Pdu {
            event_id,
            room_id,
            sender,
            event_type,
            kind,
            state_key,
            origin_server_ts,
            depth,
            prev_events,
            auth_events,
            content,
            json: map,
            hash_ok: std::sync::OnceLock::new(),
            signing_bytes: std::sync::OnceLock::from(signing),
        })
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// Canonical JSON bytes of the federation PDU.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        json::object_to_canonical_bytes(&self.json)
    }

    pub fn membership(&self) -> Option<Membership> {
        match &self.content {
            TypedContent::Member(m) => m.membership,
            _ => None,
        }
    }

    pub fn power_levels(&self) -> Option<&PowerLevelsContent> {
        match &self.content {
            TypedContent::PowerLevels(pl) => Some(pl),
            _ => None,
        }
    }

    /// Whether `hashes.sha256` matches the recomputed content hash.
    pub fn content_hash_matches(&self) -> bool {
        *self.hash_ok.get_or_init(|| {
            let claimed = self.json.get("hashes").and_then(|h| h.get("sha256")).and_then(Value::as_str);
            claimed.and_then(crypto::b64_decode).is_some_and(|c| c == crypto::content_hash(&self.json))
        })
    }

    /// The canonical bytes every event signature covers (the redacted event without
    /// `signatures`), computed once.
    pub fn signing_bytes(&self, version: &RoomVersion) -> &[u8] {
        self.signing_bytes.get_or_init(|| crypto::event_signing_bytes(&self.json, version))
    }

    /// State resolution's notion of a power event (v11 state-res definition 1; A4: the
    /// singleton state key is required, as implementations do, and create counts).
    pub fn is_power_event(&self) -> bool {
        match self.kind {
            EventKind::PowerLevels | EventKind::JoinRules | EventKind::Create => self.state_key.as_deref() == Some(""),
            EventKind::Member => {
                matches!(self.membership(), Some(Membership::Leave | Membership::Ban))
                    && self.state_key.as_deref() != Some(self.sender.as_str())
            }
            _ => false,
        }
    }
}

fn check_room_id_presence(room_id: &Option<String>, kind: EventKind, version: &RoomVersion) -> Result<(), PduError> {
    match room_id {
        // v12 (MSC4291): the create event carries no room_id; its presence is auth rule 1.2's
        // business, not a format error, so it is not refused here.
        None if kind == EventKind::Create && version.room_id_is_create_hash => Ok(()),
        None => Err(err("room_id", "missing")),
        Some(id) => ids::check_room_id(id).map_err(|e| err("room_id", e.why)),
    }
}

fn string_field(map: &Map<String, Value>, field: &str, required: bool) -> Result<Option<String>, PduError> {
    match map.get(field) {
        Some(Value::String(s)) => {
            if s.len() > ids::MAX_ID_BYTES {
                return Err(err(field, format!("{} bytes exceeds the 255-byte limit", s.len())));
            }
            Ok(Some(s.clone()))
        }
        Some(other) => Err(err(field, format!("expected a string, found {}", type_name(other)))),
        None if required => Err(err(field, "missing")),
        None => Ok(None),
    }
}

fn int_field(map: &Map<String, Value>, field: &str) -> Result<i64, PduError> {
    match map.get(field) {
        Some(Value::Number(n)) => {
            n.as_i64().filter(|i| i.abs() <= MAX_SAFE_INT).ok_or_else(|| err(field, "integer out of range"))
        }
        Some(other) => Err(err(field, format!("expected an integer, found {}", type_name(other)))),
        None => Err(err(field, "missing")),
    }
}

fn event_id_list(map: &Map<String, Value>, field: &str, max: usize) -> Result<Vec<String>, PduError> {
    let items = match map.get(field) {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(err(field, format!("expected an array, found {}", type_name(other)))),
        None => return Err(err(field, "missing")),
    };
    if items.len() > max {
        return Err(err(field, format!("{} entries exceeds the limit of {max}", items.len())));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if ids::check_event_id(s).is_ok() => Ok(s.clone()),
            Value::String(s) => Err(err(&format!("{field}[{i}]"), format!("{s:?} is not an event ID"))),
            other => Err(err(&format!("{field}[{i}]"), format!("expected a string, found {}", type_name(other)))),
        })
        .collect()
}

fn check_object_field(map: &Map<String, Value>, field: &str) -> Result<(), PduError> {
    match map.get(field) {
        Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(err(field, format!("expected an object, found {}", type_name(other)))),
        None => Err(err(field, "missing")),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decode_content(kind: EventKind, content: &Map<String, Value>, version: &RoomVersion) -> TypedContent {
    match kind {
        EventKind::Create => TypedContent::Create(decode_create(content, version)),
        EventKind::Member => TypedContent::Member(decode_member(content)),
        EventKind::PowerLevels => TypedContent::PowerLevels(Box::new(decode_power_levels(content, version))),
        EventKind::Participation => TypedContent::Participation(ParticipationContent {
            participation: content.get("participation").and_then(Value::as_str).and_then(ParticipationState::parse),
            unverified_domain: content.get("unverified_domain").and_then(Value::as_str).map(str::to_owned),
            authorised_via_server: content
                .get("request_authorised_via_server")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        EventKind::JoinRules => TypedContent::JoinRules(
            // No `join_rule` in the content: Synapse reads it as invite.
            content.get("join_rule").and_then(Value::as_str).map_or(JoinRule::Invite, JoinRule::parse),
        ),
        EventKind::ThirdPartyInvite => TypedContent::ThirdPartyInvite(decode_third_party_invite(content)),
        EventKind::Redaction => {
            TypedContent::Redaction { redacts: content.get("redacts").and_then(Value::as_str).map(str::to_owned) }
        }
        EventKind::Other => TypedContent::Other,
    }
}

fn decode_create(content: &Map<String, Value>, version: &RoomVersion) -> CreateContent {
    let room_version = match content.get("room_version") {
        None => Some("1".to_owned()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    };
    let additional_creators = match content.get("additional_creators") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if ids::check_user_id_in(version, s).is_ok() => Ok(s.clone()),
                other => Err(format!("additional_creators entry {other} is not a valid user ID")),
            })
            .collect(),
        Some(other) => Err(format!("additional_creators is {}, not an array", type_name(other))),
    };
    CreateContent {
        room_version,
        federate: content.get("m.federate").is_none_or(|v| v == &Value::Bool(true)),
        additional_creators,
    }
}

fn decode_member(content: &Map<String, Value>) -> MemberContent {
    let tpi = content.get("third_party_invite");
    MemberContent {
        membership: content.get("membership").and_then(Value::as_str).map(Membership::parse),
        authorised_via: content
            .get("join_authorised_via_users_server")
            .map(|v| v.as_str().map(str::to_owned).ok_or(())),
        has_third_party_invite: tpi.is_some(),
        third_party_signed: tpi.and_then(|t| t.get("signed")).and_then(Value::as_object).cloned(),
    }
}

fn decode_power_levels(content: &Map<String, Value>, version: &RoomVersion) -> PowerLevelsContent {
    let mut pl = PowerLevelsContent::default();
    let mut invalid = Vec::new();
    if version.participation {
        // MSC4345 §3.1 (open question C11): `accept` is validated like the named levels.
        pl.accept = content.get("accept").map(|v| match v {
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().expect("checked")),
            _ => Err(()),
        });
        if let Some(Err(())) = pl.accept {
            let shown = content.get("accept").map_or("absent", type_name);
            invalid.push(format!("accept is {shown}, not an integer (rule 9.1, MSC4345 §3.1)"));
        }
    }
    for (i, name) in NAMED_LEVELS.iter().enumerate() {
        match content.get(*name) {
            None => {}
            // v11 auth rule 9.1: named levels must be integers.
            Some(Value::Number(n)) if n.as_i64().is_some() => pl.named[i] = n.as_i64(),
            Some(other) => invalid.push(format!("{name} is {}, not an integer (rule 9.1)", type_name(other))),
        }
    }
    for (name, target) in [("events", &mut pl.events), ("notifications", &mut pl.notifications)] {
        if let Some(v) = content.get(name) {
            match int_map(v) {
                Ok(map) => *target = map,
                // v11 auth rule 9.2.
                Err(why) => invalid.push(format!("{name} {why} (rule 9.2)")),
            }
        }
    }
    if let Some(v) = content.get("users") {
        match int_map(v) {
            Ok(map) => {
                // v11 auth rule 9.3: keys must be user IDs. Synapse only parses the `@local:domain`
                // shape here (no server-name grammar), and so do we, to agree with it.
                // MSC4348: user IDs have no server part.
                let is_user = |k: &str| {
                    if version.portable_accounts {
                        ids::portable_key_of(k).is_some()
                    } else {
                        looks_like_user_id(k)
                    }
                };
                if let Some(bad) = map.keys().find(|k| !is_user(k)) {
                    invalid.push(format!("users key {bad:?} is not a user ID (rule 9.3)"));
                }
                pl.users = map;
            }
            Err(why) => invalid.push(format!("users {why} (rule 9.3)")),
        }
    }
    if !invalid.is_empty() {
        pl.invalid = Some(invalid.join("; "));
    }
    pl
}

fn looks_like_user_id(s: &str) -> bool {
    s.strip_prefix('@').is_some_and(|rest| rest.contains(':'))
}

fn int_map(v: &Value) -> Result<BTreeMap<String, i64>, String> {
    let Value::Object(obj) = v else { return Err(format!("is {}, not an object", type_name(v))) };
    obj.iter()
        .map(|(k, v)| match v.as_i64() {
            Some(i) if v.is_number() => Ok((k.clone(), i)),
            _ => Err(format!("value for {k:?} is {}, not an integer", type_name(v))),
        })
        .collect()
}

fn decode_third_party_invite(content: &Map<String, Value>) -> ThirdPartyInviteContent {
    let mut public_keys = Vec::new();
    if let Some(Value::String(k)) = content.get("public_key") {
        public_keys.push(k.clone());
    }
    if let Some(Value::Array(list)) = content.get("public_keys") {
        for entry in list {
            if let Some(Value::String(k)) = entry.get("public_key") {
                public_keys.push(k.clone());
            }
        }
    }
    ThirdPartyInviteContent { public_keys }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::room_version::{V11, V12};

    const CREATE_V12: &str = r#"{"auth_events":[],"content":{"room_version":"12"},"depth":1,"hashes":{"sha256":"ASocNUd2aUQb55VszelX/xp+CU60YbgfzVogBSPJP48"},"origin_server_ts":1700000000000,"prev_events":[],"sender":"@alice:hs1.example","signatures":{"hs1.example":{"ed25519:a":"4F3NXb6U19JyHcnENwsT4IQ84779SKWSD5WT/o0jUugT0IZqJtAJXaRwUxyTIkhxsiBiLgFqfveyfq9Ew5LWBA"}},"state_key":"","type":"m.room.create"}"#;

    #[test]
    fn parses_and_round_trips_byte_exact() {
        let pdu = Pdu::from_json_bytes(CREATE_V12.as_bytes(), &V12).unwrap();
        assert_eq!(pdu.event_id, "$XGvoYwlWLSsgkxcE9V5EvtxVHzES4aI-0ATmE6oNvg8");
        assert_eq!(pdu.canonical_bytes(), CREATE_V12.as_bytes());
        assert!(pdu.content_hash_matches());
        assert!(pdu.is_power_event());
    }

    #[test]
    fn unknown_fields_survive() {
        let text = CREATE_V12.replace(r#""origin_server_ts""#, r#""org.example.extra":{"x":[1,2]},"origin_server_ts""#);
        let pdu = Pdu::from_json_bytes(text.as_bytes(), &V12).unwrap();
        assert_eq!(pdu.canonical_bytes(), text.as_bytes());
    }

    #[test]
    fn format_errors_name_the_field() {
        let cases = [
            (CREATE_V12.replace(r#""depth":1"#, r#""depth":"1""#), "depth"),
            (CREATE_V12.replace(r#""sender":"@alice:hs1.example""#, r#""sender":"alice""#), "sender"),
            (CREATE_V12.replace(r#""prev_events":[]"#, r#""prev_events":[5]"#), "prev_events[0]"),
            (CREATE_V12.replace(r#""content":{"room_version":"12"},"#, ""), "content"),
            (CREATE_V12.replace(r#""depth":1"#, r#""depth":1.5"#), "(json)"),
        ];
        for (text, field) in cases {
            let e = Pdu::from_json_bytes(text.as_bytes(), &V12).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        // v11 requires room_id even on the create event.
        assert_eq!(Pdu::from_json_bytes(CREATE_V12.as_bytes(), &V11).unwrap_err().field, "room_id");
        let big = CREATE_V12
            .replace(r#""room_version":"12""#, &format!(r#""room_version":"12","pad":"{}""#, "x".repeat(70_000)));
        assert_eq!(Pdu::from_json_bytes(big.as_bytes(), &V12).unwrap_err().field, "(pdu)");
    }

    #[test]
    fn power_levels_validation() {
        let pl = decode_power_levels(
            serde_json::from_str::<Value>(r#"{"ban":"50","users":{"@a:b":1}}"#).unwrap().as_object().unwrap(),
            &V12,
        );
        assert!(pl.invalid.as_deref().unwrap().contains("ban"));
        let pl = decode_power_levels(
            serde_json::from_str::<Value>(r#"{"users":{"nobody":1}}"#).unwrap().as_object().unwrap(),
            &V12,
        );
        assert!(pl.invalid.is_some());
        let pl = decode_power_levels(
            serde_json::from_str::<Value>(r#"{"events":{"m.room.name":true}}"#).unwrap().as_object().unwrap(),
            &V12,
        );
        assert!(pl.invalid.is_some());
        let pl = decode_power_levels(
            serde_json::from_str::<Value>(r#"{"kick":75,"users":{"@a:b":100}}"#).unwrap().as_object().unwrap(),
            &V12,
        );
        assert!(pl.invalid.is_none());
        assert_eq!((pl.kick(), pl.ban(), pl.invite()), (75, 50, 0));
        assert_eq!(pl.required_level("m.room.topic", true), 50);
    }
}
