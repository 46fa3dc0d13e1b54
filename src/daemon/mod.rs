//! The daemon: wires the stages together. [`Daemon::start`] starts them in order and
//! [`Daemon::shutdown`] stops them in reverse; nothing else lives here.
//!
//! ```text
//!  start                                   shutdown (reverse, so that nothing read is lost)
//!  1. store        bans, history, positions          8. store        flushed, closed
//!  2. jails        configured + restored label jails 7. notifier     queued notices get a grace period
//!  3. firewall     chains, sets, restored bans       6. firewall     chains and sets removed (or kept)
//!  4. enforcer     the firewall's queue              5. enforcer     drains its queue
//!  5. notifier     webhooks, commands                4. pipeline     matcher drains lines, jails drain failures
//!  6. pipeline     jail task, matcher                3. sources      stop, hand on what they read
//!  7. front        control socket, metrics           2. front        control socket and metrics close
//!  8. sources      Docker, pods, files, journal      1. (serve returns on the shutdown token)
//! ```
//!
//! The tasks themselves live next to their domain: the jail task in [`crate::jail::task`], the
//! matcher in [`crate::filter::matcher`], the store task in [`crate::store::task`], the
//! firewall's queue in [`crate::firewall::queue`], the source supervisors in
//! [`crate::source::supervisor`] and [`crate::source::docker`].

mod fleet;
mod front;
mod reload;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::action::{Notifier, NotifierHandle};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::control::ResponseEnvelope;
use crate::firewall::{BanRequest, FirewallError, FirewallHandle, JailRule};
use crate::jail::task::{self as jails, CountedHistory, HeldBans, JailRuntime};
use crate::messages::{Enforcement, JailEvent, LineBatch, MatcherControl};
use crate::routing::Filters;
use crate::source::docker::DockerSource;
use crate::source::pods::PodsSource;
use crate::source::supervisor::{FileSources, JournalSources, SupervisorError};
use crate::source::watch::FileWatcher;
use crate::store::task::{Recovered, StoreHandle};
use crate::store::{Store, StoreError};

pub use crate::messages::DaemonEvent;
pub use reload::ReloadError;

/// Batches in flight from all sources to the matcher; a full channel makes sources wait
/// (back-pressure) instead of growing memory. A full batch of short lines holds about
/// 90 KiB, so 16 of them (8,192 lines, tens of milliseconds of matching) keep the matcher
/// busy while a flood stays within 1.5 MiB; 256 held 23 MiB at the peak of a flood. Waiting
/// senders are served in turn, so one flooding source cannot starve the others.
const LINE_QUEUE: usize = 16;
/// Failures in flight from the matcher to the jails.
const FAILURE_QUEUE: usize = 4096;
/// Firewall changes in flight from the jails to the enforcer.
const ENFORCE_QUEUE: usize = 4096;
/// How long queued notifications, and queued firewall changes, may take at shutdown.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Events kept for slow observers before they start missing some.
const EVENT_QUEUE: usize = 4096;

/// Why the daemon could not start or stopped with an error. The causes are kept.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Jail(#[from] crate::jail::task::JailTaskError),
    #[error(transparent)]
    Sources(#[from] SupervisorError),
    #[error("cannot watch files: {0}")]
    Watch(#[source] crate::source::watch::WatchError),
    #[error("{0}")]
    Control(#[from] crate::control::server::ServerError),
    #[error("{0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("firewall: {0}")]
    Firewall(#[from] FirewallError),
    /// The firewall does not work and some jails need it.
    #[error("firewall: {error} (needed by the jails that block addresses: {}; jails with action: log run without a firewall)", blocking.join(", "))]
    FirewallNeeded {
        error: FirewallError,
        blocking: Vec<String>,
    },
    #[error("{0}")]
    Fleet(#[from] crate::fleet::task::FleetError),
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
    #[error("a daemon task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Stopping took longer than `logjail run` waits.
    #[error("a daemon task failed: did not stop within {} s; exiting anyway", grace.as_secs())]
    StopTimeout { grace: Duration },
}

/// What tests and embedders may change; `Default` is what `logjail run` uses.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub clock: SharedClock,
    /// Receives every decision; tests subscribe to it.
    pub events: broadcast::Sender<DaemonEvent>,
    /// This machine's addresses for `ignoreself`; `None` asks the system.
    pub own_addresses: Option<Vec<IpAddr>>,
    /// Reload on SIGHUP. Off for daemons embedded in tests, where the signal would reach
    /// every daemon of the process.
    pub reload_on_sighup: bool,
    /// Put bans into the host firewall. Off by default for embedders and tests, which must
    /// not touch the host's iptables unless they mean to; `logjail run` turns it on.
    pub manage_firewall: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            clock: Arc::new(SystemClock),
            events: broadcast::channel(EVENT_QUEUE).0,
            own_addresses: None,
            reload_on_sighup: false,
            manage_firewall: false,
        }
    }
}

/// Runs the daemon with `config` until `shutdown` is cancelled; SIGHUP reloads.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let options = DaemonOptions {
        reload_on_sighup: true,
        manage_firewall: true,
        ..DaemonOptions::default()
    };
    run_with(config, options, shutdown).await
}

