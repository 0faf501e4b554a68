//! Turning spans in the deserialised text back into places the user wrote.
//!
//! Without overrides the file is deserialised as is and spans are already right. With `--set`
//! overrides the file is parsed to a table, edited and re-rendered, and the typed structs are
//! deserialised from that rendering; a span in the rendering is then mapped back through the
//! key path it falls in: into the original file when the file wrote that path, to the `--set`
//! argument when an override did.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::error::{Problem, ScenarioError};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Which part of a table entry a span points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Key,
    Value,
}

/// The spans of every key and value of a TOML document, by key path.
#[derive(Debug)]
pub(crate) struct SpanTree {
    root: Node,
}

#[derive(Debug)]
struct Node {
    span: Range<usize>,
    children: Children,
}

#[derive(Debug)]
enum Children {
    Leaf,
    Array(Vec<Node>),
    /// (key, key span, value)
    Table(Vec<(String, Range<usize>, Node)>),
}

impl SpanTree {
    /// `None` when the text does not parse, or holds a value the tree cannot represent
    /// (datetimes); locations then fall back to coarser ones.
    pub fn parse(text: &str) -> Option<SpanTree> {
        let children = toml::from_str::<NodeChildren>(text).ok()?.0;
        Some(SpanTree { root: Node { span: 0..text.len(), children } })
    }

    /// The deepest key path whose key or value contains `span`.
    fn path_at(&self, span: &Range<usize>) -> Option<(Vec<Seg>, Part)> {
        let mut best: Option<(Vec<Seg>, Part, usize)> = None;
        let mut path = Vec::new();
        visit(&self.root, &mut path, &mut |path, part, node_span| {
            if !contains(node_span, span) {
                return;
            }
            let width = node_span.end - node_span.start;
            let better = match &best {
                None => true,
                Some((p, _, w)) => path.len() > p.len() || (path.len() == p.len() && width < *w),
            };
            if better {
                best = Some((path.to_vec(), part, width));
            }
        });
        best.map(|(p, part, _)| (p, part))
    }

    /// The span of the key or value at `path`.
    fn span_of(&self, path: &[Seg], part: Part) -> Option<Range<usize>> {
        let mut node = &self.root;
        let mut key_span = None;
        for seg in path {
            let (next, next_key_span) = match (&node.children, seg) {
                (Children::Table(entries), Seg::Key(k)) => {
                    let (_, ks, n) = entries.iter().find(|(name, _, _)| name == k)?;
                    (n, Some(ks.clone()))
                }
                (Children::Array(items), Seg::Index(i)) => (items.get(*i)?, None),
                _ => return None,
            };
            node = next;
            key_span = next_key_span;
        }
        match part {
            Part::Key => key_span.or_else(|| Some(node.span.clone())),
            Part::Value => Some(node.span.clone()),
        }
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Called with (key path, key or value, span).
type SpanVisitor<'f> = &'f mut dyn FnMut(&[Seg], Part, &Range<usize>);

/// Calls `f(path, part, span)` for every key and value below `node`.
fn visit(node: &Node, path: &mut Vec<Seg>, f: SpanVisitor) {
    match &node.children {
        Children::Leaf => {}
        Children::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                f(path, Part::Value, &item.span);
                visit(item, path, f);
                path.pop();
            }
        }
        Children::Table(entries) => {
            for (key, key_span, value) in entries {
                path.push(Seg::Key(key.clone()));
                f(path, Part::Key, key_span);
                f(path, Part::Value, &value.span);
                visit(value, path, f);
                path.pop();
            }
        }
    }
}

/// Deserialises any TOML value into its spans.
struct NodeChildren(Children);

