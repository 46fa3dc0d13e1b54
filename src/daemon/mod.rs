//! The daemon: wires the tasks together in start order and stops them in reverse.
//!
//! ```text
//! sources ──LineBatch──► matcher ──JailEvent──► jails ──► store (thread), log, observers
//!   (file, journal,        (envelope,             (counting,
//!    docker)                filters, positions)     bans, expiry)
//! ```
//!
//! Start: open the store and read what survives a restart (bans, positions, history), set up
//! the jails and restore their bans, start the matcher, then the sources. Stop: sources first,
//! then the channels drain in order, positions and bans are flushed, the store closes.

pub mod jails;
pub mod matcher;
pub mod store_task;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, JailConfig, SourceConfig};
use crate::jail::Jail;
use crate::source::file::{self, FollowConfig};
use crate::source::watch::FileWatcher;
use crate::source::{LineBatch, Origin};
use crate::store::{Store, StoreError};

pub use jails::DaemonEvent;
use jails::{CountedHistory, JailRuntime};
use matcher::{MatcherControl, Route};

/// Batches in flight from all sources to the matcher; a full channel makes sources wait
/// (back-pressure) instead of growing memory.
const LINE_QUEUE: usize = 256;
/// Failures in flight from the matcher to the jails.
const FAILURE_QUEUE: usize = 4096;
/// Events kept for slow observers before they start missing some.
const EVENT_QUEUE: usize = 4096;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("jail \"{jail}\": {message}")]
    Jail { jail: String, message: String },
    #[error("filter \"{filter}\" of jail \"{jail}\" is not compiled")]
    MissingFilter { jail: String, filter: String },
    #[error("cannot watch files: {0}")]
    Watch(String),
    #[error("a daemon task failed: {0}")]
    Task(String),
}

/// What tests and embedders may change; `Default` is what `logjail run` uses.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub clock: SharedClock,
    /// Receives every decision; tests subscribe to it.
    pub events: broadcast::Sender<DaemonEvent>,
    /// This machine's addresses for `ignoreself`; `None` asks the system.
    pub own_addresses: Option<Vec<IpAddr>>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            clock: Arc::new(SystemClock),
            events: broadcast::channel(EVENT_QUEUE).0,
            own_addresses: None,
        }
    }
}

/// Runs the daemon with `config` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    run_with(config, DaemonOptions::default(), shutdown).await
}

