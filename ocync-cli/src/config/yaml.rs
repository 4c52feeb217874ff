//! The YAML document as a tree of nodes with positions, built from yaml-rust2 parser events, and
//! the index from key paths (`mappings[2].source`, `registries.src.url`) to positions that
//! semantic errors are reported at.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::env::Lines;

/// Deeper nesting than this is refused (no configuration needs it; it guards the stack).
const MAX_DEPTH: usize = 64;

/// A node of the document.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Byte offset in the (expanded) text: the first character of a scalar (its quote, for a
    /// quoted one; its first content line, for a block scalar), the `-` or `[` of a sequence,
    /// the first key of a mapping (the `{` of an empty flow mapping).
    pub(crate) start: usize,
    /// Anchor id (`&name`), 0 for none.
    pub(crate) anchor: usize,
    /// What the node is.
    pub(crate) kind: Kind,
}

/// Node kinds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar with its parsed value.
    Scalar {
        /// The value, after unquoting and folding.
        value: String,
        /// How it was written.
        style: TScalarStyle,
        /// Inside a flow collection (`{…}`, `[…]`).
        flow: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: keys and values in document order (duplicates kept).
    Map(Vec<(Node, Node)>),
    /// `*name`: the anchor id it refers to.
    Alias(usize),
}

impl Node {
    /// The scalar value, if this is a scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// A syntax error, at a byte offset of the text.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    /// Byte offset in the parsed text.
    pub(crate) offset: usize,
    /// What the parser said.
    pub(crate) message: String,
}

/// Parse the first document of `text`; `None` for an empty document.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let lines = Lines::new(text);
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        lines: &lines,
        text,
    };
    loop {
        let (event, mark) = builder.next()?;
        match event {
            Event::StreamStart | Event::DocumentStart | Event::Nothing => {}
            Event::StreamEnd | Event::DocumentEnd => return Ok(None),
            event => return builder.node(event, mark, false, 0).map(Some),
        }
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    lines: &'a Lines<'a>,
    text: &'a str,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser.next_token().map_err(|e| SyntaxError {
            offset: self.offset(*e.marker()),
            message: e.info().to_owned(),
        })
    }

    fn offset(&self, mark: Marker) -> usize {
        self.lines.offset(mark.line(), mark.col())
    }

    fn node(
        &mut self,
        event: Event,
        mark: Marker,
        flow: bool,
        depth: usize,
    ) -> Result<Node, SyntaxError> {
        let start = self.offset(mark);
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                offset: start,
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        let opens = |c: u8| self.text.as_bytes().get(start) == Some(&c);
        match event {
            Event::Scalar(value, style, anchor, _) => Ok(Node {
                start,
                anchor,
                kind: Kind::Scalar { value, style, flow },
            }),
            Event::Alias(id) => Ok(Node {
                start,
                anchor: 0,
                kind: Kind::Alias(id),
            }),
            Event::SequenceStart(anchor, _) => {
                let flow = flow || opens(b'[');
                let mut items = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, mark, flow, depth + 1)?);
                }
                Ok(Node {
                    start,
                    anchor,
                    kind: Kind::Seq(items),
                })
            }
            Event::MappingStart(anchor, _) => {
                let flow = flow || opens(b'{');
                let mut entries = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(event, mark, flow, depth + 1)?;
                    let (event, mark) = self.next()?;
                    let value = self.node(event, mark, flow, depth + 1)?;
                    entries.push((key, value));
                }
                // A block mapping's event is marked after its first key; the key is where the
                // mapping starts for a reader.
                let start = match entries.first() {
                    Some((key, _)) if !flow || key.start < start => key.start,
                    _ => start,
                };
                Ok(Node {
                    start,
                    anchor,
                    kind: Kind::Map(entries),
                })
            }
            other => Err(SyntaxError {
                offset: start,
                message: format!("unexpected {other:?}"),
            }),
        }
    }
}

/// Key path → byte offset of the key (for a mapping entry) or of the item (for a sequence
/// item), for every key and sequence item of the document.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    entries: HashMap<String, usize>,
}

impl Index {
    /// Index a document (an empty index for none).
    pub(crate) fn build(root: Option<&Node>) -> Index {
        let mut index = Index::default();
        if let Some(root) = root {
            index.add(root, "");
        }
        index
    }

    fn add(&mut self, node: &Node, path: &str) {
        match &node.kind {
            Kind::Map(entries) => {
                for (key, value) in entries {
                    let Some(name) = key.as_str() else { continue };
                    let child = join(path, name);
                    self.entries.entry(child.clone()).or_insert(key.start);
                    self.add(value, &child);
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.entries.insert(child.clone(), item.start);
                    self.add(item, &child);
                }
            }
            Kind::Scalar { .. } | Kind::Alias(_) => {}
        }
    }

    /// The position of `path`, or of its nearest ancestor that exists (an error about a
    /// missing key is reported where the key should be).
    pub(crate) fn locate(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(&offset) = self.entries.get(path) {
                return Some(offset);
            }
            path = parent(path)?;
        }
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path one level up (`a.b[2]` → `a.b` → `a` → none).
fn parent(path: &str) -> Option<&str> {
    if path.ends_with(']') {
        return path.rfind('[').map(|i| &path[..i]);
    }
    path.rfind('.').map(|i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
registries:
  src: { url: cgr.dev }
  ecr:
    url: \"example.com\"
mappings:
  - from: a
    source: dockerhub
  - from: b
    targets: [ecr, 'src']
";

    fn at(index: &Index, path: &str) -> (usize, usize) {
        Lines::new(DOC).line_col(index.locate(path).unwrap())
    }

    #[test]
    fn key_paths_point_at_keys_and_items() {
        let root = parse(DOC).unwrap();
        let index = Index::build(root.as_ref());
        assert_eq!(at(&index, "registries"), (2, 1));
        assert_eq!(at(&index, "registries.src"), (3, 3));
        assert_eq!(at(&index, "registries.src.url"), (3, 10));
        assert_eq!(at(&index, "registries.ecr.url"), (5, 5));
        assert_eq!(at(&index, "mappings[0]"), (7, 5));
        assert_eq!(at(&index, "mappings[0].source"), (8, 5));
        assert_eq!(at(&index, "mappings[1].targets[1]"), (10, 20));
        // Missing keys are reported at the nearest ancestor.
        assert_eq!(at(&index, "mappings[1].tags.latest"), (9, 5));
        assert_eq!(index.locate("nothing"), None);
    }

    #[test]
    fn scalars_know_their_style_and_context() {
        let root = parse(DOC).unwrap().unwrap();
        let Kind::Map(top) = &root.kind else { panic!() };
        let Kind::Map(regs) = &top[0].1.kind else {
            panic!()
        };
        let Kind::Map(src) = &regs[0].1.kind else {
            panic!()
        };
        let Kind::Scalar { value, flow, .. } = &src[0].1.kind else {
            panic!()
        };
        assert_eq!((value.as_str(), *flow), ("cgr.dev", true));
    }

    #[test]
    fn syntax_errors_and_empty_documents() {
        let err = parse("a: 1\n  b: [\n").unwrap_err();
        assert_eq!(Lines::new("a: 1\n  b: [\n").line_col(err.offset).0, 2);
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
    }
}
