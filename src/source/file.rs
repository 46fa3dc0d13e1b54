//! Following a log file: tail with rotation (rename and copytruncate) and resume.
//!
//! Used for host log files (`/var/log/auth.log`) and for Docker json-file logs read at the
//! container's `LogPath`. The file work (open, stat, read, split into lines) is synchronous
//! and runs on tokio's blocking pool one batch at a time; the async side only waits (for a
//! change, for room in the channel, for shutdown) and sends.
//!
//! Rotation by rename is followed lazily: when a new file appears under the path, the old one
//! is kept open and read until the new one has data. A writer moves to the new file only after
//! its last write to the old one, so the lines written to the old file after the rename (the
//! daemon had not reopened its log yet) are read before the first line of the new file.
//!
//! A stored position names the file by device and inode, plus its first bytes: after a file
//! was deleted while logjail was down, a new file may get the same inode number, and only its
//! different beginning shows it is not the file the offset belongs to (it is read whole).

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::watch::FileWatcher;
use super::{FILE_HEAD_BYTES, MAX_BATCH_LINES};
use crate::messages::{LineBatch, Origin, Position, RawLine};

/// Longest line handed on. A longer line is dropped whole: cutting it would hand on a prefix
/// whose end an attacker chose (a forged `from <ip> port 22 ssh2` right before the cut), so
/// the only safe short version of a line is none.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// How often a follower looks at its file even without a wake-up: inotify misses changes on
/// some file systems (NFS, some overlay and FUSE setups).
pub const DEFAULT_SAFETY_POLL: Duration = Duration::from_secs(1);

/// Size of one read: large, so that a burst of lines costs few system calls.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How many times one step may start over (after a truncation or a switch to a new file)
/// before handing back what it has: bounds the work of one step when a file churns.
const MAX_RESTARTS_PER_STEP: usize = 4;

/// Where a file goes when it is rotated by renaming, to find it on resume.
#[derive(Debug, Clone, Copy)]
pub enum RotatedName {
    /// `path` + `.1`: logrotate without `dateext`, and Docker's json-file driver
    /// (`<id>-json.log` → `<id>-json.log.1`).
    DotOne,
    /// Another scheme: where `path` is rotated to, if known.
    Custom(fn(&Path) -> Option<PathBuf>),
}

impl RotatedName {
    /// The first place to look for the rotated file (the directory is scanned after).
    pub fn candidate(&self, path: &Path) -> Option<PathBuf> {
        match self {
            RotatedName::DotOne => {
                let mut name = path.as_os_str().to_os_string();
                name.push(".1");
                Some(PathBuf::from(name))
            }
            RotatedName::Custom(rotated) => rotated(path),
        }
    }
}

/// What to follow and where to start.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// Carried by every batch, so that downstream knows where a line came from.
    pub origin: Arc<Origin>,
    /// The file to follow; it need not exist yet.
    pub path: PathBuf,
    /// The position stored by a previous run: resume right after the last line handed on.
    pub resume: Option<Position>,
    /// Without a stored position: start at the end of the file (like `tail -n0`, for a host
    /// log whose history was already dealt with) rather than at its beginning (a new
    /// container's log, all of which is new).
    pub start_at_end_if_new: bool,
    /// Where a rename rotation moves the file, to resume in it after a restart.
    pub rotated_name: RotatedName,
    /// Longest wait without looking at the file, in case a wake-up was missed.
    pub safety_poll: Duration,
}

impl FollowConfig {
    /// Follows `path` from its beginning, `path.1` rotation, default safety poll.
    pub fn new(origin: Arc<Origin>, path: PathBuf) -> FollowConfig {
        FollowConfig {
            origin,
            path,
            resume: None,
            start_at_end_if_new: false,
            rotated_name: RotatedName::DotOne,
            safety_poll: DEFAULT_SAFETY_POLL,
        }
    }
}

