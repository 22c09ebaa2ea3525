//! Positioned YAML → JSON value plus an index from JSON Pointer to source
//! position, so that schema errors (which speak JSON Pointer) and semantic
//! checks (which walk typed values) can point at the exact line and column.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Number, Value as Json};

use super::yaml::{self, Node, Value};
use crate::diagnostic::Span;

/// Where each node of one document sits in its file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Positions {
    /// JSON Pointer (`/spec/rules/0/backendRefs/1/weight`) → value span.
    values: HashMap<String, Span>,
    /// JSON Pointer of a mapping entry → span of its key.
    keys: HashMap<String, Span>,
}

impl Positions {
    /// The span of the value at `pointer`, or of its nearest ancestor that
    /// exists (a missing field points at the object that lacks it).
    pub fn value(&self, pointer: &str) -> Span {
        let mut p = pointer;
        loop {
            if let Some(span) = self.values.get(p) {
                return *span;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Span::default(),
            }
        }
    }

    /// The span of the key at `pointer` (for unknown or duplicate fields),
    /// falling back to the value's span.
    pub fn key(&self, pointer: &str) -> Span {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }
}

/// Converts a document tree to JSON and indexes its positions.
pub fn to_json(root: &Node) -> (Json, Positions) {
    let mut positions = Positions::default();
    let mut pointer = String::new();
    let json = convert(root, &mut pointer, &mut Some(&mut positions));
    (json, positions)
}

/// Converts a document tree to JSON only: the fast path, when no
/// diagnostic needs a position.
pub fn to_value(root: &Node) -> Json {
    convert(root, &mut String::new(), &mut None)
}

/// Positions of the documents of one file, computed on first use by
/// re-parsing the file once for all its documents. A clean 10,000-service
/// repo never pays for them; a file with diagnostics pays one parse.
#[derive(Debug)]
pub struct FilePositions {
    text: Arc<str>,
    cell: OnceLock<Vec<Positions>>,
}

impl FilePositions {
    pub fn new(text: Arc<str>) -> Arc<Self> {
        Arc::new(FilePositions {
            text,
            cell: OnceLock::new(),
        })
    }

    fn documents(&self) -> &[Positions] {
        self.cell.get_or_init(|| {
            let (docs, _) = yaml::parse(&self.text);
            docs.iter()
                .map(|d| {
                    d.root
                        .as_ref()
                        .map(|root| to_json(root).1)
                        .unwrap_or_default()
                })
                .collect()
        })
    }
}

/// Positions of one document of a file (see [`FilePositions`]).
#[derive(Debug)]
pub struct LazyPositions {
    file: Arc<FilePositions>,
    doc: usize,
}

impl LazyPositions {
    /// Document number `doc` (counting from 0, as [`yaml::parse`] returns
    /// them) of `file`.
    pub fn new(file: Arc<FilePositions>, doc: usize) -> Self {
        LazyPositions { file, doc }
    }

    pub fn get(&self) -> &Positions {
        static EMPTY: OnceLock<Positions> = OnceLock::new();
        self.file
            .documents()
            .get(self.doc)
            .unwrap_or_else(|| EMPTY.get_or_init(Positions::default))
    }
}

impl PartialEq for LazyPositions {
    fn eq(&self, other: &Self) -> bool {
        self.doc == other.doc && self.file.text == other.file.text
    }
}

fn convert(node: &Node, pointer: &mut String, positions: &mut Option<&mut Positions>) -> Json {
    if let Some(p) = positions.as_deref_mut() {
        p.values.insert(pointer.clone(), node.span);
    }
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        // JSON has no NaN or infinity; keep them as strings so the schema
        // refuses them with a type error instead of them vanishing.
        Value::Float(f) => Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        Value::String(s) => Json::String(s.clone()),
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                if positions.is_some() {
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                }
                out.push(convert(item, pointer, positions));
                pointer.truncate(len);
            }
            Json::Array(out)
        }
        Value::Map(entries) => {
            let mut out = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let len = pointer.len();
                if let Some(p) = positions.as_deref_mut() {
                    pointer.push('/');
                    push_escaped(pointer, &key.name);
                    p.keys.insert(pointer.clone(), key.span);
                }
                out.insert(key.name.clone(), convert(value, pointer, positions));
                pointer.truncate(len);
            }
            Json::Object(out)
        }
    }
}

/// JSON Pointer escaping (RFC 6901): `~` → `~0`, `/` → `~1`.
fn push_escaped(pointer: &mut String, segment: &str) {
    for c in segment.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::yaml::parse;

    #[test]
    fn pointers_find_values_keys_and_ancestors() {
        let (docs, _) = parse("spec:\n  rules:\n    - weight: 3\n      a/b: 1\n");
        let (json, pos) = to_json(docs[0].root.as_ref().unwrap());
        assert_eq!(json["spec"]["rules"][0]["weight"], 3);
        let v = pos.value("/spec/rules/0/weight");
        assert_eq!((v.line, v.column), (3, 15));
        let k = pos.key("/spec/rules/0/weight");
        assert_eq!((k.line, k.column), (3, 7));
        assert_eq!(pos.key("/spec/rules/0/a~1b").line, 4);
        // A missing field points at the object that should hold it.
        assert_eq!(pos.value("/spec/rules/0/missing").line, 3);
    }
}
