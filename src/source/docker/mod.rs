//! The Docker source: finds the containers to watch and follows each one's log.
//!
//! # Connecting
//!
//! `docker.host` from the configuration, else `DOCKER_HOST`, else
//! `unix:///var/run/docker.sock`; `unix://` and `tcp://` (plain HTTP) endpoints are understood.
//! The API version is negotiated, so Docker 20.10 (API 1.41, Debian's `docker.io`) and newer
//! work. When Docker is not there or goes away (a daemon restart), logjail keeps trying with a
//! growing delay (0.5 s doubling to 30 s), and on return lists the containers again to pick up
//! what changed meanwhile. Followers of json-file logs keep reading while Docker is away.
//!
//! # Which containers, which jails
//!
//! A container is looked at closely (`inspect`) only when it has a `logjail.*` label or when a
//! YAML jail's `container:` selector (name glob, image glob, label) matches what the container
//! list or the `start` event already says: every other container costs one check of its label
//! keys. logjail's own container is never read. A container feeds:
//! - every enabled YAML jail whose `container:` source selects it;
//! - the jails named by `logjail.jails=a,b` (YAML jails, or jails defined by the same
//!   container's labels);
//! - the jails its labels define, `logjail.jail.NAME.KEY=VALUE` (see [`crate::routing::labels`]).
//!
//! `logjail.jails` and `logjail.jail.*` imply `logjail.enable=true`. `logjail.enable=true`
//! alone names no jail, so it adds none: the container feeds the YAML jails that select it, and
//! when there is none logjail says so once at info level. `logjail.enable=false` opts a
//! container out of everything, selectors included. Label-defined jails are created in the
//! jail task at run time; a name taken by a YAML jail, or by a different definition from
//! another container, is refused (identical definitions, as replicas of one compose service
//! have, share one jail). Every label problem is logged once per container, as a warning that
//! names the container and the label; only the jail concerned is skipped. Which jails a
//! container feeds is decided when it is first seen and again on a configuration reload; a
//! rename changes only the name shown.
//!
//! # Reading
//!
//! `read_mode: auto` (and `logfile`) read the json-file log at the container's `LogPath` when
//! the driver is `json-file` and the file opens, following it with inotify (polling when
//! inotify fails) through rotation (`-json.log.1`); the lines are handed on raw, the matcher's
//! envelope decoder joins Docker's 16 KiB pieces. Otherwise, and with `read_mode: api`, the
//! API's `logs` stream is followed (see [`api_lines`]). One follower task per container; all
//! of them feed the matcher through one bounded queue whose free places go to waiting
//! followers in turn: a flooding container fills the queue, never memory, and the others
//! still get their lines through. Each follower holds at most one batch of its own.
//!
//! # Resuming
//!
//! Every line carries its position (file identity and offset, or time and count at that
//! time); the matcher stores the last one per container in SQLite. A follower starts where
//! the last one stopped: after a container restart, a Docker restart or a logjail restart, no
//! line is counted twice and none written meanwhile is missed. When a container dies its
//! follower reads to the end before stopping; a container that stopped while logjail was down
//! is read to its end once. A removed container's position is forgotten.

pub mod api_lines;
mod container;
mod discovery;
pub mod own;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DefaultsConfig, DockerConfig, JailConfig};
use crate::messages::JailEvent;
use crate::messages::MatcherControl;
use crate::messages::{LineBatch, Position};
use crate::routing::Filters;
use crate::source::watch::FileWatcher;

/// The standard socket, when neither the configuration nor `DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Longest wait for a request's answer (streams are not bounded by it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// First wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait before reconnecting.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why Docker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker endpoint {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
}

/// The channels the Docker source feeds; the daemon owns the other ends.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Raw lines of every container, to the matcher.
    pub lines: mpsc::Sender<LineBatch>,
    /// Which container feeds which jails, to the matcher.
    pub control: mpsc::Sender<MatcherControl>,
    /// Label-defined jails, to the jail task.
    pub jails: mpsc::Sender<JailEvent>,
    /// The shared inotify watcher, for json-file logs.
    pub watcher: FileWatcher,
    /// Woken each time Docker is (re)connected: a restarted Docker may have rebuilt its
    /// chains, so the firewall layout is checked at once rather than at the next period.
    pub connected: std::sync::Arc<tokio::sync::Notify>,
}

