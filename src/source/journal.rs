//! Following the systemd journal through `journalctl --follow --output=json`.
//!
//! For hosts where sshd logs only to the journal. `journalctl` is run as a child process
//! (argv, never a shell) rather than linking libsystemd: it is on every systemd host, reads
//! every journal file format version its systemd writes, and a sidecar container reads the
//! host's journal with it from a mounted directory (`directory:` in the config).
//!
//! Each entry is handed on as one syslog-like line,
//! `2026-11-26T07:00:01.123456Z web sshd[123]: MESSAGE`, which the envelope decoder takes
//! apart like a line of `/var/log/auth.log`: the time, the program (`SYSLOG_IDENTIFIER`) and
//! the message. Newlines inside MESSAGE become spaces, so that a message cannot forge a second
//! entry with a tag and a host of its choosing.
//!
//! Where it starts: right after the stored position, the journal cursor (`__CURSOR`) of the last
//! entry handed on, in the journal's own order: an entry written later is read whatever its
//! time stamp says. Without a stored position, at the end of the journal, like `tail -n0`: a
//! host journal's past is large and was dealt with by whatever watched it before.
//!
//! The position keeps, besides the cursor, the latest time handed on and how many entries
//! carried exactly that time. `journalctl` refuses only a cursor it cannot parse (a damaged
//! store); the source then resumes by that time (`--since`, skipping that many entries), with
//! a warning. A position stored by a logjail from before cursors holds only a time and is
//! resumed the same way. A cursor whose entry is gone (vacuumed) or that comes from another
//! machine's journal is not refused: `journalctl` places it by the sequence number, the boot's
//! monotonic time or the wall-clock time, whichever the journal shares with it.
//!
//! Selection is `journalctl`'s: `unit` is `--unit=UNIT` (the unit's processes and systemd's
//! own messages about it; `ssh` means `ssh.service`, globs work), matches are `FIELD=value`
//! arguments. Reading the system journal needs root or the `systemd-journal` group; a
//! container reads the host's by mounting `/var/log/journal` (or `/run/log/journal` where the
//! journal is not persistent) and naming it in `directory:`.
//!
//! Limits:
//! - Only the latest boot in the journal is read (`journalctl --follow` implies `--boot`;
//!   `--merge` would lift that only by also reading other machines' journals). After a reboot,
//!   entries of the previous boot written after the last one handed on (the last seconds
//!   before shutdown) are not read.
//! - Resuming by time (an old stored position, or a refused cursor) takes entries written
//!   later with an older time stamp than the stored one (a clock stepped back) as already
//!   read, and a foreign cursor placed by its wall-clock time has the same limit.
//! - Without a stored position, nothing is stored until the first entry is handed on: a
//!   daemon restarted before that starts at the end again.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::FutureExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::MAX_BATCH_LINES;
use super::file::MAX_LINE_BYTES;
use crate::config::JournalSelector;
use crate::messages::{LineBatch, Origin, Position, RawLine};

/// The command run when none is configured: found on `PATH`.
pub const DEFAULT_JOURNALCTL: &str = "journalctl";

