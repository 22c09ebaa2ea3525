//! YAML text → documents of positioned nodes.
//!
//! Built on `saphyr-parser`'s event stream, which gives every event a span.
//! This module turns events into a small tree where every node (and every
//! mapping key) keeps its line and column, refuses duplicate keys, and stops
//! hostile input early: nesting deeper than [`MAX_DEPTH`] and alias
//! expansion beyond [`MAX_NODES`] end as diagnostics, never as a stack
//! overflow or a memory blow-up.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diagnostic::{Code, Span};

/// Deepest nesting accepted. Real policy files stay under 15.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one document may produce, aliases expanded. Real policy
/// documents have a few hundred.
pub const MAX_NODES: usize = 100_000;

/// A YAML value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Entries in document order, keys with their own spans.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

/// A problem found while parsing; the caller adds the file name.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseProblem {
    pub code: Code,
    pub span: Span,
    pub message: String,
}

/// A parsed document: its root (None for an empty document) and the span of
/// its start, for problems about the document as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub root: Option<Node>,
    pub start: Span,
}

/// Parses every document of a YAML stream. Documents that parse are
/// returned even when a later one has a syntax error; the syntax error is
/// reported and parsing stops there (the parser cannot resynchronise).
pub fn parse(text: &str) -> (Vec<Document>, Vec<ParseProblem>) {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        match event {
            Ok((event, span)) => {
                if let Err(problem) = builder.on_event(event, to_span(&span)) {
                    builder.problems.push(problem);
                    builder.skip_document = true;
                }
            }
            Err(e) => {
                let m = e.marker();
                // The scanner's own guard against deep flow nesting.
                let code = if e.info().contains("recursion limit") {
                    Code::YamlTooComplex
                } else {
                    Code::YamlSyntax
                };
                builder.problems.push(ParseProblem {
                    code,
                    span: Span::point(m.line() as u32, m.col() as u32 + 1),
                    message: e.info().to_string(),
                });
                break;
            }
        }
    }
    (builder.documents, builder.problems)
}

fn to_span(span: &saphyr_parser::Span) -> Span {
    Span {
        line: span.start.line() as u32,
        column: span.start.col() as u32 + 1,
        end_line: span.end.line() as u32,
        end_column: span.end.col() as u32 + 1,
    }
}

/// A collection being built: its start span and what it holds so far.
enum Open {
    Seq(Span, Vec<Node>, usize),
    /// Pending key waits for its value.
    Map(Span, Vec<(Key, Node)>, Option<Key>, usize),
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    problems: Vec<ParseProblem>,
    stack: Vec<Open>,
    /// Anchored nodes with their size, so an alias is charged before it
    /// is copied.
    anchors: HashMap<usize, (Node, usize)>,
    doc_start: Span,
    root: Option<Node>,
    nodes: usize,
    /// After a problem in a document, its remaining events are ignored.
    skip_document: bool,
}

impl Builder {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), ParseProblem> {
        match event {
            Event::DocumentStart(_) => {
                self.stack.clear();
                self.anchors.clear();
                self.root = None;
                self.nodes = 0;
                self.doc_start = span;
                self.skip_document = false;
                Ok(())
            }
            Event::DocumentEnd => {
                let root = self.root.take();
                if !self.skip_document {
                    self.documents.push(Document {
                        root,
                        start: self.doc_start,
                    });
                }
                Ok(())
            }
            _ if self.skip_document => Ok(()),
            Event::StreamStart | Event::StreamEnd | Event::Nothing => Ok(()),
            Event::SequenceStart(anchor, _) => {
                self.open_collection(span)?;
                self.stack.push(Open::Seq(span, Vec::new(), anchor));
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open_collection(span)?;
                self.stack.push(Open::Map(span, Vec::new(), None, anchor));
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(start, items, anchor)) => (
                        Node {
                            span: start,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Open::Map(start, entries, _, anchor)) => (
                        Node {
                            span: start,
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => return Ok(()),
                };
                self.finish(node, anchor, span)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let span = scalar_span(span, &text, style);
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                self.count(1, span)?;
                self.finish(Node { span, value }, anchor, span)
            }
            Event::Alias(id) => {
                let unknown = || ParseProblem {
                    code: Code::YamlSyntax,
                    span,
                    message: "alias to an unknown anchor".into(),
                };
                let nodes = self.anchors.get(&id).ok_or_else(unknown)?.1;
                self.count(nodes, span)?;
                let node = self.anchors.get(&id).ok_or_else(unknown)?.0.clone();
                let node = Node { span, ..node };
                self.finish(node, 0, span)
            }
        }
    }

    fn open_collection(&mut self, span: Span) -> Result<(), ParseProblem> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ParseProblem {
                code: Code::YamlTooComplex,
                span,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        if let Some(Open::Map(_, _, None, _)) = self.stack.last() {
            return Err(ParseProblem {
                code: Code::YamlSyntax,
                span,
                message: "a mapping key must be a plain value, not a list or mapping".into(),
            });
        }
        self.count(1, span)
    }

