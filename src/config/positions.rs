//! Where each key and value of a YAML document sits, so that errors found after parsing can
//! point at a line and column.
//!
//! serde_yaml only knows positions while it parses; once the text is a `Value` they are gone.
//! We read the text a second time with yaml-rust2's event parser, which reports a mark with
//! every event, and remember the mark of every mapping key and every node under its path.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TextPosition {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub column: usize,
}

impl fmt::Display for TextPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl TextPosition {
    fn from_marker(mark: Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        TextPosition {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// One step from a node to a child: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root, e.g. `jails` → `sshd` → `sources` → `0` → `file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(Vec<Segment>);

impl YamlPath {
    /// The document root.
    pub fn root() -> Self {
        YamlPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        YamlPath(segments)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        YamlPath(segments)
    }

    /// The path one step up, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(YamlPath(rest.to_vec()))
    }

    /// The steps of this path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path written for people relative to its first `skip` steps: `sources[0].file`.
    pub fn display_from(&self, skip: usize) -> String {
        let mut out = String::new();
        for segment in self.0.iter().skip(skip) {
            match segment {
                // Collections used as keys have no name worth showing.
                Segment::Key(key) if key == COMPLEX_KEY => {}
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
            }
        }
        out
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_from(0))
    }
}

/// A YAML syntax error as yaml-rust2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub position: TextPosition,
    /// The parser's explanation.
    pub message: String,
}

/// The positions of every key and node of one YAML document.
#[derive(Debug, Default)]
pub struct PositionIndex {
    keys: HashMap<YamlPath, TextPosition>,
    values: HashMap<YamlPath, TextPosition>,
    duplicates: Vec<DuplicateKey>,
    /// Where an alias (`*name`) stands → the node its anchor (`&name`) marks, so that a value
    /// reached through an alias or a `<<` merge is found where it is actually written.
    aliases: HashMap<YamlPath, YamlPath>,
}

/// A key given twice in one mapping: YAML forbids it, and serde_yaml's own report of it points
/// at the mapping rather than at the repeated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The path the key names.
    pub path: YamlPath,
    /// The repetition.
    pub position: TextPosition,
    /// The first occurrence.
    pub first: TextPosition,
}

impl PositionIndex {
    /// Indexes `text`; only the first document of a multi-document stream is indexed, like
    /// serde_yaml reads only one.
    pub fn build(text: &str) -> Result<Self, SyntaxError> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser
            .load(&mut builder, false)
            .map_err(|error| SyntaxError {
                position: TextPosition::from_marker(*error.marker()),
                message: error.info().to_string(),
            })?;
        Ok(builder.index)
    }

    /// Keys given more than once in the same mapping, in text order.
    pub fn duplicates(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    /// Where the key that names `path` is written, falling back to its value, then to the same
    /// path through aliases and merge keys, then to the nearest ancestor known.
    pub fn key_position(&self, path: &YamlPath) -> Option<TextPosition> {
        self.find(path, &self.keys, &self.values, 0)
    }

    /// Where the value at `path` starts, falling back like [`PositionIndex::key_position`].
    pub fn value_position(&self, path: &YamlPath) -> Option<TextPosition> {
        self.find(path, &self.values, &self.keys, 0)
    }

    fn find(
        &self,
        path: &YamlPath,
        first: &HashMap<YamlPath, TextPosition>,
        second: &HashMap<YamlPath, TextPosition>,
        depth: usize,
    ) -> Option<TextPosition> {
        let direct = |p: &YamlPath| first.get(p).or_else(|| second.get(p)).copied();
        if let Some(position) = direct(path) {
            return Some(position);
        }
        // An alias can point at an ancestor of itself; a few hops cover real files.
        if depth < 8 {
            for aliased in self.through_aliases(path) {
                if direct(&aliased).is_some() {
                    return self.find(&aliased, first, second, depth + 1);
                }
            }
        }
        self.find(&path.parent()?, first, second, depth)
    }

    /// The paths `path` can stand for when one of its ancestors is an alias, or a mapping
    /// that merges others with `<<`.
    fn through_aliases(&self, path: &YamlPath) -> Vec<YamlPath> {
        let mut candidates = Vec::new();
        for split in (0..path.0.len()).rev() {
            let prefix = YamlPath(path.0[..split].to_vec());
            let rest = &path.0[split..];
            let mut sources: Vec<&YamlPath> = self.aliases.get(&prefix).into_iter().collect();
            let merge = prefix.key(MERGE_KEY);
            sources.extend(self.aliases.get(&merge));
            sources.extend((0..).map_while(|i| self.aliases.get(&merge.index(i))));
            for target in sources {
                let mut segments = target.0.clone();
                segments.extend_from_slice(rest);
                candidates.push(YamlPath(segments));
            }
        }
        candidates
    }
}