/// [`run`] with options.
pub async fn run_with(
    config: Config,
    options: DaemonOptions,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let clock = options.clock.clone();
    let now = clock.now();
    tracing::info!(config = %config.origin, "logjail starting");

    let store = open_store(&config.store.path).await?;
    let (store_handle, recovered, store_thread) =
        store_task::start(store, now, chrono::DateTime::<chrono::Utc>::MIN_UTC)?;

    let own_addresses = options.own_addresses.clone().unwrap_or_else(own_addresses);
    let mut runtimes = Vec::new();
    for jail_config in config.jails.iter().filter(|j| j.enabled) {
        let settings =
            jails::jail_settings(jail_config, &own_addresses).map_err(|e| DaemonError::Jail {
                jail: jail_config.name.clone(),
                message: e.to_string(),
            })?;
        let jail = Jail::new(settings).map_err(|e| DaemonError::Jail {
            jail: jail_config.name.clone(),
            message: e.to_string(),
        })?;
        runtimes.push(JailRuntime {
            jail,
            config: jail_config.clone(),
            name: Arc::from(jail_config.name.as_str()),
        });
    }
    let restored = jails::restore_bans(&mut runtimes, &recovered.bans, now);
    if restored > 0 {
        tracing::info!(restored, "bans restored from the store");
    }

    let filters: BTreeMap<String, Arc<crate::filter::Filter>> = config
        .filters
        .iter()
        .map(|(name, filter)| (name.clone(), Arc::new(filter.clone())))
        .collect();

    let (line_sender, line_receiver) = mpsc::channel::<LineBatch>(LINE_QUEUE);
    let (control_sender, control_receiver) = mpsc::channel::<MatcherControl>(LINE_QUEUE);
    let (failure_sender, failure_receiver) = mpsc::channel(FAILURE_QUEUE);

    let jail_task = tokio::spawn(jails::run(
        runtimes,
        CountedHistory::from_store(recovered.history),
        failure_receiver,
        store_handle.clone(),
        options.events.clone(),
        clock.clone(),
    ));
    let matcher_task = tokio::spawn(matcher::run(
        line_receiver,
        control_receiver,
        failure_sender.clone(),
        store_handle.clone(),
        clock.clone(),
    ));

    // Sources stop on their own token, before anything downstream.
    let sources_stop = CancellationToken::new();
    let mut sources = JoinSet::new();
    let watcher =
        FileWatcher::start(sources_stop.clone()).map_err(|e| DaemonError::Watch(e.to_string()))?;
    for (path, routes) in file_routes(&config.jails, &filters)? {
        let origin = Arc::new(Origin::File { path: path.clone() });
        let routes: Arc<[Route]> = routes.into();
        if control_sender
            .send(MatcherControl::Attach {
                origin: origin.clone(),
                routes,
            })
            .await
            .is_err()
        {
            return Err(DaemonError::Task("matcher stopped at start".into()));
        }
        let mut follow = FollowConfig::new(origin.clone(), path.clone());
        follow.resume = recovered.positions.get(&origin.position_key()).copied();
        // A host log's past was someone else's business; a restart resumes where we were.
        follow.start_at_end_if_new = true;
        let watcher = watcher.clone();
        let lines = line_sender.clone();
        let stop = sources_stop.clone();
        sources.spawn(async move {
            if let Err(error) = file::follow(follow, watcher, lines, stop).await {
                tracing::error!(%error, "file source stopped");
            }
        });
        tracing::info!(file = %path.display(), "watching file");
    }
    crate::source::docker::spawn(
        &config,
        &filters,
        &recovered.positions,
        crate::source::docker::Wiring {
            lines: line_sender.clone(),
            control: control_sender.clone(),
            jails: failure_sender,
            watcher: watcher.clone(),
        },
        sources_stop.clone(),
        &mut sources,
    );
    drop(line_sender);
    tracing::info!("logjail running");

    shutdown.cancelled().await;
    tracing::info!("logjail stopping");
    sources_stop.cancel();
    while sources.join_next().await.is_some() {}
    drop(control_sender);
    // With every source gone the line channel closes: the matcher drains it and stops, which
    // closes the failure channel: the jails drain it and stop.
    matcher_task
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    let jails = jail_task
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    store_handle.flush().await;
    drop(store_handle);
    drop(jails);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    tracing::info!("logjail stopped");
    Ok(())
}

async fn open_store(path: &Path) -> Result<Store, DaemonError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(DaemonError::from)
}

/// Every file to follow, each with the jails that read it: one follower per file however many
/// jails read it.
fn file_routes(
    jails: &[JailConfig],
    filters: &BTreeMap<String, Arc<crate::filter::Filter>>,
) -> Result<BTreeMap<PathBuf, Vec<Route>>, DaemonError> {
    let mut routes: BTreeMap<PathBuf, Vec<Route>> = BTreeMap::new();
    for jail in jails.iter().filter(|j| j.enabled) {
        let Some(filter_name) = &jail.filter else {
            continue;
        };
        let filter = filters
            .get(filter_name)
            .ok_or_else(|| DaemonError::MissingFilter {
                jail: jail.name.clone(),
                filter: filter_name.clone(),
            })?;
        for source in &jail.sources {
            let SourceConfig::File { path, optional } = source else {
                continue;
            };
            let paths = expand_file_glob(path.as_str(), path.has_wildcards());
            if paths.is_empty() && !*optional {
                tracing::warn!(jail = %jail.name, file = path.as_str(), "no such file yet; waiting for it");
            }
            let paths = if paths.is_empty() && !path.has_wildcards() && !*optional {
                vec![PathBuf::from(path.as_str())]
            } else {
                paths
            };
            for file in paths {
                routes.entry(file).or_default().push(Route {
                    jail: Arc::from(jail.name.as_str()),
                    filter: filter.clone(),
                });
            }
        }
    }
    Ok(routes)
}

/// The files a `file:` source names now: the path itself, or what a glob matches in its
/// directory (one level, as the config's glob syntax promises).
fn expand_file_glob(pattern: &str, has_wildcards: bool) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    if !has_wildcards {
        return if path.exists() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let Ok(glob) = crate::config::Glob::new(&name.to_string_lossy()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter(|entry| glob.matches(&entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

/// This machine's addresses, for `ignoreself`.
pub fn own_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list this machine's addresses; ignoreself covers loopback only");
            Vec::new()
        }
    }
}
