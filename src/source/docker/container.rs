//! One container's follower: reads its json-file log (or the API's logs stream), hands lines
//! on, remembers how far it got, and when the container dies reads what is left before it
//! stops.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Backoff;
use super::api_lines::ApiLines;
use crate::filter::envelope::Stream;
use crate::messages::{LineBatch, Origin, Position, RawLine};
use crate::source::MAX_BATCH_LINES;
use crate::source::file::{self, FileSourceError, FollowConfig};
use crate::source::watch::FileWatcher;

/// After `die`, how long the log may keep growing: Docker's log copier can write the last
/// lines a moment after the event.
const DRAIN_SETTLE: Duration = Duration::from_millis(300);
/// After `die`, the longest a follower keeps reading before it gives up on the rest.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How often a draining follower compares what it read with the file's size.
const DRAIN_CHECK: Duration = Duration::from_millis(50);
/// Batches between the file follower and this task: a handful, the shared queue downstream is
/// where lines wait.
const FOLLOWER_QUEUE: usize = 2;
/// How often an idle json-file log is looked at without an inotify wake-up. Docker's log
/// directory is on a local file system where inotify does not miss changes, and with hundreds
/// of idle containers the looks are most of logjail's idle work.
const SAFETY_POLL: Duration = Duration::from_secs(5);
/// Frames taken from the API stream at once when they are already there.
const FRAMES_AT_ONCE: usize = 256;

/// How a container's lines are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReadPlan {
    /// Tail the json-file log at this path (the container's `LogPath`).
    Logfile(PathBuf),
    /// Follow `GET /containers/ID/logs`.
    Api,
}

/// What to follow.
#[derive(Debug, Clone)]
pub(super) struct FollowSpec {
    pub id: String,
    pub origin: Arc<Origin>,
    pub plan: ReadPlan,
    /// Where an earlier follower (this run or the last) stopped.
    pub resume: Option<Position>,
}

/// How discovery steers a follower.
#[derive(Debug, Clone)]
pub(super) struct Signals {
    /// Stop now.
    pub stop: CancellationToken,
    /// The container died: read what is left, then stop.
    pub died: CancellationToken,
}

/// What a follower shares with the others.
#[derive(Debug, Clone)]
pub(super) struct FollowEnv {
    pub docker: Docker,
    pub lines: mpsc::Sender<LineBatch>,
    pub watcher: FileWatcher,
}

/// How a follower ended.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Just past the last line handed on: where the next follower starts.
    pub last_position: Option<Position>,
    /// The log file could not be read: the API is the way to this container's lines.
    pub file_unreadable: bool,
    /// The follower stopped before the container did (Docker did not answer): worth another
    /// follower once Docker answers.
    pub interrupted: bool,
}

/// Follows one container until it is told to stop, or until it has died and its last lines
/// are read.
pub(super) async fn follow(spec: FollowSpec, signals: Signals, env: FollowEnv) -> Outcome {
    match spec.plan.clone() {
        ReadPlan::Logfile(path) => follow_file(spec, &path, signals, env).await,
        ReadPlan::Api => follow_api(spec, signals, env).await,
    }
}

