//! One inotify instance for every followed file, waking the followers whose file changed.
//!
//! Files are watched through their parent directory, never by their own inode: a directory
//! watch keeps reporting the *name* through renames and re-creations, which is exactly what a
//! follower needs to see rotation (the old file moves away, a new one appears under the name).
//! One directory watch is shared by all files in that directory. When inotify cannot be used
//! (no instance, watch limit reached, directory missing) a watch falls back to polling, and it
//! keeps trying to get back to inotify, so that latency only suffers while it has to.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventMask, EventOwned, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often a watch that cannot use inotify looks at its file.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Size of the buffer inotify events are read into; large enough that a burst of events on many
/// files is read in few system calls.
const EVENT_BUFFER_BYTES: usize = 64 * 1024;

/// What a directory watch reports: changes to the files in it (written, attributes changed,
/// created, deleted, renamed in or out) and the directory itself going away.
fn directory_mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// Why the file watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// inotify events are read by a tokio task, so the watcher needs a running runtime.
    #[error("file watcher: must be started inside a tokio runtime")]
    NoRuntime,
}

/// The shared file watcher: a cheap handle, cloned into every follower.
#[derive(Clone, Debug)]
pub struct FileWatcher {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `None` when the watcher polls only (inotify unavailable or polling forced).
    registry: Option<Mutex<Registry>>,
    poll_interval: Duration,
    /// Set when the event task stopped: no inotify wake-up will ever come again.
    stopped: AtomicBool,
    /// Falling back to polling is logged once, not once per file.
    warned_fallback: AtomicBool,
    next_subscriber: AtomicU64,
}

#[derive(Debug)]
struct Registry {
    watches: Watches,
    /// By watch descriptor number (what events carry).
    directories: HashMap<i32, DirectoryWatch>,
    /// Which watch a directory path has, so that files in one directory share it.
    by_path: HashMap<PathBuf, i32>,
}

#[derive(Debug)]
struct DirectoryWatch {
    descriptor: WatchDescriptor,
    subscribers: HashMap<u64, Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    file_name: OsString,
    signal: Arc<Signal>,
}

/// How the event task reaches one watch.
#[derive(Debug, Default)]
struct Signal {
    notify: Notify,
    /// The directory watch is gone (directory deleted or moved): the watch must subscribe anew.
    lost: AtomicBool,
}

impl Signal {
    fn wake(&self) {
        // `notify_one` keeps a permit when nobody waits: a change that happens while the
        // follower is reading is not missed.
        self.notify.notify_one();
    }

    fn lose(&self) {
        self.lost.store(true, Ordering::Release);
        self.wake();
    }
}

impl FileWatcher {
    /// Starts the watcher: one inotify instance, read by one task that ends on `shutdown`.
    /// If inotify is unavailable the watcher polls instead, and says so once.
    pub fn start(shutdown: CancellationToken) -> Result<FileWatcher, WatchError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(WatchError::NoRuntime);
        }
        let stream = Inotify::init()
            .and_then(|inotify| inotify.into_event_stream(vec![0u8; EVENT_BUFFER_BYTES]));
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(
                    %error,
                    interval = ?DEFAULT_POLL_INTERVAL,
                    "inotify unavailable: polling log files instead"
                );
                return Ok(Self::polling(DEFAULT_POLL_INTERVAL));
            }
        };
        let watcher = FileWatcher {
            shared: Arc::new(Shared {
                registry: Some(Mutex::new(Registry {
                    watches: stream.watches(),
                    directories: HashMap::new(),
                    by_path: HashMap::new(),
                })),
                poll_interval: DEFAULT_POLL_INTERVAL,
                stopped: AtomicBool::new(false),
                warned_fallback: AtomicBool::new(false),
                next_subscriber: AtomicU64::new(0),
            }),
        };
        tokio::spawn(run_events(stream, Arc::clone(&watcher.shared), shutdown));
        Ok(watcher)
    }

    /// A watcher that only polls, every `poll_interval`: for file systems where inotify sees
    /// nothing (NFS, some FUSE mounts), and for tests of the fallback.
    pub fn polling(poll_interval: Duration) -> FileWatcher {
        FileWatcher {
            shared: Arc::new(Shared {
                registry: None,
                poll_interval,
                stopped: AtomicBool::new(false),
                warned_fallback: AtomicBool::new(true),
                next_subscriber: AtomicU64::new(0),
            }),
        }
    }

    /// Whether this watcher polls for every file (inotify unavailable or not wanted).
    pub fn is_polling(&self) -> bool {
        self.shared.registry.is_none() || self.shared.stopped.load(Ordering::Acquire)
    }

    /// Watches `path`: the returned [`Watch`] wakes on writes to the file, on changes of its
    /// attributes, and on files being created, renamed or deleted under its name (and names it
    /// prefixes, such as the `path.1` it is rotated to). The file need not exist.
    pub fn watch(&self, path: &Path) -> Watch {
        let (directory, file_name) = split_path(path);
        let mut watch = Watch {
            shared: Arc::clone(&self.shared),
            directory,
            file_name,
            mode: Mode::Polling { retry: false },
        };
        watch.subscribe();
        watch
    }
}