/// Why following a file stopped.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// Separate, because the caller may have another way to the lines (the Docker API for a
    /// container whose log directory is not readable).
    #[error("cannot read {}: permission denied", .path.display())]
    PermissionDenied {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot follow {}: not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("following {}: the reading task failed: {reason}", .path.display())]
    Task { path: PathBuf, reason: String },
}

impl FileSourceError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileSourceError::PermissionDenied { path, .. }
            | FileSourceError::Open { path, .. }
            | FileSourceError::NotAFile { path }
            | FileSourceError::Read { path, .. }
            | FileSourceError::Task { path, .. } => path,
        }
    }

    fn open(path: &Path, source: io::Error) -> FileSourceError {
        if source
            .get_ref()
            .is_some_and(|inner| inner.is::<NotRegularFile>())
        {
            return FileSourceError::NotAFile {
                path: path.to_path_buf(),
            };
        }
        if source.kind() == io::ErrorKind::PermissionDenied {
            FileSourceError::PermissionDenied {
                path: path.to_path_buf(),
                source,
            }
        } else {
            FileSourceError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    fn read(path: &Path, source: io::Error) -> FileSourceError {
        if source.kind() == io::ErrorKind::PermissionDenied {
            FileSourceError::PermissionDenied {
                path: path.to_path_buf(),
                source,
            }
        } else {
            FileSourceError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Follows one file until `shutdown`, sending its lines to `tx` in batches of at most
/// [`MAX_BATCH_LINES`], each line with the position just past it.
///
/// Waits quietly for a file that does not exist (yet), follows rename and copytruncate
/// rotation, and resumes from `config.resume`. Returns `Ok` on shutdown or when the receiver
/// is gone; an error when the file cannot be read (permission denied, I/O error).
pub async fn follow(
    config: FollowConfig,
    watcher: FileWatcher,
    tx: mpsc::Sender<LineBatch>,
    shutdown: CancellationToken,
) -> Result<(), FileSourceError> {
    follow_until(config, watcher, tx, shutdown, CancellationToken::new()).await
}

/// [`follow`], and once `finish` is cancelled: read what is there to the end, then return
/// `Ok`. For a file nothing will write to any more (a pod container's log after it restarted
/// into its next file, or after its pod was deleted): its last lines are read, none lost, and
/// the follower ends on its own instead of waiting for lines that will not come.
pub async fn follow_until(
    config: FollowConfig,
    watcher: FileWatcher,
    tx: mpsc::Sender<LineBatch>,
    shutdown: CancellationToken,
    finish: CancellationToken,
) -> Result<(), FileSourceError> {
    // Watch before the first read: a change after the read then always wakes the wait.
    let mut watch = watcher.watch(&config.path);
    let origin = Arc::clone(&config.origin);
    let path = config.path.clone();
    let safety_poll = config.safety_poll;
    let mut tail = Tail::new(config);
    loop {
        // Seen before the step: a step begun after `finish` reads everything written before it.
        let finishing = finish.is_cancelled();
        let reading = tokio::task::spawn_blocking(move || {
            let step = tail.step();
            (tail, step)
        });
        let (returned, step) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            joined = reading => joined.map_err(|error| FileSourceError::Task {
                path: path.clone(),
                reason: error.to_string(),
            })?,
        };
        tail = returned;
        let step = step?;
        if !step.lines.is_empty() {
            let batch = LineBatch {
                origin: Arc::clone(&origin),
                lines: step.lines,
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                sent = tx.send(batch) => {
                    if sent.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if step.more {
            continue;
        }
        if finishing {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = finish.cancelled() => {}
            _ = watch.changed() => {}
            _ = tokio::time::sleep(safety_poll) => {}
        }
    }
}

/// The outcome of one step of reading.
#[derive(Debug)]
struct Step {
    lines: Vec<RawLine>,
    /// More is ready to read right away: step again without waiting.
    more: bool,
}

/// Where the first opening of the file starts.
#[derive(Debug, Clone)]
enum Start {
    Beginning,
    End,
    Resume {
        device: u64,
        inode: u64,
        offset: u64,
        head: Arc<[u8]>,
    },
}

/// What the file looks like once the open one is read to its end.
enum AtEnd {
    /// Nothing more until the next change.
    Idle,
    /// Truncated in place: read it again from the start.
    Truncated,
    /// A new file with data is under the path: finish the old one, then switch.
    Replaced,
}

/// The synchronous follower: which file is open, how far it is read, and what to do when it
/// ends, is truncated or is replaced.
#[derive(Debug)]
struct Tail {
    origin: Arc<Origin>,
    path: PathBuf,
    rotated_name: RotatedName,
    /// Until the file is first opened; afterwards every newly appearing file is read whole.
    start: Option<Start>,
    reader: Option<Reader>,
    /// "Waiting for the file" is said once per absence, not at every look.
    absence_logged: bool,
    long_lines_warned: bool,
}

impl Tail {
    fn new(config: FollowConfig) -> Tail {
        let start = match config.resume {
            Some(Position::File {
                device,
                inode,
                offset,
                head,
            }) => Start::Resume {
                device,
                inode,
                offset,
                head,
            },
            Some(Position::Time { .. } | Position::Cursor { .. }) => {
                tracing::warn!(
                    origin = %config.origin,
                    "stored position is not a file position: ignoring it"
                );
                Self::fresh_start(config.start_at_end_if_new)
            }
            None => Self::fresh_start(config.start_at_end_if_new),
        };
        Tail {
            origin: config.origin,
            path: config.path,
            rotated_name: config.rotated_name,
            start: Some(start),
            reader: None,
            absence_logged: false,
            long_lines_warned: false,
        }
    }

    fn fresh_start(at_end: bool) -> Start {
        if at_end { Start::End } else { Start::Beginning }
    }

    /// Reads what is there, up to one batch.
    fn step(&mut self) -> Result<Step, FileSourceError> {
        let mut lines = Vec::new();
        for _ in 0..MAX_RESTARTS_PER_STEP {
            if self.reader.is_none() {
                self.reader = self.open()?;
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(Step { lines, more: false });
            };
            let at_end = reader.read_lines(&mut lines, MAX_BATCH_LINES)?;
            self.warn_long_lines();
            if !at_end {
                return Ok(Step { lines, more: true });
            }
            match self.look_at_end()? {
                AtEnd::Idle => return Ok(Step { lines, more: false }),
                AtEnd::Truncated => continue,
                AtEnd::Replaced => {
                    let Some(reader) = self.reader.as_mut() else {
                        continue;
                    };
                    // The writer may have written to the old file between its end being read
                    // and the new file being seen.
                    if !reader.read_lines(&mut lines, MAX_BATCH_LINES)? {
                        return Ok(Step { lines, more: true });
                    }
                    if !self.switch()? {
                        return Ok(Step { lines, more: false });
                    }
                }
            }
        }
        Ok(Step { lines, more: true })
    }

    /// Opens the file under the path, deciding where to start the first time.
    fn open(&mut self) -> Result<Option<Reader>, FileSourceError> {
        let current = match Reader::open(&self.path) {
            Ok(reader) => Some(reader),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(FileSourceError::open(&self.path, error)),
        };
        let start = self.start.take();
        let reader = match start {
            None | Some(Start::Beginning) => current,
            Some(Start::End) => match current {
                Some(mut reader) => {
                    let size = reader.size()?;
                    reader.start_at_end(size)?;
                    Some(reader)
                }
                None => None,
            },
            Some(Start::Resume {
                device,
                inode,
                offset,
                head,
            }) => self.resume(current, (device, inode), offset, &head)?,
        };
        match &reader {
            Some(reader) => {
                if self.absence_logged {
                    tracing::info!(origin = %self.origin, path = %reader.path.display(), "file appeared: following it");
                } else {
                    tracing::debug!(origin = %self.origin, path = %reader.path.display(), "following file");
                }
                self.absence_logged = false;
            }
            None if !self.absence_logged => {
                // An optional log that does not exist is not worth more than a note.
                tracing::info!(origin = %self.origin, path = %self.path.display(), "file does not exist: waiting for it");
                self.absence_logged = true;
            }
            None => {}
        }
        Ok(reader)
    }

    /// Where to resume after a restart, given the stored identity, offset and first bytes.
    fn resume(
        &mut self,
        current: Option<Reader>,
        identity: (u64, u64),
        offset: u64,
        head: &[u8],
    ) -> Result<Option<Reader>, FileSourceError> {
        if let Some(mut reader) = current {
            if reader.identity() == identity {
                if !reader.begins_with(head)? {
                    tracing::warn!(
                        origin = %self.origin,
                        path = %self.path.display(),
                        "file was replaced while logjail was down by a new one that got the old \
                         one's inode number: reading the new one from the start, lines of the \
                         old one may have been missed"
                    );
                } else if offset <= reader.size()? {
                    reader.start_at(offset);
                } else {
                    tracing::warn!(
                        origin = %self.origin,
                        path = %self.path.display(),
                        "file was truncated while logjail was down: reading it from the start"
                    );
                }
                return Ok(Some(reader));
            }
            return Ok(Some(
                self.resume_rotated(identity, offset, head)?
                    .unwrap_or(reader),
            ));
        }
        self.resume_rotated(identity, offset, head)
    }

    /// The file last read, rotated away while logjail was down, positioned to read its rest;
    /// `None` (after a warning) when it is gone.
    fn resume_rotated(
        &mut self,
        identity: (u64, u64),
        offset: u64,
        head: &[u8],
    ) -> Result<Option<Reader>, FileSourceError> {
        let old = match self.find_by_identity(identity.0, identity.1)? {
            Some(old) if old.begins_with(head)? => Some(old),
            // Its inode number now belongs to another file: the old one is gone.
            _ => None,
        };
        match old {
            Some(mut old) => {
                if offset <= old.size()? {
                    tracing::info!(
                        origin = %self.origin,
                        path = %old.path.display(),
                        "file was rotated while logjail was down: reading the rest of the old one first"
                    );
                    old.start_at(offset);
                    Ok(Some(old))
                } else {
                    tracing::warn!(
                        origin = %self.origin,
                        path = %old.path.display(),
                        "rotated file is shorter than the stored position: lines may have been missed"
                    );
                    Ok(None)
                }
            }
            None => {
                tracing::warn!(
                    origin = %self.origin,
                    path = %self.path.display(),
                    "file was replaced while logjail was down and the old one is gone: \
                     reading the new one from the start, lines may have been missed"
                );
                Ok(None)
            }
        }
    }

    /// The file with this identity: where rotation puts it, else anywhere in the directory.
    fn find_by_identity(&self, device: u64, inode: u64) -> Result<Option<Reader>, FileSourceError> {
        let is_it = |path: &Path| match Reader::open(path) {
            Ok(reader) if reader.identity() == (device, inode) => Some(reader),
            _ => None,
        };
        if let Some(candidate) = self.rotated_name.candidate(&self.path)
            && let Some(reader) = is_it(&candidate)
        {
            return Ok(Some(reader));
        }
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let entries = match std::fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(directory = %directory.display(), %error, "cannot look for the rotated file");
                return Ok(None);
            }
        };
        for entry in entries.flatten() {
            // The inode number comes with the directory entry: only a match costs an open.
            if entry.ino() == inode
                && let Some(reader) = is_it(&entry.path())
            {
                return Ok(Some(reader));
            }
        }
        Ok(None)
    }

    /// Checks the open file and the path once the open file is read to its end.
    fn look_at_end(&mut self) -> Result<AtEnd, FileSourceError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(AtEnd::Idle);
        };
        let size = reader.size()?;
        if size < reader.next_read {
            tracing::info!(
                origin = %self.origin,
                path = %reader.path.display(),
                "file was truncated (copytruncate rotation?): reading it from the start"
            );
            reader.start_at(0);
            return Ok(AtEnd::Truncated);
        }
        let under_path = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !self.absence_logged {
                    tracing::info!(
                        origin = %self.origin,
                        path = %self.path.display(),
                        "file was removed: waiting for it to be re-created"
                    );
                    self.absence_logged = true;
                }
                return Ok(AtEnd::Idle);
            }
            Err(error) => return Err(FileSourceError::read(&self.path, error)),
        };
        if (under_path.dev(), under_path.ino()) == reader.identity() || under_path.len() == 0 {
            // Same file, or a new one with nothing in it yet: the writer may still be writing
            // to the old one.
            return Ok(AtEnd::Idle);
        }
        Ok(AtEnd::Replaced)
    }

    /// Moves from the finished old file to the new one under the path; `false` when the new
    /// one vanished in the meantime.
    fn switch(&mut self) -> Result<bool, FileSourceError> {
        let new = match Reader::open(&self.path) {
            Ok(new) => new,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(FileSourceError::open(&self.path, error)),
        };
        if let Some(old) = &self.reader
            && !old.line.is_empty()
        {
            // Never completed: the writer moved on. A line without its end is not handed on.
            tracing::debug!(origin = %self.origin, bytes = old.line.len(), "dropping unfinished last line of rotated file");
        }
        tracing::info!(origin = %self.origin, path = %self.path.display(), "file was rotated: following the new one");
        self.absence_logged = false;
        self.reader = Some(new);
        Ok(true)
    }

    fn warn_long_lines(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        if reader.long_lines_dropped == 0 {
            return;
        }
        let dropped = std::mem::take(&mut reader.long_lines_dropped);
        if self.long_lines_warned {
            tracing::debug!(origin = %self.origin, dropped, "dropped lines longer than {MAX_LINE_BYTES} bytes");
        } else {
            self.long_lines_warned = true;
            tracing::warn!(origin = %self.origin, dropped, "dropped lines longer than {MAX_LINE_BYTES} bytes (reported once)");
        }
    }
}