/// First wait before `journalctl` is started again after it ended.
pub const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Longest wait between restarts: a journal directory that stays empty (journalctl exits at
/// once) costs one start every this long.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Longest JSON line read from `journalctl`. A non-UTF-8 MESSAGE comes as an array of byte
/// values, up to four characters per byte, so this leaves room for a MESSAGE of
/// [`MAX_LINE_BYTES`] in that form; longer lines are dropped unread.
const MAX_JSON_LINE_BYTES: usize = 4 * MAX_LINE_BYTES + 64 * 1024;

/// How much of `journalctl`'s error output is kept for the message when it exits.
const MAX_STDERR_BYTES: usize = 4096;

/// The only fields asked for: parsing the rest of an entry would be wasted work. The JSON
/// output always has `__CURSOR` and `__REALTIME_TIMESTAMP` (and the boot id and monotonic
/// time) whatever is asked for; naming them here would make no difference.
const OUTPUT_FIELDS: &str = "MESSAGE,SYSLOG_IDENTIFIER,_COMM,_PID,SYSLOG_PID,_HOSTNAME";

/// Program named in the line of an entry that names none, so that the decoder never takes
/// the first word of the message for a tag.
const UNKNOWN_PROGRAM: &str = "unknown";

/// What to follow and how.
#[derive(Debug, Clone)]
pub struct JournalFollowConfig {
    /// Carried by every batch; see [`journal_origin`].
    pub origin: Arc<Origin>,
    /// Which entries: unit, matches and the journal directory.
    pub selector: JournalSelector,
    /// The `journalctl` to run; tests and unusual installs point it elsewhere.
    pub journalctl: PathBuf,
    /// Arguments put before the selection, e.g. `--file=PATH` to read one journal file.
    pub extra_args: Vec<OsString>,
    /// The position stored by a previous run: resume right after the last entry handed on.
    pub resume: Option<Position>,
    /// First wait before a restart after `journalctl` ended; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    /// See `first_backoff`.
    pub max_backoff: Duration,
}

impl JournalFollowConfig {
    /// Follows `selector` with the `journalctl` on `PATH`, from the end of the journal.
    pub fn new(selector: JournalSelector) -> JournalFollowConfig {
        let selector = selector.canonical();
        JournalFollowConfig {
            origin: Arc::new(journal_origin(&selector)),
            selector,
            journalctl: PathBuf::from(DEFAULT_JOURNALCTL),
            extra_args: Vec::new(),
            resume: None,
            first_backoff: DEFAULT_FIRST_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Why following the journal stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum JournalSourceError {
    /// Said once: there is nothing to retry.
    #[error(
        "cannot run {command}: not found (install systemd's journalctl, or mount the host journal \
         into a container that has it)"
    )]
    NotFound { command: String },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
}

/// The origin of a journal source. `Origin::Journal` has room for a unit only, so the
/// matches and the directory are written into it after the unit: two selectors that differ
/// in them then get different origins (and stored positions) — the matcher keeps one route
/// table per origin. A plain unit stays `ssh.service`, the whole journal `None`.
pub fn journal_origin(selector: &JournalSelector) -> Origin {
    let selector = selector.canonical();
    let mut parts: Vec<String> = Vec::new();
    if let Some(unit) = &selector.unit {
        parts.push(unit.clone());
    }
    for m in &selector.matches {
        parts.push(format!("{}={}", m.field, m.value));
    }
    if let Some(directory) = &selector.directory {
        parts.push(format!("in {}", directory.display()));
    }
    Origin::Journal {
        unit: (!parts.is_empty()).then(|| parts.join(" ")),
    }
}

/// Where a run of `journalctl` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// At the end: only entries written from now on.
    End,
    /// Right after the entry of `cursor`, in the journal's order whatever the entries' time
    /// stamps. `time` and `seen` are where to start by time should `journalctl` refuse the
    /// cursor.
    Cursor {
        cursor: String,
        time: DateTime<Utc>,
        seen: u32,
    },
    /// After the `seen` first entries stamped `time` (none of those stamped earlier): a
    /// position stored before journal sources kept cursors, or a refused cursor.
    After { time: DateTime<Utc>, seen: u32 },
}

/// The command line of one run of `journalctl`.
fn journalctl_args(config: &JournalFollowConfig, start: &Start) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--follow",
        "--output=json",
        "--no-pager",
        "--quiet",
        // Without it, fields of 4096 bytes or more come as `null`.
        "--all",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(format!("--output-fields={OUTPUT_FIELDS}").into());
    args.extend(config.extra_args.iter().cloned());
    if let Some(directory) = &config.selector.directory {
        let mut arg = OsString::from("--directory=");
        arg.push(directory);
        args.push(arg);
    }
    match start {
        Start::End => args.push("--lines=0".into()),
        Start::Cursor { cursor, .. } => {
            // `--cursor`, not `--after-cursor`: journalctl 252 skips the first entry it finds
            // after seeking, whether or not it is the cursor's, so an entry would be lost when
            // the cursor's own entry is gone (vacuumed). The cursor's entry is skipped here
            // instead, by its cursor. Without `--lines=all`, `--follow` would show only the
            // first ten entries before waiting for new ones.
            args.push(format!("--cursor={cursor}").into());
            args.push("--lines=all".into());
        }
        Start::After { time, .. } => {
            args.push(format!("--since={}", since_argument(*time)).into());
        }
    }
    if let Some(unit) = &config.selector.unit {
        args.push(format!("--unit={unit}").into());
    }
    if !config.selector.matches.is_empty() {
        args.push("--".into());
        for m in &config.selector.matches {
            args.push(format!("{}={}", m.field, m.value).into());
        }
    }
    args
}

/// `@SECONDS.MICROS`: journalctl reads it exactly and takes entries from that microsecond on.
fn since_argument(time: DateTime<Utc>) -> String {
    let micros = time.timestamp_micros();
    format!(
        "@{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    )
}

/// The fields of an entry that make its line. Each is a string, an array of byte values (not
/// valid UTF-8, or not printable), an array of those (a field given several times), or null.
/// The cursor is journalctl's own and always a plain string: borrowed from the JSON line, it
/// costs no allocation.
#[derive(Debug, Deserialize)]
struct Entry<'a> {
    #[serde(rename = "__CURSOR", borrow)]
    cursor: Option<Cow<'a, str>>,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<Value>,
    #[serde(rename = "MESSAGE")]
    message: Option<Value>,
    #[serde(rename = "SYSLOG_IDENTIFIER")]
    identifier: Option<Value>,
    #[serde(rename = "_COMM")]
    command: Option<Value>,
    #[serde(rename = "_PID")]
    pid: Option<Value>,
    #[serde(rename = "SYSLOG_PID")]
    syslog_pid: Option<Value>,
    #[serde(rename = "_HOSTNAME")]
    hostname: Option<Value>,
}

/// The values of one field, decoded (bytes lossily).
fn field_values(value: Option<&Value>) -> Vec<Cow<'_, str>> {
    match value {
        Some(Value::String(text)) => vec![Cow::Borrowed(text.as_str())],
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => vec![bytes_text(items)],
        Some(Value::Array(items)) => items
            .iter()
            .flat_map(|item| field_values(Some(item)))
            .collect(),
        _ => Vec::new(),
    }
}