/// What the builder expects next inside an open collection.
#[derive(Debug)]
enum Frame {
    Mapping {
        path: YamlPath,
        /// The key just read, waiting for its value; `None` while a key is expected.
        pending_key: Option<String>,
    },
    Sequence {
        path: YamlPath,
        next_index: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    index: PositionIndex,
    stack: Vec<Frame>,
    /// Set once the first document is complete; later documents are ignored.
    done: bool,
    /// The path of each anchored node, by the anchor id yaml-rust2 gives it.
    anchors: HashMap<usize, YamlPath>,
}

/// Stands for a key that is itself a collection (`? [a, b]`); such keys never name a setting,
/// and errors about them are placed with `path.key(COMPLEX_KEY)`.
pub const COMPLEX_KEY: &str = "<complex key>";
/// The YAML merge key, whose aliased mappings lend their keys to the mapping holding it.
const MERGE_KEY: &str = "<<";
/// Stands for the second occurrence of a key.
const DUPLICATE_KEY: &str = "<duplicate key>";

impl Builder {
    /// yaml-rust2 numbers anchors from 1; 0 means the node has none.
    fn remember_anchor(&mut self, anchor: usize, path: &YamlPath) {
        if anchor != 0 {
            self.anchors.insert(anchor, path.clone());
        }
    }

