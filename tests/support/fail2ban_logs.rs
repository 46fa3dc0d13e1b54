//! Fail2Ban's annotated sample logs (`tests/files/logs/*` in Debian's `fail2ban` package), read
//! the way Fail2Ban's own `samplestestcase.py` reads them: `# failJSON:` annotates the next line,
//! `# filterOptions:` starts a block run with one or several option sets, `# fileOptions:` is
//! merged into every set of its file, `# addFILE:` appends another sample file, and
//! `test.condition` / `constraint` are small Python expressions over the filter name and options.

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Utc};
use logjail::filter::envelope::{Decoder, Record};
use logjail::filter::session::Sessions;
use logjail::filter::{Filter, Verdict};
use serde_json::{Map, Value};

pub const LOGS_DIR: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";

/// One option set of a `filterOptions` block (already merged with the file's `fileOptions`).
pub type Options = Map<String, Value>;

/// What Fail2Ban's annotation says of a line.
#[derive(Debug, Clone)]
pub struct Expected {
    pub matched: bool,
    pub host: Option<String>,
    pub user: Option<String>,
}

/// An annotated (or plain, never-matching) line of a sample file.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The sample file the line is in (`sshd`, or `sshd-journal` added by `addFILE`).
    pub file: String,
    pub line_number: usize,
    pub line: String,
    pub expected: Expected,
    /// The annotation's `constraint`, if any: the line is only checked where it holds.
    pub constraint: Option<String>,
}

/// A sample file, in order: option blocks and the lines they apply to.
#[derive(Debug, Clone)]
pub enum Item {
    /// A `filterOptions` block: the lines that follow run with each of these sets. Sets whose
    /// `test.condition` fails are already left out.
    Block(Vec<Options>),
    Line(Sample),
}

pub fn logs_dir() -> &'static Path {
    let dir = Path::new(LOGS_DIR);
    assert!(
        dir.is_dir(),
        "{LOGS_DIR} is missing: install Debian's `fail2ban` package (apt-get install fail2ban; \
         scripts/test does it), whose sample logs these tests compare logjail with"
    );
    dir
}

/// The options that are the filter's own, as a jail would hand them over: `test.*` keys only
/// steer the test.
pub fn filter_options(options: &Options) -> Vec<(String, String)> {
    options
        .iter()
        .filter(|(key, _)| !key.starts_with("test."))
        .map(|(key, value)| {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            (key.clone(), text)
        })
        .collect()
}

/// Evaluates the few Python expressions Fail2Ban's sample files use as conditions.
pub fn condition_holds(expression: &str, filter_name: &str, options: &Options) -> bool {
    let compact: String = expression.chars().filter(|c| !c.is_whitespace()).collect();
    let (left, right, equal) = if let Some((l, r)) = compact.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = compact.split_once("!=") {
        (l, r, false)
    } else {
        panic!("unsupported condition in {filter_name}: {expression}");
    };
    let literal = right
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or_else(|| panic!("unsupported condition in {filter_name}: {expression}"));
    let value = if left == "name" {
        Some(filter_name.to_string())
    } else if let Some(key) = left
        .strip_prefix("opts.get('")
        .and_then(|k| k.strip_suffix("')"))
    {
        options.get(key).and_then(Value::as_str).map(str::to_string)
    } else {
        panic!("unsupported condition in {filter_name}: {expression}");
    };
    (value.as_deref() == Some(literal)) == equal
}

/// Reads the sample file `sample_name` (and the files it adds) as the test of the filter
/// `filter_name` does.
pub fn read_items(filter_name: &str, sample_name: &str) -> Vec<Item> {
    let mut files = vec![sample_name.to_string()];
    let mut items = Vec::new();
    let mut next = 0;
    while next < files.len() {
        let file = files[next].clone();
        next += 1;
        read_file(filter_name, &file, &mut items, &mut files);
    }
    items
}

