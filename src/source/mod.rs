//! Sources: where log lines come from (container json-file logs, the Docker API, host files,
//! pod CRI log files, the journal), each followed by its own task that sends batches of raw
//! lines downstream.
//!
//! Sources do not decode envelopes or run filters: they only read, remember where they are,
//! and hand lines on, so that a slow reader never holds up the matching of others.

pub mod docker;
pub mod file;
pub mod journal;
pub mod pods;
pub mod supervisor;
pub mod watch;

/// How many bytes of a file's beginning its position keeps: enough to hold a log line's time
/// stamp and more, so that two files written at different times differ in them.
pub const FILE_HEAD_BYTES: usize = 128;

/// Largest batch a source sends at once.
pub const MAX_BATCH_LINES: usize = 512;
