//! Filters: decide whether a log line is a failure, and of which host.
//!
//! A raw line first loses its envelope ([`envelope`]: Docker json-file, CRI, syslog prefix) so
//! that a built-in filter sees the same message whether it came from a host syslog file or bare
//! from a container's stderr. The filter then runs its `failregex` set (Fail2Ban tags such as
//! `<HOST>` expanded by [`pattern`]) and its `ignoreregex` list.

pub mod builtin;
pub mod date;
pub mod envelope;
pub mod fail2ban;
pub mod matcher;
pub mod pattern;
pub mod session;

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::address::{self, NotAClient};

use date::DatePattern;
use envelope::Record;
use pattern::{
    ALT_USER_GROUP, CONTENT_GROUP, HOST_GROUP, ID_GROUP, MLFFORGET_GROUP, MLFGAINED_GROUP,
    MLFID_GROUP, NOFAIL_GROUP, OTHER_FAMILY_HOST_GROUP, SKIPLINES_GROUP, USER_GROUP,
};
use session::{Merged, Seen, SessionKey, Sessions};

/// A filter as written in YAML: the `filters:` section of the config, a filter file given to
/// `logjail regex`, or one of the built-in filters compiled into the binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// One line for `logjail filters`.
    #[serde(default)]
    pub description: Option<String>,
    /// When the syslog envelope names the program (`sshd[123]:`), the line is only considered
    /// if the program matches this regex (whole-name match). Lines without a program tag
    /// (bare container output) are always considered.
    #[serde(default)]
    pub program: Option<String>,
    /// Optional prefix every failure line must match; its `<F-CONTENT>` part is what the
    /// failregexes see.
    #[serde(default)]
    pub prefregex: Option<String>,
    /// Patterns of failures; each must capture a host with `<HOST>`, `<ADDR>`, `<IP4>` or `<IP6>`.
    #[serde(default)]
    pub failregex: Vec<String>,
    /// Lines matching any of these are never failures.
    #[serde(default)]
    pub ignoreregex: Vec<String>,
    /// strftime-style format of the timestamp in the message, when the automatic detection
    /// does not find it.
    #[serde(default)]
    pub datepattern: Option<String>,
    /// Set by the reader of Fail2Ban filter files, never in YAML: such a filter is written
    /// against the whole line with its date cut out (the text around it, brackets and blanks
    /// included, stays), not against the bare message. Syslog lines keep going by their
    /// message: the reader has adapted `__prefix_line` to it.
    #[serde(skip)]
    pub cut_date: Option<CutDate>,
    /// Also set by that reader: the same filter for whole lines that still carry their
    /// syslog host and tag, which Fail2Ban's `__prefix_line` reads itself.
    #[serde(skip)]
    pub line_variant: Option<Box<FilterSpec>>,
    /// Also set by that reader: Fail2Ban's `maxlines`, when above 1. The failregexes then run
    /// (`^` and `$` at each line) on the source's last `maxlines` lines joined with `\n`,
    /// and the lines a failure matched leave that buffer.
    #[serde(skip)]
    pub maxlines: Option<usize>,
}

/// How a Fail2Ban filter finds the date it cuts out of a line: its `datepattern` lines, tried
/// in order (none: Fail2Ban's default detection, anywhere in the line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutDate {
    pub patterns: Vec<String>,
}

/// One failure found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The offending address (IPv4-mapped IPv6 addresses are reported as IPv4).
    pub host: IpAddr,
    /// The time the line carries (envelope or message); `None` when it carries none.
    pub time: Option<DateTime<Utc>>,
    /// `<F-USER>` capture, when the pattern has one.
    pub user: Option<String>,
    /// `<F-ID>` capture, when the pattern has one.
    pub id: Option<String>,
    /// Index of the failregex that matched, for per-regex hit counts.
    pub failregex_index: usize,
}

/// Which part of a filter an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    Program,
    Prefregex,
    Failregex(usize),
    Ignoreregex(usize),
    Datepattern,
}

impl fmt::Display for FilterField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterField::Program => f.write_str("program"),
            FilterField::Prefregex => f.write_str("prefregex"),
            FilterField::Failregex(i) => write!(f, "failregex[{i}]"),
            FilterField::Ignoreregex(i) => write!(f, "ignoreregex[{i}]"),
            FilterField::Datepattern => f.write_str("datepattern"),
        }
    }
}

/// A filter that cannot be compiled, naming the filter and the pattern at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub filter: String,
    /// `None` when the error is about the filter as a whole (no failregex at all).
    pub field: Option<FilterField>,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "filter \"{}\": {field}: {}", self.filter, self.message),
            None => write!(f, "filter \"{}\": {}", self.filter, self.message),
        }
    }
}

impl std::error::Error for FilterError {}

/// A filter file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FilterFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
}

impl FilterSpec {
    /// Reads a filter from its own YAML file (as `logjail regex LOG ./myfilter.yaml` does).
    pub fn from_yaml_file(path: &Path) -> Result<FilterSpec, FilterFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FilterFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| FilterFileError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A compiled pattern: the `regex` crate when it can, `fancy-regex` for lookaround and
/// backreferences (slower, backtracking, and so reported by `logjail check`).
#[derive(Debug, Clone)]
// A filter holds a handful of matchers, built once: their size does not matter, and boxing
// the fast one would add a pointer chase to every line.
#[allow(clippy::large_enum_variant)]
enum Matcher {
    Fast(FastMatcher),
    Fancy(Box<fancy_regex::Regex>),
}

/// A `regex` crate pattern with the positions of the groups the engine reads.
#[derive(Debug, Clone)]
struct FastMatcher {
    regex: regex::Regex,
    groups: GroupIndex,
    /// The same pattern without Unicode classes, for captures on pure-ASCII text (nearly every
    /// log line). Resolving groups is the engine's costliest step, and its cost grows with the
    /// size of the automaton: Unicode `\w`, `\d`, `\S` and `.` make it about twice as large.
    /// On ASCII text both compile to the same matches; see [`ascii_twin`] for when one exists.
    ascii: Option<regex::bytes::Regex>,
}

/// Compiles `expanded` without Unicode, when that is certain to match ASCII text exactly as the
/// Unicode pattern does. On ASCII text the Unicode meaning of `\w`, `\d`, `\s`, `\b` and `.`
/// agrees with the ASCII one, and so does case folding of ASCII letters. What could differ is a
/// non-ASCII character in the pattern itself (`(?i)\u{17F}` matches `s`), so patterns with
/// non-ASCII text or with escapes that can name one (`\x`, `\u`, `\U`, `\p`, `\P`) get no twin.
fn ascii_twin(expanded: &str, groups: GroupIndex) -> Option<regex::bytes::Regex> {
    let names_a_character = ["\\x", "\\u", "\\U", "\\p", "\\P"]
        .iter()
        .any(|escape| expanded.contains(escape));
    if !expanded.is_ascii() || names_a_character {
        return None;
    }
    let twin = regex::bytes::RegexBuilder::new(expanded)
        .unicode(false)
        .build()
        .ok()?;
    let position = |wanted: &str| twin.capture_names().position(|name| name == Some(wanted));
    let twin_groups = GroupIndex {
        host: position(HOST_GROUP),
        other_host: position(OTHER_FAMILY_HOST_GROUP),
        user: position(USER_GROUP),
        id: position(ID_GROUP),
        content: position(CONTENT_GROUP),
        nofail: position(NOFAIL_GROUP),
        alt_user: position(ALT_USER_GROUP),
        mlfid: position(MLFID_GROUP),
        forget: position(MLFFORGET_GROUP),
        gained: position(MLFGAINED_GROUP),
        skipped: position(SKIPLINES_GROUP),
    };
    (twin_groups == groups).then_some(twin)
}

/// Where the groups the engine reads sit in a pattern, looked up once at compile time: reading
/// captures by name hashes the name each time, on every line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GroupIndex {
    host: Option<usize>,
    other_host: Option<usize>,
    user: Option<usize>,
    id: Option<usize>,
    content: Option<usize>,
    nofail: Option<usize>,
    alt_user: Option<usize>,
    mlfid: Option<usize>,
    forget: Option<usize>,
    gained: Option<usize>,
    skipped: Option<usize>,
}

impl GroupIndex {
    fn of(regex: &regex::Regex) -> GroupIndex {
        let position = |wanted: &str| regex.capture_names().position(|name| name == Some(wanted));
        GroupIndex {
            host: position(HOST_GROUP),
            other_host: position(OTHER_FAMILY_HOST_GROUP),
            user: position(USER_GROUP),
            id: position(ID_GROUP),
            content: position(CONTENT_GROUP),
            nofail: position(NOFAIL_GROUP),
            alt_user: position(ALT_USER_GROUP),
            mlfid: position(MLFID_GROUP),
            forget: position(MLFFORGET_GROUP),
            gained: position(MLFGAINED_GROUP),
            skipped: position(SKIPLINES_GROUP),
        }
    }
}

