//! `--set key.path=value` overrides, applied to the parsed TOML document.
//!
//! The value is read as a TOML value (`0.2`, `"12"`, `[1, 2]`, `{ dist = "fixed", value = "5ms" }`)
//! and, when it is not one, as a plain string (`30s`). The key path is a TOML dotted key whose
//! numeric parts index arrays: `servers.0.count`. Whether the path exists in the schema is
//! checked afterwards, when the edited document is deserialised (see `locate`).

use toml::{Table, Value};

use super::error::{Problem, ScenarioError};
use super::locate::{Locator, Seg};

/// A parsed `--set` argument.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub argument: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl Override {
    pub fn parse(argument: &str) -> Result<Override, ScenarioError> {
        let Some((key, value_text)) = argument.split_once('=') else {
            return Err(ScenarioError::in_override(
                argument,
                0..argument.len(),
                "expected key.path=value".into(),
                Some("for example --set network.loss=0.1".into()),
            ));
        };
        let path = parse_key_path(key.trim()).ok_or_else(|| {
            ScenarioError::in_override(argument, 0..key.len(), format!("invalid key path \"{key}\""), None)
        })?;
        Ok(Override { argument: argument.to_string(), path, value: parse_value(value_text.trim()) })
    }

    fn error(&self, message: String) -> ScenarioError {
        let key_len = self.argument.find('=').unwrap_or(self.argument.len());
        ScenarioError::in_override(&self.argument, 0..key_len, message, None)
    }

    /// Sets the value in `root`; returns the key path it set, with array indices resolved.
    pub fn apply(&self, root: &mut Table) -> Result<Vec<Seg>, ScenarioError> {
        let mut document = Value::Table(std::mem::take(root));
        let result = self.apply_to(&mut document);
        if let Value::Table(table) = document {
            *root = table;
        }
        result
    }

    fn apply_to(&self, document: &mut Value) -> Result<Vec<Seg>, ScenarioError> {
        let Some((last, parents)) = self.path.split_last() else {
            return Err(self.error("empty key path".into()));
        };
        let mut segs = Vec::new();
        let mut here = document;
        for (depth, name) in parents.iter().enumerate() {
            here = self.step(here, name, depth, &mut segs)?;
        }
        self.set(here, last, parents.len(), &mut segs)?;
        Ok(segs)
    }

    /// Moves from `value` into its member `name`, creating a table when the key is absent.
    fn step<'v>(
        &self,
        value: &'v mut Value,
        name: &str,
        depth: usize,
        segs: &mut Vec<Seg>,
    ) -> Result<&'v mut Value, ScenarioError> {
        match value {
            Value::Table(table) => {
                segs.push(Seg::Key(name.to_string()));
                Ok(step_into_table(table, name))
            }
            Value::Array(items) => {
                let index = self.index(name, items.len(), depth, false)?;
                segs.push(Seg::Index(index));
                Ok(&mut items[index])
            }
            other => Err(self.not_a_table(depth, other)),
        }
    }

    /// Stores the value under `name` in `value` (a table, or an array when `name` is an index).
    fn set(&self, value: &mut Value, name: &str, depth: usize, segs: &mut Vec<Seg>) -> Result<(), ScenarioError> {
        match value {
            Value::Table(table) => {
                table.insert(name.to_string(), self.value.clone());
                segs.push(Seg::Key(name.to_string()));
            }
            // One past the end appends: `--set 'servers.2={ name = "hs9" }'`.
            Value::Array(items) => {
                let index = self.index(name, items.len(), depth, true)?;
                if index == items.len() {
                    items.push(self.value.clone());
                } else {
                    items[index] = self.value.clone();
                }
                segs.push(Seg::Index(index));
            }
            other => return Err(self.not_a_table(depth, other)),
        }
        Ok(())
    }

    /// `name` as an index into a list of `len` entries (or one past its end, to append).
    fn index(&self, name: &str, len: usize, depth: usize, append: bool) -> Result<usize, ScenarioError> {
        let array = self.path[..depth].join(".");
        let index: usize =
            name.parse().map_err(|_| self.error(format!("`{array}` is a list: expected an index, not \"{name}\"")))?;
        if index > len || (index == len && !append) {
            let message = format!("`{array}` has no entry {index}; indices start at 0 and the list has {len}");
            return Err(self.error(message));
        }
        Ok(index)
    }

    fn not_a_table(&self, depth: usize, value: &Value) -> ScenarioError {
        let prefix = self.path[..depth].join(".");
        self.error(format!("`{prefix}` is a {}, not a table", value.type_str()))
    }
}

fn step_into_table<'t>(table: &'t mut Table, name: &str) -> &'t mut Value {
    table.entry(name.to_string()).or_insert_with(|| Value::Table(Table::new()))
}

/// Splits a dotted key (`a.b."c.d".0`) with TOML's own rules.
fn parse_key_path(key: &str) -> Option<Vec<String>> {
    let document: Table = toml::from_str(&format!("{key} = 0")).ok()?;
    let mut path = Vec::new();
    let mut table = &document;
    loop {
        // A dotted key yields a chain of one-entry tables ending in the placeholder 0.
        if table.len() != 1 {
            return None;
        }
        let (name, value) = table.iter().next()?;
        path.push(name.clone());
        match value {
            Value::Table(inner) => table = inner,
            Value::Integer(0) => return Some(path),
            _ => return None,
        }
    }
}