fn bytes_text(items: &[Value]) -> Cow<'static, str> {
    let bytes: Vec<u8> = items
        .iter()
        .filter_map(Value::as_u64)
        .map(|byte| u8::try_from(byte).unwrap_or(b'?'))
        .collect();
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

fn first_value(value: Option<&Value>) -> Option<Cow<'_, str>> {
    field_values(value).into_iter().next()
}

/// Keeps the characters a syslog tag or host may have; anything else becomes `_`, so that the
/// decoder splits the line where it was put together, whatever the field held.
fn token(text: &str, allowed: fn(char) -> bool) -> String {
    text.chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect()
}

fn program_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@')
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// An entry as read, before the resume check.
#[derive(Debug, PartialEq, Eq)]
struct EntryLine<'a> {
    time: DateTime<Utc>,
    /// Where the entry is in the journal; borrowed from the JSON line.
    cursor: Cow<'a, str>,
    text: String,
}

/// Why a JSON line gave no entry.
#[derive(Debug, PartialEq, Eq)]
enum Unusable {
    /// Not the JSON of a journal entry.
    Malformed(String),
    /// No (or an unreadable) `__REALTIME_TIMESTAMP`: without it the entry has no position.
    NoTime,
    /// No `__CURSOR` (journalctl always writes one): without it the entry has no position.
    NoCursor,
    /// No MESSAGE: nothing a filter could match.
    NoMessage,
    /// The line would be longer than [`MAX_LINE_BYTES`]; dropped whole, as the file source does.
    TooLong,
}

/// Turns one `journalctl --output=json` line into the syslog-like line handed on.
fn entry_line(json: &[u8]) -> Result<EntryLine<'_>, Unusable> {
    let entry: Entry =
        serde_json::from_slice(json).map_err(|e| Unusable::Malformed(e.to_string()))?;
    let micros = first_value(entry.realtime.as_ref())
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or(Unusable::NoTime)?;
    let time = DateTime::<Utc>::from_timestamp_micros(micros).ok_or(Unusable::NoTime)?;
    let cursor = entry
        .cursor
        .filter(|cursor| !cursor.is_empty())
        .ok_or(Unusable::NoCursor)?;
    let messages = field_values(entry.message.as_ref());
    if messages.is_empty() {
        return Err(Unusable::NoMessage);
    }
    let message_len: usize = messages.iter().map(|m| m.len() + 1).sum();
    if message_len > MAX_LINE_BYTES {
        return Err(Unusable::TooLong);
    }

    let program = first_value(entry.identifier.as_ref())
        .or_else(|| first_value(entry.command.as_ref()))
        .map(|name| token(&name, program_char))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| UNKNOWN_PROGRAM.to_string());
    let pid = first_value(entry.pid.as_ref())
        .or_else(|| first_value(entry.syslog_pid.as_ref()))
        .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    // A host named like a CRI stream would make the line read as a CRI record; without the
    // host the line is still a complete syslog line.
    let host = first_value(entry.hostname.as_ref())
        .map(|host| token(&host, host_char))
        .filter(|host| !host.is_empty() && host != "stdout" && host != "stderr");

    let mut text = String::with_capacity(64 + message_len);
    text.push_str(&time.to_rfc3339_opts(SecondsFormat::Micros, true));
    if let Some(host) = host {
        text.push(' ');
        text.push_str(&host);
    }
    text.push(' ');
    text.push_str(&program);
    if let Some(pid) = pid {
        let _ = write!(text, "[{pid}]");
    }
    text.push(':');
    for message in &messages {
        text.push(' ');
        // One entry, one line: a newline in the message must not start a forged entry.
        text.extend(
            message
                .chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    }
    Ok(EntryLine { time, cursor, text })
}

/// Decides which entries of a run are new and where the source stands after each.
#[derive(Debug, Clone)]
struct Progress {
    /// Where this run started: entries before it were handed on by an earlier run.
    start: Start,
    /// Entries stamped exactly the start time skipped so far in this run.
    skipped_at_start: u32,
    /// Entries handed on in this run. Until the first, an entry may be the start cursor's own.
    handed_in_run: u64,
    /// The latest time handed on and how many entries carried it: what to resume from should
    /// the cursor be refused.
    last_time: Option<(DateTime<Utc>, u32)>,
    /// The cursor of the last entry handed on (or of the start); empty when none is known.
    /// Overwritten in place, so following costs no allocation per entry for it.
    cursor: String,
}

impl Progress {
    fn new(start: Start) -> Progress {
        let (last_time, cursor) = match &start {
            Start::End => (None, String::new()),
            Start::Cursor { cursor, time, seen } => (Some((*time, *seen)), cursor.clone()),
            Start::After { time, seen } => (Some((*time, *seen)), String::new()),
        };
        Progress {
            start,
            skipped_at_start: 0,
            handed_in_run: 0,
            last_time,
            cursor,
        }
    }