async fn follow_file(spec: FollowSpec, path: &Path, signals: Signals, env: FollowEnv) -> Outcome {
    let (resume, mut time_skip) = match &spec.resume {
        Some(position @ Position::File { .. }) => (Some(position.clone()), None),
        // Read by the API last time: skip what it handed on, by the lines' own times.
        Some(Position::Time { time, seen_at_time }) => {
            (None, Some(TimeSkip::new(*time, *seen_at_time)))
        }
        // Only the journal stores a cursor: not a position in this container's log.
        Some(Position::Cursor { .. }) | None => (None, None),
    };
    let mut config = FollowConfig::new(spec.origin.clone(), path.to_path_buf());
    config.resume = resume;
    // A container's log is all news, except what a stored position says was read.
    config.start_at_end_if_new = false;
    config.safety_poll = SAFETY_POLL;
    let (tx, mut rx) = mpsc::channel(FOLLOWER_QUEUE);
    let follower_stop = CancellationToken::new();
    let mut follower = Some(tokio::spawn(file::follow(
        config,
        env.watcher.clone(),
        tx,
        follower_stop.clone(),
    )));
    let mut outcome = Outcome {
        last_position: spec.resume,
        ..Outcome::default()
    };
    let mut drain_since: Option<Instant> = None;
    let mut drain_check = tokio::time::interval(DRAIN_CHECK);
    loop {
        tokio::select! {
            biased;
            _ = signals.stop.cancelled() => break,
            batch = rx.recv() => {
                let Some(mut batch) = batch else {
                    if let Some(handle) = follower.take() {
                        match handle.await {
                            Ok(Err(error @ (FileSourceError::PermissionDenied { .. }
                            | FileSourceError::Open { .. }
                            | FileSourceError::NotAFile { .. }))) => {
                                tracing::warn!(origin = %spec.origin, %error, "cannot read the container's log file: switching to the Docker API");
                                outcome.file_unreadable = true;
                            }
                            Ok(Err(error)) => {
                                tracing::warn!(origin = %spec.origin, %error, "following the container's log file failed");
                                outcome.file_unreadable = true;
                            }
                            Ok(Ok(())) => {}
                            Err(error) => tracing::error!(origin = %spec.origin, %error, "log file follower failed"),
                        }
                    }
                    break;
                };
                let position = batch.lines.iter().rev().find_map(|line| line.position.clone());
                if let Some(skip) = &mut time_skip {
                    batch.lines.retain(|line| skip.keep(&line.text));
                    if skip.done {
                        time_skip = None;
                    }
                }
                if !batch.lines.is_empty() {
                    tokio::select! {
                        biased;
                        _ = signals.stop.cancelled() => break,
                        sent = env.lines.send(batch) => if sent.is_err() { break },
                    }
                }
                if position.is_some() {
                    outcome.last_position = position;
                }
            }
            _ = signals.died.cancelled(), if drain_since.is_none() => {
                drain_since = Some(Instant::now());
            }
            _ = drain_check.tick(), if drain_since.is_some() => {
                let waited = drain_since.map(|since| since.elapsed()).unwrap_or_default();
                if waited >= DRAIN_LIMIT {
                    tracing::warn!(origin = %spec.origin, "stopped reading a dead container's log before its end");
                    break;
                }
                if waited >= DRAIN_SETTLE && read_to_end(path, outcome.last_position.as_ref()) {
                    break;
                }
            }
        }
    }
    follower_stop.cancel();
    if let Some(handle) = follower {
        let _ = handle.await;
    }
    outcome
}

/// Whether everything in the file at `path` was handed on: `last` is just past its end. A
/// file that is gone (container removed) was read as far as it could be.
fn read_to_end(path: &Path, last: Option<&Position>) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return true;
    };
    match last {
        Some(&Position::File {
            device,
            inode,
            offset,
            ..
        }) => (metadata.dev(), metadata.ino()) == (device, inode) && offset >= metadata.len(),
        _ => metadata.len() == 0,
    }
}

/// Skips json-file lines handed on by an earlier API follower, by their time.
#[derive(Debug)]
struct TimeSkip {
    time: DateTime<Utc>,
    remaining_at_time: u32,
    done: bool,
}

impl TimeSkip {
    fn new(time: DateTime<Utc>, seen_at_time: u32) -> TimeSkip {
        TimeSkip {
            time,
            remaining_at_time: seen_at_time,
            done: false,
        }
    }

    fn keep(&mut self, raw: &str) -> bool {
        if self.done {
            return true;
        }
        #[derive(Deserialize)]
        struct Stamp<'a> {
            #[serde(borrow)]
            time: Option<std::borrow::Cow<'a, str>>,
        }
        let time = serde_json::from_str::<Stamp<'_>>(raw)
            .ok()
            .and_then(|stamp| stamp.time)
            .and_then(|time| DateTime::parse_from_rfc3339(&time).ok())
            .map(|time| time.with_timezone(&Utc));
        match time {
            Some(time) if time < self.time => false,
            Some(time) if time == self.time && self.remaining_at_time > 0 => {
                self.remaining_at_time -= 1;
                false
            }
            _ => {
                self.done = true;
                true
            }
        }
    }
}