/// What a pattern captured, as byte ranges into the text it ran on.
#[derive(Debug, Default, PartialEq, Eq)]
struct Captured {
    host: Option<Range<usize>>,
    user: Option<Range<usize>>,
    id: Option<Range<usize>>,
    content: Option<Range<usize>>,
    nofail: Option<Range<usize>>,
    alt_user: Option<Range<usize>>,
    mlfid: Option<Range<usize>>,
    forget: Option<Range<usize>>,
    gained: Option<Range<usize>>,
    /// The whole match and its `<SKIPLINES>` part, for multi-line filters.
    whole: Option<Range<usize>>,
    skipped: Option<Range<usize>>,
}

impl Matcher {
    fn compile(expanded: &str) -> Result<(Matcher, Option<String>), String> {
        match regex::Regex::new(expanded) {
            Ok(regex) => {
                let groups = GroupIndex::of(&regex);
                let ascii = ascii_twin(expanded, groups);
                Ok((
                    Matcher::Fast(FastMatcher {
                        regex,
                        groups,
                        ascii,
                    }),
                    None,
                ))
            }
            Err(error) => {
                let message = error.to_string();
                // The `regex` crate reads a conditional `(?(name)…)` and a named
                // backreference `(?P=name)` as unknown flags.
                let needs_backtracking = message.contains("look-around")
                    || message.contains("backreference")
                    || expanded.contains("(?(")
                    || expanded.contains("(?P=");
                if !needs_backtracking {
                    return Err(message);
                }
                let fancy = fancy_regex::Regex::new(expanded).map_err(|e| e.to_string())?;
                Ok((
                    Matcher::Fancy(Box::new(fancy)),
                    Some("uses look-around, backreferences or conditionals: runs on fancy-regex (backtracking, slower)".to_string()),
                ))
            }
        }
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Fast(fast) => fast.regex.is_match(text),
            // A pattern that blows its backtracking limit is treated as not matching.
            Matcher::Fancy(regex) => regex.is_match(text).unwrap_or(false),
        }
    }

    fn captures(&self, text: &str) -> Option<Captured> {
        match self {
            Matcher::Fast(FastMatcher {
                regex,
                groups,
                ascii,
            }) => {
                if let Some(ascii) = ascii
                    && text.is_ascii()
                {
                    let caps = ascii.captures(text.as_bytes())?;
                    let range =
                        |index: Option<usize>| index.and_then(|i| caps.get(i)).map(|m| m.range());
                    return Some(Captured {
                        host: range(groups.host).or_else(|| range(groups.other_host)),
                        user: range(groups.user),
                        id: range(groups.id),
                        content: range(groups.content),
                        nofail: range(groups.nofail),
                        alt_user: range(groups.alt_user),
                        mlfid: range(groups.mlfid),
                        forget: range(groups.forget),
                        gained: range(groups.gained),
                        whole: range(Some(0)),
                        skipped: range(groups.skipped),
                    });
                }
                let caps = regex.captures(text)?;
                let range =
                    |index: Option<usize>| index.and_then(|i| caps.get(i)).map(|m| m.range());
                Some(Captured {
                    host: range(groups.host).or_else(|| range(groups.other_host)),
                    user: range(groups.user),
                    id: range(groups.id),
                    content: range(groups.content),
                    nofail: range(groups.nofail),
                    alt_user: range(groups.alt_user),
                    mlfid: range(groups.mlfid),
                    forget: range(groups.forget),
                    gained: range(groups.gained),
                    whole: range(Some(0)),
                    skipped: range(groups.skipped),
                })
            }
            Matcher::Fancy(regex) => {
                let caps = regex.captures(text).ok()??;
                Some(Captured {
                    host: caps
                        .name(HOST_GROUP)
                        .or_else(|| caps.name(OTHER_FAMILY_HOST_GROUP))
                        .map(|m| m.range()),
                    user: caps.name(USER_GROUP).map(|m| m.range()),
                    id: caps.name(ID_GROUP).map(|m| m.range()),
                    content: caps.name(CONTENT_GROUP).map(|m| m.range()),
                    nofail: caps.name(NOFAIL_GROUP).map(|m| m.range()),
                    alt_user: caps.name(ALT_USER_GROUP).map(|m| m.range()),
                    mlfid: caps.name(MLFID_GROUP).map(|m| m.range()),
                    forget: caps.name(MLFFORGET_GROUP).map(|m| m.range()),
                    gained: caps.name(MLFGAINED_GROUP).map(|m| m.range()),
                    whole: caps.get(0).map(|m| m.range()),
                    skipped: caps.name(SKIPLINES_GROUP).map(|m| m.range()),
                })
            }
        }
    }
}

/// A prefregex of the usual shape `^PREFIX<F-CONTENT>.+</F-CONTENT>$`, run as its prefix alone.
///
/// Resolving capture groups costs the `regex` crate a backtracking pass over the whole match,
/// and a prefregex matches nearly every line of its program, with a content group as long as
/// the line. When the content is "the rest of the line", its start is simply where the prefix's
/// own leftmost-first match ends: the full pattern tries the prefix's matches in the same
/// priority order and takes the first one after which `.+$` can match, and `.+$` matches any
/// non-empty rest without a newline. So the prefix runs alone (a DFA search, plus captures over
/// its few bytes when it holds `<HOST>`), and whenever that argument does not settle the answer
/// (a newline in the rest, or an empty rest for `.+`) the full pattern decides.
#[derive(Debug, Clone)]
struct SplitPrefregex {
    prefix: regex::Regex,
    /// The prefix's `<HOST>` group, if it has one.
    host: Option<usize>,
    /// `.*` content may be empty; `.+` may not.
    content_may_be_empty: bool,
}

impl SplitPrefregex {
    /// Recognises the shape in an expanded prefregex; `None` for any other shape.
    fn new(expanded: &str) -> Option<SplitPrefregex> {
        let content_group = format!("(?P<{CONTENT_GROUP}>");
        let (prefix, content_may_be_empty) =
            [(".+)", false), (".*)", true)]
                .into_iter()
                .find_map(|(body, may_be_empty)| {
                    let tail = format!("{content_group}{body}");
                    let prefix = expanded
                        .strip_suffix('$')
                        .unwrap_or(expanded)
                        .strip_suffix(tail.as_str())?;
                    Some((prefix, may_be_empty))
                })?;
        if !is_anchored_sequence(prefix) {
            return None;
        }
        let prefix = regex::Regex::new(prefix).ok()?;
        let host = GroupIndex::of(&prefix).host;
        Some(SplitPrefregex {
            prefix,
            host,
            content_may_be_empty,
        })
    }

    /// `Some(result)` when the prefix alone settles what the full prefregex captures
    /// (`Some(None)`: it does not match); `None` when the full pattern must decide.
    fn captures(&self, text: &str) -> Option<Option<Captured>> {
        let (end, host) = match self.host {
            Some(host_index) => {
                let Some(caps) = self.prefix.captures(text) else {
                    return Some(None);
                };
                (caps.get(0)?.end(), caps.get(host_index).map(|m| m.range()))
            }
            None => {
                let Some(found) = self.prefix.find(text) else {
                    return Some(None);
                };
                (found.end(), None)
            }
        };
        let rest = &text[end..];
        if rest.contains('\n') || (rest.is_empty() && !self.content_may_be_empty) {
            return None;
        }
        Some(Some(Captured {
            host,
            content: Some(end..text.len()),
            ..Captured::default()
        }))
    }
}

/// Whether a regex is `^` followed by a plain sequence: no alternation at its top level, no
/// unclosed or stray parenthesis, and no inline flags (which could change what `.` means).
/// Anything it does not understand counts as "no", which only loses the shortcut.
fn is_anchored_sequence(regex: &str) -> bool {
    let Some(body) = regex.strip_prefix('^') else {
        return false;
    };
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut class_depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'\\' {
            index += 2;
            continue;
        }
        if class_depth > 0 {
            match byte {
                b'[' => {
                    class_depth += 1;
                    index = skip_class_opening(bytes, index + 1);
                    continue;
                }
                b']' => class_depth -= 1,
                _ => {}
            }
            index += 1;
            continue;
        }
        match byte {
            b'[' => {
                class_depth = 1;
                index = skip_class_opening(bytes, index + 1);
                continue;
            }
            b'(' => {
                if bytes.get(index + 1) == Some(&b'?') {
                    let rest = &bytes[index + 2..];
                    let plain_group = rest.starts_with(b":")
                        || rest.starts_with(b"P<")
                        || (rest.starts_with(b"<")
                            && !rest.starts_with(b"<=")
                            && !rest.starts_with(b"<!"));
                    if !plain_group {
                        return false;
                    }
                }
                depth += 1;
            }
            b')' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            b'|' if depth == 0 => return false,
            _ => {}
        }
        index += 1;
    }
    depth == 0 && class_depth == 0
}