/// [`run`] with options.
pub async fn run_with(
    config: Config,
    options: DaemonOptions,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let mut daemon = Daemon::start(config, options).await?;
    daemon.serve(&shutdown).await;
    daemon.shutdown().await
}

/// A started daemon: every stage, in start order.
pub struct Daemon {
    /// The configuration running now; a reload replaces it only once applied.
    config: Config,
    /// This machine's addresses, for `ignoreself` of jails added later.
    own: Vec<IpAddr>,
    hangups: Option<Signal>,
    store: StoreStage,
    firewall: FirewallStage,
    enforcer: Option<EnforcerStage>,
    notifier: NotifierStage,
    pipeline: Pipeline,
    front: front::Front,
    sources: Sources,
    /// The fleet task, when this member shares bans; stopped before the jail task drains,
    /// since it holds a sender of the jails' queue.
    fleet: Option<crate::fleet::task::FleetTask>,
}

impl Daemon {
    /// Starts every stage in order. The firewall holds every restored ban before the first
    /// line is read, and the control socket answers before then too.
    pub async fn start(config: Config, options: DaemonOptions) -> Result<Daemon, DaemonError> {
        let clock = options.clock.clone();
        let now = clock.now();
        tracing::info!(config = %config.origin, "logjail starting");
        // 1. The store, and what survives a restart.
        let (store, mut recovered) = StoreStage::open(&config.store.path, now).await?;

        // 2. The jails: the configuration file's, then those that container labels defined
        // in earlier runs and that still hold bans; their stored bans restored.
        let own = options
            .own_addresses
            .clone()
            .unwrap_or_else(crate::address::own_addresses);
        let mut runtimes = jails::configured_jails(&config, &own)?;
        runtimes.extend(
            jails::restored_label_jails(
                &config,
                &recovered.definitions,
                &recovered.bans,
                &own,
                &store.handle,
            )
            .await,
        );
        let (restored, held) = jails::restore_bans(&mut runtimes, &recovered.bans, now);
        if restored > 0 {
            tracing::info!(restored, "bans restored from the store");
        }
        // The other fleet members' bans in force join them, so that the firewall is laid out
        // with every ban at once, before any source starts.
        let mut fleet = fleet::FleetStage::load(
            &config,
            &mut runtimes,
            std::mem::take(&mut recovered.fleet_unbans),
            now,
        )
        .await?;
        let fleet_local = fleet
            .as_ref()
            .map(|stage| fleet::local_shared(&runtimes, &stage.link))
            .unwrap_or_default();

        // 3. Chains and sets for every jail that runs, then the restored bans in them.
        let firewall = if options.manage_firewall {
            FirewallStage::start(&config, &runtimes, &clock).await?
        } else {
            tracing::warn!("firewall not managed: bans are decided and recorded, not enforced");
            FirewallStage::Unmanaged
        };
        let summary = firewall.summary().await?;

        // 4. The firewall's queue: the jails hand it their changes and go on.
        let docker_connected = Arc::new(Notify::new());
        let firewall_errors = Arc::new(AtomicU64::new(0));
        let enforcer = match &firewall {
            FirewallStage::Running { handle, .. } => Some(
                EnforcerStage::start(
                    handle,
                    &runtimes,
                    docker_connected.clone(),
                    firewall_errors.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        if let Some(stage) = &mut fleet {
            stage.store(&store.handle).await;
        }

        let fleet_link = fleet.as_ref().map(|stage| stage.link.clone());

        // 5. Notifications.
        let notifier = NotifierStage::start();

        // 6. The jail task and the matcher.
        let effects = jails::Effects {
            store: store.handle.clone(),
            observers: options.events.clone(),
            notifier: notifier.handle.clone(),
            enforcer: enforcer.as_ref().map(|e| e.queue.clone()),
            no_firewall: firewall.missing_reason(),
            fleet: fleet_link.clone(),
        };
        let (pipeline, lines) = Pipeline::start(
            runtimes,
            held,
            CountedHistory::from_store(recovered.history.clone()),
            effects,
            &store.handle,
            &clock,
            summary,
        );

        // The fleet task hands the jail task the other members' changes from now on.
        let fleet = fleet
            .map(|stage| stage.start(fleet_local, pipeline.jails.clone(), store.handle.clone()));

        // 7. The control socket and metrics answer before the first line is read.
        let front = front::Front::start(
            &config,
            front::Wiring {
                jails: pipeline.jails.clone(),
                matcher: pipeline.matcher.clone(),
                actions: notifier.handle.stats(),
                firewall_errors,
                fleet: fleet_link,
            },
        )
        .await?;

        // 8. The sources, each resuming from its stored position.
        let sources =
            Sources::start(&config, &recovered, lines, &pipeline, docker_connected).await?;

        let hangups = if options.reload_on_sighup {
            Some(signal(SignalKind::hangup()).map_err(DaemonError::Signal)?)
        } else {
            None
        };
        tracing::info!("logjail running");
        Ok(Daemon {
            config,
            own,
            hangups,
            store,
            firewall,
            enforcer,
            notifier,
            pipeline,
            front,
            sources,
            fleet,
        })
    }

    /// Answers reloads (control socket, SIGHUP) until `shutdown` is cancelled.
    pub async fn serve(&mut self, shutdown: &CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(call) = self.front.reloads.recv() => {
                    let answer = match self.reload().await {
                        Ok(message) => ResponseEnvelope::success(serde_json::json!(message)),
                        Err(error) => ResponseEnvelope::failure_of(error.kind(), error.to_string()),
                    };
                    let _ = call.reply.send(answer);
                }
                Some(()) = recv_hangup(&mut self.hangups) => {
                    tracing::info!("SIGHUP received: reloading");
                    if let Err(error) = self.reload().await {
                        tracing::error!("reload refused, the running configuration stays:\n{error}");
                    }
                }
            }
        }
    }

    /// Stops every stage in the reverse of the start order.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        tracing::info!("logjail stopping");
        let Daemon {
            config,
            store,
            firewall,
            enforcer,
            notifier,
            pipeline,
            front,
            sources,
            fleet,
            ..
        } = self;
        front.stop().await;
        sources.stop().await;
        if let Some(fleet) = fleet {
            fleet.stop().await;
        }
        let jails = pipeline.drain().await?;
        if let Some(enforcer) = enforcer {
            enforcer.drain().await;
        }
        firewall.stop(config.firewall.keep_bans_on_exit).await;
        notifier.stop().await;
        store.close(jails).await;
        tracing::info!("logjail stopped");
        Ok(())
    }
}