    /// A run starting where this one stands.
    fn restart(&self, fallback: &Start) -> Progress {
        match self.last_time {
            Some((time, seen)) if !self.cursor.is_empty() => Progress::new(Start::Cursor {
                cursor: self.cursor.clone(),
                time,
                seen,
            }),
            Some((time, seen)) => Progress::new(Start::After { time, seen }),
            None => Progress::new(fallback.clone()),
        }
    }

    /// The run that replaces one whose start cursor `journalctl` refused: by time, from the
    /// time stored with the cursor. `None` if this run did not start at a cursor.
    fn without_cursor(&self) -> Option<Progress> {
        match &self.start {
            Start::Cursor { time, seen, .. } => Some(Progress::new(Start::After {
                time: *time,
                seen: *seen,
            })),
            _ => None,
        }
    }

    /// Whether the entry at `cursor`, stamped `time`, is new; if so, it becomes the last one
    /// handed on.
    fn accept(&mut self, time: DateTime<Utc>, cursor: &str) -> bool {
        match &self.start {
            Start::End => {}
            // Started at the cursor's own entry: it was handed on by the earlier run. Should
            // that entry be gone, journalctl starts at the next one, which is new.
            Start::Cursor { cursor: start, .. } => {
                if self.handed_in_run == 0 && cursor == start {
                    return false;
                }
            }
            &Start::After {
                time: start,
                seen: already,
            } => {
                if time < start {
                    return false;
                }
                if time == start && self.skipped_at_start < already {
                    self.skipped_at_start += 1;
                    return false;
                }
            }
        }
        self.handed_in_run += 1;
        // The time only moves forward: an entry stamped earlier than the last one (a clock
        // stepped back) leaves it as it is. The cursor follows the journal's order.
        self.last_time = match self.last_time {
            Some((last, seen)) if time == last => Some((last, seen.saturating_add(1))),
            Some((last, seen)) if time < last => Some((last, seen)),
            _ => Some((time, 1)),
        };
        self.cursor.clear();
        self.cursor.push_str(cursor);
        true
    }

    /// Where the source stands: what is stored. Built once per batch, not per entry.
    fn position(&self) -> Option<Position> {
        let (time, seen_at_time) = self.last_time?;
        Some(if self.cursor.is_empty() {
            Position::Time { time, seen_at_time }
        } else {
            Position::Cursor {
                cursor: self.cursor.clone(),
                time,
                seen_at_time,
            }
        })
    }
}

/// Lines of a child's output, each at most `max` bytes; longer ones are skipped whole.
struct BoundedLines<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    max: usize,
    /// Inside a line that grew past `max`: dropped up to its end.
    overlong: bool,
}

/// One read from [`BoundedLines`].
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Line(Vec<u8>),
    /// A line longer than allowed ended; its bytes were dropped.
    Overlong,
    End,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader: BufReader::with_capacity(64 * 1024, reader),
            line: Vec::new(),
            max,
            overlong: false,
        }
    }

    /// Cancel-safe: what was read stays in `self`, so a dropped call loses nothing.
    async fn next(&mut self) -> io::Result<Read> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                // A last line without its newline is a line cut by the child's end: dropped.
                self.line.clear();
                self.overlong = false;
                return Ok(Read::End);
            }
            let (piece, ends_line) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            if !self.overlong && self.line.len() + piece.len() <= self.max {
                self.line.extend_from_slice(piece);
            } else {
                self.overlong = true;
                self.line.clear();
            }
            let used = piece.len() + usize::from(ends_line);
            self.reader.consume(used);
            if ends_line {
                if std::mem::take(&mut self.overlong) {
                    return Ok(Read::Overlong);
                }
                return Ok(Read::Line(std::mem::take(&mut self.line)));
            }
        }
    }
}