/// Past a class's opening `[`: a leading `^` and a leading `]` are part of the class, not its end.
fn skip_class_opening(bytes: &[u8], mut index: usize) -> usize {
    if bytes.get(index) == Some(&b'^') {
        index += 1;
    }
    if bytes.get(index) == Some(&b']') {
        index += 1;
    }
    index
}

/// Parses a captured address as a failure's host: brackets dropped, IPv4-mapped IPv6 reported
/// as IPv4, and addresses that are never a client (unspecified, multicast, broadcast; see
/// [`crate::address`]) refused.
pub fn parse_host(captured: &str) -> Option<IpAddr> {
    parse_captured(captured)?.ok()
}

/// A captured address in canonical form, `Err` with the reason when it is never a client;
/// `None` when the capture is not an address at all.
fn parse_captured(captured: &str) -> Option<Result<IpAddr, (IpAddr, NotAClient)>> {
    // Either bracket may stand alone, as Fail2Ban's `<HOST>` has them (`\[?…\]?`).
    let bare = captured.strip_prefix('[').unwrap_or(captured);
    let bare = bare.strip_suffix(']').unwrap_or(bare);
    let address = address::canonical(bare.parse().ok()?);
    Some(match address::not_a_client(address) {
        None => Ok(address),
        Some(reason) => Err((address, reason)),
    })
}

/// Whether a failure line naming `reason`'s address is still reported as a failure, for the
/// jail to refuse.
///
/// `0.0.0.0` and `::` are what daemons write when they do not know the peer (assp's outgoing
/// TLS lines, for one): the line reports a failure, of nobody. Fail2Ban reports it; so does
/// logjail, and the jail, which decides bans, refuses it there with its reason and a warning.
/// A multicast or broadcast address in a failure's host position is never what a daemon saw,
/// only what someone wrote into the line: the filter refuses it at once.
fn reported_anyway(reason: NotAClient) -> bool {
    reason == NotAClient::Unspecified
}

/// The filter's `program`, matched against the whole program name of a syslog tag.
#[derive(Debug, Clone)]
struct ProgramMatcher {
    regex: regex::Regex,
    /// The names themselves when `program` is a plain list (`sshd|sshd-session`), the usual
    /// case: comparing a few short strings is much cheaper than a regex search on every line.
    names: Option<Vec<String>>,
}

impl ProgramMatcher {
    fn new(program: &str) -> Result<ProgramMatcher, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{program})$"))?;
        // Only characters that are literal in a regex (outside a class) make a plain name.
        let plain = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/' | b'@'))
        };
        let names = program
            .split('|')
            .all(plain)
            .then(|| program.split('|').map(str::to_string).collect());
        Ok(ProgramMatcher { regex, names })
    }

    fn matches(&self, program: &str) -> bool {
        match &self.names {
            Some(names) => names.iter().any(|name| name == program),
            None => self.regex.is_match(program),
        }
    }
}

/// What a filter says of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Failure(Failure),
    /// A failregex matched but an ignoreregex did too.
    Ignored {
        failregex_index: usize,
        ignoreregex_index: usize,
    },
    /// A failregex matched, but the address it captured is multicast or broadcast, never a
    /// client's: no failure. (A failure of the unspecified address, `0.0.0.0` or `::`, is
    /// reported as one when no failregex names a client: the jail refuses it.) Whoever wrote the line may have put it there to
    /// have it banned; the daemon warns about such lines (rate-limited, see
    /// [`crate::address::RefusalWarnings`]).
    NotAClient {
        failregex_index: usize,
        /// The captured address, canonical.
        address: IpAddr,
        reason: NotAClient,
    },
    Missed,
}

/// A filter ready to run: all failregexes in one `RegexSet`, captures only where it matched.
#[derive(Debug, Clone)]
pub struct Filter {
    name: String,
    program: Option<ProgramMatcher>,
    prefregex: Option<Matcher>,
    /// The prefregex as prefix alone, when its shape allows (see [`SplitPrefregex`]).
    split_prefregex: Option<SplitPrefregex>,
    failregex: Vec<Matcher>,
    /// The fast failregexes together; index `i` of the set is failregex `fail_set_index[i]`.
    fail_set: regex::RegexSet,
    fail_set_index: Vec<usize>,
    /// The failregexes as one leftmost-first search, when all are anchored at the start (see
    /// [`first_failregex`]); filters without it go through `fail_set`.
    first_failregex: Option<regex_automata::meta::Regex>,
    has_fancy_failregex: bool,
    ignoreregex: Vec<Matcher>,
    datepattern: Option<DatePattern>,
    /// Fail2Ban's date rules, for filters read from its files (see [`FilterSpec::cut_date`]).
    cut_date: Option<Vec<date::Fail2BanDate>>,
    /// Whether the filter marks sessions (`<F-MLFID>`), whose lines share what they capture.
    sessions: bool,
    /// For lines that still carry a header (see [`FilterSpec::line_variant`]).
    line_variant: Option<Box<Filter>>,
    /// This filter judges whole lines (with only their date cut out), header included.
    whole_line: bool,
    /// Fail2Ban's `maxlines`: how many of a source's last lines a failregex runs on (1: the
    /// line alone). The lines wait in the source's [`Sessions`].
    maxlines: usize,
    /// Patterns that fell back to fancy-regex, for `logjail check`.
    fallbacks: Vec<(FilterField, String)>,
}

