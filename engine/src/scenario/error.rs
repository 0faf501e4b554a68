//! Errors of the scenario loader.
//!
//! Validation code works with [`Problem`]: a message plus a byte span in the text that was
//! deserialised. The [`Locator`](super::locate::Locator) turns a `Problem` into a
//! [`ScenarioError`], which says where the mistake is in terms the user wrote: a line and column
//! of the scenario file, or the `--set` argument that caused it.

use std::ops::Range;

use std::fmt;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

/// A mistake found before its location in the user's input is known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    /// Byte span in the deserialised text; `None` when the mistake has no single place.
    pub span: Option<Range<usize>>,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Problem { span: Some(span), message: message.into(), help: None }
    }

    pub fn nowhere(message: impl Into<String>) -> Self {
        Problem { span: None, message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// A syntax or type error reported by the TOML deserialiser.
    pub fn from_toml(error: &toml::de::Error) -> Self {
        // toml's messages may span several lines ("invalid table header\nexpected `.`, `]`");
        // a `FILE:LINE:COL: message` line reads better with them joined.
        let mut message = error.message().trim().lines().collect::<Vec<_>>().join("; ");
        // toml's words when a named choice (`join_rule = "invite"`) gets a number or a table.
        if message.starts_with("wanted string or table") || message.starts_with("wanted exactly 1 element") {
            message = "invalid type: expected a string naming one of the choices".to_string();
        }
        let help = suggest_field(&message);
        Problem { span: error.span(), message, help }
    }
}

pub(crate) type Res<T> = Result<T, Problem>;

/// Where a [`ScenarioError`] points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorLocation {
    /// A place in the scenario file; line and column are 1-based, the column counts characters.
    File { line: usize, column: usize },
    /// The scenario file as a whole (no single place, e.g. "no [[servers]]").
    WholeFile,
    /// A `--set key=value` argument (the whole argument is kept here).
    Override { argument: String },
    /// The file could not be read.
    Io,
}

/// An invalid scenario: what is wrong, where, and (often) what was expected.
///
/// `Display` gives one line, `FILE:LINE:COL: message` (or `--set ARG: message`); the
/// [`miette::Diagnostic`] implementation adds the source snippet for a fancy report.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", .0.origin, .0.message)]
// Boxed: errors travel through every `Result` of the loader, which should stay small.
pub struct ScenarioError(Box<Details>);

#[derive(Debug)]
struct Details {
    origin: String,
    message: String,
    location: ErrorLocation,
    help: Option<String>,
    source_code: NamedSource<String>,
    span: Option<SourceSpan>,
}

impl Diagnostic for ScenarioError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.0.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.0.span?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some("here".into()), span))))
    }
}

impl ScenarioError {
    /// An error at `span` (byte offsets) of the scenario file `text`.
    pub(crate) fn in_file(
        file_name: &str,
        text: &str,
        span: Option<Range<usize>>,
        message: String,
        help: Option<String>,
    ) -> Self {
        let span = span.map(|s| clamp_span(text, s));
        let (origin, location) = match &span {
            Some(s) => {
                let (line, column) = line_column(text, s.start);
                (format!("{file_name}:{line}:{column}"), ErrorLocation::File { line, column })
            }
            None => (file_name.to_string(), ErrorLocation::WholeFile),
        };
        ScenarioError(Box::new(Details {
            origin,
            message,
            location,
            help,
            source_code: NamedSource::new(file_name, text.to_string()),
            span: span.map(SourceSpan::from),
        }))
    }

    /// An error caused by the `--set` argument `argument`; `span` is a byte range inside it.
    pub(crate) fn in_override(argument: &str, span: Range<usize>, message: String, help: Option<String>) -> Self {
        let span = clamp_span(argument, span);
        ScenarioError(Box::new(Details {
            origin: format!("--set {argument}"),
            message,
            location: ErrorLocation::Override { argument: argument.to_string() },
            help,
            source_code: NamedSource::new("--set", argument.to_string()),
            span: Some(span.into()),
        }))
    }

    pub(crate) fn io(path: &std::path::Path, error: &std::io::Error) -> Self {
        ScenarioError(Box::new(Details {
            origin: path.display().to_string(),
            message: format!("cannot read the scenario file: {error}"),
            location: ErrorLocation::Io,
            help: None,
            source_code: NamedSource::new(path.display().to_string(), String::new()),
            span: None,
        }))
    }

    /// The message without the location prefix.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn location(&self) -> &ErrorLocation {
        &self.0.location
    }

    /// `(line, column)`, both 1-based, when the error points into the scenario file.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match self.0.location {
            ErrorLocation::File { line, column } => Some((line, column)),
            _ => None,
        }
    }

    /// A hint on how to fix the mistake, when there is one.
    pub fn help_text(&self) -> Option<&str> {
        self.0.help.as_deref()
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Keeps a span inside `text` and on character boundaries, so slicing and miette never fail.
fn clamp_span(text: &str, span: Range<usize>) -> Range<usize> {
    let start = floor_char_boundary(text, span.start);
    let end = floor_char_boundary(text, span.end.max(start));
    start..end
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// For serde's "unknown field `x`, expected `a`, `b`" messages: the closest expected name.
fn suggest_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let best = closest(unknown, &candidates)?;
    Some(format!("did you mean `{best}`?"))
}

/// The candidate nearest to `word` by edit distance, if it is plausibly a typo of it.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let (distance, best) = candidates.iter().map(|c| (edit_distance(word, c), *c)).min_by_key(|(d, _)| *d)?;
    let limit = (word.chars().count() / 3).max(1);
    (distance <= limit).then_some(best)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nµb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'b' follows the two-byte 'µ': column 2, not 3.
        assert_eq!(line_column(text, 8), (2, 2));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn suggests_near_field_names_only() {
        let m = "unknown field `los`, expected one of `latency`, `loss`, `duplicate`";
        assert_eq!(suggest_field(m).as_deref(), Some("did you mean `loss`?"));
        let far = "unknown field `zzzzzz`, expected `latency` or `loss`";
        assert_eq!(suggest_field(far), None);
    }

    #[test]
    fn display_is_file_line_column_message() {
        let e = ScenarioError::in_file("x.toml", "a\nbc\n", Some(3..4), "bad".into(), None);
        assert_eq!(e.to_string(), "x.toml:2:2: bad");
        assert_eq!(e.line_column(), Some((2, 2)));
    }
}
