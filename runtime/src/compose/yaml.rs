//! YAML read into a tree whose every node knows its line, so that a key outside the supported
//! subset can be refused with the line it is on (yaml-rust2's event parser gives the marks).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::ComposeError;

/// The largest compose file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The deepest nesting accepted (a compose file needs about 6).
const MAX_DEPTH: usize = 32;

/// One YAML node and the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Line in the file.
    pub line: usize,
    /// What it is.
    pub value: Value,
}

/// A node's content.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar as written (`plain`: unquoted, so `null`/`~`/empty mean null).
    Scalar {
        /// The text.
        text: String,
        /// Unquoted.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: keys in file order with the line of each key.
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    /// Whether this is a null scalar (`~`, `null`, or nothing after the colon).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text, or `None` for a collection.
    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Parses one YAML document.
///
/// # Errors
/// [`ComposeError::Yaml`] with the line of the syntax error; aliases to unknown anchors,
/// duplicate keys, non-scalar keys, nesting deeper than 32 and multiple documents.
pub fn parse(text: &str) -> Result<Node, ComposeError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, true).map_err(|e| ComposeError::Yaml {
        line: e.marker().line(),
        message: e.info().to_owned(),
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    match b.docs.len() {
        0 => Err(ComposeError::Yaml {
            line: 1,
            message: "the file is empty".into(),
        }),
        1 => Ok(b.docs.remove(0)),
        _ => Err(ComposeError::Yaml {
            line: 1,
            message: "only one YAML document is supported".into(),
        }),
    }
}

enum Open {
    Seq(usize, usize, Vec<Node>),
    /// Anchor, line, entries, a key waiting for its value.
    Map(
        usize,
        usize,
        Vec<(String, usize, Node)>,
        Option<(String, usize)>,
    ),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<ComposeError>,
}

impl Builder {
    fn fail(&mut self, line: usize, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(ComposeError::Yaml {
                line,
                message: message.into(),
            });
        }
    }

    /// A finished node goes into its parent (or becomes a document).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, pending)) => match pending.take() {
                Some((key, line)) => {
                    if entries.iter().any(|(k, _, _)| *k == key) {
                        let msg = format!("key {key:?} appears twice");
                        self.fail(line, msg);
                    } else {
                        entries.push((key, line, node));
                    }
                }
                None => match node.value {
                    Value::Scalar { text, .. } => *pending = Some((text, node.line)),
                    _ => self.fail(node.line, "mapping keys must be plain strings"),
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _) => self.push(
                Node {
                    line,
                    value: Value::Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                    },
                },
                anchor,
            ),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _)
                if self.stack.len() >= MAX_DEPTH =>
            {
                let _ = anchor;
                self.fail(line, format!("nesting deeper than {MAX_DEPTH} levels"));
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(anchor, line, vec![])),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(anchor, line, vec![], None));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(anchor, l, items)) => self.push(
                    Node {
                        line: l,
                        value: Value::Seq(items),
                    },
                    anchor,
                ),
                Some(Open::Map(anchor, l, entries, _)) => self.push(
                    Node {
                        line: l,
                        value: Value::Map(entries),
                    },
                    anchor,
                ),
                None => self.fail(line, "unbalanced collection end"),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push(node, 0),
                None => self.fail(line, "alias to an unknown anchor"),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_lines_and_aliases_expand() {
        let n = parse("a: &x\n  b: 1\nc: *x\nd: ~\n").unwrap();
        let Value::Map(m) = &n.value else { panic!() };
        assert_eq!(
            m.iter()
                .map(|(k, l, _)| (k.as_str(), *l))
                .collect::<Vec<_>>(),
            [("a", 1), ("c", 3), ("d", 4)]
        );
        assert_eq!(m[1].2.value, m[0].2.value);
        assert!(m[2].2.is_null());
    }

    #[test]
    fn syntax_errors_duplicates_and_empty_files_name_a_line() {
        for (text, line, needle) in [
            ("a: 1\na: 2\n", 2, "twice"),
            ("a:\n  - [\n", 3, ""),
            ("", 1, "empty"),
            ("? [a]\n: 1\n", 1, "plain strings"),
        ] {
            match parse(text).unwrap_err() {
                ComposeError::Yaml { line: l, message } => {
                    assert_eq!(l, line, "{text:?}: {message}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{other}"),
            }
        }
    }
}
