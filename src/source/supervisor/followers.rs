//! What the file and journal source managers share: a source's routes attached at the matcher
//! before its follower starts, one follower task per source under a common stop, and the
//! detach when no jail reads the source any more.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::messages::{LineBatch, Origin};

use super::SupervisorError;
use crate::messages::MatcherControl;
use crate::routing::Route;

/// Runs followers and keeps the matcher's routes in step with them.
pub struct Followers {
    lines: mpsc::Sender<LineBatch>,
    control: mpsc::Sender<MatcherControl>,
    stop_all: CancellationToken,
    tasks: JoinSet<()>,
}

impl Followers {
    pub fn new(
        lines: mpsc::Sender<LineBatch>,
        control: mpsc::Sender<MatcherControl>,
        stop_all: CancellationToken,
    ) -> Self {
        Followers {
            lines,
            control,
            stop_all,
            tasks: JoinSet::new(),
        }
    }

    /// Sends the lines of `origin` to `routes` from now on (replacing earlier routes): done
    /// before a follower starts, so that its first lines find their jails, and at every
    /// reload, since filters may change under the same names.
    pub async fn route(
        &self,
        origin: Arc<Origin>,
        routes: Vec<Route>,
    ) -> Result<(), SupervisorError> {
        self.send(MatcherControl::Attach {
            origin,
            routes: routes.into(),
        })
        .await
    }

    /// Stops a follower and forgets its routes (its read position is kept).
    pub async fn retire(
        &self,
        origin: Arc<Origin>,
        stop: &CancellationToken,
    ) -> Result<(), SupervisorError> {
        stop.cancel();
        self.send(MatcherControl::Detach {
            origin,
            forget_position: false,
        })
        .await
    }

    /// Starts a follower; `follow` gets the line queue and the follower's own stop token,
    /// which is returned (cancelled by [`retire`](Self::retire) or by the common stop).
    /// `what` names the kind of source in the error logged if the follower fails.
    pub fn spawn<Follow, Fut, Error>(
        &mut self,
        what: &'static str,
        follow: Follow,
    ) -> CancellationToken
    where
        Follow: FnOnce(mpsc::Sender<LineBatch>, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
        Error: Display,
    {
        let stop = self.stop_all.child_token();
        let run = follow(self.lines.clone(), stop.clone());
        self.tasks.spawn(async move {
            if let Err(error) = run.await {
                tracing::error!(%error, source = what, "source stopped");
            }
        });
        stop
    }

    /// Stops every follower and waits for them.
    pub async fn stop(mut self) {
        self.stop_all.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    async fn send(&self, control: MatcherControl) -> Result<(), SupervisorError> {
        self.control
            .send(control)
            .await
            .map_err(|_| SupervisorError::MatcherStopped)
    }
}
