//! `summary.json`: parsed generically. The engine adds fields as proposals add measures, so every
//! numeric (and boolean, and null) leaf is kept under its dotted path, e.g.
//! `rooms.main.convergence_time_ms` or `deliveries`; only the fields the report explains in
//! words (`scenario`, `seed`, `faults`, room names and versions) are read by name.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{format_error, read_text};
use crate::AnalysisError;

/// Top-level fields that identify a run rather than measure it; they are not metrics (the seed is
/// the pairing key, `threads` must not change any result).
pub const IDENTITY_FIELDS: &[&str] = &["seed", "threads"];

/// One leaf of `summary.json` that a table can show.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue {
    Number(f64),
    Bool(bool),
    /// JSON `null`, e.g. `convergence_time_ms` of a room that never converged.
    Null,
}

impl FieldValue {
    /// The metric value: numbers as they are, booleans as 0/1 (so a mean is a share), null none.
    pub fn as_metric(self) -> Option<f64> {
        match self {
            FieldValue::Number(v) => Some(v),
            FieldValue::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            FieldValue::Null => None,
        }
    }
}

/// A fault interval as the engine recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: String,
    pub start_ms: f64,
    /// None: the fault was still active when the run ended.
    pub end_ms: Option<f64>,
    pub description: String,
}

/// One entry of `rooms` in `summary.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomSummary {
    /// The room's name in the scenario (the key under `rooms`).
    pub name: String,
    pub room_id: Option<String>,
    pub room_version: Option<String>,
    /// Every numeric, boolean or null field of the room, by field name.
    pub fields: BTreeMap<String, FieldValue>,
    /// The divergence episodes (`episodes`), as intervals of kind `divergence`.
    pub episodes: Vec<Fault>,
    /// `members_missing`: (user, why).
    pub members_missing: Vec<(String, String)>,
    /// `in_room` labels of byzantine servers ("hs4 (byzantine)").
    pub byzantine: Vec<String>,
}

impl RoomSummary {
    pub fn number(&self, field: &str) -> Option<f64> {
        self.fields.get(field).and_then(|v| v.as_metric())
    }
}

/// A parsed `summary.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub scenario: Option<String>,
    pub seed: Option<u64>,
    /// The scenario file's name, without directories (`quickstart.toml`).
    pub scenario_file: Option<String>,
    /// sha256 (hex) of the scenario file's text.
    pub scenario_sha256: Option<String>,
    pub log_digest: Option<String>,
    /// Numeric, boolean and null top-level fields (including `seed` and `threads`).
    pub top_level: BTreeMap<String, FieldValue>,
    pub rooms: BTreeMap<String, RoomSummary>,
    pub faults: Vec<Fault>,
    /// Every numeric/boolean/null leaf by dotted path, except [`IDENTITY_FIELDS`] and arrays.
    pub metrics: BTreeMap<String, Option<f64>>,
}

impl RunSummary {
    pub fn read(path: &Path) -> Result<Self, AnalysisError> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parses summary text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, AnalysisError> {
        let value: Value =
            serde_json::from_str(text).map_err(|source| AnalysisError::Json { path: origin.to_owned(), source })?;
        Self::from_value(&value, origin)
    }

    pub fn from_value(value: &Value, origin: &Path) -> Result<Self, AnalysisError> {
        let obj = value.as_object().ok_or_else(|| format_error(origin, "summary must be a JSON object"))?;
        let string = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
        let seed = match obj.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| format_error(origin, format!("`seed` must be a non-negative integer, found {v}")))?,
            ),
        };
        let mut metrics = BTreeMap::new();
        flatten(value, "", &mut metrics);
        for id in IDENTITY_FIELDS {
            metrics.remove(*id);
        }
        Ok(RunSummary {
            scenario: string("scenario"),
            seed,
            scenario_file: string("scenario_file"),
            scenario_sha256: string("scenario_sha256"),
            log_digest: string("log_digest"),
            top_level: leaf_fields(obj),
            rooms: parse_rooms(obj.get("rooms"), origin)?,
            faults: parse_faults(obj.get("faults"), origin)?,
            metrics,
        })
    }

    /// The simulated end time, when recorded.
    pub fn sim_time_end_ms(&self) -> Option<f64> {
        self.top_level.get("sim_time_end_ms").and_then(|v| v.as_metric())
    }
}

fn leaf_fields(obj: &Map<String, Value>) -> BTreeMap<String, FieldValue> {
    obj.iter().filter_map(|(k, v)| leaf(v).map(|f| (k.clone(), f))).collect()
}

fn leaf(v: &Value) -> Option<FieldValue> {
    match v {
        Value::Number(n) => n.as_f64().map(FieldValue::Number),
        Value::Bool(b) => Some(FieldValue::Bool(*b)),
        Value::Null => Some(FieldValue::Null),
        _ => None,
    }
}

