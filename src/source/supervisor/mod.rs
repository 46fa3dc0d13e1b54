//! Source supervisors: they keep the host-file and journal followers in step with the
//! configuration (a follower per file or selection, however many jails read it), and tell the
//! matcher which routes each origin's lines take. Docker has its own in [`super::docker`].
//!
//! They ask [`crate::routing`] which origins feed which jails; they start, re-route and stop
//! followers, and never match or count anything themselves.

pub mod files;
mod followers;
pub mod journal;

pub use files::FileSources;
pub use journal::JournalSources;

/// Why a supervisor could not bring its followers in line with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Routing(#[from] crate::routing::RoutingError),
    /// The matcher's queue is closed: the daemon is stopping.
    #[error("a daemon task failed: the matcher stopped")]
    MatcherStopped,
}
