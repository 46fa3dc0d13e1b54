//! `logjail regex`: run a filter over a log (or one line) and report what it finds.
//!
//! The counterpart of `fail2ban-regex`, with two additions operators asked for: `--json` for
//! scripts, and `--bans` to replay the log through a jail and see what it would ban.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::filter::date::StampKind;
use crate::filter::envelope::{Decoder, EnvelopeKind, Record};
use crate::filter::{Filter, FilterSpec, Verdict, builtin};
use crate::source::file::MAX_LINE_BYTES;

/// Where the lines come from.
#[derive(Debug, Clone)]
pub enum LogInput {
    File(PathBuf),
    Stdin,
    /// One line given on the command line.
    Line(String),
}

impl LogInput {
    /// A path that exists is a file, `-` is standard input, anything else is a log line.
    pub fn from_argument(argument: &str) -> LogInput {
        if argument == "-" {
            LogInput::Stdin
        } else if Path::new(argument).is_file() {
            LogInput::File(PathBuf::from(argument))
        } else {
            LogInput::Line(argument.to_string())
        }
    }

    fn describe(&self) -> String {
        match self {
            LogInput::File(path) => path.display().to_string(),
            LogInput::Stdin => "standard input".to_string(),
            LogInput::Line(_) => "the line given".to_string(),
        }
    }
}

/// How the filter was named: built-in, a YAML file, or a raw regex.
#[derive(Debug, Clone)]
pub struct ResolvedFilter {
    pub filter: Filter,
    pub spec: FilterSpec,
    pub origin: String,
}

/// Errors of `logjail regex`, printed as one line by the binary.
#[derive(Debug, thiserror::Error)]
pub enum RegexCommandError {
    #[error("{0}")]
    Filter(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Resolves FILTER: a built-in filter name, a Fail2Ban filter file (`…/sshd.conf[mode=…]`), a
/// path to a YAML filter, or a raw failregex.
pub fn resolve_filter(argument: &str) -> Result<ResolvedFilter, RegexCommandError> {
    let (name, spec, origin) = if let Some(spec) = builtin::spec(argument) {
        (argument.to_string(), spec, format!("{argument} (built-in)"))
    } else if let Some((path, options)) = fail2ban_file_argument(argument) {
        let read = crate::filter::fail2ban::read(&path, &options)
            .map_err(|e| RegexCommandError::Filter(e.to_string()))?;
        for note in &read.notes {
            eprintln!("note: {note}");
        }
        (
            argument.to_string(),
            read.spec,
            format!("{argument} (Fail2Ban filter file)"),
        )
    } else if Path::new(argument).is_file() {
        let spec = FilterSpec::from_yaml_file(Path::new(argument))
            .map_err(|e| RegexCommandError::Filter(e.to_string()))?;
        (argument.to_string(), spec, format!("{argument} (file)"))
    } else {
        let spec = FilterSpec {
            failregex: vec![argument.to_string()],
            ..FilterSpec::default()
        };
        ("regex".to_string(), spec, "the regex given".to_string())
    };
    let filter = Filter::compile(&name, &spec).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        RegexCommandError::Filter(lines.join("\n"))
    })?;
    Ok(ResolvedFilter {
        filter,
        spec,
        origin,
    })
}

/// `PATH.conf` or `PATH.local`, optionally with Fail2Ban's `[mode=aggressive, …]` options: a
/// Fail2Ban filter file, when it (or its `.local`) exists.
fn fail2ban_file_argument(argument: &str) -> Option<(std::path::PathBuf, Vec<(String, String)>)> {
    let (file, options) = match argument.split_once('[') {
        Some((file, rest)) => (file, rest.strip_suffix(']')?),
        None => (argument, ""),
    };
    let path = Path::new(file);
    let is_ini = path
        .extension()
        .is_some_and(|e| e == "conf" || e == "local");
    if !is_ini || !(path.is_file() || path.with_extension("local").is_file()) {
        return None;
    }
    let options = options
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    Some((path.to_path_buf(), options))
}

/// What the user asked `logjail regex` to print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputMode {
    #[default]
    Summary,
    /// Summary plus matched, ignored and missed lines.
    Verbose,
    /// One JSON object per failure line, nothing else.
    Json,
    /// Nothing at all: the caller prints from what [`scan`] hands it.
    Silent,
}