impl Filter {
    /// Compiles a filter, reporting every bad pattern at once.
    pub fn compile(name: &str, spec: &FilterSpec) -> Result<Filter, Vec<FilterError>> {
        let mut errors = Vec::new();
        let mut fallbacks = Vec::new();
        let error = |field: Option<FilterField>, message: String| FilterError {
            filter: name.to_string(),
            field,
            message,
        };

        let program = match &spec.program {
            None => None,
            Some(program) => match ProgramMatcher::new(program) {
                Ok(matcher) => Some(matcher),
                Err(e) => {
                    errors.push(error(Some(FilterField::Program), e.to_string()));
                    None
                }
            },
        };

        let maxlines = spec.maxlines.unwrap_or(1).max(1);
        let mut compile_one = |field: FilterField, text: &str| -> Option<(Matcher, bool)> {
            let mut expanded = match pattern::expand(text) {
                Ok(expanded) => expanded,
                Err(e) => {
                    errors.push(error(Some(field), e.to_string()));
                    return None;
                }
            };
            // Over several lines `^` and `$` are each line's, as Fail2Ban compiles its
            // failregexes and ignoreregexes then (its prefregex stays as it is).
            if maxlines > 1 && field != FilterField::Prefregex {
                expanded.regex.insert_str(0, "(?m)");
            }
            match Matcher::compile(&expanded.regex) {
                Ok((matcher, note)) => {
                    if let Some(note) = note {
                        fallbacks.push((field, note));
                    }
                    Some((matcher, expanded.has_host))
                }
                Err(message) => {
                    errors.push(error(Some(field), message));
                    None
                }
            }
        };

        let prefregex = spec
            .prefregex
            .as_deref()
            .and_then(|text| compile_one(FilterField::Prefregex, text));
        let prefregex_has_host = prefregex.as_ref().is_some_and(|(_, host)| *host);

        // A filter with sessions may fail on lines without address: an earlier line of the
        // session gave it.
        let sessions = spec
            .prefregex
            .iter()
            .chain(&spec.failregex)
            .any(|text| text.contains("<F-MLFID>"));
        let mut failregex = Vec::new();
        let mut missing_host = Vec::new();
        for (index, text) in spec.failregex.iter().enumerate() {
            if let Some((matcher, has_host)) = compile_one(FilterField::Failregex(index), text) {
                if !has_host && !prefregex_has_host && !sessions {
                    missing_host.push(index);
                }
                failregex.push(matcher);
            }
        }
        let mut ignoreregex = Vec::new();
        for (index, text) in spec.ignoreregex.iter().enumerate() {
            if let Some((matcher, _)) = compile_one(FilterField::Ignoreregex(index), text) {
                ignoreregex.push(matcher);
            }
        }
        for index in missing_host {
            errors.push(error(
                Some(FilterField::Failregex(index)),
                "captures no address: use <HOST>, <ADDR>, <IP4> or <IP6>".to_string(),
            ));
        }
        if spec.failregex.is_empty() {
            errors.push(error(None, "has no failregex".to_string()));
        }
        let datepattern = match spec.datepattern.as_deref().map(DatePattern::new) {
            None => None,
            Some(Ok(pattern)) => Some(pattern),
            Some(Err(e)) => {
                errors.push(error(Some(FilterField::Datepattern), e.to_string()));
                None
            }
        };
        let line_variant = match spec
            .line_variant
            .as_deref()
            .map(|line| Filter::compile(name, line))
        {
            None => None,
            Some(Ok(mut filter)) => {
                filter.whole_line = true;
                Some(Box::new(filter))
            }
            Some(Err(line_errors)) => {
                errors.extend(line_errors);
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut fast_patterns = Vec::new();
        let mut fail_set_index = Vec::new();
        let mut has_fancy_failregex = false;
        for (index, matcher) in failregex.iter().enumerate() {
            match matcher {
                Matcher::Fast(fast) => {
                    fast_patterns.push(fast.regex.as_str().to_string());
                    fail_set_index.push(index);
                }
                Matcher::Fancy(_) => has_fancy_failregex = true,
            }
        }
        let fail_set = regex::RegexSet::new(&fast_patterns)
            .map_err(|e| vec![error(None, format!("failregex set does not compile: {e}"))])?;
        let first_failregex = if has_fancy_failregex || maxlines > 1 {
            None
        } else {
            first_failregex(&fast_patterns)
        };
        let prefregex = prefregex.map(|(matcher, _)| matcher);
        let split_prefregex = match &prefregex {
            // The shortcut reads the address and content only, not the session id.
            Some(Matcher::Fast(fast)) if !sessions && maxlines == 1 => {
                SplitPrefregex::new(fast.regex.as_str())
            }
            _ => None,
        };
        Ok(Filter {
            name: name.to_string(),
            program,
            prefregex,
            split_prefregex,
            failregex,
            fail_set,
            fail_set_index,
            first_failregex,
            has_fancy_failregex,
            ignoreregex,
            datepattern,
            sessions,
            line_variant,
            whole_line: false,
            maxlines,
            cut_date: spec.cut_date.as_ref().map(|cut| {
                let mut rules: Vec<date::Fail2BanDate> = cut
                    .patterns
                    .iter()
                    .filter_map(|line| date::Fail2BanDate::new(line))
                    .collect();
                if rules.is_empty() {
                    rules.push(date::Fail2BanDate::Default {
                        anchored: false,
                        prefix: None,
                    });
                }
                rules
            }),
            fallbacks,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn failregex_count(&self) -> usize {
        self.failregex.len()
    }

    pub fn ignoreregex_count(&self) -> usize {
        self.ignoreregex.len()
    }

    /// Patterns that need fancy-regex, with why; `logjail check` prints them.
    pub fn fallbacks(&self) -> &[(FilterField, String)] {
        &self.fallbacks
    }

    /// Judges one record, placing year-less stamps with the wall clock.
    pub fn evaluate(&self, record: &Record<'_>) -> Verdict {
        self.evaluate_at(record, Utc::now())
    }

    /// Judges one record; `now` places year-less dates and is the failure's time when the
    /// line carries none. Each line is judged alone: see [`Filter::evaluate_in`].
    pub fn evaluate_at(&self, record: &Record<'_>, now: DateTime<Utc>) -> Verdict {
        self.evaluate_in(record, now, None)
    }

    /// Whether one of the filter's Fail2Ban date rules finds a date in the record's line: a
    /// line with a stamp the envelope does not know (TAI64N, epoch) still has a header.
    fn finds_a_date(&self, record: &Record<'_>, now: DateTime<Utc>) -> bool {
        let reference = record.time.unwrap_or(now);
        self.cut_date.as_ref().is_some_and(|rules| {
            rules
                .iter()
                .any(|rule| rule.find(&record.line, reference).is_some())
        })
    }

    /// Whether the filter keeps sessions (Fail2Ban's `<F-MLFID>`): its callers then give
    /// [`Filter::evaluate_in`] one [`Sessions`] per source.
    pub fn uses_sessions(&self) -> bool {
        self.sessions
            || self.maxlines > 1
            || self
                .line_variant
                .as_ref()
                .is_some_and(|line| line.uses_sessions())
    }

    /// Judges one record among the earlier lines of its source, whose sessions `sessions`
    /// holds (for filters that use them; `None` judges the line alone).
    pub fn evaluate_in(
        &self,
        record: &Record<'_>,
        now: DateTime<Utc>,
        mut sessions: Option<&mut Sessions>,
    ) -> Verdict {
        if let Some(line_filter) = &self.line_variant
            && (record.line.trim().len() != record.text.len()
                || line_filter.finds_a_date(record, now))
        {
            return line_filter.evaluate_in(record, now, sessions);
        }
        if let (Some(wanted), Some(program)) = (&self.program, &record.program)
            && !wanted.matches(program)
        {
            return Verdict::Missed;
        }
        let mut text: &str = &record.text;
        let mut time = record.time;
        let cut_line;
        if let Some(rules) = &self.cut_date
            && (record.program.is_none() || self.whole_line)
        {
            let line: &str = &record.line;
            let reference = record.time.unwrap_or(now);
            let found = rules.iter().find_map(|rule| rule.find(line, reference));
            cut_line = match found {
                Some((found, range)) => {
                    time = time.or(Some(found));
                    let mut joined = String::with_capacity(line.len());
                    joined.push_str(&line[..range.start]);
                    joined.push_str(&line[range.end..]);
                    joined
                }
                None => line.to_string(),
            };
            text = &cut_line;
        } else if let Some(pattern) = &self.datepattern
            && let Some((found, range)) = pattern.find(text, record.time.unwrap_or(now))
        {
            time = Some(found);
            if range.start == 0 {
                text = text[range.end..].trim_start();
            }
        }
        // A multi-line filter judges the source's last lines together, as Fail2Ban's
        // `maxlines` does; judged alone (no sessions given), a line is its own buffer.
        let buffered = self.maxlines > 1 && sessions.is_some();
        let joined;
        if buffered && let Some(lines) = sessions.as_deref_mut() {
            joined = lines.push_line(text, self.maxlines);
            text = &joined;
        }
        let mut prefix_host = None;
        let mut prefix_id = None;
        if let Some(prefregex) = &self.prefregex {
            let settled = self
                .split_prefregex
                .as_ref()
                .and_then(|split| split.captures(text));
            let captured = match settled {
                Some(captured) => captured,
                None => prefregex.captures(text),
            };
            let Some(captured) = captured else {
                return Verdict::Missed;
            };
            prefix_host = captured.host.map(|r| &text[r]);
            prefix_id = captured.mlfid.map(|r| &text[r]);
            if let Some(content) = captured.content {
                text = &text[content];
                // Fail2Ban goes on with the content alone in the buffer.
                if buffered && let Some(lines) = sessions.as_deref_mut() {
                    lines.replace_lines(text);
                }
            }
        }
        if self.sessions
            && let Some(sessions) = sessions
        {
            return self.evaluate_session(
                record,
                text,
                prefix_host,
                prefix_id,
                time,
                now,
                sessions,
            );
        }

        let found = match self.first_by_priority(text, prefix_host) {
            Some(Attempt::Found(found)) => Ok(found),
            Some(Attempt::NoMatch | Attempt::NoFail) => Err(None),
            // The first failregex's address did not parse or is never a client: a later one
            // may still capture a client, which the set search finds out.
            Some(Attempt::Unusable(_)) | None => self.first_by_set(text, prefix_host),
        };
        let (failregex_index, captured, host) = match found {
            Ok(found) => found,
            Err(None) => return Verdict::Missed,
            Err(Some((failregex_index, captured, address, reason))) if reported_anyway(reason) => {
                (failregex_index, *captured, address)
            }
            Err(Some((failregex_index, _, address, reason))) => {
                if let Some(ignoreregex_index) =
                    self.ignoreregex.iter().position(|m| m.is_match(text))
                {
                    return Verdict::Ignored {
                        failregex_index,
                        ignoreregex_index,
                    };
                }
                return Verdict::NotAClient {
                    failregex_index,
                    address,
                    reason,
                };
            }
        };
        if let Some(ignoreregex_index) = self.ignoreregex.iter().position(|m| m.is_match(text)) {
            return Verdict::Ignored {
                failregex_index,
                ignoreregex_index,
            };
        }
        // The lines of a failure count once: they leave the buffer, but for those its
        // `<SKIPLINES>` passed over.
        if buffered && let (Some(lines), Some(whole)) = (sessions, captured.whole.clone()) {
            lines.forget_matched(whole, captured.skipped.clone());
        }
        let time = time.or_else(|| date::inline_time(&record.text, now));
        Verdict::Failure(Failure {
            host,
            time,
            user: captured
                .user
                .or(captured.alt_user)
                .map(|r| text[r].to_string()),
            id: captured.id.map(|r| text[r].to_string()),
            failregex_index,
        })
    }
}

impl Filter {
    /// The failregex a line counts under: the first, in order, that matches and captures a
    /// client address. When none does, `Err` carries the first match whose address is never
    /// a client (`Err(None)`: no match with an address at all).
    /// Fail2Ban's way with a session's lines: the first failregex that matches decides, and
    /// what it captured is merged with what earlier lines of the session captured.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_session(
        &self,
        record: &Record<'_>,
        text: &str,
        prefix_host: Option<&str>,
        prefix_id: Option<&str>,
        time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        sessions: &mut Sessions,
    ) -> Verdict {
        let Some((failregex_index, captured)) = self.first_match(text) else {
            return Verdict::Missed;
        };
        if let Some(ignoreregex_index) = self.ignoreregex.iter().position(|m| m.is_match(text)) {
            return Verdict::Ignored {
                failregex_index,
                ignoreregex_index,
            };
        }
        let own_id = captured.mlfid.clone().map(|r| text[r].trim().to_string());
        // A prefix's id is the syslog header (host, `prog[pid]:`): without a pid it names the
        // program, not a session.
        let joinable = record.pid.is_some() || own_id.as_ref().is_some_and(|id| !id.is_empty());
        let key = SessionKey {
            program: record.program.as_deref().map(str::to_string),
            pid: record.pid,
            id: own_id
                .or(prefix_id.map(|id| id.trim().to_string()))
                .unwrap_or_default(),
        };
        let seen = Seen {
            host: captured
                .host
                .clone()
                .map(|r| &text[r])
                .or(prefix_host)
                .map(str::to_string),
            user: captured
                .user
                .clone()
                .or(captured.alt_user.clone())
                .map(|r| text[r].to_string()),
            nofail: captured.nofail.is_some() || captured.gained.is_some(),
            forget: captured.forget.is_some(),
        };
        let event_time = time.or_else(|| date::inline_time(&record.text, now));
        // Without a pid or an id of its own, every line of the program would be one session,
        // and a client's failure could take the address of whoever logged in before it: such
        // lines are judged alone.
        let merged = if !joinable {
            Sessions::new().merge(key, seen, event_time.unwrap_or(now))
        } else {
            sessions.merge(key, seen, event_time.unwrap_or(now))
        };
        let (host_text, user) = match merged {
            Merged::Failure { host, user } => (host, user),
            Merged::Nothing => return Verdict::Missed,
        };
        match parse_captured(&host_text) {
            Some(Ok(host)) | Some(Err((host, NotAClient::Unspecified))) => {
                Verdict::Failure(Failure {
                    host,
                    time: event_time,
                    user,
                    id: captured.id.map(|r| text[r].to_string()),
                    failregex_index,
                })
            }
            Some(Err((address, reason))) => Verdict::NotAClient {
                failregex_index,
                address,
                reason,
            },
            None => Verdict::Missed,
        }
    }

    /// The first failregex that matches, in their order, whatever it captured.
    fn first_match(&self, text: &str) -> Option<(usize, Captured)> {
        let set_matches = self.fail_set.matches(text);
        if !set_matches.matched_any() && !self.has_fancy_failregex {
            return None;
        }
        let mut set_position = 0;
        for (index, matcher) in self.failregex.iter().enumerate() {
            if let Matcher::Fast(_) = matcher {
                let position = set_position;
                set_position += 1;
                if !set_matches.matched(position) {
                    continue;
                }
            }
            if let Some(captured) = matcher.captures(text) {
                return Some((index, captured));
            }
        }
        None
    }

    fn first_by_set<'t>(
        &self,
        text: &'t str,
        prefix_host: Option<&'t str>,
    ) -> Result<Found, Option<Refusal>> {
        let set_matches = self.fail_set.matches(text);
        if !set_matches.matched_any() && !self.has_fancy_failregex {
            return Err(None);
        }
        let mut refused = None;
        let mut set_position = 0;
        for (index, matcher) in self.failregex.iter().enumerate() {
            if let Matcher::Fast(_) = matcher {
                let position = set_position;
                set_position += 1;
                debug_assert_eq!(self.fail_set_index[position], index);
                if !set_matches.matched(position) {
                    continue;
                }
            }
            match self.try_failregex(index, text, prefix_host) {
                Attempt::Found(found) => return Ok(found),
                Attempt::Unusable(refusal) => refused = refused.or(refusal),
                Attempt::NoMatch => {}
                // Fail2Ban stops at the first failregex that matches, even one that says the
                // line is no failure.
                Attempt::NoFail => return Err(None),
            }
        }
        Err(refused)
    }

    /// The same answer as [`Filter::first_by_set`] in one search, when the filter has a
    /// [`Filter::first_failregex`]: `None` when the filter has none or when the first
    /// matching failregex's address is unusable (the others must then be tried).
    fn first_by_priority<'t>(
        &self,
        text: &'t str,
        prefix_host: Option<&'t str>,
    ) -> Option<Attempt> {
        let first = self.first_failregex.as_ref()?;
        let Some(end) = first.search_half(&regex_automata::Input::new(text)) else {
            return Some(Attempt::NoMatch);
        };
        match self.try_failregex(end.pattern().as_usize(), text, prefix_host) {
            Attempt::Found(found) => Some(Attempt::Found(found)),
            Attempt::NoFail => Some(Attempt::NoMatch),
            Attempt::Unusable(_) | Attempt::NoMatch => None,
        }
    }

    fn try_failregex<'t>(
        &self,
        index: usize,
        text: &'t str,
        prefix_host: Option<&'t str>,
    ) -> Attempt {
        let Some(captured) = self.failregex.get(index).and_then(|m| m.captures(text)) else {
            return Attempt::NoMatch;
        };
        if captured.nofail.is_some() {
            return Attempt::NoFail;
        }
        let host_text = captured.host.clone().map(|r| &text[r]).or(prefix_host);
        match host_text.and_then(parse_captured) {
            Some(Ok(host)) => Attempt::Found((index, captured, host)),
            Some(Err((address, reason))) => {
                Attempt::Unusable(Some((index, Box::new(captured), address, reason)))
            }
            None => Attempt::Unusable(None),
        }
    }
}

/// A failregex that matched: its index, what it captured, and the address.
type Found = (usize, Captured, IpAddr);

/// A failregex that matched an address that is never a client: its index, what it captured,
/// the address, why.
type Refusal = (usize, Box<Captured>, IpAddr, NotAClient);

/// What one failregex made of a text.
#[derive(Debug, PartialEq, Eq)]
// Returned once per tried failregex and matched on at once: never stored.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Found(Found),
    /// It matched, but what it captured is not an address (`Unusable(None)`) or never a
    /// client's.
    Unusable(Option<Refusal>),
    NoMatch,
    /// It matched where Fail2Ban's `<F-NOFAIL>` says the line is no failure.
    NoFail,
}

