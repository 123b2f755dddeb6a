//! A YAML document as a tree of nodes that remember where they were written,
//! so that every validation error can name a line and a column.
//!
//! The tree is built from the events of granit-parser (the parser under
//! serde-saphyr, re-exported by it) instead of going through serde: serde
//! loses the location of keys and the literal text of scalars (`1.10` would
//! come back as `1.1`), and the workflow contract needs both.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span};

use super::Limits;

// The depth bounds recursion when the tree is walked, cloned or dropped;
// the nodes and the expanded text bound the work and memory an input can
// cause, aliases included: `&a [*b, *b, ...]` chains otherwise expand
// exponentially ("billion laughs"), and one alias of a long scalar copies
// all of it.

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_marker(marker: &Marker) -> Pos {
        Pos {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }

    fn from_span(span: &Span) -> Pos {
        Pos::from_marker(&span.start)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// `plain` is false for quoted and block scalars: `"null"` and `"true"`
    /// are strings, `null` and `true` are not.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; duplicates are kept so that the walker, which knows the
/// key path, can report them.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "null",
            Value::Scalar { text, plain: true } if matches!(text.as_str(), "true" | "false") => {
                "a boolean"
            }
            Value::Scalar { text, plain: true } if text.parse::<f64>().is_ok() => "a number",
            Value::Scalar { .. } => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }

    /// Number of nodes, nesting depth and text bytes (keys included), for
    /// the budgets when an alias is copied.
    fn measure(&self) -> Measure {
        let mut m = Measure {
            nodes: 1,
            height: 0,
            bytes: 0,
        };
        let mut visit = |child: &Node, key: usize| {
            let c = child.measure();
            m.nodes = m.nodes.saturating_add(c.nodes);
            m.height = m.height.max(c.height);
            m.bytes = m.bytes.saturating_add(c.bytes).saturating_add(key);
        };
        match &self.value {
            Value::Scalar { text, .. } => m.bytes = text.len(),
            Value::Seq(items) => items.iter().for_each(|i| visit(i, 0)),
            Value::Map(entries) => entries.iter().for_each(|e| visit(&e.value, e.key.len())),
        }
        m.height += 1;
        m
    }
}

/// The size of a finished node, what copying it costs.
#[derive(Debug, Clone, Copy)]
struct Measure {
    nodes: usize,
    height: usize,
    bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadError {
    pub pos: Pos,
    pub message: String,
}

impl LoadError {
    fn new(pos: Pos, message: impl Into<String>) -> LoadError {
        LoadError {
            pos,
            message: message.into(),
        }
    }

    fn scan(error: &ScanError) -> LoadError {
        LoadError::new(
            Pos::from_marker(error.marker()),
            format!("invalid YAML: {}", error.info()),
        )
    }
}

/// Parses one YAML document within `limits`; `Ok(None)` when the input
/// holds no document at all (empty, or only comments).
pub(crate) fn load(src: &str, limits: &Limits) -> Result<Option<Node>, LoadError> {
    let options = serde_saphyr::granit_parser::options! { emit_comments: false };
    let mut builder = Builder {
        limits: *limits,
        stack: Vec::new(),
        root: None,
        documents: 0,
        nodes: 0,
        bytes: 0,
        anchors: HashMap::new(),
    };
    for event in Parser::new_from_str_with_options(src, options) {
        let (event, span) = event.map_err(|e| LoadError::scan(&e))?;
        if builder.event(event, &span)? {
            break;
        }
    }
    Ok(builder.root)
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        /// Values of `<<` keys, merged when the mapping closes.
        merges: Vec<Node>,
        /// A key waiting for its value: text, position, written plain.
        key: Option<(String, Pos, bool)>,
    },
}

struct Builder {
    /// The depth, node and text budgets.
    limits: Limits,
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    /// Nodes so far, aliases expanded.
    nodes: usize,
    /// Bytes of keys and scalars so far, aliases expanded.
    bytes: usize,
    /// Finished anchored nodes with their size.
    anchors: HashMap<usize, (Node, Measure)>,
}

impl Builder {
    /// Feeds one event; `Ok(true)` at the end of the stream.
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<bool, LoadError> {
        let pos = Pos::from_span(span);
        match event {
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(LoadError::new(
                        pos,
                        "expected a single YAML document, found several",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                self.count(pos, 1, text.len())?;
                let node = Node {
                    pos,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor != 0 {
                    let size = node.measure();
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push(node)?;
            }
            Event::SequenceStart(_, anchor, _tag) => {
                self.open(pos)?;
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, _tag) => {
                self.open(pos)?;
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(pos)?,
            Event::Alias(id) => {
                let Some(&(_, size)) = self.anchors.get(&id) else {
                    // The parser resolves names; an id without a finished
                    // node is an alias inside its own anchor.
                    return Err(LoadError::new(pos, "recursive alias"));
                };
                if self.stack.len() + size.height > self.limits.max_depth {
                    return Err(self.too_deep(pos));
                }
                // Budget first, copy second.
                self.count(pos, size.nodes, size.bytes)?;
                if let Some((node, ..)) = self.anchors.get(&id) {
                    let node = node.clone();
                    self.push(node)?;
                }
            }
            // Stream start, document end, comments and anchor metadata carry
            // nothing the tree needs.
            _ => {}
        }
        Ok(false)
    }

    fn count(&mut self, pos: Pos, nodes: usize, bytes: usize) -> Result<(), LoadError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        let max_nodes = self.limits.max_nodes;
        if self.nodes > max_nodes {
            return Err(LoadError::new(
                pos,
                format!("document too large (more than {max_nodes} nodes, aliases expanded)"),
            ));
        }
        let max_bytes = self.limits.max_expanded_bytes();
        if self.bytes > max_bytes {
            return Err(LoadError::new(
                pos,
                format!(
                    "document too large (more than {max_bytes} bytes of text, aliases expanded)"
                ),
            ));
        }
        Ok(())
    }

    fn too_deep(&self, pos: Pos) -> LoadError {
        LoadError::new(
            pos,
            format!(
                "nesting too deep (more than {} levels)",
                self.limits.max_depth
            ),
        )
    }

    fn open(&mut self, pos: Pos) -> Result<(), LoadError> {
        self.count(pos, 1, 0)?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.too_deep(pos));
        }
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(LoadError::new(pos, "mapping keys must be strings"));
        }
        Ok(())
    }