impl FileWatcher {
    /// Watches the entries of `directory` itself: the returned [`Watch`] wakes when anything in
    /// it is created, deleted, renamed or written, and when the directory goes away. For
    /// directories whose children come and go (the pod log directory, where each pod has a
    /// folder); it shares the directory's inotify watch with the files followed in it.
    pub fn watch_directory(&self, directory: &Path) -> Watch {
        let mut watch = Watch {
            shared: Arc::clone(&self.shared),
            directory: directory.to_path_buf(),
            // Every name starts with the empty one: see `concerns`.
            file_name: OsString::new(),
            mode: Mode::Polling { retry: false },
        };
        watch.subscribe();
        watch
    }
}

/// The directory inotify must watch for `path`, and the name the file has in it.
fn split_path(path: &Path) -> (PathBuf, OsString) {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    (directory, file_name)
}

/// Whether an event about `event_name` concerns the file `file_name`: the file itself, or a
/// name it prefixes (`auth.log.1`, `<id>-json.log.1`, `auth.log-20261126`), which is where
/// the file went when it was rotated and where its last lines may still be written.
fn concerns(file_name: &OsStr, event_name: &OsStr) -> bool {
    event_name.as_bytes().starts_with(file_name.as_bytes())
}

/// One followed file's wake-up: await [`Watch::changed`] between reads.
#[derive(Debug)]
pub struct Watch {
    shared: Arc<Shared>,
    directory: PathBuf,
    file_name: OsString,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Inotify {
        descriptor: i32,
        subscriber: u64,
        signal: Arc<Signal>,
    },
    /// `retry`: inotify exists but could not watch the directory (missing, limit reached):
    /// try again at every poll.
    Polling { retry: bool },
}

impl Watch {
    /// Waits until the file may have changed. Spurious wake-ups happen (the caller re-reads
    /// and finds nothing new); a change is never reported late by more than the poll interval
    /// when polling.
    pub async fn changed(&mut self) {
        match &self.mode {
            Mode::Inotify { signal, .. } => {
                let signal = Arc::clone(signal);
                if !self.inotify_usable(&signal) {
                    self.subscribe();
                    return;
                }
                signal.notify.notified().await;
                if !self.inotify_usable(&signal) {
                    // Subscribe now, before the caller looks at the file: a change after this
                    // point wakes the next wait.
                    self.subscribe();
                }
            }
            Mode::Polling { retry } => {
                let retry = *retry;
                tokio::time::sleep(self.shared.poll_interval).await;
                if retry {
                    self.subscribe();
                }
            }
        }
    }

    /// Whether this watch currently relies on polling rather than inotify.
    pub fn is_polling(&self) -> bool {
        matches!(self.mode, Mode::Polling { .. })
    }

    fn inotify_usable(&self, signal: &Signal) -> bool {
        !signal.lost.load(Ordering::Acquire) && !self.shared.stopped.load(Ordering::Acquire)
    }