    fn count(&mut self, n: usize, span: Span) -> Result<(), ParseProblem> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(ParseProblem {
                code: Code::YamlTooComplex,
                span,
                message: format!(
                    "document expands to more than {MAX_NODES} values (aliases expanded); \
                     is it an alias bomb?"
                ),
            });
        }
        Ok(())
    }

    /// Places a finished node in its parent (or as the document root).
    fn finish(&mut self, node: Node, anchor: usize, span: Span) -> Result<(), ParseProblem> {
        if anchor != 0 {
            let nodes = size(&node);
            self.anchors.insert(anchor, (node.clone(), nodes));
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Open::Seq(_, items, _)) => {
                items.push(node);
                Ok(())
            }
            Some(Open::Map(_, entries, pending, _)) => match pending.take() {
                None => {
                    let name = match node.value {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        Value::Bool(b) => b.to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        // Reached through an alias (`*a : b` with `a` a list):
                        // refused like a literal list or mapping key.
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(ParseProblem {
                                code: Code::YamlSyntax,
                                span,
                                message:
                                    "a mapping key must be a plain value, not a list or mapping"
                                        .into(),
                            });
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        return Err(ParseProblem {
                            code: Code::DuplicateKey,
                            span,
                            message: format!(
                                "duplicate key `{name}` (first at line {})",
                                first.span.line
                            ),
                        });
                    }
                    *pending = Some(Key {
                        name,
                        span: node.span,
                    });
                    Ok(())
                }
                Some(key) => {
                    entries.push((key, node));
                    Ok(())
                }
            },
        }
    }
}

/// The parser's scalar spans can run past the value (up to the next
/// token); a one-line scalar ends where its text (and quotes) end.
fn scalar_span(span: Span, text: &str, style: ScalarStyle) -> Span {
    if span.end_line != span.line || text.contains('\n') {
        return span;
    }
    let quotes = match style {
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => 2,
        _ => 0,
    };
    let len = text.chars().count() as u32 + quotes;
    Span {
        end_column: (span.column + len.max(1)).min(span.end_column.max(span.column + 1)),
        ..span
    }
}

/// Number of nodes in a tree, to charge alias expansion fairly.
fn size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| size(v)).sum::<usize>(),
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    } else if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    } else if looks_numeric(text) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(text.to_string())
}

/// Only `[-+]?digits[.digits][e[-+]digits]` counts as a number, so that
/// strings like `inf`, `NaN` or `1_000` stay strings.
fn looks_numeric(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let (docs, problems) = parse(text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(docs.len(), 1);
        docs[0].root.clone().unwrap()
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.value {
            Value::Map(entries) => &entries.iter().find(|(k, _)| k.name == key).unwrap().1,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let root = one("kind: Service\nspec:\n  port: 9080\n  name: \"x\"\n");
        let spec = get(&root, "spec");
        let port = get(spec, "port");
        assert_eq!(port.value, Value::Int(9080));
        assert_eq!((port.span.line, port.span.column), (3, 9));
        match &spec.value {
            Value::Map(entries) => {
                assert_eq!((entries[1].0.span.line, entries[1].0.span.column), (4, 3));
                assert_eq!(entries[1].1.value, Value::String("x".into()));
            }
            _ => panic!(),
        }
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let root = one("a: ~\nb: true\nc: 12\nd: 1.5\ne: '12'\nf: 0x1f\ng: inf\nh: 1_000\ni: -3\n");
        let v = |k| get(&root, k).value.clone();
        assert_eq!(v("a"), Value::Null);
        assert_eq!(v("b"), Value::Bool(true));
        assert_eq!(v("c"), Value::Int(12));
        assert_eq!(v("d"), Value::Float(1.5));
        assert_eq!(v("e"), Value::String("12".into()));
        assert_eq!(v("f"), Value::Int(31));
        assert_eq!(v("g"), Value::String("inf".into()));
        assert_eq!(v("h"), Value::String("1_000".into()));
        assert_eq!(v("i"), Value::Int(-3));
    }

    #[test]
    fn several_documents_per_file() {
        let (docs, problems) = parse("a: 1\n---\nb: 2\n---\n");
        assert!(problems.is_empty());
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].start.line, 2);
        assert!(docs[2].root.is_none() || docs[2].root.as_ref().unwrap().value == Value::Null);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (_, problems) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, Code::DuplicateKey);
        assert_eq!(problems[0].span.line, 3);
        assert!(problems[0].message.contains("first at line 1"));
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let (docs, problems) = parse("a: 1\n---\nb: [1, 2\nc: 3\n");
        assert_eq!(docs.len(), 1, "the good first document survives");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, Code::YamlSyntax);
        assert!(problems[0].span.line >= 3);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(1000) + &"]".repeat(1000);
        let (_, problems) = parse(&text);
        assert_eq!(problems[0].code, Code::YamlTooComplex);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            text.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
            prev = name;
        }
        let (_, problems) = parse(&text);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, Code::YamlTooComplex);
    }

    /// Found by the fuzzer (a timeout under ASan): an alias is charged
    /// before it is copied, so a bomb stops before building big trees.
    #[test]
    fn an_alias_bomb_is_refused_with_bounded_work() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'] {
            text.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
            prev = name;
        }
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(&text);
        let mut failed = false;
        while let Some(Ok((event, span))) = parser.next_event() {
            if b.on_event(event, to_span(&span)).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(b.nodes <= MAX_NODES + 100_000, "charged {} nodes", b.nodes);
    }

    #[test]
    fn small_aliases_expand() {
        let root = one("base: &b {x: 1}\ncopy: *b\n");
        assert_eq!(get(get(&root, "copy"), "x").value, Value::Int(1));
    }

    #[test]
    fn complex_keys_are_refused() {
        let (_, problems) = parse("? [a, b]\n: 1\n");
        assert_eq!(problems.len(), 1);
    }

    /// Found by the fuzzer: a list reached through an alias in key position
    /// used to hit `unreachable!`.
    #[test]
    fn aliased_collection_keys_are_refused() {
        let (_, problems) = parse(": &a []\n*a :");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, Code::YamlSyntax);
        let (_, problems) = parse("a: &a [x]\n*a : b\n");
        assert_eq!(problems[0].code, Code::YamlSyntax);
    }
}