/// Why one logs request ended.
enum StreamEnd {
    /// Docker closed the stream: the container stopped (or Docker did).
    Closed,
    /// The connection failed; worth another request.
    Failed(String),
    /// Docker refused: no reading this container through the API.
    Refused(String),
    /// Told to stop, or nobody receives lines any more.
    Stop,
}

async fn follow_api(spec: FollowSpec, signals: Signals, env: FollowEnv) -> Outcome {
    let resume = match &spec.resume {
        Some(Position::File { .. }) => {
            // Read from the log file last time, by offset: no time to resume from. Counting the
            // old lines again could ban on stale evidence, so start from now.
            tracing::info!(origin = %spec.origin, "stored position is a log file offset: reading through the API from now on");
            Some(Position::Time {
                time: Utc::now(),
                seen_at_time: 0,
            })
        }
        other => other.clone(),
    };
    let mut lines = ApiLines::new(resume);
    let mut outcome = Outcome {
        last_position: spec.resume.clone(),
        ..Outcome::default()
    };
    let mut backoff = Backoff::new();
    let mut drain_deadline: Option<Instant> = None;
    let mut long_lines_warned = false;
    loop {
        let requested = Instant::now();
        let end = read_logs(
            &spec,
            &signals,
            &env,
            &mut lines,
            &mut outcome,
            &mut drain_deadline,
        )
        .await;
        if lines.long_lines_dropped > 0 {
            if !long_lines_warned {
                tracing::warn!(origin = %spec.origin, dropped = lines.long_lines_dropped, "dropped lines longer than {} bytes (reported once)", file::MAX_LINE_BYTES);
                long_lines_warned = true;
            }
            lines.long_lines_dropped = 0;
        }
        match end {
            StreamEnd::Stop => return outcome,
            StreamEnd::Refused(message) => {
                tracing::warn!(origin = %spec.origin, error = %message, "Docker cannot send this container's logs");
                return outcome;
            }
            StreamEnd::Closed => {
                let running = if signals.died.is_cancelled() {
                    Ok(false)
                } else {
                    container_running(&env.docker, &spec.id).await
                };
                match running {
                    // Docker closed the stream of a running container: ask again.
                    Ok(true) => {}
                    Ok(false) => {
                        let mut rest = Vec::new();
                        lines.flush(&mut rest);
                        let _ = send_lines(&spec.origin, rest, &signals, &env, &mut outcome).await;
                        return outcome;
                    }
                    Err(error) => {
                        tracing::debug!(origin = %spec.origin, %error, "cannot ask Docker about the container");
                        outcome.interrupted = true;
                        return outcome;
                    }
                }
            }
            StreamEnd::Failed(message) => {
                // Docker went away, most likely: discovery starts a new follower when it is back.
                tracing::debug!(origin = %spec.origin, error = %message, "container logs stream failed");
                outcome.interrupted = true;
                return outcome;
            }
        }
        // Ask again, from the last line handed on.
        lines.restart();
        if requested.elapsed() > super::BACKOFF_MAX {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = signals.stop.cancelled() => return outcome,
            _ = tokio::time::sleep(delay) => {}
        }
        if signals.died.is_cancelled() && drain_deadline.is_some_and(|d| Instant::now() >= d) {
            return outcome;
        }
    }
}