    /// Decides the path of the node starting now, recording key positions on the way.
    /// Returns `None` when the node is a mapping key (its position is already recorded).
    fn place_node(&mut self, scalar: Option<&str>, position: TextPosition) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => Some(YamlPath::root()),
            Some(Frame::Sequence { path, next_index }) => {
                let child = path.index(*next_index);
                *next_index += 1;
                Some(child)
            }
            Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                Some(key) => Some(path.key(&key)),
                None => {
                    let mut key = scalar.unwrap_or(COMPLEX_KEY).to_string();
                    let key_path = path.key(&key);
                    match self.index.keys.get(&key_path) {
                        Some(first) if scalar.is_some() => {
                            self.index.duplicates.push(DuplicateKey {
                                path: key_path,
                                position,
                                first: *first,
                            });
                            // Index the repeated value apart, so it cannot be mistaken for
                            // the first one's.
                            key = DUPLICATE_KEY.to_string();
                        }
                        _ => {
                            self.index.keys.insert(key_path, position);
                        }
                    }
                    // yaml-rust2 marks a block mapping at the `:` of its first key; the
                    // mapping is better shown where that key starts.
                    if let Some(start) = self.index.values.get_mut(path)
                        && position < *start
                    {
                        *start = position;
                    }
                    *pending_key = Some(key);
                    if scalar.is_some() {
                        None
                    } else {
                        // A collection used as a key: index its insides under a name no
                        // setting has, then expect its value.
                        Some(path.key(COMPLEX_KEY).key(COMPLEX_KEY))
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        let position = TextPosition::from_marker(mark);
        match event {
            Event::Scalar(text, _, anchor, _) => {
                if let Some(path) = self.place_node(Some(&text), position) {
                    self.remember_anchor(anchor, &path);
                    self.index.values.insert(path, position);
                }
            }
            Event::Alias(anchor) => {
                if let Some(path) = self.place_node(Some(COMPLEX_KEY), position) {
                    if let Some(target) = self.anchors.get(&anchor) {
                        self.index.aliases.insert(path.clone(), target.clone());
                    }
                    self.index.values.insert(path, position);
                }
            }
            Event::MappingStart(anchor, _) => {
                if let Some(path) = self.place_node(None, position) {
                    self.remember_anchor(anchor, &path);
                    self.index.values.insert(path.clone(), position);
                    self.stack.push(Frame::Mapping {
                        path,
                        pending_key: None,
                    });
                }
            }
            Event::SequenceStart(anchor, _) => {
                if let Some(path) = self.place_node(None, position) {
                    self.remember_anchor(anchor, &path);
                    self.index.values.insert(path.clone(), position);
                    self.stack.push(Frame::Sequence {
                        path,
                        next_index: 0,
                    });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(steps: &[&str]) -> YamlPath {
        let mut path = YamlPath::root();
        for step in steps {
            path = match step.parse::<usize>() {
                Ok(index) => path.index(index),
                Err(_) => path.key(step),
            };
        }
        path
    }

    fn at(line: usize, column: usize) -> Option<TextPosition> {
        Some(TextPosition { line, column })
    }

    const SAMPLE: &str = "\
jails:
  sshd:
    maxretry: -1
    sources:
      - file: /var/log/auth.log
        optional: true
      - journal: {unit: ssh.service}
    ignoreip: [10.0.0.0/8, \"::1\"]
";

    #[test]
    fn records_keys_and_values_of_block_mappings() {
        let index = PositionIndex::build(SAMPLE).unwrap();
        assert_eq!(index.key_position(&path(&["jails"])), at(1, 1));
        assert_eq!(index.key_position(&path(&["jails", "sshd"])), at(2, 3));
        assert_eq!(
            index.key_position(&path(&["jails", "sshd", "maxretry"])),
            at(3, 5)
        );
        assert_eq!(
            index.value_position(&path(&["jails", "sshd", "maxretry"])),
            at(3, 15)
        );
    }

    #[test]
    fn records_sequence_items_and_flow_collections() {
        let index = PositionIndex::build(SAMPLE).unwrap();
        let sources = path(&["jails", "sshd", "sources"]);
        assert_eq!(index.value_position(&sources.index(0)), at(5, 9));
        assert_eq!(index.value_position(&path(&["jails", "sshd"])), at(3, 5));
        assert_eq!(
            index.value_position(&sources.index(0).key("file")),
            at(5, 15)
        );
        assert_eq!(
            index.key_position(&sources.index(0).key("optional")),
            at(6, 9)
        );
        assert_eq!(
            index.key_position(&sources.index(1).key("journal")),
            at(7, 9)
        );
        assert_eq!(
            index.value_position(&sources.index(1).key("journal").key("unit")),
            at(7, 25)
        );
        let ignoreip = path(&["jails", "sshd", "ignoreip"]);
        assert_eq!(index.value_position(&ignoreip.index(0)), at(8, 16));
        assert_eq!(index.value_position(&ignoreip.index(1)), at(8, 28));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let index = PositionIndex::build(SAMPLE).unwrap();
        let missing = path(&["jails", "sshd", "filter"]);
        assert_eq!(index.key_position(&missing), at(2, 3));
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let error = PositionIndex::build("jails:\n  sshd: [1, 2\n  other: 3\n").unwrap_err();
        assert!(error.position.line >= 2, "{error:?}");
        assert!(!error.message.is_empty());
    }

    #[test]
    fn values_reached_through_aliases_and_merges_point_at_the_anchor() {
        let text = "\
x-nets: &nets [10.0.0.0/8, bad]
x-strict: &strict
  maxretry: 0
jails:
  one:
    <<: *strict
    ignoreip: *nets
  two:
    <<: [*strict]
";
        let index = PositionIndex::build(text).unwrap();
        assert_eq!(
            index.value_position(&path(&["jails", "one", "maxretry"])),
            at(3, 13)
        );
        assert_eq!(
            index.key_position(&path(&["jails", "one", "maxretry"])),
            at(3, 3)
        );
        assert_eq!(
            index.value_position(&path(&["jails", "one", "ignoreip", "1"])),
            at(1, 28)
        );
        assert_eq!(
            index.value_position(&path(&["jails", "two", "maxretry"])),
            at(3, 13)
        );
        // Not in the anchor either: the nearest ancestor.
        assert_eq!(
            index.key_position(&path(&["jails", "two", "bantime"])),
            at(8, 3)
        );
    }

    #[test]
    fn finds_repeated_keys() {
        let index = PositionIndex::build("a:\n  x: 1\n  y: 2\n  x: 3\nb: {x: 1}\n").unwrap();
        assert_eq!(
            index.duplicates(),
            [DuplicateKey {
                path: path(&["a", "x"]),
                position: TextPosition { line: 4, column: 3 },
                first: TextPosition { line: 2, column: 3 },
            }]
        );
    }

    #[test]
    fn formats_paths_for_people() {
        let p = path(&["jails", "sshd", "sources", "0", "file"]);
        assert_eq!(p.to_string(), "jails.sshd.sources[0].file");
        assert_eq!(p.display_from(2), "sources[0].file");
        assert_eq!(path(&["jails"]).key(COMPLEX_KEY).to_string(), "jails");
    }
}
