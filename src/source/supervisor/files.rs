//! Host file sources: one follower per file however many jails read it, and the routes that
//! send its lines to those jails. A reload changes routes in place and starts or stops only
//! the followers whose files came or went, so no line is read twice or skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::JailConfig;
use crate::messages::{LineBatch, Origin, Position};
use crate::routing::{Filters, file_routes};
use crate::source::file::{self, FollowConfig};
use crate::source::watch::FileWatcher;

use super::SupervisorError;
use super::followers::Followers;
use crate::messages::MatcherControl;

struct Follower {
    stop: CancellationToken,
    origin: Arc<Origin>,
}

/// Owns the file followers.
pub struct FileSources {
    followers: BTreeMap<PathBuf, Follower>,
    watcher: FileWatcher,
    runner: Followers,
}

impl FileSources {
    pub fn new(
        watcher: FileWatcher,
        lines: mpsc::Sender<LineBatch>,
        control: mpsc::Sender<MatcherControl>,
        stop_all: CancellationToken,
    ) -> Self {
        FileSources {
            followers: BTreeMap::new(),
            watcher,
            runner: Followers::new(lines, control, stop_all),
        }
    }

    /// Makes the running followers match `jails`: new files get a follower (resuming from
    /// `positions`), files no jail reads any more lose theirs, changed routes are replaced.
    pub async fn apply(
        &mut self,
        jails: &[JailConfig],
        filters: &Filters,
        positions: &HashMap<String, Position>,
    ) -> Result<(), SupervisorError> {
        let wanted = file_routes(jails, filters)?;
        let gone: Vec<PathBuf> = self
            .followers
            .keys()
            .filter(|path| !wanted.contains_key(*path))
            .cloned()
            .collect();
        for path in gone {
            if let Some(follower) = self.followers.remove(&path) {
                self.runner.retire(follower.origin, &follower.stop).await?;
                tracing::info!(file = %path.display(), "no longer watching file");
            }
        }
        for (path, routes) in wanted {
            if let Some(follower) = self.followers.get(&path) {
                self.runner.route(follower.origin.clone(), routes).await?;
                continue;
            }
            let origin = Arc::new(Origin::File { path: path.clone() });
            self.runner.route(origin.clone(), routes).await?;
            let mut follow = FollowConfig::new(origin.clone(), path.clone());
            follow.resume = positions.get(&origin.position_key()).cloned();
            // A file seen for the first time is read whole, as Fail2Ban does: failures older
            // than findtime are dropped by their own time, recent ones count.
            follow.start_at_end_if_new = false;
            let watcher = self.watcher.clone();
            let stop = self.runner.spawn("file", |lines, stop| {
                file::follow(follow, watcher, lines, stop)
            });
            tracing::info!(file = %path.display(), "watching file");
            self.followers.insert(path, Follower { stop, origin });
        }
        Ok(())
    }

    /// Stops every follower and waits for them.
    pub async fn stop(self) {
        self.runner.stop().await;
    }
}