/// Follows the journal until `shutdown`, sending its entries to `tx` in batches of at most
/// [`MAX_BATCH_LINES`]; the last line of each batch carries the position just past it.
///
/// `journalctl` is started again (after a growing wait) whenever it ends, resuming after the
/// last entry handed on. Returns `Ok` on shutdown or when the receiver is gone, an error when
/// `journalctl` cannot be run at all.
pub async fn follow(
    config: JournalFollowConfig,
    tx: mpsc::Sender<LineBatch>,
    shutdown: CancellationToken,
) -> Result<(), JournalSourceError> {
    let command = config.journalctl.display().to_string();
    let first_start = match &config.resume {
        Some(Position::Cursor {
            cursor,
            time,
            seen_at_time,
        }) => Start::Cursor {
            cursor: cursor.clone(),
            time: *time,
            seen: *seen_at_time,
        },
        // Stored by a logjail that resumed the journal by time.
        &Some(Position::Time { time, seen_at_time }) => Start::After {
            time,
            seen: seen_at_time,
        },
        Some(Position::File { .. }) => {
            tracing::warn!(origin = %config.origin, "stored position is not a journal position: ignoring it");
            Start::End
        }
        None => Start::End,
    };
    // Should journalctl end before anything was handed on, the next run must not start at the
    // end again (entries written in between would be lost) but where the first one did. The
    // journal is stamped by this machine's wall clock, so that is the clock to ask.
    let restart_fallback = match &first_start {
        Start::End => Start::After {
            time: Utc::now(),
            seen: 0,
        },
        start => start.clone(),
    };
    let mut progress = Progress::new(first_start);
    let mut backoff = config.first_backoff;
    loop {
        let args = journalctl_args(&config, &progress.start);
        tracing::debug!(origin = %config.origin, command, ?args, "starting journalctl");
        let mut child = match Command::new(&config.journalctl)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not in the daemon's process group: a Ctrl-C at the terminal stops the daemon,
            // which then stops journalctl, rather than journalctl ending on its own first.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(JournalSourceError::NotFound { command });
            }
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Err(JournalSourceError::Spawn {
                    command,
                    source: error,
                });
            }
            Err(error) => {
                tracing::error!(origin = %config.origin, command, %error, "cannot start journalctl; trying again");
                if !wait(&shutdown, &mut backoff, config.max_backoff).await {
                    return Ok(());
                }
                continue;
            }
        };
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(tail_of(stderr)));
        let Some(stdout) = child.stdout.take() else {
            return Err(JournalSourceError::Spawn {
                command,
                source: io::Error::other("no pipe to its output"),
            });
        };
        let outcome = read_entries(
            BoundedLines::new(stdout, MAX_JSON_LINE_BYTES),
            &mut progress,
            &config.origin,
            &tx,
            &shutdown,
        )
        .await;
        let ended = match outcome {
            Outcome::Stop => return Ok(()),
            Outcome::End => None,
            Outcome::ReadError(error) => Some(error),
        };
        // Its output ended: it has exited or is about to; a read error leaves it running.
        if ended.is_some() {
            let _ = child.start_kill();
        }
        let status = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            status = child.wait() => status,
        };
        let stderr = match stderr {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        let refused = cursor_refused(&progress, &status, ended.is_some(), &stderr);
        match &refused {
            Some(by_time) => {
                let since = by_time.last_time.map(|(time, _)| time);
                tracing::warn!(
                    origin = %config.origin,
                    command,
                    said = last_line(&stderr),
                    ?since,
                    "journalctl refused the stored cursor; resuming by time instead (entries \
                     written later with an older time stamp are not read)"
                );
            }
            None => report_exit(&config.origin, &command, status, ended, &stderr),
        }
        if progress.handed_in_run > 0 || refused.is_some() {
            // It worked for a while, or only the start changes: start again soon.
            backoff = config.first_backoff;
        }
        if !wait(&shutdown, &mut backoff, config.max_backoff).await {
            return Ok(());
        }
        progress = match refused {
            Some(by_time) => by_time,
            None => progress.restart(&restart_fallback),
        };
    }
}

/// The run to start instead when `journalctl` refused the cursor this run started at: it
/// then fails at once, before writing anything, saying so. A cursor is refused only when it
/// cannot be parsed (a damaged store); one whose entry is gone, or from another machine's
/// journal, is taken as a place in the journal (by sequence number, monotonic time or
/// wall-clock time, whichever it shares with the journal read).
fn cursor_refused(
    progress: &Progress,
    status: &io::Result<ExitStatus>,
    read_error: bool,
    stderr: &str,
) -> Option<Progress> {
    let failed = matches!(status, Ok(status) if !status.success());
    let about_cursor = stderr.to_ascii_lowercase().contains("cursor");
    if failed && about_cursor && !read_error && progress.handed_in_run == 0 {
        progress.without_cursor()
    } else {
        None
    }
}

/// The last line of a child's error output that says something.
fn last_line(stderr: &str) -> &str {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("")
}

fn report_exit(
    origin: &Origin,
    command: &str,
    status: io::Result<ExitStatus>,
    read_error: Option<io::Error>,
    stderr: &str,
) {
    let said = last_line(stderr);
    match (read_error, status) {
        (Some(error), _) => {
            tracing::error!(%origin, command, %error, said, "cannot read journalctl's output; restarting it");
        }
        (None, Ok(status)) => {
            tracing::error!(%origin, command, %status, said, "journalctl ended; restarting it");
        }
        (None, Err(error)) => {
            tracing::error!(%origin, command, %error, said, "journalctl ended; restarting it");
        }
    }
}

