//! One pod container's follower: its attempts' log files one after the other (`0.log`, then
//! `1.log` after a restart, …), each read to its end before the next one is started, with the
//! file follower of [`crate::source::file`] doing the reading (rotation, partial lines, resume).
//!
//! Attempts are read in order and never at once, so that one container's lines reach the
//! matcher in the order they were written and its stored position always belongs to the
//! file being read.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PodContainer;
use crate::messages::{LineBatch, Origin, Position};
use crate::source::file::{self, FileSourceError, FollowConfig, RotatedName};
use crate::source::watch::FileWatcher;

/// Batches between the file follower and this task: a handful, the shared queue downstream is
/// where lines wait.
const FOLLOWER_QUEUE: usize = 2;

/// What to follow.
#[derive(Debug, Clone)]
pub(super) struct FollowSpec {
    pub container: Arc<PodContainer>,
    pub origin: Arc<Origin>,
    /// The container's log directory (`<log_dir>/<ns>_<pod>_<uid>/<container>`).
    pub dir: PathBuf,
    /// Attempts to read, oldest first; all but the last are read to their end.
    pub attempts: VecDeque<u32>,
    /// Where reading the first attempt resumes (a stored position), if anywhere.
    pub resume: Option<Position>,
    pub safety_poll: Duration,
}

/// How discovery steers a follower.
#[derive(Debug)]
pub(super) struct Signals {
    /// Stop now (shutdown, or no jail wants the container any more).
    pub stop: CancellationToken,
    /// The container is gone: read what is left, then stop.
    pub finish: CancellationToken,
    /// Newer attempts (restarts), as discovery sees them.
    pub newer: mpsc::UnboundedReceiver<u32>,
}

/// What a follower shares with the others.
#[derive(Debug, Clone)]
pub(super) struct FollowEnv {
    pub lines: mpsc::Sender<LineBatch>,
    pub watcher: FileWatcher,
}

/// How a follower ended.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Just past the last line handed on: where the next follower starts.
    pub last_position: Option<Position>,
    /// Reading failed (permission denied, I/O error): worth another try later.
    pub error: Option<FileSourceError>,
}

/// Kubelet rotation renames `<n>.log` to `<n>.log.<time stamp>`: no fixed name to look at
/// first, the file follower finds it in the directory by its identity.
fn no_fixed_rotated_name(_: &Path) -> Option<PathBuf> {
    None
}

/// Follows the container's attempts until told to stop, or until it is gone and its files are
/// read.
pub(super) async fn follow(spec: FollowSpec, mut signals: Signals, env: FollowEnv) -> Outcome {
    let FollowSpec {
        container,
        origin,
        dir,
        mut attempts,
        mut resume,
        safety_poll,
    } = spec;
    let mut outcome = Outcome {
        last_position: resume.clone(),
        error: None,
    };
    let mut current: Option<u32> = None;
    while let Some(attempt) = attempts.pop_front() {
        if current.is_some_and(|current| attempt <= current) {
            continue;
        }
        current = Some(attempt);
        let path = dir.join(format!("{attempt}.log"));
        let mut config = FollowConfig::new(Arc::clone(&origin), path.clone());
        config.resume = resume.take();
        // A pod's log is all news, except what a stored position says was read.
        config.start_at_end_if_new = false;
        config.rotated_name = RotatedName::Custom(no_fixed_rotated_name);
        config.safety_poll = safety_poll;
        let (tx, mut rx) = mpsc::channel(FOLLOWER_QUEUE);
        let file_stop = CancellationToken::new();
        let file_finish = CancellationToken::new();
        if !attempts.is_empty() || signals.finish.is_cancelled() {
            file_finish.cancel();
        }
        tracing::debug!(%container, attempt, "following log file");
        let reader = tokio::spawn(file::follow_until(
            config,
            env.watcher.clone(),
            tx,
            file_stop.clone(),
            file_finish.clone(),
        ));
        loop {
            tokio::select! {
                biased;
                _ = signals.stop.cancelled() => {
                    file_stop.cancel();
                    let _ = reader.await;
                    return outcome;
                }
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    let position = batch.lines.iter().rev().find_map(|line| line.position.clone());
                    tokio::select! {
                        biased;
                        _ = signals.stop.cancelled() => {
                            file_stop.cancel();
                            let _ = reader.await;
                            return outcome;
                        }
                        sent = env.lines.send(batch) => if sent.is_err() {
                            file_stop.cancel();
                            let _ = reader.await;
                            return outcome;
                        },
                    }
                    if position.is_some() {
                        outcome.last_position = position;
                    }
                }
                Some(newer) = signals.newer.recv() => {
                    if newer > attempt && attempts.back().is_none_or(|last| newer > *last) {
                        attempts.push_back(newer);
                        // Nothing writes to this attempt's file any more: read it to its end.
                        file_finish.cancel();
                    }
                }
                _ = signals.finish.cancelled(), if !file_finish.is_cancelled() => {
                    file_finish.cancel();
                }
            }
        }
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                outcome.error = Some(error);
                return outcome;
            }
            Err(error) => {
                outcome.error = Some(FileSourceError::Task {
                    path,
                    reason: error.to_string(),
                });
                return outcome;
            }
        }
    }
    outcome
}