    fn close(&mut self, end: Pos) -> Result<(), LoadError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq { pos, anchor, items }) => (
                Node {
                    pos,
                    value: Value::Seq(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                pos,
                anchor,
                entries,
                merges,
                ..
            }) => (
                Node {
                    pos,
                    value: Value::Map(merge(entries, merges)?),
                },
                anchor,
            ),
            None => {
                return Err(LoadError::new(
                    end,
                    "invalid YAML: unexpected end of collection",
                ));
            }
        };
        if anchor != 0 {
            let size = node.measure();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.push(node)
    }

    fn push(&mut self, node: Node) -> Result<(), LoadError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                Some((key, _, true)) if key == "<<" => merges.push(node),
                Some((key, key_pos, _)) => entries.push(Entry {
                    key,
                    key_pos,
                    value: node,
                }),
                None => match node.value {
                    Value::Scalar { text, plain } => *key = Some((text, node.pos, plain)),
                    _ => return Err(LoadError::new(node.pos, "mapping keys must be strings")),
                },
            },
        }
        Ok(())
    }
}

/// Applies YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`): explicit keys
/// win, then earlier merged mappings over later ones.
fn merge(mut entries: Vec<Entry>, merges: Vec<Node>) -> Result<Vec<Entry>, LoadError> {
    for source in merges {
        let mappings = match source.value {
            Value::Map(merged) => vec![merged],
            Value::Seq(items) => items
                .into_iter()
                .map(|item| match item.value {
                    Value::Map(merged) => Ok(merged),
                    _ => Err(LoadError::new(
                        item.pos,
                        "a merge key (<<) takes a mapping or a list of mappings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Value::Scalar { .. } => {
                return Err(LoadError::new(
                    source.pos,
                    "a merge key (<<) takes a mapping or a list of mappings",
                ));
            }
        };
        for entry in mappings.into_iter().flatten() {
            if !entries.iter().any(|e| e.key == entry.key) {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<(&str, Pos)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|e| (e.key.as_str(), e.key_pos))
                .collect(),
            _ => panic!("not a mapping: {node:?}"),
        }
    }

    fn load(src: &str) -> Result<Option<Node>, LoadError> {
        super::load(src, &Limits::default())
    }

    #[test]
    fn positions_are_one_based() {
        let root = load("a: 1\nbb:\n  - x\n").unwrap().unwrap();
        assert_eq!(root.pos, Pos { line: 1, column: 1 });
        assert_eq!(
            map_keys(&root),
            [
                ("a", Pos { line: 1, column: 1 }),
                ("bb", Pos { line: 2, column: 1 })
            ]
        );
        let Value::Map(entries) = &root.value else {
            unreachable!()
        };
        assert_eq!(entries[0].value.pos, Pos { line: 1, column: 4 });
        let Value::Seq(items) = &entries[1].value.value else {
            unreachable!()
        };
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let root = load("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
            .unwrap()
            .unwrap();
        let Value::Map(entries) = &root.value else {
            unreachable!()
        };
        let keys: Vec<_> = map_keys(&entries[1].value)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["y", "x"]);
    }

    #[test]
    fn empty_input_has_no_document() {
        assert!(load("").unwrap().is_none());
        assert!(load("# only a comment\n").unwrap().is_none());
    }

    #[test]
    fn hostile_inputs_are_bounded() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(
            load(&deep).unwrap_err().message,
            "nesting too deep (more than 64 levels)"
        );

        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            laughs += &format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", "));
        }
        let err = load(&laughs).unwrap_err();
        assert!(err.message.starts_with("document too large"), "{err:?}");

        // One long scalar copied by many aliases: few nodes, much text.
        let long = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(64 * 1024),
            vec!["*a"; 100].join(", ")
        );
        let err = load(&long).unwrap_err();
        assert!(
            err.message
                .starts_with("document too large (more than 4194304 bytes of text"),
            "{err:?}"
        );
        // The original and 62 copies fit, the 63rd copy does not.
        assert_eq!(
            err.pos,
            Pos {
                line: 2,
                column: 5 + 4 * 62
            }
        );

        assert_eq!(load("a: &a [*a]\n").unwrap_err().message, "recursive alias");
        assert_eq!(
            load("? [a]\n: b\n").unwrap_err().message,
            "mapping keys must be strings"
        );
        assert_eq!(
            load("a: 1\n---\nb: 2\n").unwrap_err().pos,
            Pos { line: 2, column: 1 }
        );
    }
}