/// Waits the current backoff and doubles it; `false` when shutdown came first.
async fn wait(shutdown: &CancellationToken, backoff: &mut Duration, max: Duration) -> bool {
    let delay = *backoff;
    *backoff = (*backoff * 2).min(max);
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// The end of a child's error output, for the message when it exits.
async fn tail_of(mut stderr: impl AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Ok(read) = stderr.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..read]);
        if kept.len() > MAX_STDERR_BYTES {
            kept.drain(..kept.len() - MAX_STDERR_BYTES);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// How reading one run's output ended.
enum Outcome {
    /// Shutdown, or nobody receives lines any more.
    Stop,
    /// The output ended: journalctl exited.
    End,
    ReadError(io::Error),
}

/// Reads entries until the output ends, sending what is ready in batches.
async fn read_entries<R: AsyncRead + Unpin>(
    mut lines: BoundedLines<R>,
    progress: &mut Progress,
    origin: &Arc<Origin>,
    tx: &mpsc::Sender<LineBatch>,
    shutdown: &CancellationToken,
) -> Outcome {
    let mut warned = Warned::default();
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Outcome::Stop,
            read = lines.next() => read,
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        let mut ended = None;
        // Take what is already there without waiting, up to a batch.
        while let Some(read) = next.take() {
            match read {
                Ok(Read::Line(json)) => {
                    if let Some(line) = accept(&json, progress, origin, &mut warned) {
                        batch.push(line);
                    }
                }
                Ok(Read::Overlong) => warned.once_overlong(origin),
                Ok(Read::End) => ended = Some(Outcome::End),
                Err(error) => ended = Some(Outcome::ReadError(error)),
            }
            if ended.is_some() || batch.len() >= MAX_BATCH_LINES {
                break;
            }
            next = lines.next().now_or_never();
        }
        // Only the last position of a batch is stored, so only the last line carries one: one
        // cursor copied per batch, none per entry.
        if let Some(last) = batch.last_mut() {
            last.position = progress.position();
        }
        if !batch.is_empty() {
            let batch = LineBatch {
                origin: Arc::clone(origin),
                lines: batch,
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Outcome::Stop,
                sent = tx.send(batch) => if sent.is_err() {
                    return Outcome::Stop;
                },
            }
        }
        if let Some(outcome) = ended {
            return outcome;
        }
    }
}

fn accept(
    json: &[u8],
    progress: &mut Progress,
    origin: &Origin,
    warned: &mut Warned,
) -> Option<RawLine> {
    match entry_line(json) {
        Ok(entry) => progress
            .accept(entry.time, &entry.cursor)
            .then_some(RawLine {
                text: entry.text,
                position: None,
            }),
        Err(Unusable::NoMessage) => None,
        Err(Unusable::TooLong) => {
            warned.once_overlong(origin);
            None
        }
        Err(unusable) => {
            if !warned.unusable {
                warned.unusable = true;
                tracing::warn!(%origin, ?unusable, "journalctl wrote an entry that cannot be read; skipping such entries");
            }
            None
        }
    }
}

/// Warnings said once per run of journalctl, not once per entry.
#[derive(Debug, Default)]
struct Warned {
    overlong: bool,
    unusable: bool,
}

impl Warned {
    fn once_overlong(&mut self, origin: &Origin) {
        if !self.overlong {
            self.overlong = true;
            tracing::warn!(%origin, max_bytes = MAX_LINE_BYTES, "journal entry too long; dropped whole");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalMatch;
    use crate::filter::envelope::Decoder;
    use chrono::TimeZone;

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_micros(micros).unwrap()
    }

    const T: i64 = 1_795_681_281_611_721;
    /// A cursor as journalctl writes them.
    const C: &str = "s=8236a7fc8e75460b9a3bda3907b518c2;i=2;b=0123456789abcdef0123456789abcdef;m=7d0;t=6612bf233aac7;x=f47379db3ad7b05b";

    #[test]
    fn entry_becomes_a_syslog_line_the_decoder_reads() {
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","_HOSTNAME":"web","SYSLOG_IDENTIFIER":"sshd-session","_PID":"4242","MESSAGE":"Failed password for root from 192.0.2.5 port 22 ssh2"}}"#
        );
        let entry = entry_line(json.as_bytes()).unwrap();
        assert_eq!(
            entry.text,
            "2026-11-26T08:21:21.611721Z web sshd-session[4242]: Failed password for root from 192.0.2.5 port 22 ssh2"
        );
        assert_eq!(entry.time, at(T));
        assert_eq!(entry.cursor, C);
        let mut decoder = Decoder::new();
        let record = decoder.push_at(&entry.text, at(T)).unwrap();
        assert_eq!(record.program.as_deref(), Some("sshd-session"));
        assert_eq!(
            record.text,
            "Failed password for root from 192.0.2.5 port 22 ssh2"
        );
        assert_eq!(record.time, Some(at(T)));
    }

