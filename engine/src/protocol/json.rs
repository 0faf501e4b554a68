//! Canonical JSON (spec appendix "Canonical JSON"; digest `pdu-and-crypto.md` §4).
//!
//! Parsing is strict: only integer literals within ±(2^53−1) are numbers, floats are refused
//! (decision A10: `1.0` and `1e10` are rejected, as Synapse does), and a repeated object key is
//! an error (decision A11: a duplicate makes the hashed bytes ambiguous).
//!
//! Encoding relies on `serde_json::Value` being backed by a `BTreeMap` (the `preserve_order`
//! feature is never enabled in this workspace): keys come out sorted by code point, and
//! serde_json's string escaper already writes exactly the canonical escapes (`\b \t \n \f \r`,
//! other controls as lower-case `\u00XX`, everything else raw).

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The largest integer canonical JSON allows (2^53 − 1).
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// Maximum size of a PDU in canonical federation form (spec: 65 536 bytes).
pub const MAX_PDU_BYTES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("value is not representable as canonical JSON: {0}")]
    NotCanonical(String),
}

/// Parses `bytes` as strict canonical-compatible JSON.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize_from(&mut de).map_err(syntax_error)?;
    de.end().map_err(syntax_error)?;
    Ok(value)
}

fn syntax_error(e: serde_json::Error) -> JsonError {
    // serde_json appends " at line L column C" to custom messages; keep only the message.
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(pos) => full[..pos].to_string(),
        None => full,
    };
    JsonError::Syntax { line: e.line(), column: e.column(), message }
}

/// Encodes a value as canonical JSON bytes. Fails only on floats / out-of-range integers,
/// which a value from [`parse_strict`] never holds.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, JsonError> {
    check_canonical(value)?;
    Ok(serde_json::to_vec(value).expect("serialising a serde_json::Value cannot fail"))
}

/// Canonical encoding of a JSON object (the common case: PDUs and signed objects).
pub fn object_to_canonical_bytes(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(map).expect("serialising a serde_json::Map cannot fail")
}

/// Canonical JSON as a `String`.
pub fn to_canonical_string(value: &Value) -> Result<String, JsonError> {
    to_canonical_bytes(value).map(|b| String::from_utf8(b).expect("serde_json emits UTF-8"))
}

fn check_canonical(value: &Value) -> Result<(), JsonError> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) if (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&i) => Ok(()),
            _ => Err(JsonError::NotCanonical(format!("number {n} is not an integer in ±(2^53−1)"))),
        },
        Value::Array(items) => items.iter().try_for_each(check_canonical),
        Value::Object(map) => map.values().try_for_each(check_canonical),
        _ => Ok(()),
    }
}

/// A `serde_json::Value` built by a visitor that refuses floats, big integers and duplicate keys.
struct StrictValue(Value);

impl StrictValue {
    fn deserialize_from<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor).map(|v| v.0)
    }
}

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        if !(-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&v) {
            return Err(E::custom(format!("integer {v} is outside ±(2^53−1)")));
        }
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        if v > MAX_SAFE_INT as u64 {
            return Err(E::custom(format!("integer {v} is outside ±(2^53−1)")));
        }
        Ok(StrictValue(Value::from(v as i64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        // serde_json hands the integer literal `-0` over as the float -0.0; canonical JSON reads
        // it as 0 (spec appendix). `-0.0` arrives the same way and is accepted as 0 too: the
        // parser cannot tell them apart.
        if v == 0.0 && v.is_sign_negative() {
            return Ok(StrictValue(Value::from(0)));
        }
        Err(E::custom(format!("floating-point number {v} is not allowed in canonical JSON")))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_none<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictValue, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(v) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate object key {key:?}")));
            }
            map.insert(key, v);
        }
        Ok(StrictValue(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        to_canonical_string(&parse_strict(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canon(r#"{ "b": "2", "a": [1, {"d": null, "c": true}] }"#),
            r#"{"a":[1,{"c":true,"d":null}],"b":"2"}"#
        );
    }

    #[test]
    fn escapes_only_what_the_spec_escapes() {
        let v = Value::String("t\té\u{1}/\u{7f}\"\\\u{8}\u{c}\n\r".into());
        assert_eq!(to_canonical_string(&v).unwrap(), "\"t\\té\\u0001/\u{7f}\\\"\\\\\\b\\f\\n\\r\"");
        assert_eq!(to_canonical_string(&Value::String("\u{1f}".into())).unwrap(), "\"\\u001f\"");
    }

    #[test]
    fn spec_vectors_for_objects() {
        assert_eq!(canon("{}"), "{}");
        assert_eq!(canon(r#"{"one": 1, "two": "Two"}"#), r#"{"one":1,"two":"Two"}"#);
        assert_eq!(canon(r#"{"b":"2","a":"1"}"#), r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            canon(
                r#"{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}"#
            ),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        assert_eq!(canon(r#"{"a":"日本語"}"#), r#"{"a":"日本語"}"#);
        assert_eq!(canon(r#"{"本":2,"日":1}"#), r#"{"日":1,"本":2}"#);
        assert_eq!(canon(r#"{"a":"\u65E5"}"#), r#"{"a":"日"}"#);
        assert_eq!(canon(r#"{"a": null}"#), r#"{"a":null}"#);
        assert_eq!(canon(r#"{"a": -0}"#), r#"{"a":0}"#);
    }

    #[test]
    fn rejects_floats_big_integers_and_duplicates() {
        for bad in [
            r#"{"a":1.0}"#,
            r#"{"a":1e10}"#,
            r#"{"a":1.5}"#,
            r#"{"a":9007199254740992}"#,
            r#"{"a":-9007199254740992}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":"#,
            "[1,]",
            "{} x",
        ] {
            assert!(parse_strict(bad.as_bytes()).is_err(), "{bad} should be rejected");
        }
        assert!(parse_strict(br#"{"a":9007199254740991,"b":-9007199254740991}"#).is_ok());
    }

    #[test]
    fn errors_carry_positions() {
        let err = parse_strict(b"{\n  \"a\": 1.5}").unwrap_err();
        match err {
            JsonError::Syntax { line, message, .. } => {
                assert_eq!(line, 2);
                assert!(message.contains("floating-point"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
