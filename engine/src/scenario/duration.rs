//! Human duration strings ("250ms", "1.5s", "1h30m") as integer microseconds.
//!
//! The simulator's clock counts whole microseconds (`SimTime`), so durations are parsed with
//! integer arithmetic: "1.5s" is exactly 1 500 000 µs and "0.5us" is an error rather than a
//! silently rounded value.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::Serialize;

/// A non-negative duration in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct DurationUs(pub u64);

/// A duration that may be negative (only clock skews are), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct SignedDurationUs(pub i64);

/// Units accepted after a number, in microseconds.
const UNITS: &[(&str, u64)] =
    &[("us", 1), ("µs", 1), ("ms", 1_000), ("s", 1_000_000), ("m", 60_000_000), ("h", 3_600_000_000)];

const UNIT_LIST: &str = "us, ms, s, m, h";

/// The longest duration a scenario may give: 1 000 000 hours (about 114 years). Every time the
/// simulator computes is a sum of a few of them (a time plus a latency, a timeout times the
/// retries, ...), so with this bound no such sum can overflow the µs clock (u64, 584 000 years).
pub const MAX_DURATION_US: u64 = 1_000_000 * 3_600_000_000;

/// Parses a non-negative duration such as "250ms", "1.5s", "2m", "1h30m" or "800us".
pub fn parse_duration(text: &str) -> Result<DurationUs, String> {
    let (negative, magnitude) = parse_signed_parts(text)?;
    if negative && magnitude != 0 {
        return Err(format!("duration \"{text}\" is negative; only clock skews may be"));
    }
    Ok(DurationUs(magnitude))
}

/// Parses a duration that may carry a sign: "-5s", "+250ms", "0s".
pub fn parse_signed_duration(text: &str) -> Result<SignedDurationUs, String> {
    let (negative, magnitude) = parse_signed_parts(text)?;
    let value = i64::try_from(magnitude).map_err(|_| too_large(text))?;
    Ok(SignedDurationUs(if negative { -value } else { value }))
}

fn parse_signed_parts(text: &str) -> Result<(bool, u64), String> {
    let trimmed = text.trim();
    let (negative, body) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if body.is_empty() {
        return Err(format!("empty duration \"{text}\"; write e.g. \"250ms\" or \"5s\""));
    }
    let mut total: u64 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let (micros, after) = parse_component(text, rest)?;
        total = total.checked_add(micros).ok_or_else(|| too_large(text))?;
        rest = after;
    }
    if total > MAX_DURATION_US {
        return Err(format!("duration \"{text}\" is too large: at most {}", format_duration_us(MAX_DURATION_US)));
    }
    Ok((negative, total))
}

/// Parses one `<number><unit>` at the start of `rest`; returns its microseconds and the rest.
fn parse_component<'a>(text: &str, rest: &'a str) -> Result<(u64, &'a str), String> {
    let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, after_number) = rest.split_at(number_len);
    let unit_len = after_number.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after_number.len());
    let (unit, after_unit) = after_number.split_at(unit_len);
    if number.is_empty() {
        return Err(format!("invalid duration \"{text}\": expected a number before \"{unit}\""));
    }
    if unit.is_empty() {
        return Err(format!("duration \"{text}\" has no unit; units are {UNIT_LIST}"));
    }
    let unit_us = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, us)| *us)
        .ok_or_else(|| format!("unknown unit \"{unit}\" in duration \"{text}\"; units are {UNIT_LIST}"))?;
    Ok((scale(text, number, unit_us)?, after_unit))
}

/// `number` (decimal, maybe with a fraction) times `unit_us`, exactly, in microseconds.
fn scale(text: &str, number: &str, unit_us: u64) -> Result<u64, String> {
    let invalid = || format!("invalid number \"{number}\" in duration \"{text}\"");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(invalid());
    }
    // Nine fractional digits are finer than any unit's microsecond resolution needs; the limit
    // keeps the arithmetic below inside u128.
    if fraction.len() > 9 {
        return Err(format!("duration \"{text}\" is finer than a microsecond"));
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large(text))? };
    let fraction_value: u128 = if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| invalid())? };
    let denominator = 10u128.pow(fraction.len() as u32);
    let fraction_us = fraction_value * u128::from(unit_us);
    if !fraction_us.is_multiple_of(denominator) {
        return Err(format!("duration \"{text}\" is finer than a microsecond"));
    }
    let micros = whole
        .checked_mul(u128::from(unit_us))
        .and_then(|w| w.checked_add(fraction_us / denominator))
        .ok_or_else(|| too_large(text))?;
    u64::try_from(micros).map_err(|_| too_large(text))
}