/// One open file, read in large chunks and split into lines.
#[derive(Debug)]
struct Reader {
    file: File,
    /// Where it was opened (for logs; it may have been renamed since).
    path: PathBuf,
    device: u64,
    inode: u64,
    /// File offset of the next byte to read from the file.
    next_read: u64,
    /// Bytes read but not yet split: `chunk[chunk_pos..]`, which end at `next_read`.
    chunk: Vec<u8>,
    chunk_pos: usize,
    /// The start of a line whose newline has not been read yet.
    line: Vec<u8>,
    /// Skipping to the next newline: the line is too long, or reading started inside it.
    discarding: bool,
    long_lines_dropped: u64,
    /// The file's first bytes as far as known (see [`Position::File`]); read again while
    /// shorter than [`FILE_HEAD_BYTES`] and the file has grown past them.
    head: Arc<[u8]>,
}

impl Reader {
    fn open(path: &Path) -> io::Result<Reader> {
        let file = File::open(path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(io::Error::other(NotRegularFile));
        }
        Ok(Reader::new(file, path.to_path_buf(), &metadata))
    }

    fn new(file: File, path: PathBuf, metadata: &Metadata) -> Reader {
        Reader {
            file,
            path,
            device: metadata.dev(),
            inode: metadata.ino(),
            next_read: 0,
            chunk: Vec::new(),
            chunk_pos: 0,
            line: Vec::new(),
            discarding: false,
            long_lines_dropped: 0,
            head: Arc::from(&[][..]),
        }
    }

