//! Sources: where log lines come from (container json-file logs, the Docker API, host files,
//! the journal), each followed by its own task that sends batches of raw lines downstream.
//!
//! Sources do not decode envelopes or run filters: they only read, remember where they are,
//! and hand lines on, so that a slow reader never holds up the matching of others.

pub mod docker;
pub mod file;
pub mod journal;
pub mod watch;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Where a line was read, kept with every failure for status output and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A host log file, by the path configured.
    File { path: PathBuf },
    /// A container, by id (stable) and name (what people read).
    Container { id: String, name: String },
    /// The systemd journal, optionally one unit.
    Journal { unit: Option<String> },
}

impl Origin {
    /// The key under which the source's read position is stored.
    pub fn position_key(&self) -> String {
        match self {
            Origin::File { path } => format!("file:{}", path.display()),
            Origin::Container { id, .. } => format!("container:{id}"),
            Origin::Journal { unit } => format!("journal:{}", unit.as_deref().unwrap_or("*")),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path } => write!(f, "file {}", path.display()),
            Origin::Container { name, id } => {
                write!(f, "container {name} ({})", id.get(..12).unwrap_or(id))
            }
            Origin::Journal { unit: Some(unit) } => write!(f, "journal unit {unit}"),
            Origin::Journal { unit: None } => f.write_str("journal"),
        }
    }
}

/// How many bytes of a file's beginning its position keeps: enough to hold a log line's time
/// stamp and more, so that two files written at different times differ in them.
pub const FILE_HEAD_BYTES: usize = 128;

/// How far a source has read, stored so that a restart resumes there: no line counted twice,
/// none skipped.
///
/// Not `Copy` (a journal cursor is a string): sources that read many lines attach it only to
/// the lines where it is needed (see [`RawLine::position`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A file, by identity (a rotated file keeps its inode, a new file gets another) and the
    /// offset just past the last line handed on.
    File {
        device: u64,
        inode: u64,
        offset: u64,
        /// The file's first bytes (up to [`FILE_HEAD_BYTES`]; empty when unknown, as in
        /// stores written before they were kept). A file deleted while logjail was down can
        /// leave its inode number to a new file; a different beginning tells them apart.
        head: Arc<[u8]>,
    },
    /// A stream with timestamps (the Docker API; the journal, as stored before cursors, or
    /// when a cursor was refused): the time of the last line handed on, and how many lines
    /// carried exactly that time (they are skipped on resume).
    Time {
        time: DateTime<Utc>,
        seen_at_time: u32,
    },
    /// The journal: the cursor of the last entry handed on, which `journalctl` resumes right
    /// after whatever the entries' time stamps say. The time and count are those of
    /// [`Position::Time`], kept to resume by time should `journalctl` refuse the cursor.
    Cursor {
        cursor: String,
        time: DateTime<Utc>,
        seen_at_time: u32,
    },
}

/// One raw line, as read: envelope (json-file, CRI, syslog) still on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    pub text: String,
    /// The source's position just after this line. `None` on a line that has none (a Docker
    /// API line without a time) or whose position a later line of the same batch carries:
    /// what is stored is the last position of a batch, so a source may give only its last
    /// line one (the journal does: a cursor is a string).
    pub position: Option<Position>,
}

/// Lines travel in batches: one channel send per batch keeps the per-line cost low when a
/// container floods, and a batch never waits for more lines to come.
#[derive(Debug, Clone)]
pub struct LineBatch {
    pub origin: Arc<Origin>,
    pub lines: Vec<RawLine>,
}

/// Largest batch a source sends at once.
pub const MAX_BATCH_LINES: usize = 512;