fn read_file(filter_name: &str, file: &str, items: &mut Vec<Item>, files: &mut Vec<String>) {
    let path = logs_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut file_options = Options::new();
    let mut index = 0;
    // Until a file names its options, Fail2Ban runs the filter with its defaults (and the
    // file's own options, when it has some).
    let mut opened = false;
    while index < lines.len() {
        let raw = lines[index];
        index += 1;
        let annotation = raw
            .trim_start_matches('#')
            .strip_prefix(' ')
            .unwrap_or(raw.trim_start_matches('#'));
        let tagged = |tag: &str| -> Option<Value> {
            let json = annotation.strip_prefix(tag)?;
            Some(
                serde_json::from_str(json.trim())
                    .unwrap_or_else(|e| panic!("{file}:{index}: {tag} {e}")),
            )
        };
        if !raw.starts_with('#') {
            if raw.trim().is_empty() {
                continue;
            }
            if !opened {
                items.push(Item::Block(block(
                    filter_name,
                    &file_options,
                    &[Options::new()],
                )));
                opened = true;
            }
            items.push(Item::Line(Sample {
                file: file.to_string(),
                line_number: index,
                line: raw.trim_end_matches(['\r', '\n']).to_string(),
                expected: Expected {
                    matched: false,
                    host: None,
                    user: None,
                },
                constraint: None,
            }));
            continue;
        }
        if let Some(value) = tagged("fileOptions:") {
            file_options = value.as_object().cloned().unwrap_or_default();
            continue;
        }
        if let Some(value) = tagged("filterOptions:") {
            let sets: Vec<Options> = match value {
                Value::Array(sets) => sets
                    .into_iter()
                    .map(|v| v.as_object().cloned().unwrap_or_default())
                    .collect(),
                Value::Object(options) => vec![options],
                other => panic!("{file}:{index}: odd filterOptions {other}"),
            };
            items.push(Item::Block(block(filter_name, &file_options, &sets)));
            opened = true;
            continue;
        }
        if let Some(value) = tagged("addFILE:") {
            let added = value.as_str().unwrap_or_default().to_string();
            if !files.contains(&added) {
                files.push(added);
            }
            continue;
        }
        let Some(value) = tagged("failJSON:") else {
            continue;
        };
        if !opened {
            items.push(Item::Block(block(
                filter_name,
                &file_options,
                &[Options::new()],
            )));
            opened = true;
        }
        let line = lines.get(index).copied().unwrap_or("");
        index += 1;
        items.push(Item::Line(Sample {
            file: file.to_string(),
            line_number: index,
            line: line.trim_end_matches(['\r', '\n']).to_string(),
            expected: Expected {
                matched: value["match"].as_bool().unwrap_or(false),
                host: value.get("host").and_then(Value::as_str).map(String::from),
                user: value.get("user").and_then(Value::as_str).map(String::from),
            },
            constraint: value
                .get("constraint")
                .and_then(Value::as_str)
                .map(String::from),
        }));
    }
}

/// The option sets of a block, merged with the file's options, without those whose
/// `test.condition` fails.
fn block(filter_name: &str, file_options: &Options, sets: &[Options]) -> Vec<Options> {
    sets.iter()
        .map(|set| {
            let mut merged = file_options.clone();
            merged.extend(set.clone());
            merged
        })
        .filter(|set| {
            set.get("test.condition")
                .and_then(Value::as_str)
                .is_none_or(|condition| condition_holds(condition, filter_name, set))
        })
        .collect()
}

/// What logjail made of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub host: Option<IpAddr>,
    pub user: Option<String>,
    /// The address a failregex matched that logjail never bans, and why.
    pub refused: Option<String>,
}

/// Runs `line` through `filter` as logjail would read it: from a file, through the envelope
/// (syslog header, json-file, CRI), or, for `logtype: journal` sets, as journal fields (the
/// program from the `TAG[PID]:` Fail2Ban's journal backend writes, with `test.prefix-line`).
pub fn run(filter: &Filter, options: &Options, line: &str, now: DateTime<Utc>) -> Outcome {
    run_in(filter, options, line, now, None)
}