    fn identity(&self) -> (u64, u64) {
        (self.device, self.inode)
    }

    fn size(&self) -> Result<u64, FileSourceError> {
        self.file
            .metadata()
            .map(|metadata| metadata.len())
            .map_err(|error| FileSourceError::read(&self.path, error))
    }

    /// Whether the file starts with `head` (an empty `head` is unknown: taken as a match).
    fn begins_with(&self, head: &[u8]) -> Result<bool, FileSourceError> {
        if head.is_empty() {
            return Ok(true);
        }
        let mut found = vec![0; head.len()];
        let read = read_at(&self.file, &mut found, 0)
            .map_err(|error| FileSourceError::read(&self.path, error))?;
        Ok(found[..read] == *head)
    }

    /// Reads the file's first bytes again when fewer than [`FILE_HEAD_BYTES`] are known and
    /// the file has more: a file starts empty and gets its first line later.
    fn refresh_head(&mut self) -> Result<(), FileSourceError> {
        if self.head.len() >= FILE_HEAD_BYTES || self.next_read <= self.head.len() as u64 {
            return Ok(());
        }
        let mut head = vec![0; FILE_HEAD_BYTES];
        let read = read_at(&self.file, &mut head, 0)
            .map_err(|error| FileSourceError::read(&self.path, error))?;
        head.truncate(read);
        self.head = head.into();
        Ok(())
    }