    /// (Re)subscribes to the directory's inotify watch, or settles for polling.
    fn subscribe(&mut self) {
        self.unsubscribe();
        let shared = Arc::clone(&self.shared);
        let Some(registry) = &shared.registry else {
            self.mode = Mode::Polling { retry: false };
            return;
        };
        if shared.stopped.load(Ordering::Acquire) {
            self.mode = Mode::Polling { retry: false };
            return;
        }
        let mut registry = lock(registry);
        let descriptor = match registry.directory_watch(&self.directory) {
            Ok(descriptor) => descriptor,
            Err(error) => {
                drop(registry);
                self.fall_back(&error);
                return;
            }
        };
        let Some(directory) = registry.directories.get_mut(&descriptor) else {
            self.mode = Mode::Polling { retry: true };
            return;
        };
        let subscriber = shared.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Signal::default());
        directory.subscribers.insert(
            subscriber,
            Subscriber {
                file_name: self.file_name.clone(),
                signal: Arc::clone(&signal),
            },
        );
        self.mode = Mode::Inotify {
            descriptor,
            subscriber,
            signal,
        };
    }

    fn fall_back(&mut self, error: &io::Error) {
        self.mode = Mode::Polling { retry: true };
        if error.kind() == io::ErrorKind::NotFound {
            // A directory that does not exist yet (a container not started, an optional log
            // directory) is waited for quietly.
            tracing::debug!(directory = %self.directory.display(), "directory missing: polling until it appears");
            return;
        }
        if !self.shared.warned_fallback.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                directory = %self.directory.display(),
                %error,
                interval = ?self.shared.poll_interval,
                "cannot watch directory with inotify (watch limit reached?): polling instead"
            );
        }
    }

    fn unsubscribe(&mut self) {
        let Mode::Inotify {
            descriptor,
            subscriber,
            ..
        } = self.mode
        else {
            return;
        };
        self.mode = Mode::Polling { retry: false };
        if let Some(registry) = &self.shared.registry {
            lock(registry).unsubscribe(descriptor, subscriber);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.unsubscribe();
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // The registry stays consistent between statements, so a panic elsewhere while holding
    // the lock leaves nothing half-done worth refusing to use.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// The watch on `directory`, shared if it exists, added otherwise.
    fn directory_watch(&mut self, directory: &Path) -> io::Result<i32> {
        if let Some(&id) = self.by_path.get(directory)
            && self.directories.contains_key(&id)
        {
            return Ok(id);
        }
        let descriptor = self.watches.add(directory, directory_mask())?;
        let id = descriptor.get_watch_descriptor_id();
        // Another path to the same directory (a symlink, a bind mount) yields the same
        // descriptor: it joins the existing entry.
        self.directories
            .entry(id)
            .or_insert_with(|| DirectoryWatch {
                descriptor,
                subscribers: HashMap::new(),
            });
        self.by_path.insert(directory.to_path_buf(), id);
        Ok(id)
    }

    fn unsubscribe(&mut self, descriptor: i32, subscriber: u64) {
        let Some(directory) = self.directories.get_mut(&descriptor) else {
            return;
        };
        directory.subscribers.remove(&subscriber);
        if directory.subscribers.is_empty() {
            self.forget(descriptor, true);
        }
    }

    /// Drops a directory watch; `remove` also tells the kernel (not needed when the kernel
    /// already dropped it).
    fn forget(&mut self, descriptor: i32, remove: bool) -> Option<DirectoryWatch> {
        let directory = self.directories.remove(&descriptor)?;
        self.by_path.retain(|_, id| *id != descriptor);
        if remove {
            // Fails when the directory is already gone, which is what removal wanted anyway.
            let _ = self.watches.remove(directory.descriptor.clone());
        }
        Some(directory)
    }

    fn dispatch(&mut self, event: &EventOwned) {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were dropped: anything may have changed.
            for subscriber in self
                .directories
                .values()
                .flat_map(|d| d.subscribers.values())
            {
                subscriber.signal.wake();
            }
            return;
        }
        let descriptor = event.wd.get_watch_descriptor_id();
        let directory_gone = event.mask.intersects(
            EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT,
        );
        if directory_gone {
            // After a move the watch would follow the directory to its new name; the followers
            // want the old path, so they subscribe anew (and poll until it exists again).
            let kernel_dropped = event.mask.contains(EventMask::IGNORED);
            if let Some(directory) = self.forget(descriptor, !kernel_dropped) {
                for subscriber in directory.subscribers.values() {
                    subscriber.signal.lose();
                }
            }
            return;
        }
        let Some(directory) = self.directories.get(&descriptor) else {
            return;
        };
        match &event.name {
            Some(name) => {
                for subscriber in directory.subscribers.values() {
                    if concerns(&subscriber.file_name, name) {
                        subscriber.signal.wake();
                    }
                }
            }
            None => {
                for subscriber in directory.subscribers.values() {
                    subscriber.signal.wake();
                }
            }
        }
    }

    fn lose_all(&mut self) {
        for directory in self.directories.values() {
            for subscriber in directory.subscribers.values() {
                subscriber.signal.lose();
            }
        }
    }
}

/// The event task: reads inotify events until shutdown and wakes the watches they concern.
async fn run_events(
    mut stream: inotify::EventStream<Vec<u8>>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = stream.next() => event,
        };
        match event {
            Some(Ok(event)) => {
                if let Some(registry) = &shared.registry {
                    lock(registry).dispatch(&event);
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "reading inotify events failed: polling log files instead");
                break;
            }
            None => break,
        }
    }
    // Watches still waiting switch to polling rather than waiting for wake-ups that will
    // never come.
    shared.stopped.store(true, Ordering::Release);
    if let Some(registry) = &shared.registry {
        lock(registry).lose_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_watched_through_its_directory() {
        let (directory, name) = split_path(Path::new("/var/log/auth.log"));
        assert_eq!(directory, Path::new("/var/log"));
        assert_eq!(name, "auth.log");
        let (directory, name) = split_path(Path::new("auth.log"));
        assert_eq!(directory, Path::new("."));
        assert_eq!(name, "auth.log");
    }

    #[test]
    fn events_concern_the_file_and_its_rotated_names_only() {
        let name = OsStr::new("abc-json.log");
        assert!(concerns(name, OsStr::new("abc-json.log")));
        assert!(concerns(name, OsStr::new("abc-json.log.1")));
        assert!(!concerns(name, OsStr::new("config.v2.json")));
        assert!(!concerns(name, OsStr::new("abc-json.lo")));
    }

    #[test]
    fn a_directory_watch_is_concerned_by_every_entry() {
        assert!(concerns(OsStr::new(""), OsStr::new("ns_pod_uid")));
        assert!(concerns(OsStr::new(""), OsStr::new("0.log")));
    }
}
