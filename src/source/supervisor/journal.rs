//! Journal sources: one `journalctl` per distinct journal selection however many jails read
//! it, and the routes that send its entries to those jails. A reload re-routes in place and
//! starts or stops only the selections that came or went.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{JailConfig, JournalSelector};
use crate::messages::{LineBatch, Origin, Position};
use crate::routing::{Filters, journal_routes};
use crate::source::journal::{self, JournalFollowConfig};

use super::SupervisorError;
use super::followers::Followers;
use crate::messages::MatcherControl;

struct Follower {
    /// Canonical (see [`JournalSelector::canonical`]): equal selections compare equal.
    selector: JournalSelector,
    origin: Arc<Origin>,
    stop: CancellationToken,
}

/// Owns the journal followers.
pub struct JournalSources {
    followers: Vec<Follower>,
    runner: Followers,
}

impl JournalSources {
    pub fn new(
        lines: mpsc::Sender<LineBatch>,
        control: mpsc::Sender<MatcherControl>,
        stop_all: CancellationToken,
    ) -> Self {
        JournalSources {
            followers: Vec::new(),
            runner: Followers::new(lines, control, stop_all),
        }
    }

    /// Makes the running followers match `jails`: new selections get a `journalctl`
    /// (resuming from `positions`), selections no jail reads any more lose theirs, and the
    /// routes of the others are replaced.
    pub async fn apply(
        &mut self,
        jails: &[JailConfig],
        filters: &Filters,
        positions: &HashMap<String, Position>,
    ) -> Result<(), SupervisorError> {
        let mut wanted = journal_routes(jails, filters)?;
        let mut kept = Vec::new();
        for follower in std::mem::take(&mut self.followers) {
            match wanted.iter().position(|(s, _)| *s == follower.selector) {
                Some(index) => {
                    let (_, routes) = wanted.swap_remove(index);
                    self.runner.route(follower.origin.clone(), routes).await?;
                    kept.push(follower);
                }
                None => {
                    self.runner
                        .retire(follower.origin.clone(), &follower.stop)
                        .await?;
                    tracing::info!(origin = %follower.origin, "no longer following the journal");
                }
            }
        }
        self.followers = kept;
        for (selector, routes) in wanted {
            let mut follow = JournalFollowConfig::new(selector.clone());
            let origin = follow.origin.clone();
            self.runner.route(origin.clone(), routes).await?;
            follow.resume = positions.get(&origin.position_key()).cloned();
            let stop = self.runner.spawn("journal", |lines, stop| {
                journal::follow(follow, lines, stop)
            });
            tracing::info!(%origin, "following the journal");
            self.followers.push(Follower {
                selector,
                origin,
                stop,
            });
        }
        Ok(())
    }

    /// Stops every follower (and its `journalctl`) and waits for them.
    pub async fn stop(self) {
        self.runner.stop().await;
    }
}