    /// Continues at `offset`, which is the start of a line.
    fn start_at(&mut self, offset: u64) {
        self.next_read = offset;
        self.chunk.clear();
        self.chunk_pos = 0;
        self.line.clear();
        self.discarding = false;
    }

    /// Continues at the end (`tail -n0`): an unfinished last line is skipped, its end
    /// included, so that no line is handed on without its beginning.
    fn start_at_end(&mut self, size: u64) -> Result<(), FileSourceError> {
        self.start_at(size);
        if size > 0 {
            let mut last = [0u8; 1];
            let read = read_at(&self.file, &mut last, size - 1)
                .map_err(|error| FileSourceError::read(&self.path, error))?;
            self.discarding = read == 1 && last[0] != b'\n';
        }
        Ok(())
    }

    /// Reads and splits lines into `out` until it holds `max` lines or the file has no more;
    /// `true` when the end was reached.
    fn read_lines(&mut self, out: &mut Vec<RawLine>, max: usize) -> Result<bool, FileSourceError> {
        loop {
            if out.len() >= max {
                return Ok(false);
            }
            if self.chunk_pos >= self.chunk.len() {
                self.chunk.resize(READ_CHUNK_BYTES, 0);
                self.chunk_pos = 0;
                let read = match read_at(&self.file, &mut self.chunk, self.next_read) {
                    Ok(read) => read,
                    Err(error) => {
                        self.chunk.clear();
                        return Err(FileSourceError::read(&self.path, error));
                    }
                };
                self.chunk.truncate(read);
                if read == 0 {
                    // An idle follower keeps no read buffer: with hundreds of containers
                    // followed, most of them idle, that is most of the memory.
                    self.chunk = Vec::new();
                    return Ok(true);
                }
                self.next_read += read as u64;
                self.refresh_head()?;
            }
            self.split(out, max);
        }
    }