/// Collects leaves under dotted paths. Strings and arrays are not metrics and are skipped.
fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, Option<f64>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(child, &path, out);
            }
        }
        _ => {
            if let Some(f) = leaf(v) {
                if !prefix.is_empty() {
                    out.insert(prefix.to_string(), f.as_metric());
                }
            }
        }
    }
}

fn parse_rooms(rooms: Option<&Value>, origin: &Path) -> Result<BTreeMap<String, RoomSummary>, AnalysisError> {
    let Some(rooms) = rooms.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let rooms =
        rooms.as_object().ok_or_else(|| format_error(origin, "`rooms` must be an object keyed by room name"))?;
    let mut out = BTreeMap::new();
    for (name, room) in rooms {
        let obj = room
            .as_object()
            .ok_or_else(|| format_error(origin, format!("`rooms.{name}` must be an object, found {room}")))?;
        let string = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
        let room_version =
            string("room_version").or_else(|| obj.get("room_version").and_then(Value::as_f64).map(crate::fmt::num));
        let mut fields = leaf_fields(obj);
        fields.remove("room_version");
        let list = |key: &str| obj.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let episodes = list("episodes")
            .iter()
            .filter_map(|e| {
                Some(Fault {
                    kind: "divergence".into(),
                    start_ms: e.get("start_ms")?.as_f64()?,
                    end_ms: e.get("end_ms").and_then(Value::as_f64),
                    description: String::new(),
                })
            })
            .collect();
        let members_missing = list("members_missing")
            .iter()
            .filter_map(|m| Some((m.get("user")?.as_str()?.to_owned(), m.get("why")?.as_str()?.to_owned())))
            .collect();
        let byzantine = list("in_room")
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| s.ends_with("(byzantine)"))
            .map(str::to_owned)
            .collect();
        let room = RoomSummary {
            name: name.clone(),
            room_id: string("room_id"),
            room_version,
            fields,
            episodes,
            members_missing,
            byzantine,
        };
        out.insert(name.clone(), room);
    }
    Ok(out)
}

fn parse_faults(faults: Option<&Value>, origin: &Path) -> Result<Vec<Fault>, AnalysisError> {
    let Some(faults) = faults.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = faults.as_array().ok_or_else(|| format_error(origin, "`faults` must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let bad = |what: &str| format_error(origin, format!("`faults[{i}]`: {what}, found {f}"));
        let obj = f.as_object().ok_or_else(|| bad("must be an object"))?;
        let start_ms = obj.get("start_ms").and_then(Value::as_f64).ok_or_else(|| bad("`start_ms` must be a number"))?;
        let end_ms = match obj.get("end_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| bad("`end_ms` must be a number or null"))?),
        };
        out.push(Fault {
            kind: obj.get("kind").and_then(Value::as_str).unwrap_or("fault").to_string(),
            start_ms,
            end_ms,
            description: obj.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"scenario": "quickstart", "seed": 1, "servers": 4,
        "events_created": 812, "deliveries": 2400, "sim_time_end_ms": 60000, "threads": 2,
        "rooms": {"main": {"room_id": "!a:hs1", "room_version": "11", "servers_in_room": 4,
            "distinct_final_states": 1, "converged": true, "convergence_time_ms": null,
            "auth_disagreements": 0}},
        "faults": [{"kind": "partition", "start_ms": 30000, "end_ms": null,
            "description": "hs1,hs2 | hs3,hs4"}],
        "log_digest": "ab", "scenario_file": "quickstart.toml", "proposal_x": 0.5}"#;

    #[test]
    fn flattens_every_numeric_leaf_under_its_path() {
        let s = RunSummary::parse(EXAMPLE, Path::new("summary.json")).unwrap();
        assert_eq!(s.seed, Some(1));
        assert_eq!(s.metrics["deliveries"], Some(2400.0));
        assert_eq!(s.metrics["proposal_x"], Some(0.5));
        assert_eq!(s.metrics["rooms.main.converged"], Some(1.0));
        assert_eq!(s.metrics["rooms.main.convergence_time_ms"], None);
        assert!(!s.metrics.contains_key("seed"));
        assert!(!s.metrics.contains_key("threads"));
        assert!(!s.metrics.contains_key("rooms.main.room_id"));
        assert_eq!(s.rooms["main"].room_version.as_deref(), Some("11"));
        assert_eq!(s.faults[0].end_ms, None);
        assert_eq!(s.faults[0].kind, "partition");
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let err = RunSummary::parse(r#"{"faults": [{"start_ms": "x"}]}"#, Path::new("s.json")).unwrap_err().to_string();
        assert!(err.contains("faults[0]") && err.contains("start_ms"), "{err}");
    }
}