/// What the source takes from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    docker: DockerConfig,
    jails: Vec<JailConfig>,
    defaults: DefaultsConfig,
    chain_prefix: String,
    filters: Filters,
    filter_names: BTreeSet<String>,
    yaml_jails: BTreeSet<String>,
    any_selector: bool,
}

impl Settings {
    fn new(config: &Config, filters: &Filters) -> Settings {
        Settings {
            docker: config.docker.clone(),
            jails: config.jails.clone(),
            defaults: config.defaults.clone(),
            chain_prefix: config.firewall.chain_prefix.clone(),
            filters: filters.clone(),
            filter_names: filters.label_choices(),
            yaml_jails: config.jails.iter().map(|jail| jail.name.clone()).collect(),
            any_selector: discovery::has_selectors(&config.jails),
        }
    }
}

/// The running Docker source; the daemon stops it with the other sources.
#[derive(Debug)]
pub struct DockerSource {
    stop: CancellationToken,
    task: JoinHandle<()>,
    reconfigure: mpsc::Sender<(Settings, oneshot::Sender<()>)>,
}

impl DockerSource {
    /// Starts the Docker source when `docker.enabled`. `positions` are the stored read
    /// positions (the `container:ID` ones are used).
    pub fn start(
        config: &Config,
        filters: &Filters,
        positions: &HashMap<String, Position>,
        wiring: Wiring,
    ) -> Option<DockerSource> {
        if !config.docker.enabled {
            return None;
        }
        let positions: HashMap<String, Position> = positions
            .iter()
            .filter_map(|(key, position)| {
                key.strip_prefix("container:")
                    .map(|id| (id.to_string(), position.clone()))
            })
            .collect();
        let stop = CancellationToken::new();
        let (reconfigure, settings) = mpsc::channel(1);
        let discovery = discovery::Discovery::new(
            Settings::new(config, filters),
            wiring,
            positions,
            settings,
            stop.clone(),
        );
        Some(DockerSource {
            stop,
            task: tokio::spawn(discovery.run()),
            reconfigure,
        })
    }

    /// Applies a reloaded configuration's jails and filters: containers are matched against
    /// the new selectors and jails. (A changed `docker:` section takes a restart.)
    /// Returns once the containers are matched again.
    pub async fn apply(&self, config: &Config, filters: &Filters) {
        let (done, applied) = oneshot::channel();
        if self
            .reconfigure
            .send((Settings::new(config, filters), done))
            .await
            .is_ok()
        {
            let _ = applied.await;
        }
    }

    /// Stops every follower and waits until they have handed on what they read.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the Docker source failed");
        }
    }
}

/// The endpoint to use: the configuration's, else `DOCKER_HOST`, else the standard socket.
pub fn endpoint(config: &DockerConfig) -> String {
    config
        .host
        .clone()
        .or_else(|| {
            std::env::var("DOCKER_HOST")
                .ok()
                .filter(|host| !host.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
}

/// Connects and negotiates the API version (which also proves the daemon answers).
pub async fn connect(config: &DockerConfig) -> Result<Docker, DockerError> {
    let host = endpoint(config);
    let error = |source| DockerError::Connect {
        host: host.clone(),
        source,
    };
    let docker = Docker::connect_with_host(&host)
        .map_err(error)?
        .with_timeout(REQUEST_TIMEOUT);
    docker.negotiate_version().await.map_err(error)
}

/// Waits that double from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..9).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[5], Duration::from_secs(16));
        assert_eq!(delays[6], BACKOFF_MAX);
        assert_eq!(delays[8], BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_MIN);
    }

    #[test]
    fn endpoint_prefers_the_configuration() {
        let config = DockerConfig {
            host: Some("tcp://10.0.0.5:2375".to_string()),
            ..Default::default()
        };
        assert_eq!(endpoint(&config), "tcp://10.0.0.5:2375");
    }
}