async fn recv_hangup(hangups: &mut Option<Signal>) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Stage 1: the store thread.
struct StoreStage {
    handle: StoreHandle,
    thread: std::thread::JoinHandle<()>,
}

impl StoreStage {
    async fn open(
        path: &Path,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(StoreStage, Recovered), DaemonError> {
        let path = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || Store::open(&path)).await??;
        let (handle, recovered, thread) =
            crate::store::task::start(store, now, chrono::DateTime::<chrono::Utc>::MIN_UTC)?;
        Ok((StoreStage { handle, thread }, recovered))
    }

    /// Flushes and closes once the jails (whose effects hold store handles) are gone.
    async fn close(self, jails: Vec<JailRuntime>) {
        self.handle.flush().await;
        drop(self.handle);
        drop(jails);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Stage 3: the firewall thread, or why there is none.
enum FirewallStage {
    Running {
        handle: FirewallHandle,
        thread: std::thread::JoinHandle<()>,
    },
    /// The firewall does not work, and every jail only logs: bans are recorded, not enforced,
    /// and jails that block are refused until a restart.
    Missing(Arc<str>),
    /// The embedder asked for no firewall (tests).
    Unmanaged,
}

impl FirewallStage {
    /// Starts the firewall with the rules of the jails that run (label-defined ones restored
    /// from the store included). Without a working firewall the daemon still runs when no jail
    /// needs one; otherwise the error names the blocking jails.
    async fn start(
        config: &Config,
        runtimes: &[JailRuntime],
        clock: &SharedClock,
    ) -> Result<FirewallStage, DaemonError> {
        let rules: Vec<JailRule> = runtimes
            .iter()
            .map(|runtime| JailRule::from_config(&runtime.config))
            .collect();
        let blocking: Vec<String> = rules
            .iter()
            .filter(|rule| rule.acts())
            .map(|rule| rule.name.clone())
            .collect();
        // The restored bans the enforcer re-applies next: their sets are made big enough.
        let mut expected_bans = std::collections::BTreeMap::new();
        for runtime in runtimes {
            for ban in runtime.jail.banned() {
                let family = crate::firewall::Family::of(&ban.host);
                *expected_bans
                    .entry((runtime.name.to_string(), family))
                    .or_insert(0) += 1;
            }
        }
        let options = crate::firewall::FirewallOptions {
            clock: clock.clone(),
            expected_bans,
            ..crate::firewall::FirewallOptions::default()
        };
        match crate::firewall::Firewall::start(config.firewall.clone(), rules, options).await {
            Ok((handle, thread)) => Ok(FirewallStage::Running { handle, thread }),
            Err(error) if blocking.is_empty() => {
                tracing::warn!(
                    %error,
                    "firewall: not available, and every enabled jail only logs (action: log): \
                     running without a firewall. Bans are logged and recorded, nothing is \
                     blocked; a reload or a container label that adds a blocking jail is \
                     refused until logjail restarts with a working firewall"
                );
                Ok(FirewallStage::Missing(Arc::from(error.to_string())))
            }
            Err(error) => Err(DaemonError::FirewallNeeded { error, blocking }),
        }
    }

    /// The firewall line of `status`.
    async fn summary(&self) -> Result<String, DaemonError> {
        Ok(match self {
            FirewallStage::Running { handle, .. } => {
                let status = handle.status().await?;
                let summary = status.summary();
                tracing::info!(firewall = %summary, "firewall ready");
                summary
            }
            FirewallStage::Missing(reason) => {
                format!("none ({reason}; every jail only logs)")
            }
            FirewallStage::Unmanaged => "none (not managed)".to_string(),
        })
    }

    fn missing_reason(&self) -> Option<Arc<str>> {
        match self {
            FirewallStage::Missing(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Removes logjail's chains and sets (unless `keep`) and ends the thread.
    async fn stop(self, keep: bool) {
        if let FirewallStage::Running { handle, thread } = self {
            if let Err(error) = handle.shutdown(keep).await {
                tracing::error!(%error, "firewall shutdown failed");
            }
            drop(handle);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Stage 4: the enforcer task between the jails and the firewall thread.
struct EnforcerStage {
    queue: mpsc::Sender<Enforcement>,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl EnforcerStage {
    /// Re-applies the restored bans with their remaining time (the firewall refreshes those it
    /// still holds and skips those whose end has passed), then starts the queue.
    async fn start(
        firewall: &FirewallHandle,
        runtimes: &[JailRuntime],
        docker_connected: Arc<Notify>,
        errors: Arc<AtomicU64>,
    ) -> Result<EnforcerStage, DaemonError> {
        let requests: Vec<BanRequest> = runtimes
            .iter()
            .flat_map(|runtime| {
                runtime.jail.banned().map(|ban| BanRequest {
                    jail: runtime.name.to_string(),
                    host: ban.host,
                    end: ban.end,
                })
            })
            .collect();
        if !requests.is_empty() {
            let outcome = firewall.ban_many(requests).await?;
            for (request, reason) in &outcome.refused {
                tracing::warn!(jail = %request.jail, host = %request.host, %reason, "stored ban not re-applied");
            }
            tracing::info!(applied = outcome.applied, "bans re-applied to the firewall");
        }
        let (queue, changes) = mpsc::channel(ENFORCE_QUEUE);
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::firewall::queue::run(
            firewall.clone(),
            changes,
            docker_connected,
            errors,
            stop.clone(),
        ));
        Ok(EnforcerStage { queue, task, stop })
    }

    /// The jails are done: the queue closes once drained, within the grace period.
    async fn drain(self) {
        drop(self.queue);
        let mut task = self.task;
        if tokio::time::timeout(DRAIN_GRACE, &mut task).await.is_err() {
            self.stop.cancel();
            let _ = task.await;
        }
    }
}

/// Stage 5, the notifier. Notifications outlive the daemon's shutdown signal a little:
/// notices already queued are sent (each within its timeout) before the notifier is told to
/// stop.
struct NotifierStage {
    handle: NotifierHandle,
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl NotifierStage {
    fn start() -> NotifierStage {
        let stop = CancellationToken::new();
        let (handle, task) = Notifier::start(stop.clone());
        NotifierStage { handle, task, stop }
    }

    async fn stop(self) {
        drop(self.handle);
        let mut task = self.task;
        if tokio::time::timeout(DRAIN_GRACE, &mut task).await.is_err() {
            tracing::warn!("notifications still running at shutdown; stopping them");
            self.stop.cancel();
            let _ = task.await;
        }
    }
}

/// Stage 6: the jail task and the matcher, and the senders that reach them.
struct Pipeline {
    /// The jail task's queue: failures from the matcher, and requests from control, metrics,
    /// reloads and the Docker source (label jails).
    jails: mpsc::Sender<JailEvent>,
    /// The matcher's control queue: routes per origin, stats.
    matcher: mpsc::Sender<MatcherControl>,
    matcher_task: JoinHandle<()>,
    jail_task: JoinHandle<Vec<JailRuntime>>,
}

impl Pipeline {
    /// Starts both tasks; the line queue's sender goes to the sources.
    fn start(
        runtimes: Vec<JailRuntime>,
        held: HeldBans,
        history: CountedHistory,
        effects: jails::Effects,
        store: &StoreHandle,
        clock: &SharedClock,
        firewall_summary: String,
    ) -> (Pipeline, mpsc::Sender<LineBatch>) {
        let (lines, line_queue) = mpsc::channel::<LineBatch>(LINE_QUEUE);
        let (matcher, matcher_queue) = mpsc::channel::<MatcherControl>(LINE_QUEUE);
        let (jails, jail_queue) = mpsc::channel(FAILURE_QUEUE);
        let jail_task = tokio::spawn(jails::run(
            runtimes,
            held,
            history,
            jail_queue,
            effects,
            clock.clone(),
            firewall_summary,
        ));
        let matcher_task = tokio::spawn(crate::filter::matcher::run(
            line_queue,
            matcher_queue,
            jails.clone(),
            store.clone(),
            clock.clone(),
        ));
        let pipeline = Pipeline {
            jails,
            matcher,
            matcher_task,
            jail_task,
        };
        (pipeline, lines)
    }

    /// With every source gone the line queue closes: the matcher drains it and stops, which
    /// closes the failure queue: the jails drain it and stop, handing their state back.
    async fn drain(self) -> Result<Vec<JailRuntime>, DaemonError> {
        drop(self.matcher);
        drop(self.jails);
        self.matcher_task.await?;
        Ok(self.jail_task.await?)
    }
}

/// Stage 8: the sources: Docker discovery, pod logs, host files, journal.
struct Sources {
    /// Stops every follower, before anything downstream.
    stop: CancellationToken,
    docker: Option<DockerSource>,
    pods: Option<PodsSource>,
    files: FileSources,
    journals: JournalSources,
}

impl Sources {
    async fn start(
        config: &Config,
        recovered: &Recovered,
        lines: mpsc::Sender<LineBatch>,
        pipeline: &Pipeline,
        docker_connected: Arc<Notify>,
    ) -> Result<Sources, DaemonError> {
        let stop = CancellationToken::new();
        let watcher = FileWatcher::start(stop.clone()).map_err(DaemonError::Watch)?;
        // Every source routes to the same compiled filters: share them, built once.
        let filters = Filters::of(config);
        let docker = DockerSource::start(
            config,
            &filters,
            &recovered.positions,
            crate::source::docker::Wiring {
                lines: lines.clone(),
                control: pipeline.matcher.clone(),
                jails: pipeline.jails.clone(),
                watcher: watcher.clone(),
                connected: docker_connected,
            },
        );
        let pods = PodsSource::start(
            config,
            &filters,
            &recovered.positions,
            crate::source::pods::Wiring {
                lines: lines.clone(),
                control: pipeline.matcher.clone(),
                jails: pipeline.jails.clone(),
                watcher: watcher.clone(),
            },
        );
        let mut files = FileSources::new(
            watcher,
            lines.clone(),
            pipeline.matcher.clone(),
            stop.clone(),
        );
        files
            .apply(&config.jails, &filters, &recovered.positions)
            .await?;
        let mut journals = JournalSources::new(lines, pipeline.matcher.clone(), stop.clone());
        journals
            .apply(&config.jails, &filters, &recovered.positions)
            .await?;
        Ok(Sources {
            stop,
            docker,
            pods,
            files,
            journals,
        })
    }

    /// Stops every follower and waits for them: what they read is in the line queue.
    async fn stop(self) {
        self.stop.cancel();
        self.files.stop().await;
        self.journals.stop().await;
        if let Some(docker) = self.docker {
            docker.stop().await;
        }
        if let Some(pods) = self.pods {
            pods.stop().await;
        }
    }
}