    #[test]
    fn forged_newlines_and_tags_stay_in_the_message() {
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","SYSLOG_IDENTIFIER":"my app","MESSAGE":"x\n2026-11-26T08:00:00Z web sshd[1]: Failed password for root from 6.6.6.6 port 22 ssh2"}}"#
        );
        let entry = entry_line(json.as_bytes()).unwrap();
        assert!(!entry.text.contains('\n'));
        let mut decoder = Decoder::new();
        let record = decoder.push_at(&entry.text, at(T)).unwrap();
        assert_eq!(record.program.as_deref(), Some("my_app"));
        assert!(
            record
                .text
                .starts_with("x 2026-11-26T08:00:00Z web sshd[1]: ")
        );
    }

    #[test]
    fn message_without_program_keeps_its_first_word() {
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","MESSAGE":"sshd[1]: Failed password"}}"#
        );
        let entry = entry_line(json.as_bytes()).unwrap();
        let mut decoder = Decoder::new();
        let record = decoder.push_at(&entry.text, at(T)).unwrap();
        assert_eq!(record.program.as_deref(), Some(UNKNOWN_PROGRAM));
        assert_eq!(record.text, "sshd[1]: Failed password");
        // _COMM stands in for a missing SYSLOG_IDENTIFIER.
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","_COMM":"sshd","SYSLOG_PID":"7","MESSAGE":"m"}}"#
        );
        assert!(
            entry_line(json.as_bytes())
                .unwrap()
                .text
                .ends_with(" sshd[7]: m")
        );
    }

    #[test]
    fn byte_arrays_and_repeated_fields() {
        // "Invalid user \xff from 1.2.3.4\nnext"
        let mut bytes: Vec<u8> = b"Invalid user ".to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(b" from 1.2.3.4\nnext");
        let array: Vec<String> = bytes.iter().map(u8::to_string).collect();
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","SYSLOG_IDENTIFIER":["sshd","other"],"MESSAGE":[{}]}}"#,
            array.join(",")
        );
        let entry = entry_line(json.as_bytes()).unwrap();
        assert!(
            entry
                .text
                .ends_with(" sshd: Invalid user \u{fffd} from 1.2.3.4 next"),
            "{}",
            entry.text
        );
        let json =
            format!(r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","MESSAGE":["a",[98]]}}"#);
        assert!(entry_line(json.as_bytes()).unwrap().text.ends_with(": a b"));
    }

    #[test]
    fn unusable_entries() {
        assert!(matches!(
            entry_line(b"not json"),
            Err(Unusable::Malformed(_))
        ));
        assert_eq!(entry_line(br#"{"MESSAGE":"m"}"#), Err(Unusable::NoTime));
        assert_eq!(
            entry_line(br#"{"__REALTIME_TIMESTAMP":"x","MESSAGE":"m"}"#),
            Err(Unusable::NoTime)
        );
        let json = format!(r#"{{"__REALTIME_TIMESTAMP":"{T}","MESSAGE":"m"}}"#);
        assert_eq!(entry_line(json.as_bytes()), Err(Unusable::NoCursor));
        let json = format!(r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","MESSAGE":null}}"#);
        assert_eq!(entry_line(json.as_bytes()), Err(Unusable::NoMessage));
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        let json =
            format!(r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","MESSAGE":"{long}"}}"#);
        assert_eq!(entry_line(json.as_bytes()), Err(Unusable::TooLong));
    }

    #[test]
    fn hostile_host_names_cannot_move_the_tag() {
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","_HOSTNAME":"evil sshd:","SYSLOG_IDENTIFIER":"cron","MESSAGE":"m"}}"#
        );
        let text = entry_line(json.as_bytes()).unwrap().text;
        let record = Decoder::new().push_at(&text, at(T)).unwrap().into_owned();
        assert_eq!(record.program.as_deref(), Some("cron"));
        assert_eq!(record.text, "m");
        // A host named like a CRI stream is left out.
        let json = format!(
            r#"{{"__CURSOR":"{C}","__REALTIME_TIMESTAMP":"{T}","_HOSTNAME":"stdout","SYSLOG_IDENTIFIER":"F","MESSAGE":"m"}}"#
        );
        let text = entry_line(json.as_bytes()).unwrap().text;
        let record = Decoder::new().push_at(&text, at(T)).unwrap().into_owned();
        assert_eq!(record.program.as_deref(), Some("F"));
        assert_eq!(record.text, "m");
    }

    /// The cursor of entry `i` of one journal file.
    fn cursor(i: u32) -> String {
        format!("s=8236a7fc8e75460b9a3bda3907b518c2;i={i:x};b=0123456789abcdef0123456789abcdef")
    }

    fn by_cursor(cursor: &str, time: DateTime<Utc>, seen_at_time: u32) -> Option<Position> {
        Some(Position::Cursor {
            cursor: cursor.to_string(),
            time,
            seen_at_time,
        })
    }

    #[test]
    fn resume_by_time_skips_what_was_handed_on() {
        let mut progress = Progress::new(Start::After {
            time: at(T),
            seen: 2,
        });
        assert!(!progress.accept(at(T - 1), &cursor(1)));
        assert!(!progress.accept(at(T), &cursor(2)));
        assert!(!progress.accept(at(T), &cursor(3)));
        assert_eq!(
            progress.position(),
            Some(Position::Time {
                time: at(T),
                seen_at_time: 2
            })
        );
        assert!(progress.accept(at(T), &cursor(4)));
        assert_eq!(progress.position(), by_cursor(&cursor(4), at(T), 3));
        assert!(progress.accept(at(T + 5), &cursor(5)));
        assert_eq!(progress.position(), by_cursor(&cursor(5), at(T + 5), 1));
        // An older stamp later on is handed on; the time does not go back, the cursor moves.
        assert!(progress.accept(at(T + 2), &cursor(6)));
        assert_eq!(progress.position(), by_cursor(&cursor(6), at(T + 5), 1));
        // Once a cursor is known, the next run starts there.
        let again = progress.restart(&Start::End);
        assert_eq!(
            again.start,
            Start::Cursor {
                cursor: cursor(6),
                time: at(T + 5),
                seen: 1
            }
        );
        // Nothing handed on yet: a restart starts at the fallback, not at the end.
        let fresh = Progress::new(Start::End);
        assert_eq!(fresh.position(), None);
        let fallback = Start::After {
            time: at(T),
            seen: 0,
        };
        assert_eq!(fresh.restart(&fallback).start, fallback);
        assert!(fresh.without_cursor().is_none());
    }

    #[test]
    fn resume_by_cursor_skips_only_the_cursors_own_entry() {
        let start = Start::Cursor {
            cursor: cursor(7),
            time: at(T),
            seen: 1,
        };
        let mut progress = Progress::new(start.clone());
        assert_eq!(progress.position(), by_cursor(&cursor(7), at(T), 1));
        // journalctl starts at the cursor's own entry: handed on before.
        assert!(!progress.accept(at(T), &cursor(7)));
        // Stamped before the cursor's entry (a clock stepped back), written after it: new.
        assert!(progress.accept(at(T - 3_000_000), &cursor(8)));
        assert_eq!(progress.position(), by_cursor(&cursor(8), at(T), 1));
        assert!(progress.accept(at(T), &cursor(9)));
        assert_eq!(progress.position(), by_cursor(&cursor(9), at(T), 2));

        // The cursor's entry is gone (vacuumed): the first one journalctl gives is new.
        let mut progress = Progress::new(start.clone());
        assert!(progress.accept(at(T + 1), &cursor(10)));
        // Its cursor again, later in the run, is not the start any more.
        let mut progress = Progress::new(start.clone());
        assert!(progress.accept(at(T + 1), &cursor(11)));
        assert!(progress.accept(at(T + 2), &cursor(7)));

        // Refused: the next run goes by the time stored with the cursor.
        let by_time = Progress::new(start).without_cursor().unwrap();
        assert_eq!(
            by_time.start,
            Start::After {
                time: at(T),
                seen: 1
            }
        );
        assert_eq!(
            by_time.position(),
            Some(Position::Time {
                time: at(T),
                seen_at_time: 1
            })
        );
    }

    #[test]
    fn command_line() {
        let selector = JournalSelector {
            unit: Some("ssh.service".into()),
            matches: vec![JournalMatch {
                field: "SYSLOG_IDENTIFIER".into(),
                value: "sshd".into(),
            }],
            directory: Some("/host/var/log/journal".into()),
        };
        let mut config = JournalFollowConfig::new(selector);
        config.extra_args = vec!["--no-hostname".into()];
        let args = |start: Start| -> Vec<String> {
            journalctl_args(&config, &start)
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let from_end = args(Start::End);
        assert_eq!(
            from_end[5..],
            [
                format!("--output-fields={OUTPUT_FIELDS}"),
                "--no-hostname".into(),
                "--directory=/host/var/log/journal".into(),
                "--lines=0".into(),
                "--unit=ssh.service".into(),
                "--".into(),
                "SYSLOG_IDENTIFIER=sshd".into(),
            ]
        );
        let resumed = args(Start::After {
            time: Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap()
                + chrono::Duration::microseconds(5),
            seen: 1,
        });
        assert!(resumed.contains(&"--since=@1795680000.000005".to_string()));
        assert!(!resumed.iter().any(|a| a.starts_with("--lines")));
        let by_cursor = args(Start::Cursor {
            cursor: C.into(),
            time: at(T),
            seen: 1,
        });
        assert_eq!(
            by_cursor[8..10],
            [format!("--cursor={C}"), "--lines=all".into()]
        );
        assert!(!by_cursor.iter().any(|a| a.starts_with("--since")));
    }

    #[test]
    fn origins_tell_selectors_apart() {
        let unit = |unit: &str| JournalSelector {
            unit: Some(unit.into()),
            ..JournalSelector::default()
        };
        let m = |field: &str, value: &str| JournalMatch {
            field: field.into(),
            value: value.into(),
        };
        assert_eq!(
            journal_origin(&JournalSelector::default()).position_key(),
            "journal:*"
        );
        assert_eq!(
            journal_origin(&unit("ssh.service")).position_key(),
            "journal:ssh.service"
        );
        let mut a = unit("ssh.service");
        a.matches = vec![m("_COMM", "sshd"), m("SYSLOG_IDENTIFIER", "sshd")];
        let mut b = unit("ssh.service");
        b.matches = vec![
            m("SYSLOG_IDENTIFIER", "sshd"),
            m("_COMM", "sshd"),
            m("_COMM", "sshd"),
        ];
        assert_eq!(journal_origin(&a), journal_origin(&b));
        assert_ne!(journal_origin(&a), journal_origin(&unit("ssh.service")));
        let mut c = a.clone();
        c.directory = Some("/host/journal".into());
        assert_ne!(journal_origin(&a), journal_origin(&c));
        assert_eq!(
            journal_origin(&c).to_string(),
            "journal unit ssh.service SYSLOG_IDENTIFIER=sshd _COMM=sshd in /host/journal"
        );
    }

    #[tokio::test]
    async fn long_lines_are_skipped_whole() {
        let input: &[u8] = b"short\nthis line is too long\nok\nunterminated";
        let mut lines = BoundedLines::new(input, 8);
        assert_eq!(lines.next().await.unwrap(), Read::Line(b"short".to_vec()));
        assert_eq!(lines.next().await.unwrap(), Read::Overlong);
        assert_eq!(lines.next().await.unwrap(), Read::Line(b"ok".to_vec()));
        assert_eq!(lines.next().await.unwrap(), Read::End);
    }
}