impl OutputMode {
    /// Whether notes and the summary are printed.
    fn prints_summary(self) -> bool {
        matches!(self, OutputMode::Summary | OutputMode::Verbose)
    }
}

/// One failure as seen by the replay, handed to a `--bans` observer.
#[derive(Debug, Clone)]
pub struct ReplayedFailure<'a> {
    pub line_number: u64,
    pub host: IpAddr,
    pub time: DateTime<Utc>,
    pub line: &'a str,
}

/// Counts kept while reading, the body of the summary.
#[derive(Debug, Default)]
pub struct Tally {
    pub lines: u64,
    pub matched: u64,
    pub ignored: u64,
    pub missed: u64,
    /// Lines a failregex matched whose address is never a client (`0.0.0.0`, multicast, …);
    /// also counted in `missed`, since they are no failure.
    pub not_a_client: u64,
    pub failregex_hits: Vec<u64>,
    pub ignoreregex_hits: Vec<u64>,
    /// Hits per kind of date found, in a stable order for printing.
    pub date_hits: Vec<(&'static str, u64)>,
}

impl Tally {
    fn count_date(&mut self, label: &'static str) {
        match self.date_hits.iter_mut().find(|(l, _)| *l == label) {
            Some((_, count)) => *count += 1,
            None => self.date_hits.push((label, 1)),
        }
    }
}

fn date_label(record: &Record<'_>) -> &'static str {
    match (record.envelope, record.stamp) {
        (EnvelopeKind::DockerJson, _) => "Docker json-file time",
        (EnvelopeKind::Cri, _) => "CRI time",
        (_, Some(StampKind::Bsd)) => "syslog (MON Day hh:mm:ss)",
        (_, Some(StampKind::Rfc3339)) => "RFC 3339 (YYYY-MM-DDThh:mm:ss)",
        (_, Some(StampKind::Other)) => "other leading date",
        (_, None) => "no leading date",
    }
}

/// Runs the filter over the input, printing per `mode` to `out`, and calls `on_failure` for
/// each failure (the `--bans` replay). Lines with invalid UTF-8 are read with replacement
/// characters rather than refused: attackers choose those bytes.
pub fn run<W: Write>(
    input: &LogInput,
    resolved: &ResolvedFilter,
    mode: OutputMode,
    out: &mut W,
    mut on_failure: impl FnMut(&ReplayedFailure<'_>),
) -> Result<Tally, RegexCommandError> {
    let options = ScanOptions {
        mode,
        skip_comment_lines: false,
    };
    scan(input, resolved, &options, out, |judged| {
        if let JudgedLine::Failure { failure, .. } = judged {
            on_failure(failure);
        }
    })
}

/// How [`scan`] reads and prints.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    pub mode: OutputMode,
    /// Leave out (and do not count) empty lines and lines starting with `#`, as fail2ban-regex
    /// does.
    pub skip_comment_lines: bool,
}

/// What [`scan`] found on one line, with the line as read.
#[derive(Debug)]
pub enum JudgedLine<'a> {
    Failure {
        failure: &'a ReplayedFailure<'a>,
        failregex_index: usize,
        raw: &'a str,
    },
    Ignored {
        ignoreregex_index: usize,
        line_number: u64,
        raw: &'a str,
    },
    /// No failure: no pattern matched, or the address is never a client.
    Missed { line_number: u64, raw: &'a str },
}

/// [`run`] with its options, calling `on_line` for every line judged.
pub fn scan<W: Write>(
    input: &LogInput,
    resolved: &ResolvedFilter,
    options: &ScanOptions,
    out: &mut W,
    mut on_line: impl FnMut(&JudgedLine<'_>),
) -> Result<Tally, RegexCommandError> {
    let mode = options.mode;
    let started = Instant::now();
    let io_error = |source: io::Error| RegexCommandError::Io {
        path: input.describe(),
        source,
    };
    let mut reader: Box<dyn BufRead> = match input {
        LogInput::File(path) => Box::new(BufReader::with_capacity(
            256 * 1024,
            File::open(path).map_err(io_error)?,
        )),
        LogInput::Stdin => Box::new(BufReader::new(io::stdin())),
        LogInput::Line(line) => Box::new(io::Cursor::new(line.clone().into_bytes())),
    };
    let filter = &resolved.filter;
    let mut tally = Tally {
        failregex_hits: vec![0; filter.failregex_count()],
        ignoreregex_hits: vec![0; filter.ignoreregex_count()],
        ..Tally::default()
    };
    // One reference time for the whole run: replaying an old log must not drift.
    let now = Utc::now();
    let mut decoder = Decoder::new();
    // The file is one source: a filter with sessions follows them through it, as the daemon does.
    let mut sessions = filter
        .uses_sessions()
        .then(crate::filter::session::Sessions::new);
    let mut buffer = Vec::with_capacity(4096);
    let mut missed_lines = Vec::new();
    let write_error = |source: io::Error| RegexCommandError::Io {
        path: "standard output".to_string(),
        source,
    };
    // Within a line longer than MAX_LINE_BYTES, whose remaining pieces are skipped.
    let mut in_long_line = false;
    let mut long_lines_dropped = 0u64;
    loop {
        buffer.clear();
        let read = read_line_capped(&mut reader, &mut buffer, READ_LINE_CAP).map_err(io_error)?;
        if read == 0 {
            break;
        }
        let ends_line = buffer.last() == Some(&b'\n');
        if in_long_line || buffer.len() - usize::from(ends_line) > MAX_LINE_BYTES {
            // The daemon's sources drop such a line whole: cut into pieces, each would end (or
            // start) where whoever wrote the line's middle chose, forged address included.
            if !in_long_line {
                tally.lines += 1;
                long_lines_dropped += 1;
            }
            in_long_line = !ends_line;
            continue;
        }
        // `from_utf8` checks ASCII a word at a time; the lossy conversion walks it in chunks,
        // and is only needed for the rare line that is not valid UTF-8.
        let text = match std::str::from_utf8(&buffer) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&buffer),
        };
        let raw = text.trim_end_matches(['\r', '\n']);
        if options.skip_comment_lines && (raw.is_empty() || raw.starts_with('#')) {
            continue;
        }
        tally.lines += 1;
        let line_number = tally.lines;
        let Some(record) = decoder.push_at(&text, now) else {
            continue;
        };
        tally.count_date(date_label(&record));
        let verdict = match filter.evaluate_in(&record, now, sessions.as_mut()) {
            // The filter reports a failure of the unspecified address as Fail2Ban does; the
            // daemon's jails refuse it, and so does the replay.
            Verdict::Failure(failure) => match crate::address::not_a_client(failure.host) {
                Some(reason) => Verdict::NotAClient {
                    failregex_index: failure.failregex_index,
                    address: failure.host,
                    reason,
                },
                None => Verdict::Failure(failure),
            },
            other => other,
        };
        match verdict {
            Verdict::Failure(failure) => {
                tally.matched += 1;
                if let Some(hits) = tally.failregex_hits.get_mut(failure.failregex_index) {
                    *hits += 1;
                }
                let time = failure.time.unwrap_or(now);
                on_line(&JudgedLine::Failure {
                    failure: &ReplayedFailure {
                        line_number,
                        host: failure.host,
                        time,
                        line: &record.text,
                    },
                    failregex_index: failure.failregex_index,
                    raw,
                });
                match mode {
                    OutputMode::Json => {
                        let object = serde_json::json!({
                            "line": line_number,
                            "host": failure.host.to_string(),
                            // A line without a time of its own says so instead of
                            // pretending the replay's wall clock is its time.
                            "time": failure.time.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
                            "user": failure.user,
                            "id": failure.id,
                            "failregex": failure.failregex_index,
                        });
                        writeln!(out, "{object}").map_err(write_error)?;
                    }
                    OutputMode::Verbose => {
                        writeln!(
                            out,
                            "matched  line {line_number}: host {} | {}",
                            failure.host, record.text
                        )
                        .map_err(write_error)?;
                    }
                    OutputMode::Summary | OutputMode::Silent => {}
                }
            }
            Verdict::Ignored {
                ignoreregex_index, ..
            } => {
                tally.ignored += 1;
                if let Some(hits) = tally.ignoreregex_hits.get_mut(ignoreregex_index) {
                    *hits += 1;
                }
                on_line(&JudgedLine::Ignored {
                    ignoreregex_index,
                    line_number,
                    raw,
                });
                if mode == OutputMode::Verbose {
                    writeln!(out, "ignored  line {line_number}: {}", record.text)
                        .map_err(write_error)?;
                }
            }
            Verdict::NotAClient {
                address, reason, ..
            } => {
                tally.missed += 1;
                tally.not_a_client += 1;
                on_line(&JudgedLine::Missed { line_number, raw });
                if mode == OutputMode::Verbose {
                    writeln!(
                        out,
                        "refused  line {line_number}: {address} is {reason} | {}",
                        record.text
                    )
                    .map_err(write_error)?;
                }
            }
            Verdict::Missed => {
                tally.missed += 1;
                on_line(&JudgedLine::Missed { line_number, raw });
                if mode == OutputMode::Verbose && missed_lines.len() < MAX_MISSED_SHOWN {
                    missed_lines.push((line_number, record.text.to_string()));
                }
            }
        }
    }
    // A json-file or CRI line still in pieces at the end was cut off (the file was copied
    // mid-write). The daemon never judges such a fragment, since its end is unknown and an
    // attacker could choose where it stops; the replay does the same, and says so.
    if long_lines_dropped > 0 && mode.prints_summary() {
        writeln!(
            out,
            "note: {long_lines_dropped} line(s) longer than {MAX_LINE_BYTES} bytes were not judged, as the daemon drops them"
        )
        .map_err(write_error)?;
    }
    if tally.not_a_client > 0 && mode.prints_summary() {
        writeln!(
            out,
            "note: {} matched line(s) name an address that is never a client (unspecified, multicast, broadcast); counted as missed, as the daemon does",
            tally.not_a_client
        )
        .map_err(write_error)?;
    }
    let unfinished = decoder.flush(now).len();
    if unfinished > 0 && mode.prints_summary() {
        writeln!(
            out,
            "note: {unfinished} partial line(s) at the end of the input never got their last piece and were not judged"
        )
        .map_err(write_error)?;
    }
    if mode == OutputMode::Verbose {
        for (line_number, text) in &missed_lines {
            writeln!(out, "missed   line {line_number}: {text}").map_err(write_error)?;
        }
        // Refused lines were printed as they came.
        let not_shown = tally.missed - tally.not_a_client - missed_lines.len() as u64;
        if not_shown > 0 {
            writeln!(out, "missed   ({not_shown} more missed lines not shown)")
                .map_err(write_error)?;
        }
    }
    if mode.prints_summary() {
        print_summary(out, input, resolved, &tally, started.elapsed()).map_err(write_error)?;
    }
    Ok(tally)
}

/// Longest piece of input taken as one line: a file without newlines is read in pieces of
/// this size rather than all at once. One byte more than the longest line judged (plus its
/// newline), so that a longer one is recognised from its first piece.
const READ_LINE_CAP: usize = MAX_LINE_BYTES + 1;

/// Appends the next line (with its `\n`, if any) to `line`, taking at most `cap` bytes; returns
/// how many bytes it took, 0 at the end of input. A longer line comes out in `cap`-sized pieces.
fn read_line_capped<R: BufRead + ?Sized>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cap: usize,
) -> io::Result<usize> {
    let start = line.len();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(line.len() - start);
        }
        let room = cap - (line.len() - start);
        let mut window = &chunk[..chunk.len().min(room)];
        // Reading from a slice finds the newline with the platform's memchr.
        let taken = window.read_until(b'\n', line)?;
        reader.consume(taken);
        if line.last() == Some(&b'\n') || line.len() - start == cap {
            return Ok(line.len() - start);
        }
    }
}