/// One `logs` request, followed until it ends.
async fn read_logs(
    spec: &FollowSpec,
    signals: &Signals,
    env: &FollowEnv,
    lines: &mut ApiLines,
    outcome: &mut Outcome,
    drain_deadline: &mut Option<Instant>,
) -> StreamEnd {
    let since = lines
        .since()
        .map(|time| i32::try_from(time.timestamp()).unwrap_or(i32::MAX))
        .unwrap_or(0);
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since,
        until: 0,
        timestamps: true,
        tail: "all".to_string(),
    };
    let mut stream = Box::pin(
        env.docker
            .logs(&spec.id, Some(options))
            .ready_chunks(FRAMES_AT_ONCE),
    );
    loop {
        let deadline = *drain_deadline;
        let frames = tokio::select! {
            biased;
            _ = signals.stop.cancelled() => return StreamEnd::Stop,
            _ = signals.died.cancelled(), if deadline.is_none() => {
                *drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
                continue;
            }
            _ = sleep_until_some(deadline) => {
                tracing::warn!(origin = %spec.origin, "stopped reading a dead container's logs before their end");
                return StreamEnd::Stop;
            }
            frames = stream.next() => frames,
        };
        let Some(frames) = frames else {
            return StreamEnd::Closed;
        };
        let mut out = Vec::new();
        let mut failure = None;
        for frame in frames {
            match frame {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    lines.push_frame(Stream::Stdout, &message, &mut out);
                }
                Ok(LogOutput::StdErr { message }) => {
                    lines.push_frame(Stream::Stderr, &message, &mut out);
                }
                Ok(LogOutput::StdIn { .. }) => {}
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if !send_lines(&spec.origin, out, signals, env, outcome).await {
            return StreamEnd::Stop;
        }
        match failure {
            None => {}
            Some(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            }) if (400..500).contains(&status_code) || status_code == 501 => {
                return StreamEnd::Refused(message);
            }
            Some(error) => return StreamEnd::Failed(error.to_string()),
        }
    }
}

/// Whether the container runs; a container that no longer exists does not.
async fn container_running(docker: &Docker, id: &str) -> Result<bool, bollard::errors::Error> {
    match docker.inspect_container(id, None).await {
        Ok(inspect) => Ok(inspect
            .state
            .and_then(|state| state.running)
            .unwrap_or(false)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(error) => Err(error),
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Hands lines on in batches; `false` when told to stop or nobody receives them.
async fn send_lines(
    origin: &Arc<Origin>,
    mut lines: Vec<RawLine>,
    signals: &Signals,
    env: &FollowEnv,
    outcome: &mut Outcome,
) -> bool {
    while !lines.is_empty() {
        let rest = if lines.len() > MAX_BATCH_LINES {
            lines.split_off(MAX_BATCH_LINES)
        } else {
            Vec::new()
        };
        let position = lines.iter().rev().find_map(|line| line.position.clone());
        let batch = LineBatch {
            origin: origin.clone(),
            lines,
        };
        tokio::select! {
            biased;
            _ = signals.stop.cancelled() => return false,
            sent = env.lines.send(batch) => if sent.is_err() { return false },
        }
        if position.is_some() {
            outcome.last_position = position;
        }
        lines = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_skip_drops_lines_already_handed_on() {
        let time = DateTime::parse_from_rfc3339("2026-11-26T07:00:02Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut skip = TimeSkip::new(time, 1);
        let line =
            |t: &str, text: &str| format!(r#"{{"log":"{text}\n","stream":"stderr","time":"{t}"}}"#);
        assert!(!skip.keep(&line("2026-11-26T07:00:01Z", "old")));
        assert!(!skip.keep(&line("2026-11-26T07:00:02Z", "seen")));
        assert!(skip.keep(&line("2026-11-26T07:00:02Z", "same second, new")));
        assert!(skip.done);
        assert!(skip.keep(&line(
            "2026-11-26T07:00:01Z",
            "after the skip, anything goes"
        )));
    }

    #[test]
    fn reading_to_the_end_compares_identity_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        std::fs::write(&path, b"0123456789\n").unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        let at = |offset| {
            Some(Position::File {
                device: metadata.dev(),
                inode: metadata.ino(),
                offset,
                head: std::sync::Arc::from(&b"0123456789\n"[..]),
            })
        };
        assert!(read_to_end(&path, at(11).as_ref()));
        assert!(!read_to_end(&path, at(5).as_ref()));
        assert!(!read_to_end(&path, None));
        assert!(read_to_end(&dir.path().join("gone"), at(5).as_ref()));
    }
}