/// All failregexes as one multi-pattern regex, when every one of them is anchored at the start
/// of the text. Their matches then all start at 0, where leftmost-first search prefers the
/// earliest pattern in the list: one search names the first failregex that matches, which is
/// what the set of per-pattern answers is otherwise scanned for. `None` for any other filter.
fn first_failregex(patterns: &[String]) -> Option<regex_automata::meta::Regex> {
    let nfa = regex_automata::nfa::thompson::NFA::new_many(patterns).ok()?;
    if !nfa.is_always_start_anchored() {
        return None;
    }
    regex_automata::meta::Regex::new_many(patterns).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use envelope::Decoder;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn spec(failregex: &[&str], ignoreregex: &[&str]) -> FilterSpec {
        FilterSpec {
            failregex: failregex.iter().map(|s| s.to_string()).collect(),
            ignoreregex: ignoreregex.iter().map(|s| s.to_string()).collect(),
            ..FilterSpec::default()
        }
    }

    fn judge(filter: &Filter, raw: &str) -> Verdict {
        let mut decoder = Decoder::new();
        let record = decoder.push_at(raw, now()).unwrap();
        filter.evaluate_at(&record, now())
    }

    fn host(filter: &Filter, raw: &str) -> Option<IpAddr> {
        match judge(filter, raw) {
            Verdict::Failure(failure) => Some(failure.host),
            _ => None,
        }
    }

    fn sshd_like() -> Filter {
        Filter::compile(
            "t",
            &spec(
                &[
                    r"^Failed (?:password|publickey) for (?:invalid user )?<F-USER>.+?</F-USER> from <HOST> port \d+(?: ssh\d)?$",
                    r"^Invalid user <F-USER>.*?</F-USER> from <HOST> port \d+$",
                ],
                &[r"^Failed password for ignored-user "],
            ),
        )
        .unwrap()
    }

    #[test]
    fn finds_host_user_and_regex_index() {
        let filter = sshd_like();
        let verdict = judge(
            &filter,
            "Nov 26 07:00:01 web sshd[1]: Invalid user bob from 10.0.0.9 port 4",
        );
        let Verdict::Failure(failure) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(failure.host, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(failure.user.as_deref(), Some("bob"));
        assert_eq!(failure.failregex_index, 1);
        assert!(failure.time.is_some());
    }

    #[test]
    fn injected_address_in_user_name_never_wins() {
        let filter = sshd_like();
        let line = "Failed password for invalid user admin from 6.6.6.6 port 22 ssh2 from 1.2.3.4 port 5 ssh2";
        assert_eq!(host(&filter, line), Some("1.2.3.4".parse().unwrap()));
        let line = "Invalid user x from 6.6.6.6 port 1";
        assert_eq!(host(&filter, line), Some("6.6.6.6".parse().unwrap()));
    }

    #[test]
    fn ignoreregex_and_mapped_addresses() {
        let filter = sshd_like();
        assert!(matches!(
            judge(
                &filter,
                "Failed password for ignored-user from 1.2.3.4 port 1 ssh2"
            ),
            Verdict::Ignored {
                failregex_index: 0,
                ignoreregex_index: 0
            }
        ));
        assert_eq!(
            host(
                &filter,
                "Failed password for root from ::ffff:10.1.2.3 port 1 ssh2"
            ),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            host(
                &filter,
                "Failed password for root from 2001:db8::7 port 1 ssh2"
            ),
            Some("2001:db8::7".parse().unwrap())
        );
        // Not an address: the loose IPv6 pattern matched, parsing refused it.
        assert_eq!(
            host(
                &filter,
                "Failed password for root from 12:34:56 port 1 ssh2"
            ),
            None
        );
        assert_eq!(
            host(
                &filter,
                "Failed password for root from 300.1.1.1 port 1 ssh2"
            ),
            None
        );
        // The unspecified address is reported, for the jail to refuse.
        assert_eq!(
            host(&filter, "Failed password for root from 0.0.0.0 port 1 ssh2"),
            Some("0.0.0.0".parse().unwrap())
        );
    }

    #[test]
    fn addresses_that_are_never_a_client_are_refused_with_the_reason() {
        let filter = sshd_like();
        for (line, address, reason) in [
            (
                "Failed password for root from ::ffff:224.0.0.5 port 1 ssh2",
                "224.0.0.5",
                NotAClient::Multicast,
            ),
            (
                "Invalid user x from 255.255.255.255 port 1",
                "255.255.255.255",
                NotAClient::Broadcast,
            ),
        ] {
            assert_eq!(
                judge(&filter, line),
                Verdict::NotAClient {
                    failregex_index: usize::from(line.starts_with("Invalid")),
                    address: address.parse().unwrap(),
                    reason,
                },
                "{line}"
            );
        }
        // An ignoreregex still wins: the line is ignored, not refused.
        for address in ["0.0.0.0", "ff02::1"] {
            assert!(matches!(
                judge(
                    &filter,
                    &format!("Failed password for ignored-user from {address} port 1 ssh2")
                ),
                Verdict::Ignored { .. }
            ));
        }
        // A later failregex that captures a client is the failure.
        let filter = Filter::compile(
            "t",
            &spec(&[r"^from <HOST> via \S+$", r"^from \S+ via <HOST>$"], &[]),
        )
        .unwrap();
        for nobody in ["0.0.0.0", "::", "224.0.0.1"] {
            assert_eq!(
                host(&filter, &format!("from {nobody} via 10.0.0.1")),
                Some("10.0.0.1".parse().unwrap()),
                "{nobody}"
            );
        }
        assert!(matches!(
            judge(&filter, "from ff02::1 via 0.0.0.0"),
            Verdict::NotAClient {
                failregex_index: 0,
                ..
            }
        ));
    }

    #[test]
    fn the_unspecified_address_is_reported_for_the_jail_to_refuse() {
        // As Fail2Ban does: the line is a failure of `0.0.0.0` or `::`, with what it
        // captured; the jail, not the filter, refuses to count it.
        let filter = sshd_like();
        for (line, address) in [
            (
                "Failed password for root from 0.0.0.0 port 1 ssh2",
                "0.0.0.0",
            ),
            ("Failed password for root from :: port 1 ssh2", "::"),
            (
                "Failed password for root from ::ffff:0.0.0.0 port 1 ssh2",
                "0.0.0.0",
            ),
            ("Invalid user x from [::] port 1", "::"),
        ] {
            let Verdict::Failure(failure) = judge(&filter, line) else {
                panic!("{line}: {:?}", judge(&filter, line));
            };
            assert_eq!(failure.host, address.parse::<IpAddr>().unwrap(), "{line}");
        }
        // Only when no failregex names a client: a client named later is the failure.
        let filter = Filter::compile(
            "t",
            &spec(&[r"^from <HOST> via \S+$", r"^from \S+ via <HOST>$"], &[]),
        )
        .unwrap();
        assert_eq!(
            host(&filter, "from 10.0.0.1 via ::"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            host(&filter, "from 0.0.0.0 via ::"),
            Some("0.0.0.0".parse().unwrap())
        );
    }

    #[test]
    fn program_restricts_only_tagged_lines() {
        let mut with_program = spec(
            &[r"^Failed password for \S+ from <HOST> port \d+ ssh2$"],
            &[],
        );
        with_program.program = Some("sshd(?:-session)?".to_string());
        let filter = Filter::compile("t", &with_program).unwrap();
        let message = "Failed password for root from 1.2.3.4 port 1 ssh2";
        assert!(host(&filter, &format!("Nov 26 07:00:01 h sshd[1]: {message}")).is_some());
        assert!(
            host(
                &filter,
                &format!("Nov 26 07:00:01 h sshd-session[1]: {message}")
            )
            .is_some()
        );
        assert!(host(&filter, &format!("Nov 26 07:00:01 h evil[1]: {message}")).is_none());
        assert!(host(&filter, message).is_some());
    }

    /// Every `line:` of the built-in filters' fixtures, decoded.
    fn fixture_messages() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filters");
        let mut messages = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let cases: Vec<serde_yaml::Value> =
                serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for case in cases {
                if let Some(line) = case.get("line").and_then(|l| l.as_str()) {
                    let mut decoder = Decoder::new();
                    if let Some(record) = decoder.push_at(line, now()) {
                        messages.push(record.text.to_string());
                    }
                }
            }
        }
        assert!(messages.len() > 200, "{}", messages.len());
        messages
    }

    #[test]
    fn one_search_picks_the_same_failregex_as_the_set() {
        let mut messages = fixture_messages();
        // Addresses that match <HOST> but do not parse: the next failregex must get its turn.
        messages.push("Failed password for root from 300.1.1.1 port 1 ssh2".to_string());
        messages.push("Invalid user x from 999.2.3.4 port 1".to_string());
        // Addresses that are never a client: refused, and the next failregex gets its turn.
        messages.push("Failed password for root from 0.0.0.0 port 1 ssh2".to_string());
        messages.push("Invalid user x from ff02::1 port 1".to_string());
        let mut with_first = 0;
        for name in builtin::names() {
            let filter = Filter::compile(name, &builtin::spec(name).unwrap()).unwrap();
            if filter.first_failregex.is_none() {
                continue;
            }
            with_first += 1;
            for message in &messages {
                let by_set = filter.first_by_set(message, None);
                let answer = match filter.first_by_priority(message, None) {
                    Some(Attempt::Found(found)) => Ok(found),
                    Some(Attempt::NoMatch | Attempt::NoFail) => Err(None),
                    Some(Attempt::Unusable(_)) | None => filter.first_by_set(message, None),
                };
                assert_eq!(answer, by_set, "{name}: {message}");
            }
        }
        assert!(with_first >= 8, "{with_first}");

        // The first matching failregex has an address that does not parse, a later one has one.
        let filter = Filter::compile(
            "t",
            &spec(
                &[r"^from <HOST> port \d+", r"^from (?:\S+) port <HOST>$"],
                &[],
            ),
        )
        .unwrap();
        assert!(filter.first_failregex.is_some());
        let text = "from 300.1.1.1 port 10.0.0.1";
        assert_eq!(filter.first_by_priority(text, None), None);
        assert_eq!(
            judge(&filter, text),
            judge(
                &Filter {
                    first_failregex: None,
                    ..filter.clone()
                },
                text
            )
        );
        assert_eq!(host(&filter, text), Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn one_search_only_when_every_failregex_is_anchored() {
        let anchored = Filter::compile("t", &spec(&[r"^a <HOST>$", r"^b <HOST>"], &[])).unwrap();
        assert!(anchored.first_failregex.is_some());
        for unanchored in [
            [r"^a <HOST>$", r"b <HOST>"],
            [r"(?:^a|b) <HOST>$", r"^c <HOST>"],
            [r"(?m)^a <HOST>$", r"^c <HOST>"],
        ] {
            let filter = Filter::compile("t", &spec(&unanchored, &[])).unwrap();
            assert!(filter.first_failregex.is_none(), "{unanchored:?}");
        }
        // Unanchored patterns keep the first-in-order rule through the set.
        let filter =
            Filter::compile("t", &spec(&[r"late <HOST>$", r"^early <HOST> late"], &[])).unwrap();
        let Verdict::Failure(failure) = judge(&filter, "early 1.2.3.4 late 5.6.7.8") else {
            panic!()
        };
        assert_eq!(
            (failure.failregex_index, failure.host),
            (0, "5.6.7.8".parse().unwrap())
        );
    }

    #[test]
    fn plain_program_lists_match_like_the_regex() {
        let programs = [
            "sshd|sshd-session|sshd-auth",
            "postfix/smtpd|postfix/submission/smtpd",
            "sshd(?:-session)?",
            "ssh.",
            "sshd|",
            "a@b|_x-1",
        ];
        let names = [
            "sshd",
            "sshd-session",
            "sshd-auth",
            "sshd-sessionx",
            "xsshd",
            "SSHD",
            "sshx",
            "",
            "postfix/smtpd",
            "postfix/submission/smtpd",
            "postfix/smtp",
            "a@b",
            "_x-1",
        ];
        for program in programs {
            let matcher = ProgramMatcher::new(program).unwrap();
            let regex = regex::Regex::new(&format!("^(?:{program})$")).unwrap();
            for name in names {
                assert_eq!(
                    matcher.matches(name),
                    regex.is_match(name),
                    "{program} / {name}"
                );
            }
        }
        assert!(
            ProgramMatcher::new("sshd|sshd-session")
                .unwrap()
                .names
                .is_some()
        );
        for not_plain in ["sshd(?:-session)?", "ssh.", "sshd|", "a|b*"] {
            assert!(
                ProgramMatcher::new(not_plain).unwrap().names.is_none(),
                "{not_plain}"
            );
        }
    }

    #[test]
    fn prefregex_content_and_host() {
        let mut with_prefix = spec(&[r"^auth failed$", r"^bad user <F-USER>\S+</F-USER>$"], &[]);
        with_prefix.prefregex = Some(r"^client <HOST>: <F-CONTENT>.+</F-CONTENT>$".to_string());
        let filter = Filter::compile("t", &with_prefix).unwrap();
        assert_eq!(
            host(&filter, "client 1.2.3.4: auth failed"),
            Some("1.2.3.4".parse().unwrap())
        );
        let Verdict::Failure(failure) = judge(&filter, "client ::1: bad user eve") else {
            panic!()
        };
        assert_eq!(failure.user.as_deref(), Some("eve"));
        assert_eq!(failure.failregex_index, 1);
        assert_eq!(
            judge(&filter, "server 1.2.3.4: auth failed"),
            Verdict::Missed
        );
    }

    fn expanded(pattern: &str) -> String {
        pattern::expand(pattern).unwrap().regex
    }

    #[test]
    fn split_prefregex_agrees_with_the_full_pattern() {
        let prefregexes = [
            r"^(?:\[sshd\]:? )?(?:\[ID \d+ [\w.]+\] )?(?:(?:error|fatal): (?:PAM: )?)?<F-CONTENT>.+</F-CONTENT>$",
            r"^client <HOST>: <F-CONTENT>.+</F-CONTENT>$",
            r"^(?:\S+ )*?<F-CONTENT>.*</F-CONTENT>$",
            r"^(a|ab)(?:c)?<F-CONTENT>.+</F-CONTENT>$",
            r"^(?:x+)<F-CONTENT>.+</F-CONTENT>",
            r"^\s*<F-CONTENT>.+</F-CONTENT>$",
            r"^(?:error: )?<F-CONTENT>.+</F-CONTENT>$",
            r"^(?:[^]:]+\]: )?<F-CONTENT>.*</F-CONTENT>$",
            // The prefix eats the whole line, so the full pattern always decides.
            r"^.*<F-CONTENT>.+</F-CONTENT>$",
        ];
        let texts = [
            "error: Failed password for root from 1.2.3.4 port 1 ssh2",
            "error: ",
            "error:",
            "",
            "client 1.2.3.4: auth failed",
            "client ::1: x",
            "client 1.2.3.4: ",
            "abc",
            "abcd",
            "ab",
            "a\nb",
            "\nfoo",
            "xxxx",
            "x",
            "[sshd] error: PAM: Authentication failure for x from 1.2.3.4",
            "[ID 800047 auth.info] Failed keyboard-interactive for x from 1.2.3.4 port 2 ssh2",
            "ab\n",
            "words then more words\nsecond line",
            "\u{e9}rror: caf\u{e9}",
            "x]: y",
        ];
        for prefregex in prefregexes {
            let expanded = expanded(prefregex);
            let split = SplitPrefregex::new(&expanded)
                .unwrap_or_else(|| panic!("shape not recognised: {prefregex}"));
            let (Matcher::Fast(full), _) = Matcher::compile(&expanded).unwrap() else {
                panic!()
            };
            let full = Matcher::Fast(full);
            let mut settled = 0;
            for text in texts {
                let expected = full.captures(text).map(|c| (c.host, c.content));
                // `None` is "undecided": the engine then falls back to the full pattern.
                if let Some(found) = split.captures(text) {
                    settled += 1;
                    assert_eq!(
                        found.map(|c| (c.host, c.content)),
                        expected,
                        "{prefregex} on {text:?}"
                    );
                }
            }
            if prefregex.starts_with("^.*") {
                assert_eq!(settled, 0);
            } else {
                assert!(settled > texts.len() / 2, "{prefregex}: {settled} settled");
            }
        }
    }

    #[test]
    fn ascii_twin_captures_like_the_unicode_pattern() {
        let patterns = [
            r"^Failed (?:password|keyboard-interactive(?:/\w+)?) for (?:invalid user )?<F-USER>.*</F-USER> from <HOST> port \d+(?: on \S+)?(?: ssh\d?)?(?:: [A-Z][A-Z0-9-]* \S+)?$",
            r"(?i)^user <F-USER>\w+</F-USER>\b.*?\s<HOST>\s*$",
            r"^<F-ID>[^ ]+</F-ID> [[:alpha:]]+ <HOST>(?: .)?$",
            r"(?s)^.+ from <HOST>.*$",
        ];
        let texts = [
            "Failed password for root from 1.2.3.4 port 22 ssh2",
            "Failed password for invalid user admin from 6.6.6.6 port 22 ssh2 from 2001:db8::1 port 5 ssh2",
            "Failed keyboard-interactive/pam for x from ::ffff:10.0.0.1 port 1 ssh2: RSA SHA256:abc",
            "USER Bob_1 went\tto 10.0.0.1 ",
            "user k\u{212a} x 10.0.0.1",
            "user \u{17f}am x 10.0.0.1",
            "id-1 abc 1.2.3.4 z",
            "id-1 ab\u{e9} 1.2.3.4",
            "line one\nfrom 1.2.3.4 tail",
            "Failed password for caf\u{e9} from 1.2.3.4 port 22 ssh2",
            "Failed password for x from 1.2.3.4 port \u{661}\u{662} ssh2",
        ];
        for pattern in patterns {
            let expanded = expanded(pattern);
            let (matcher, _) = Matcher::compile(&expanded).unwrap();
            let Matcher::Fast(fast) = &matcher else {
                panic!()
            };
            assert!(fast.ascii.is_some(), "{pattern}");
            let unicode = Matcher::Fast(FastMatcher {
                ascii: None,
                ..fast.clone()
            });
            for text in texts {
                assert_eq!(
                    matcher.captures(text),
                    unicode.captures(text),
                    "{pattern} on {text:?}"
                );
            }
        }
        for no_twin in [
            r"^caf\u{e9} <HOST>$",
            r"(?i)^\x{17F} <HOST>$",
            r"^\p{L}+ <HOST>$",
            "^\u{e9} <HOST>$",
        ] {
            let (Matcher::Fast(fast), _) = Matcher::compile(&expanded(no_twin)).unwrap() else {
                panic!()
            };
            assert!(fast.ascii.is_none(), "{no_twin}");
        }
    }

    #[test]
    fn split_prefregex_only_for_plain_shapes() {
        for refused in [
            r"^a|b<F-CONTENT>.+</F-CONTENT>$",
            r"(?s)^x<F-CONTENT>.+</F-CONTENT>$",
            r"^(?s)x<F-CONTENT>.+</F-CONTENT>$",
            r"^(?i:x)<F-CONTENT>.+</F-CONTENT>$",
            r"^x<F-CONTENT>.+</F-CONTENT> tail$",
            r"x<F-CONTENT>.+</F-CONTENT>$",
            r"^(x<F-CONTENT>.+</F-CONTENT>)$",
            r"^x<F-CONTENT>\S+</F-CONTENT>$",
        ] {
            assert!(
                SplitPrefregex::new(&expanded(refused)).is_none(),
                "{refused}"
            );
        }
        for accepted in [
            r"^[|(]<F-CONTENT>.+</F-CONTENT>$",
            r"^\(\|<F-CONTENT>.+</F-CONTENT>$",
            r"^[[:alpha:]](?P<x>y)<F-CONTENT>.*</F-CONTENT>$",
            r"^[]|][^]|]<F-CONTENT>.+</F-CONTENT>$",
        ] {
            assert!(
                SplitPrefregex::new(&expanded(accepted)).is_some(),
                "{accepted}"
            );
        }
        assert!(!is_anchored_sequence(r"^(a"));
        assert!(!is_anchored_sequence(r"^a)"));
        assert!(!is_anchored_sequence(r"^[a"));
        assert!(!is_anchored_sequence(r"^(?=a)"));
    }

    #[test]
    fn builtin_prefregexes_take_the_shortcut() {
        for name in builtin::names() {
            let spec = builtin::spec(name).unwrap();
            let filter = Filter::compile(name, &spec).unwrap();
            if spec.prefregex.is_some() {
                assert!(filter.split_prefregex.is_some(), "{name}");
            }
        }
    }

    #[test]
    fn fancy_fallback_is_reported_and_works() {
        let filter = Filter::compile(
            "t",
            &spec(
                &[r"^(?!ok)\w+ from <HOST>$", r"^(\w+) again \1 <HOST>$"],
                &[],
            ),
        )
        .unwrap();
        assert_eq!(filter.fallbacks().len(), 2);
        assert_eq!(
            host(&filter, "bad from 1.2.3.4"),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(host(&filter, "okay from 1.2.3.4"), None);
        assert_eq!(
            host(&filter, "x again x 1.2.3.5"),
            Some("1.2.3.5".parse().unwrap())
        );
    }

    #[test]
    fn every_error_is_reported() {
        let mut bad = spec(
            &["(unclosed <HOST>", "no address", "%(__prefix_line)s<HOST>"],
            &["[bad"],
        );
        bad.datepattern = Some("%Q".to_string());
        bad.program = Some("(".to_string());
        let errors = Filter::compile("broken", &bad).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                Some(FilterField::Program),
                Some(FilterField::Failregex(0)),
                Some(FilterField::Failregex(2)),
                Some(FilterField::Ignoreregex(0)),
                Some(FilterField::Failregex(1)),
                Some(FilterField::Datepattern),
            ]
        );
        assert!(
            errors[0]
                .to_string()
                .starts_with("filter \"broken\": program: ")
        );
        assert!(Filter::compile("empty", &FilterSpec::default()).is_err());
    }

    #[test]
    fn time_from_datepattern_or_inline_or_envelope() {
        let mut dated = spec(&[r"^login failed from <HOST>$"], &[]);
        dated.datepattern = Some("^%d.%m.%Y %H:%M:%S".to_string());
        let filter = Filter::compile("t", &dated).unwrap();
        let Verdict::Failure(failure) =
            judge(&filter, "26.11.2026 07:00:01 login failed from 1.2.3.4")
        else {
            panic!()
        };
        let expected = chrono::Local
            .with_ymd_and_hms(2026, 11, 26, 7, 0, 1)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(failure.time, Some(expected));

        let access = Filter::compile(
            "t",
            &spec(
                &[r#"^<HOST> \S+ \S+ \[[^\]]+\] "POST /wp-login\.php HTTP/[\d.]+" 200 "#],
                &[],
            ),
        )
        .unwrap();
        let Verdict::Failure(failure) = judge(
            &access,
            r#"1.2.3.4 - - [26/Nov/2026:07:00:01 +0000] "POST /wp-login.php HTTP/1.1" 200 512"#,
        ) else {
            panic!()
        };
        assert_eq!(
            failure.time,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap())
        );
    }

    #[test]
    fn one_ip4_and_one_ip6_are_alternatives() {
        let filter =
            Filter::compile("t", &spec(&[r"^relay=\[(?:IPv6:<IP6>|<IP4>)\]$"], &[])).unwrap();
        assert_eq!(
            host(&filter, "relay=[192.0.2.7]"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            host(&filter, "relay=[IPv6:2001:db8::7]"),
            Some("2001:db8::7".parse().unwrap())
        );
    }

    #[test]
    fn nofail_stops_at_its_failregex_and_alt_user_stands_in() {
        let filter = Filter::compile(
            "t",
            &spec(
                &[
                    r"^<F-NOFAIL>Accepted</F-NOFAIL> \w+ for \S+ from <HOST>$",
                    r"^(?:Accepted|Failed) \w+ for (?:user <F-USER>\S+</F-USER>|<F-ALT_USER>\S+</F-ALT_USER>) from <HOST>$",
                ],
                &[],
            ),
        )
        .unwrap();
        // The first failregex matches and says no failure: the second is never tried.
        assert!(matches!(
            judge(&filter, "Accepted password for bob from 192.0.2.1"),
            Verdict::Missed
        ));
        let Verdict::Failure(failure) = judge(&filter, "Failed password for bob from 192.0.2.1")
        else {
            panic!()
        };
        assert_eq!(failure.user.as_deref(), Some("bob"));
        let Verdict::Failure(failure) =
            judge(&filter, "Failed password for user eve from 192.0.2.1")
        else {
            panic!()
        };
        assert_eq!(failure.user.as_deref(), Some("eve"));
    }

    #[test]
    fn fail2ban_filters_see_the_line_with_only_its_date_cut_out() {
        let mut apache = spec(&[r"^\[\] \[error\] \[client <HOST>\] denied$"], &[]);
        apache.cut_date = Some(CutDate {
            patterns: vec!["{^LN-BEG}".to_string()],
        });
        let filter = Filter::compile("t", &apache).unwrap();
        let line = "[Sun Jun 09 07:57:47 2013] [error] [client 192.0.2.4] denied";
        let Verdict::Failure(failure) = judge(&filter, line) else {
            panic!("{:?}", judge(&filter, line))
        };
        assert_eq!(failure.host, "192.0.2.4".parse::<IpAddr>().unwrap());
        assert!(failure.time.is_some());
        // The same line in a json-file envelope.
        let json =
            format!(r#"{{"log":"{line}\n","stream":"stderr","time":"2026-11-26T07:00:01Z"}}"#);
        assert!(matches!(judge(&filter, &json), Verdict::Failure(_)));

        let mut epoch = spec(&[r"^ +\d+ <HOST> TCP_DENIED/403 "], &[]);
        epoch.cut_date = Some(CutDate {
            patterns: vec!["{^LN-BEG}Epoch".to_string()],
        });
        let filter = Filter::compile("t", &epoch).unwrap();
        let Verdict::Failure(failure) = judge(
            &filter,
            "1386543323.000      4 192.0.2.9 TCP_DENIED/403 4099 GET http://x/ -",
        ) else {
            panic!()
        };
        assert_eq!(
            failure.time,
            Some(Utc.with_ymd_and_hms(2013, 12, 8, 22, 55, 23).unwrap())
        );
    }
}