    /// Splits the unsplit part of the chunk into lines, until it is used up or `out` is full.
    fn split(&mut self, out: &mut Vec<RawLine>, max: usize) {
        let chunk_start = self.next_read - self.chunk.len() as u64;
        while out.len() < max && self.chunk_pos < self.chunk.len() {
            let rest = &self.chunk[self.chunk_pos..];
            let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
                if !self.discarding {
                    if self.line.len() + rest.len() > MAX_LINE_BYTES {
                        self.drop_long_line();
                    } else {
                        self.line.extend_from_slice(rest);
                    }
                }
                self.chunk_pos = self.chunk.len();
                return;
            };
            let end = self.chunk_pos + newline;
            let offset = chunk_start + end as u64 + 1;
            if self.discarding {
                self.discarding = false;
            } else if self.line.len() + newline > MAX_LINE_BYTES {
                self.drop_long_line();
                self.discarding = false;
            } else {
                let text = if self.line.is_empty() {
                    String::from_utf8_lossy(&self.chunk[self.chunk_pos..end]).into_owned()
                } else {
                    self.line
                        .extend_from_slice(&self.chunk[self.chunk_pos..end]);
                    let text = String::from_utf8_lossy(&self.line).into_owned();
                    self.line.clear();
                    if self.line.capacity() > READ_CHUNK_BYTES {
                        // One long line must not pin its buffer for the rest of the run.
                        self.line = Vec::new();
                    }
                    text
                };
                out.push(RawLine {
                    text,
                    position: Some(Position::File {
                        device: self.device,
                        inode: self.inode,
                        offset,
                        head: self.head.clone(),
                    }),
                });
            }
            self.chunk_pos = end + 1;
        }
    }

    fn drop_long_line(&mut self) {
        self.line = Vec::new();
        self.discarding = true;
        self.long_lines_dropped += 1;
    }
}