/// [`run`] among the earlier lines of the same file, whose sessions `sessions` keeps.
pub fn run_in(
    filter: &Filter,
    options: &Options,
    line: &str,
    now: DateTime<Utc>,
    sessions: Option<&mut Sessions>,
) -> Outcome {
    let verdict = if options.get("logtype").and_then(Value::as_str) == Some("journal") {
        let prefix = options
            .get("test.prefix-line")
            .and_then(Value::as_str)
            .unwrap_or("");
        let full = format!("{prefix}{line}");
        let (program, message) = journal_fields(&full);
        let mut record = Record::from_parts(message, None, program, now);
        record.pid = journal_pid(&full);
        filter.evaluate_in(&record, now, sessions)
    } else {
        let mut decoder = Decoder::new();
        let record = decoder
            .push_at(line, now)
            .expect("a sample line is a complete line");
        filter.evaluate_in(&record, now, sessions)
    };
    match verdict {
        Verdict::Failure(failure) => Outcome {
            host: Some(failure.host),
            user: failure.user,
            refused: None,
        },
        Verdict::NotAClient {
            address, reason, ..
        } => Outcome {
            host: None,
            user: None,
            refused: Some(format!("{address} {reason}")),
        },
        Verdict::Ignored { .. } | Verdict::Missed => Outcome {
            host: None,
            user: None,
            refused: None,
        },
    }
}

/// `HOST TAG[PID]: MESSAGE` (Fail2Ban's rendering of a journal entry) into the program and the
/// message, as logjail's journal source has them; a line without it is all message.
fn journal_fields(full: &str) -> (Option<&str>, &str) {
    let mut words = full.splitn(3, ' ');
    let (Some(_host), Some(tag), Some(message)) = (words.next(), words.next(), words.next()) else {
        return (None, full);
    };
    let Some(tag) = tag.strip_suffix(':') else {
        return (None, full);
    };
    let program = tag.split('[').next().unwrap_or(tag);
    if program.is_empty()
        || !program
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        return (None, full);
    }
    (Some(program), message)
}

/// The `PID` of `HOST TAG[PID]: …`, as the journal's `_PID` field gives it.
fn journal_pid(full: &str) -> Option<u32> {
    let tag = full.split(' ').nth(1)?.strip_suffix("]:")?;
    tag.split_once('[')?.1.parse().ok()
}

/// Whether logjail's outcome is Fail2Ban's: match or no match, the host, and the user where
/// the annotation names one.
pub fn agrees(expected: &Expected, outcome: &Outcome) -> bool {
    match (expected.matched, outcome.host) {
        (false, None) => true,
        (true, Some(host)) => {
            // An annotation without host (a session's line) only says that it matches.
            let host_agrees = expected
                .host
                .as_deref()
                .is_none_or(|wanted| annotated_address(wanted) == Some(host));
            let user_agrees = match (&expected.user, &outcome.user) {
                (Some(wanted), Some(got)) => wanted == got,
                (Some(_), None) => false,
                _ => true,
            };
            host_agrees && user_agrees
        }
        _ => false,
    }
}

/// The address a failJSON names, in the canonical form logjail reports (brackets dropped,
/// IPv4-mapped IPv6 as IPv4); `None` for a host name. Unlike the filter's own parse, it
/// keeps addresses that are never a client: Fail2Ban reports `0.0.0.0`, and so does logjail's
/// filter before its jail refuses it.
pub fn annotated_address(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok().map(logjail::address::canonical)
}

/// Whether Fail2Ban's match is on a host name, which logjail never resolves.
pub fn names_a_host(expected: &Expected) -> bool {
    expected.matched
        && expected.host.as_deref().is_some_and(|host| {
            host.parse::<IpAddr>().is_err() && host.contains(|c: char| c.is_ascii_alphabetic())
        })
}

pub fn describe(expected: &Expected, outcome: &Outcome) -> String {
    let fail2ban = if expected.matched {
        format!(
            "Fail2Ban: {}{}",
            expected.host.as_deref().unwrap_or("(no host)"),
            expected
                .user
                .as_deref()
                .map(|u| format!(" user {u:?}"))
                .unwrap_or_default()
        )
    } else {
        "Fail2Ban: no match".to_string()
    };
    let ours = match outcome.host {
        Some(host) => format!(
            "logjail: {host}{}",
            outcome
                .user
                .as_deref()
                .map(|u| format!(" user {u:?}"))
                .unwrap_or_default()
        ),
        None => "logjail: no match".to_string(),
    };
    format!("{fail2ban}, {ours}")
}