/// The value of an override (`key=VALUE`) as a reader wants to see it in a table: a TOML string
/// by its content (`"30s"` is `30s`), any other value as written (`0.05`, `[1, 2]`).
pub fn override_value_text(text: &str) -> String {
    match parse_value(text.trim()) {
        Value::String(s) => s,
        _ => text.trim().to_string(),
    }
}

/// A TOML value, or the text itself as a string when it is not one.
fn parse_value(text: &str) -> Value {
    let parsed: Option<Table> = toml::from_str(&format!("v = {text}")).ok();
    match parsed {
        Some(mut table) if table.len() == 1 => table.remove("v").unwrap_or_else(|| Value::String(text.to_string())),
        _ => Value::String(text.to_string()),
    }
}

/// A value as TOML source, on one line (for `--set` arguments and sweep labels).
pub(crate) fn render_value(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(render_value).collect::<Vec<_>>().join(", ")),
        Value::Table(table) => {
            let entries: Vec<String> =
                table.iter().map(|(k, v)| format!("{} = {}", render_key(k), render_value(v))).collect();
            format!("{{ {} }}", entries.join(", "))
        }
        other => other.to_string(),
    }
}

fn render_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

/// The text to deserialise and how to map its spans back, after applying `overrides`.
pub(crate) fn prepare(file_name: &str, text: &str, overrides: &[String]) -> Result<(String, Locator), ScenarioError> {
    if overrides.is_empty() {
        return Ok((text.to_string(), Locator::identity(file_name, text)));
    }
    let identity = Locator::identity(file_name, text);
    let mut document: Table = toml::from_str(text).map_err(|e| identity.file_error(Problem::from_toml(&e)))?;
    let mut overridden = Vec::new();
    for argument in overrides {
        let parsed = Override::parse(argument)?;
        overridden.push((parsed.apply(&mut document)?, parsed.argument));
    }
    let rendered = toml::to_string(&document).map_err(|e| {
        let last = overrides.last().map_or("", String::as_str);
        ScenarioError::in_override(last, 0..last.len(), format!("cannot apply the overrides: {e}"), None)
    })?;
    let locator = Locator::mapped(file_name, text, &rendered, overridden);
    Ok((rendered, locator))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, argument: &str) -> Result<Table, String> {
        let mut table: Table = toml::from_str(text).unwrap();
        let parsed = Override::parse(argument).map_err(|e| e.to_string())?;
        parsed.apply(&mut table).map_err(|e| e.to_string())?;
        Ok(table)
    }

    #[test]
    fn values_are_toml_or_else_strings() {
        assert_eq!(parse_value("0.2"), Value::Float(0.2));
        assert_eq!(parse_value("\"12\""), Value::String("12".into()));
        assert_eq!(parse_value("30s"), Value::String("30s".into()));
        assert_eq!(parse_value("[1, 2]"), Value::Array(vec![Value::Integer(1), Value::Integer(2)]));
        // A value smuggling in a second key stays a string.
        assert_eq!(parse_value("1\nx = 2"), Value::String("1\nx = 2".into()));
    }

    #[test]
    fn key_paths_follow_toml_dotted_keys() {
        assert_eq!(parse_key_path("a.b.0"), Some(vec!["a".into(), "b".into(), "0".into()]));
        assert_eq!(parse_key_path("a.\"x.y\""), Some(vec!["a".into(), "x.y".into()]));
        assert_eq!(parse_key_path("a..b"), None);
        assert_eq!(parse_key_path("a = 1\nb"), None);
    }

    #[test]
    fn applies_to_tables_arrays_and_missing_tables() {
        let text = "[[servers]]\nname = \"hs1\"\n";
        let table = apply(text, "servers.0.users=3").unwrap();
        assert_eq!(table["servers"][0]["users"].as_integer(), Some(3));
        let table = apply(text, "network.loss=0.5").unwrap();
        assert_eq!(table["network"]["loss"].as_float(), Some(0.5));
        let table = apply(text, "servers.1={ name = \"hs2\" }").unwrap();
        assert_eq!(table["servers"][1]["name"].as_str(), Some("hs2"));
    }

    #[test]
    fn reports_impossible_paths_naming_the_argument() {
        let text = "[[servers]]\nname = \"hs1\"\n";
        let error = apply(text, "servers.3.users=3").unwrap_err();
        assert_eq!(error, "--set servers.3.users=3: `servers` has no entry 3; indices start at 0 and the list has 1");
        let error = apply(text, "servers.0.name.x=3").unwrap_err();
        assert!(error.contains("`servers.0.name` is a string, not a table"), "{error}");
        let error = apply(text, "servers.x.name=3").unwrap_err();
        assert!(error.contains("expected an index"), "{error}");
        let error = apply(text, "novalue").unwrap_err();
        assert!(error.contains("expected key.path=value"), "{error}");
    }

    #[test]
    fn renders_values_on_one_line() {
        let value = parse_value("{ dist = \"fixed\", value = \"5ms\" }");
        assert_eq!(render_value(&value), "{ dist = \"fixed\", value = \"5ms\" }");
        assert_eq!(render_value(&parse_value("[0.0, 0.5]")), "[0.0, 0.5]");
    }
}