/// A directory or a device where a log file was expected.
#[derive(Debug, thiserror::Error)]
#[error("not a regular file")]
struct NotRegularFile;

/// `pread`, retried when interrupted by a signal.
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buffer, offset) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader_over(bytes: &[u8]) -> (tempfile::NamedTempFile, Reader) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let reader = Reader::open(file.path()).unwrap();
        (file, reader)
    }

    fn texts_and_offsets(lines: &[RawLine]) -> Vec<(&str, u64)> {
        lines
            .iter()
            .map(|line| match &line.position {
                Some(Position::File { offset, .. }) => (line.text.as_str(), *offset),
                other => panic!("not a file position: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn lines_carry_the_offset_just_past_them_and_no_newline() {
        let (_file, mut reader) = reader_over(b"one\n\ntwo\nthree");
        let mut lines = Vec::new();
        assert!(reader.read_lines(&mut lines, MAX_BATCH_LINES).unwrap());
        assert_eq!(texts_and_offsets(&lines), [("one", 4), ("", 5), ("two", 9)]);
        assert_eq!(reader.line, b"three");
    }

    #[test]
    fn a_full_batch_stops_reading_and_the_rest_comes_next() {
        let (_file, mut reader) = reader_over(b"a\nb\nc\n");
        let mut lines = Vec::new();
        assert!(!reader.read_lines(&mut lines, 2).unwrap());
        assert_eq!(texts_and_offsets(&lines), [("a", 2), ("b", 4)]);
        let mut rest = Vec::new();
        assert!(reader.read_lines(&mut rest, 2).unwrap());
        assert_eq!(texts_and_offsets(&rest), [("c", 6)]);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_dropped_whole() {
        let mut bytes = b"before\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        bytes.extend_from_slice(b" from 6.6.6.6 port 22 ssh2\nafter\n");
        let (_file, mut reader) = reader_over(&bytes);
        let mut lines = Vec::new();
        assert!(reader.read_lines(&mut lines, MAX_BATCH_LINES).unwrap());
        assert_eq!(
            texts_and_offsets(&lines),
            [("before", 7), ("after", bytes.len() as u64)]
        );
        assert_eq!(reader.long_lines_dropped, 1);
        assert!(reader.line.capacity() <= MAX_LINE_BYTES);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let mut bytes = vec![b'y'; MAX_LINE_BYTES];
        bytes.push(b'\n');
        let (_file, mut reader) = reader_over(&bytes);
        let mut lines = Vec::new();
        reader.read_lines(&mut lines, MAX_BATCH_LINES).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn starting_at_the_end_skips_an_unfinished_last_line() {
        let (mut file, mut reader) = reader_over(b"old\nhalf a li");
        reader.start_at_end(13).unwrap();
        file.write_all(b"ne\nnew\n").unwrap();
        let mut lines = Vec::new();
        reader.read_lines(&mut lines, MAX_BATCH_LINES).unwrap();
        assert_eq!(texts_and_offsets(&lines), [("new", 20)]);
    }

    fn tail(path: &Path, start_at_end_if_new: bool) -> Tail {
        let origin = Arc::new(Origin::File {
            path: path.to_path_buf(),
        });
        let mut config = FollowConfig::new(origin, path.to_path_buf());
        config.start_at_end_if_new = start_at_end_if_new;
        Tail::new(config)
    }

    fn step_texts(tail: &mut Tail) -> Vec<String> {
        let step = tail.step().unwrap();
        assert!(!step.more);
        step.lines.into_iter().map(|line| line.text).collect()
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn tailing_an_existing_file_starts_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, b"old\nunfinis");
        let mut tail = tail(&path, true);
        assert!(step_texts(&mut tail).is_empty());
        append(&path, b"hed\nnew\n");
        assert_eq!(step_texts(&mut tail), ["new"]);
    }

    #[test]
    fn a_file_appearing_after_the_start_is_read_whole_even_when_tailing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let mut tail = tail(&path, true);
        assert!(step_texts(&mut tail).is_empty());
        append(&path, b"first\nsecond\n");
        assert_eq!(step_texts(&mut tail), ["first", "second"]);
    }

    #[test]
    fn after_a_rename_the_old_file_is_read_until_the_new_one_has_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let rotated = dir.path().join("auth.log.1");
        append(&path, b"a\n");
        let mut tail = tail(&path, false);
        assert_eq!(step_texts(&mut tail), ["a"]);
        std::fs::rename(&path, &rotated).unwrap();
        File::create(&path).unwrap();
        append(&rotated, b"late\n");
        assert_eq!(step_texts(&mut tail), ["late"]);
        append(&rotated, b"later\n");
        append(&path, b"new\n");
        assert_eq!(step_texts(&mut tail), ["later", "new"]);
        // Writes to the old file after the switch are not read: the writer has moved on.
        append(&rotated, b"stray\n");
        assert!(step_texts(&mut tail).is_empty());
    }

    #[tokio::test]
    async fn a_finished_follower_reads_to_the_end_then_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        append(&path, b"one\ntwo\n");
        let shutdown = CancellationToken::new();
        let watcher = FileWatcher::start(shutdown.clone()).unwrap();
        let origin = Arc::new(Origin::File { path: path.clone() });
        let (tx, mut rx) = mpsc::channel(16);
        let finish = CancellationToken::new();
        let follower = tokio::spawn(follow_until(
            FollowConfig::new(origin, path.clone()),
            watcher,
            tx,
            shutdown.clone(),
            finish.clone(),
        ));
        let first = rx.recv().await.unwrap();
        assert_eq!(first.lines.len(), 2);
        // Written before `finish`, not yet seen by the follower: still read.
        append(&path, b"three\nhalf");
        finish.cancel();
        let mut rest = Vec::new();
        while let Some(batch) = rx.recv().await {
            rest.extend(batch.lines.into_iter().map(|line| line.text));
        }
        assert_eq!(rest, ["three"]);
        follower.await.unwrap().unwrap();
        shutdown.cancel();
    }

    #[test]
    fn permission_denied_is_its_own_error_naming_the_path() {
        let path = Path::new("/var/log/auth.log");
        let error = FileSourceError::open(path, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(error, FileSourceError::PermissionDenied { .. }));
        assert_eq!(error.path(), path);
        assert_eq!(
            error.to_string(),
            "cannot read /var/log/auth.log: permission denied"
        );
        let error = FileSourceError::read(path, io::Error::from(io::ErrorKind::InvalidData));
        assert!(
            error
                .to_string()
                .starts_with("cannot read /var/log/auth.log: ")
        );
    }

    #[test]
    fn rotated_names() {
        assert_eq!(
            RotatedName::DotOne.candidate(Path::new("/c/abc/abc-json.log")),
            Some(PathBuf::from("/c/abc/abc-json.log.1"))
        );
        fn dated(path: &Path) -> Option<PathBuf> {
            Some(path.with_extension("log-20261126"))
        }
        assert_eq!(
            RotatedName::Custom(dated).candidate(Path::new("/var/log/auth.log")),
            Some(PathBuf::from("/var/log/auth.log-20261126"))
        );
    }
}