impl<'de> Deserialize<'de> for NodeChildren {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

fn node(spanned: Spanned<NodeChildren>) -> Node {
    let span = spanned.span();
    Node { span, children: spanned.into_inner().0 }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeChildren;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<NodeChildren, E> {
        Ok(NodeChildren(Children::Leaf))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<NodeChildren, E> {
        Ok(NodeChildren(Children::Leaf))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<NodeChildren, E> {
        Ok(NodeChildren(Children::Leaf))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<NodeChildren, E> {
        Ok(NodeChildren(Children::Leaf))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<NodeChildren, E> {
        Ok(NodeChildren(Children::Leaf))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeChildren, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<NodeChildren>>()? {
            items.push(node(item));
        }
        Ok(NodeChildren(Children::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeChildren, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let key_span = key.span();
            let value = map.next_value::<Spanned<NodeChildren>>()?;
            entries.push((key.into_inner(), key_span, node(value)));
        }
        Ok(NodeChildren(Children::Table(entries)))
    }
}

/// Maps [`Problem`]s found in the deserialised text to [`ScenarioError`]s.
pub(crate) struct Locator {
    file_name: String,
    text: String,
    mapping: Option<Mapping>,
}

struct Mapping {
    original: Option<SpanTree>,
    rendered: Option<SpanTree>,
    /// The key path each override set, with the override argument.
    overridden: Vec<(Vec<Seg>, String)>,
}

impl Locator {
    /// The deserialised text is the file itself.
    pub fn identity(file_name: &str, text: &str) -> Self {
        Locator { file_name: file_name.to_string(), text: text.to_string(), mapping: None }
    }

    /// The deserialised text is `rendered`, the file after the overrides.
    pub fn mapped(file_name: &str, text: &str, rendered: &str, overridden: Vec<(Vec<Seg>, String)>) -> Self {
        let mapping = Mapping { original: SpanTree::parse(text), rendered: SpanTree::parse(rendered), overridden };
        Locator { file_name: file_name.to_string(), text: text.to_string(), mapping: Some(mapping) }
    }

    pub fn file_error(&self, problem: Problem) -> ScenarioError {
        ScenarioError::in_file(&self.file_name, &self.text, problem.span, problem.message, problem.help)
    }

    pub fn locate(&self, problem: Problem) -> ScenarioError {
        let Some(mapping) = &self.mapping else {
            return self.file_error(problem);
        };
        let found = problem.span.as_ref().and_then(|s| mapping.rendered.as_ref()?.path_at(s));
        let Some((path, part)) = found else {
            return self.file_error(Problem { span: None, ..problem });
        };
        if let Some(argument) = mapping.override_for(&path) {
            let equals = argument.find('=').unwrap_or(argument.len());
            let span = match part {
                Part::Key => 0..equals,
                Part::Value => (equals + 1).min(argument.len())..argument.len(),
            };
            return ScenarioError::in_override(argument, span, problem.message, problem.help);
        }
        let span = mapping.original.as_ref().and_then(|tree| nearest_span(tree, &path, part));
        self.file_error(Problem { span, ..problem })
    }
}

impl Mapping {
    /// The last override that set `path`, a parent of it, or (when the file never wrote
    /// `path`) a child of it.
    fn override_for(&self, path: &[Seg]) -> Option<&str> {
        let in_file = self.original.as_ref().is_some_and(|t| t.span_of(path, Part::Value).is_some());
        self.overridden
            .iter()
            .rev()
            .find(|(set, _)| path.starts_with(set) || (!in_file && set.starts_with(path)))
            .map(|(_, argument)| argument.as_str())
    }
}

/// The span of `path` in `tree`, or of its nearest ancestor that the file wrote.
fn nearest_span(tree: &SpanTree, path: &[Seg], part: Part) -> Option<Range<usize>> {
    if let Some(span) = tree.span_of(path, part) {
        return Some(span);
    }
    (1..path.len()).rev().find_map(|len| tree.span_of(&path[..len], Part::Value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }

    #[test]
    fn finds_paths_of_keys_and_values() {
        let text = "[a]\nb = 1\nc = { d = [1, 2] }\n[[e]]\nf = 3\n";
        let tree = SpanTree::parse(text).unwrap();
        let b_value = text.find('1').unwrap();
        assert_eq!(tree.path_at(&(b_value..b_value + 1)), Some((vec![key("a"), key("b")], Part::Value)));
        let f_key = text.find('f').unwrap();
        assert_eq!(tree.path_at(&(f_key..f_key + 1)), Some((vec![key("e"), Seg::Index(0), key("f")], Part::Key)));
        let two = text.find('2').unwrap();
        let d_path = vec![key("a"), key("c"), key("d"), Seg::Index(1)];
        assert_eq!(tree.path_at(&(two..two + 1)), Some((d_path.clone(), Part::Value)));
        assert_eq!(tree.span_of(&d_path, Part::Value), Some(two..two + 1));
    }

    #[test]
    fn maps_rendered_spans_back_to_the_file() {
        let text = "[n]\nx = { y = \"bad\" }\nz = 1\n";
        let rendered = "[n]\nz = 2\n\n[n.x]\ny = \"bad\"\n";
        let overridden = vec![(vec![key("n"), key("z")], "n.z=2".to_string())];
        let locator = Locator::mapped("f.toml", text, rendered, overridden);
        let bad = rendered.find("\"bad\"").unwrap();
        let error = locator.locate(Problem::at(bad..bad + 5, "no"));
        assert_eq!(error.to_string(), "f.toml:2:11: no");
        let two = rendered.find('2').unwrap();
        let error = locator.locate(Problem::at(two..two + 1, "no"));
        assert_eq!(error.to_string(), "--set n.z=2: no");
    }
}