fn too_large(text: &str) -> String {
    format!("duration \"{text}\" is too large")
}

/// Formats microseconds with the largest unit that divides them exactly ("90s", "250ms").
pub fn format_duration_us(micros: u64) -> String {
    if micros == 0 {
        return "0s".to_string();
    }
    let (name, unit) = [("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1_000)]
        .into_iter()
        .find(|(_, unit)| micros.is_multiple_of(*unit))
        .unwrap_or(("us", 1));
    format!("{}{name}", micros / unit)
}

impl fmt::Display for DurationUs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration_us(self.0))
    }
}

impl fmt::Display for SignedDurationUs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}", format_duration_us(self.0.unsigned_abs()))
    }
}

/// Deserialises a duration string; the TOML deserialiser attaches the value's span to errors.
struct DurationVisitor<T> {
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for DurationVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\" or \"5s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    // A bare number is the most likely mistake; say how to write it.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format!("durations need a unit: write \"{v}s\" or \"{v}ms\", not {v}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Err(E::custom(format!("durations need a unit: write \"{v}s\" or \"{v}ms\", not {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Err(E::custom(format!("durations need a unit: write \"{v}s\", not {v}")))
    }
}

impl<'de> Deserialize<'de> for DurationUs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor { parse: parse_duration })
    }
}

impl<'de> Deserialize<'de> for SignedDurationUs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor { parse: parse_signed_duration })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("1000000h"), Ok(DurationUs(MAX_DURATION_US)));
        assert_eq!(parse_signed_duration("-1000000h"), Ok(SignedDurationUs(-(MAX_DURATION_US as i64))));
        let e = parse_duration("1000000h1us").unwrap_err();
        assert_eq!(e, "duration \"1000000h1us\" is too large: at most 1000000h");
        assert!(parse_signed_duration("-1000001h").unwrap_err().contains("at most 1000000h"));
    }

    #[test]
    fn parses_units_fractions_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(DurationUs(250_000)));
        assert_eq!(parse_duration("5s"), Ok(DurationUs(5_000_000)));
        assert_eq!(parse_duration("2m"), Ok(DurationUs(120_000_000)));
        assert_eq!(parse_duration("1h"), Ok(DurationUs(3_600_000_000)));
        assert_eq!(parse_duration("1.5s"), Ok(DurationUs(1_500_000)));
        assert_eq!(parse_duration("800us"), Ok(DurationUs(800)));
        assert_eq!(parse_duration("800µs"), Ok(DurationUs(800)));
        assert_eq!(parse_duration("1m30s"), Ok(DurationUs(90_000_000)));
        assert_eq!(parse_duration(".5ms"), Ok(DurationUs(500)));
        assert_eq!(parse_duration("0s"), Ok(DurationUs(0)));
        assert_eq!(parse_duration("-0s"), Ok(DurationUs(0)));
    }

    #[test]
    fn signed_durations_keep_their_sign() {
        assert_eq!(parse_signed_duration("-5s"), Ok(SignedDurationUs(-5_000_000)));
        assert_eq!(parse_signed_duration("+5s"), Ok(SignedDurationUs(5_000_000)));
        assert_eq!(SignedDurationUs(-30_000_000).to_string(), "-30s");
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("5", "no unit"),
            ("5 s", "unknown unit"),
            ("5sec", "unknown unit"),
            ("ms", "expected a number"),
            ("-5s", "negative"),
            ("1.2.3s", "invalid number"),
            ("0.5us", "finer than a microsecond"),
            ("99999999999999999999h", "too large"),
            ("5000000000000h", "too large"),
            ("-", "empty"),
            (".s", "invalid number"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_duration_us(90_000_000), "90s");
        assert_eq!(format_duration_us(120_000_000), "2m");
        assert_eq!(format_duration_us(1_500), "1500us");
        assert_eq!(format_duration_us(0), "0s");
    }
}
