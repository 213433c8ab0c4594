//! Places problems on lines: from a field path to the line where it is written, and from
//! a byte offset (where the TOML parser stopped) back to a field path.
//!
//! Both walk the document as `toml_edit` parsed it, since it keeps the span of every key,
//! value and table. A path that does not exist in the text (a default value, an entry
//! written as a string where the path goes into a table) falls back to the line of the
//! deepest enclosing item that does.

use crate::problem::{Field, Seg};
use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// A place in the parsed document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }
    }

    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
            Node::Table(t) => Some(t),
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a.get(index).map(Node::Table),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => a.get(index).map(Node::Value),
            _ => None,
        }
    }

    fn elements(self) -> Vec<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a.iter().map(Node::Table).collect(),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                a.iter().map(Node::Value).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The 1-based line of byte offset `pos` in `text` (the last line when past the end).
pub(crate) fn line_at(text: &str, pos: usize) -> usize {
    let end = pos.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line where `field` is written, or where the deepest part of it that is written
/// starts; `None` when not even its first key is in the text.
pub(crate) fn line_of(doc: &ImDocument<&str>, field: &Field) -> Option<usize> {
    let mut node = Node::Item(doc.as_item());
    let mut best: Option<usize> = None;
    for seg in field.segs() {
        match seg {
            Seg::Key(key) => {
                let Some((k, item)) = node.table_like().and_then(|t| t.get_key_value(key)) else {
                    break;
                };
                if let Some(span) = k.span().or_else(|| item.span()) {
                    best = Some(span.start);
                }
                node = Node::Item(item);
            }
            Seg::Index(index) => match node.element(*index) {
                Some(element) => {
                    if let Some(span) = element.span() {
                        best = Some(span.start);
                    }
                    node = element;
                }
                // `overflow = { … }` stands for a chain of one.
                None if *index == 0 && node.table_like().is_some() => {}
                None => break,
            },
        }
    }
    best.map(|pos| line_at(doc.raw(), pos))
}

/// The path of the deepest key or value whose span holds byte offset `pos`.
pub(crate) fn field_at(doc: &ImDocument<&str>, pos: usize) -> Field {
    let mut segs = Vec::new();
    if find(Node::Item(doc.as_item()), pos, &mut segs) {
        Field(segs)
    } else {
        Field::default()
    }
}

fn contains(span: Option<Range<usize>>, pos: usize) -> bool {
    span.is_some_and(|s| s.start <= pos && pos < s.end.max(s.start + 1))
}

fn find(node: Node<'_>, pos: usize, path: &mut Vec<Seg>) -> bool {
    if let Some(table) = node.table_like() {
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            path.push(Seg::Key(name.to_owned()));
            if contains(key.span(), pos) || find(Node::Item(item), pos, path) {
                return true;
            }
            path.pop();
        }
    }
    for (index, element) in node.elements().into_iter().enumerate() {
        path.push(Seg::Index(index));
        if find(element, pos, path) {
            return true;
        }
        path.pop();
    }
    contains(node.span(), pos)
}

/// For a file that does not parse: the table in effect at `line` (from the headers
/// above it), and the key written on that line if there is one. A best effort, since
/// there is no document to walk.
pub(crate) fn field_near_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut key = None;
    for (n, raw) in text.lines().enumerate().take(line) {
        let l = raw.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let path = resolve(name, &arrays, false);
            let count = arrays.entry(path.clone()).or_insert(0);
            *count += 1;
            table = format!("{path}[{}]", *count - 1);
            key = None;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = resolve(name, &arrays, true);
            key = None;
        } else if n + 1 == line {
            key = l
                .split_once('=')
                .map(|(k, _)| k.trim().to_owned())
                .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
        }
    }
    match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
    }
}

/// `flows.overflow` → `flows[2].overflow` when `flows` is an array of tables seen 3 times.
/// The last part is resolved only for a `[table]` header (`[[flows]]` starts a new
/// element, which the caller counts).
fn resolve(name: &str, arrays: &std::collections::HashMap<String, usize>, resolve_last: bool) -> String {
    let parts: Vec<&str> = name.split('.').map(str::trim).collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
        let last = i + 1 == parts.len();
        if last && !resolve_last {
            break;
        }
        if let Some(&count) = arrays.get(&out) {
            out = format!("{out}[{}]", count.saturating_sub(1));
        }
    }
    out
}