/// Missed lines printed with `-v`; a large log would drown the summary otherwise.
const MAX_MISSED_SHOWN: usize = 1000;

fn print_summary<W: Write>(
    out: &mut W,
    input: &LogInput,
    resolved: &ResolvedFilter,
    tally: &Tally,
    elapsed: std::time::Duration,
) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "Filter : {}", resolved.origin)?;
    writeln!(out, "Log    : {}", input.describe())?;
    writeln!(out)?;
    writeln!(out, "Failregex: {} total", tally.matched)?;
    for (index, pattern) in resolved.spec.failregex.iter().enumerate() {
        writeln!(
            out,
            "|  {index:>2}) [{}] {pattern}",
            tally.failregex_hits[index]
        )?;
    }
    writeln!(out, "`-")?;
    writeln!(out, "Ignoreregex: {} total", tally.ignored)?;
    for (index, pattern) in resolved.spec.ignoreregex.iter().enumerate() {
        writeln!(
            out,
            "|  {index:>2}) [{}] {pattern}",
            tally.ignoreregex_hits[index]
        )?;
    }
    writeln!(out, "`-")?;
    writeln!(out, "Date formats:")?;
    for (label, hits) in &tally.date_hits {
        writeln!(out, "|  [{hits}] {label}")?;
    }
    writeln!(out, "`-")?;
    writeln!(
        out,
        "Lines: {} lines, {} ignored, {} matched, {} missed",
        tally.lines, tally.ignored, tally.matched, tally.missed
    )?;
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        tally.lines as f64 / seconds
    } else {
        0.0
    };
    writeln!(out, "[processed in {seconds:.3} s, {rate:.0} lines/s]")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference behaviour: `read_until` through a `take` adapter, one line at a time.
    fn lines_by_take(input: &[u8], cap: usize) -> Vec<Vec<u8>> {
        let mut reader = io::Cursor::new(input);
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = std::io::Read::take(&mut reader, cap as u64)
                .read_until(b'\n', &mut line)
                .unwrap();
            if read == 0 {
                return lines;
            }
            lines.push(line);
        }
    }

    fn lines_capped(input: &[u8], cap: usize, buffer_size: usize) -> Vec<Vec<u8>> {
        let mut reader = BufReader::with_capacity(buffer_size, input);
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            if read_line_capped(&mut reader, &mut line, cap).unwrap() == 0 {
                return lines;
            }
            lines.push(line);
        }
    }

    #[test]
    fn lines_past_the_daemons_cap_are_not_judged_in_pieces() {
        // A user name long enough that a piece boundary falls right after its own forged
        // " from 6.6.6.6 port 22": judged in pieces, the first would be a failure of
        // 6.6.6.6. The daemon's sources drop such a line whole; so does the replay.
        let prefix = "Invalid user ";
        let forged = " from 6.6.6.6 port 22";
        let padding = "a".repeat(READ_LINE_CAP - prefix.len() - forged.len());
        let long = format!("{prefix}{padding}{forged} from 10.0.0.1 port 4242");
        let longest = format!("Invalid user {}", "b".repeat(MAX_LINE_BYTES - 13));
        let input = format!("{long}\nInvalid user bob from 10.0.0.2 port 22\n{longest}\n{long}");
        let resolved = resolve_filter("sshd").unwrap();
        let mut out = Vec::new();
        let mut hosts = Vec::new();
        let tally = run(
            &LogInput::Line(input),
            &resolved,
            OutputMode::Summary,
            &mut out,
            |failure| hosts.push(failure.host),
        )
        .unwrap();
        assert_eq!(hosts, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(tally.lines, 4);
        // A line of exactly the cap is judged (and missed: it names no address).
        assert_eq!(tally.missed, 1);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("note: 2 line(s) longer than"), "{out}");
    }

    #[test]
    fn capped_reading_splits_like_take_and_read_until() {
        let inputs: [&[u8]; 7] = [
            b"",
            b"one\ntwo\n",
            b"no newline at end",
            b"\n\n\n",
            b"exactly8\nlonger than eight bytes\nx",
            b"12345678\n123456789\n1234567",
            "caf\u{e9} \u{fffd}\nnext\n".as_bytes(),
        ];
        for input in inputs {
            for cap in [1, 3, 8, 9, 64] {
                for buffer_size in [1, 2, 5, 4096] {
                    assert_eq!(
                        lines_capped(input, cap, buffer_size),
                        lines_by_take(input, cap),
                        "{input:?} cap {cap} buffer {buffer_size}"
                    );
                }
            }
        }
    }
}
