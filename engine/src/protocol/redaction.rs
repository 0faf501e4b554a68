//! The redaction algorithm of room versions 11 and 12 (digest `pdu-and-crypto.md` §6).

use super::room_version::RoomVersion;
use serde_json::{Map, Value};

/// Top-level keys that survive redaction (v11+). Everything else, `unsigned` included, is dropped.
const KEPT_TOP_LEVEL: [&str; 12] = [
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "auth_events",
    "origin_server_ts",
];

/// Returns the redacted copy of a PDU object.
pub fn redact(pdu: &Map<String, Value>, version: &RoomVersion) -> Map<String, Value> {
    let mut out = Map::new();
    for key in KEPT_TOP_LEVEL {
        if let Some(v) = pdu.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    let event_type = pdu.get("type").and_then(Value::as_str).unwrap_or("");
    let content = pdu.get("content").and_then(Value::as_object);
    let mut kept = redact_content(event_type, content);
    if let Some(content) = content {
        for key in participation_keys(version, event_type) {
            if let Some(v) = content.get(*key) {
                kept.insert((*key).to_owned(), v.clone());
            }
        }
    }
    out.insert("content".into(), Value::Object(kept));
    out
}

/// Content keys rooms with participation also keep (MSC4345 §3.2: `participation`,
/// `unverified_domain` protected; open question C10: `request_authorised_via_server` too, so a
/// redacted copy is authorised identically; C11: `accept` in power levels).
fn participation_keys(version: &RoomVersion, event_type: &str) -> &'static [&'static str] {
    match event_type {
        _ if !version.participation => &[],
        "m.server.participation" => &["participation", "unverified_domain", "request_authorised_via_server"],
        "m.room.power_levels" => &["accept"],
        _ => &[],
    }
}

/// The content keys kept for each event type (v11 table).
fn redact_content(event_type: &str, content: Option<&Map<String, Value>>) -> Map<String, Value> {
    let Some(content) = content else { return Map::new() };
    let keep = |keys: &[&str]| -> Map<String, Value> {
        keys.iter().filter_map(|k| content.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect()
    };
    match event_type {
        "m.room.member" => {
            let mut out = keep(&["membership", "join_authorised_via_users_server"]);
            // v11: of third_party_invite only `signed` survives.
            if let Some(signed) =
                content.get("third_party_invite").and_then(Value::as_object).and_then(|tpi| tpi.get("signed"))
            {
                let mut tpi = Map::new();
                tpi.insert("signed".into(), signed.clone());
                out.insert("third_party_invite".into(), Value::Object(tpi));
            }
            out
        }
        "m.room.create" => content.clone(),
        "m.room.join_rules" => keep(&["join_rule", "allow"]),
        "m.room.power_levels" => keep(&[
            "ban",
            "events",
            "events_default",
            "invite",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        ]),
        "m.room.history_visibility" => keep(&["history_visibility"]),
        "m.room.redaction" => keep(&["redacts"]),
        _ => Map::new(),
    }
}

/// A borrowed view of the redacted event without `signatures`, `unsigned` and `event_id`: the
/// object the reference hash and every event signature cover. Serialising it writes exactly the
/// canonical bytes of that object without cloning the event.
pub fn redacted_view<'a>(
    pdu: &'a Map<String, Value>,
    version: &RoomVersion,
) -> std::collections::BTreeMap<&'a str, Borrowed<'a>> {
    let mut out = std::collections::BTreeMap::new();
    for key in KEPT_TOP_LEVEL {
        if matches!(key, "signatures" | "event_id" | "content") {
            continue;
        }
        if let Some(v) = pdu.get(key) {
            out.insert(key, Borrowed::Ref(v));
        }
    }
    let event_type = pdu.get("type").and_then(Value::as_str).unwrap_or("");
    let content = pdu.get("content").and_then(Value::as_object);
    let mut kept = redacted_content_view(event_type, content);
    if let Some(content) = content {
        for key in participation_keys(version, event_type) {
            if let Some((k, v)) = content.get_key_value(*key) {
                kept.insert(k.as_str(), Borrowed::Ref(v));
            }
        }
    }
    out.insert("content", Borrowed::Object(kept));
    out
}

/// A JSON value borrowed from an event, or an object of borrowed values.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Borrowed<'a> {
    Ref(&'a Value),
    Object(std::collections::BTreeMap<&'a str, Borrowed<'a>>),
}

fn redacted_content_view<'a>(
    event_type: &str,
    content: Option<&'a Map<String, Value>>,
) -> std::collections::BTreeMap<&'a str, Borrowed<'a>> {
    let mut out = std::collections::BTreeMap::new();
    let Some(content) = content else { return out };
    let keys: &[&str] = match event_type {
        "m.room.member" => &["membership", "join_authorised_via_users_server"],
        "m.room.create" => {
            for (k, v) in content {
                out.insert(k.as_str(), Borrowed::Ref(v));
            }
            return out;
        }
        "m.room.join_rules" => &["join_rule", "allow"],
        "m.room.power_levels" => {
            &["ban", "events", "events_default", "invite", "kick", "redact", "state_default", "users", "users_default"]
        }
        "m.room.history_visibility" => &["history_visibility"],
        "m.room.redaction" => &["redacts"],
        _ => &[],
    };
    for (k, v) in content.iter() {
        if keys.contains(&k.as_str()) {
            out.insert(k.as_str(), Borrowed::Ref(v));
        }
    }
    if event_type == "m.room.member" {
        if let Some(signed) = content.get("third_party_invite").and_then(Value::as_object).and_then(|t| t.get("signed"))
        {
            let mut tpi = std::collections::BTreeMap::new();
            tpi.insert("signed", Borrowed::Ref(signed));
            out.insert("third_party_invite", Borrowed::Object(tpi));
        }
    }
    out
}
