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

pub mod control;
pub mod enforcer;
pub mod files;
mod followers;
pub mod jails;
pub mod journal;
pub mod matcher;
pub mod store_task;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::action::Notifier;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigOrigin};
use crate::control::ResponseEnvelope;
use crate::jail::Jail;
use crate::messages::ControlCall;
use crate::messages::LineBatch;
use crate::source::watch::FileWatcher;
use crate::store::{Store, StoreError};

pub use crate::messages::DaemonEvent;
use crate::messages::MatcherControl;
use files::FileSources;
use jails::{CountedHistory, JailRuntime};
use journal::JournalSources;
use store_task::StoreHandle;

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
/// How long queued notifications may take to go out at shutdown.
const NOTIFIER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Events kept for slow observers before they start missing some.
const EVENT_QUEUE: usize = 4096;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("jail \"{jail}\": {message}")]
    Jail { jail: String, message: String },
    #[error(transparent)]
    Routing(#[from] crate::routing::RoutingError),
    #[error("cannot watch files: {0}")]
    Watch(String),
    #[error("{0}")]
    Control(String),
    #[error("firewall: {0}")]
    Firewall(String),
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
    let clock = options.clock.clone();
    let now = clock.now();
    tracing::info!(config = %config.origin, "logjail starting");

    let store = open_store(&config.store.path).await?;
    let (store_handle, recovered, store_thread) =
        store_task::start(store, now, chrono::DateTime::<chrono::Utc>::MIN_UTC)?;

    // The jails: the configuration file's, then those that container labels defined in
    // earlier runs and that still hold bans, rebuilt from their stored definitions.
    let own = options.own_addresses.clone().unwrap_or_else(own_addresses);
    let mut runtimes = Vec::new();
    for jail_config in config.jails.iter().filter(|j| j.enabled) {
        let settings = jails::jail_settings(jail_config, &own).map_err(|e| DaemonError::Jail {
            jail: jail_config.name.clone(),
            message: e.to_string(),
        })?;
        let jail = Jail::new(settings).map_err(|e| DaemonError::Jail {
            jail: jail_config.name.clone(),
            message: e.to_string(),
        })?;
        runtimes.push(JailRuntime::new(jail, jail_config.clone()));
    }
    runtimes.extend(
        restored_label_jails(
            &config,
            &recovered.definitions,
            &recovered.bans,
            &own,
            &store_handle,
        )
        .await,
    );
    let (restored, held) = jails::restore_bans(&mut runtimes, &recovered.bans, now);
    if restored > 0 {
        tracing::info!(restored, "bans restored from the store");
    }

    // Chains and sets first, for every jail that holds bans (label-defined ones included):
    // the bans re-applied below must have somewhere to go before any source starts.
    let (firewall, no_firewall) = if options.manage_firewall {
        let rules = runtimes
            .iter()
            .map(|runtime| crate::firewall::JailRule::from_config(&runtime.config))
            .collect();
        start_firewall(&config, rules, &clock).await?
    } else {
        tracing::warn!("firewall not managed: bans are decided and recorded, not enforced");
        (None, None)
    };
    let firewall_summary = match (&firewall, &no_firewall) {
        (Some((handle, _)), _) => match handle.status().await {
            Ok(status) => {
                let summary = format!(
                    "{} ({}), {} mode ({})",
                    status.backend, status.backend_reason, status.mode, status.mode_reason
                );
                tracing::info!(firewall = %summary, "firewall ready");
                summary
            }
            Err(e) => return Err(DaemonError::Firewall(e.to_string())),
        },
        (None, Some(reason)) => format!("none ({reason}; every jail only logs)"),
        (None, None) => "none (not managed)".to_string(),
    };

    let firewall_errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let docker_connected = Arc::new(tokio::sync::Notify::new());
    let enforcer_stop = CancellationToken::new();
    let (enforcer, enforcer_task) = match &firewall {
        Some((handle, _)) => {
            // Re-applied with their remaining time; the firewall refreshes bans it still
            // holds and skips those whose end has passed.
            let requests: Vec<crate::firewall::BanRequest> = runtimes
                .iter()
                .flat_map(|runtime| {
                    runtime
                        .jail
                        .banned()
                        .map(|ban| crate::firewall::BanRequest {
                            jail: runtime.name.to_string(),
                            host: ban.host,
                            end: ban.end,
                        })
                })
                .collect();
            if !requests.is_empty() {
                let outcome = handle
                    .ban_many(requests)
                    .await
                    .map_err(|e| DaemonError::Firewall(e.to_string()))?;
                for (request, reason) in &outcome.refused {
                    tracing::warn!(jail = %request.jail, host = %request.host, %reason, "stored ban not re-applied");
                }
                tracing::info!(applied = outcome.applied, "bans re-applied to the firewall");
            }
            let (sender, receiver) = mpsc::channel(ENFORCE_QUEUE);
            let task = tokio::spawn(enforcer::run(
                handle.clone(),
                receiver,
                docker_connected.clone(),
                firewall_errors.clone(),
                enforcer_stop.clone(),
            ));
            (Some(sender), Some(task))
        }
        None => (None, None),
    };

    let (line_sender, line_receiver) = mpsc::channel::<LineBatch>(LINE_QUEUE);
    let (control_sender, control_receiver) = mpsc::channel::<MatcherControl>(LINE_QUEUE);
    let (failure_sender, failure_receiver) = mpsc::channel(FAILURE_QUEUE);
    // The control server and reloads talk to the jail task on the matcher's channel.
    let jail_requests = failure_sender.clone();

    // Notifications outlive the daemon's shutdown signal a little: notices already queued
    // are sent (each within its timeout) before the notifier is told to stop.
    let notifier_stop = CancellationToken::new();
    let (notifier, notifier_task) = Notifier::start(notifier_stop.clone());
    let effects = jails::Effects {
        store: store_handle.clone(),
        observers: options.events.clone(),
        notifier: notifier.clone(),
        enforcer: enforcer.clone(),
        no_firewall: no_firewall.clone(),
    };
    let jail_task = tokio::spawn(jails::run(
        runtimes,
        held,
        CountedHistory::from_store(recovered.history),
        failure_receiver,
        effects,
        clock.clone(),
        firewall_summary,
    ));
    let matcher_task = tokio::spawn(matcher::run(
        line_receiver,
        control_receiver,
        failure_sender,
        store_handle.clone(),
        clock.clone(),
    ));

    // The control socket and metrics answer before the first line is read.
    let control_stop = CancellationToken::new();
    let (reload_sender, mut reload_requests) = mpsc::channel::<ControlCall>(4);
    let control_task = start_control(
        &config,
        jail_requests.clone(),
        reload_sender,
        control_stop.clone(),
    )
    .await?;
    let metrics_task = start_metrics(
        &config,
        jail_requests.clone(),
        control_sender.clone(),
        notifier.stats(),
        firewall_errors.clone(),
        control_stop.clone(),
    )
    .await?;
    // Sources stop on their own token, before anything downstream.
    let sources_stop = CancellationToken::new();
    let watcher =
        FileWatcher::start(sources_stop.clone()).map_err(|e| DaemonError::Watch(e.to_string()))?;
    // Every source routes to the same compiled filters: share them, built once.
    let filters = crate::routing::Filters::of(&config);
    let docker = crate::source::docker::DockerSource::start(
        &config,
        &filters,
        &recovered.positions,
        crate::source::docker::Wiring {
            lines: line_sender.clone(),
            control: control_sender.clone(),
            jails: jail_requests.clone(),
            watcher: watcher.clone(),
            connected: docker_connected.clone(),
        },
    );
    let mut files = FileSources::new(
        watcher,
        line_sender.clone(),
        control_sender.clone(),
        sources_stop.clone(),
    );
    files
        .apply(&config.jails, &filters, &recovered.positions)
        .await?;
    let mut journals = JournalSources::new(
        line_sender.clone(),
        control_sender.clone(),
        sources_stop.clone(),
    );
    journals
        .apply(&config.jails, &filters, &recovered.positions)
        .await?;
    drop(line_sender);

    let mut hangups = if options.reload_on_sighup {
        signal(SignalKind::hangup())
            .map_err(|e| DaemonError::Task(format!("cannot listen for SIGHUP: {e}")))
            .map(Some)?
    } else {
        None
    };
    tracing::info!("logjail running");

    let mut current = config;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(call) = reload_requests.recv() => {
                let answer = match reload(&current, Targets {
                    own: &own,
                    jails: &jail_requests,
                    files: &mut files,
                    journals: &mut journals,
                    docker: docker.as_ref(),
                    store: &store_handle,
                    firewall_queue: enforcer.as_ref(),
                    no_firewall: no_firewall.as_deref(),
                }).await {
                    Ok((config, message)) => {
                        current = config;
                        ResponseEnvelope::success(serde_json::json!(message))
                    }
                    Err(message) => ResponseEnvelope::failure(message),
                };
                let _ = call.reply.send(answer);
            }
            Some(()) = recv_hangup(&mut hangups) => {
                tracing::info!("SIGHUP received: reloading");
                match reload(&current, Targets {
                    own: &own,
                    jails: &jail_requests,
                    files: &mut files,
                    journals: &mut journals,
                    docker: docker.as_ref(),
                    store: &store_handle,
                    firewall_queue: enforcer.as_ref(),
                    no_firewall: no_firewall.as_deref(),
                }).await {
                    Ok((config, message)) => {
                        current = config;
                        tracing::info!("{message}");
                    }
                    Err(message) => tracing::error!("reload refused, the running configuration stays:\n{message}"),
                }
            }
        }
    }

    tracing::info!("logjail stopping");
    control_stop.cancel();
    let _ = control_task.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    files.stop().await;
    journals.stop().await;
    if let Some(docker) = docker {
        docker.stop().await;
    }
    drop(control_sender);
    drop(jail_requests);
    // With every source gone the line channel closes: the matcher drains it and stops, which
    // closes the failure channel: the jails drain it and stop.
    matcher_task
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    let jails = jail_task
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    drop(enforcer);
    if let Some(task) = enforcer_task {
        // The jails are done: the queue closes once drained.
        if tokio::time::timeout(NOTIFIER_GRACE, task).await.is_err() {
            enforcer_stop.cancel();
        }
    }
    if let Some((handle, thread)) = firewall {
        let keep = current.firewall.keep_bans_on_exit;
        if let Err(error) = handle.shutdown(keep).await {
            tracing::error!(%error, "firewall shutdown failed");
        }
        drop(handle);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    drop(notifier);
    let mut notifier_task = notifier_task;
    if tokio::time::timeout(NOTIFIER_GRACE, &mut notifier_task)
        .await
        .is_err()
    {
        tracing::warn!("notifications still running at shutdown; stopping them");
        notifier_stop.cancel();
        let _ = notifier_task.await;
    }
    store_handle.flush().await;
    drop(store_handle);
    drop(jails);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    tracing::info!("logjail stopped");
    Ok(())
}

/// Starts the firewall with the rules of the jails that run (label-defined ones restored from the
/// store included). Without a working firewall the daemon still
/// runs when no jail needs one (all only log): then the reason comes back instead, and
/// jails that block are refused until a restart. Otherwise the error names the blocking jails.
async fn start_firewall(
    config: &Config,
    rules: Vec<crate::firewall::JailRule>,
    clock: &SharedClock,
) -> Result<(Option<RunningFirewall>, Option<Arc<str>>), DaemonError> {
    let blocking: Vec<String> = rules
        .iter()
        .filter(|rule| rule.acts())
        .map(|rule| rule.name.clone())
        .collect();
    let firewall_options = crate::firewall::FirewallOptions {
        clock: clock.clone(),
        ..crate::firewall::FirewallOptions::default()
    };
    match crate::firewall::Firewall::start(config.firewall.clone(), rules, firewall_options).await {
        Ok(started) => Ok((Some(started), None)),
        Err(error) if blocking.is_empty() => {
            tracing::warn!(
                %error,
                "firewall: not available, and every enabled jail only logs (action: log): \
                 running without a firewall. Bans are logged and recorded, nothing is blocked; \
                 a reload or a container label that adds a blocking jail is refused until \
                 logjail restarts with a working firewall"
            );
            Ok((None, Some(Arc::from(error.to_string()))))
        }
        Err(error) => Err(DaemonError::Firewall(format!(
            "{error} (needed by the jails that block addresses: {}; jails with action: log run \
             without a firewall)",
            blocking.join(", ")
        ))),
    }
}

/// The firewall's handle and its thread.
type RunningFirewall = (crate::firewall::FirewallHandle, std::thread::JoinHandle<()>);

async fn recv_hangup(hangups: &mut Option<Signal>) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Jails that container labels defined in earlier runs and that still hold bans in force,
/// rebuilt from their stored definitions (as the same labels would define them now), so that
/// their bans are back in the firewall before any source starts, whether or not the container
/// is still there. Definitions that the configuration file now takes over, or whose bans have
/// all ended, are forgotten: a container that still carries the labels defines its jail again
/// when it is seen. One that no longer parses is kept, its bans held (see `HeldBans`).
async fn restored_label_jails(
    config: &Config,
    definitions: &[crate::store::JailDefinition],
    bans: &[crate::store::BanRecord],
    own: &[IpAddr],
    store: &StoreHandle,
) -> Vec<JailRuntime> {
    let mut restored = Vec::new();
    for definition in definitions {
        let name = &definition.jail;
        let forget = if config.jails.iter().any(|jail| &jail.name == name) {
            tracing::info!(jail = %name, defined_by = %definition.defined_by, "jail now defined in the configuration file; its stored label definition is dropped");
            true
        } else {
            !bans.iter().any(|ban| &ban.jail == name)
        };
        if forget {
            store
                .send(crate::messages::StoreRequest::RemoveDefinition(
                    name.clone(),
                ))
                .await;
            continue;
        }
        let rebuilt = crate::routing::labels::restore(
            definition,
            &config.defaults,
            &config.firewall.chain_prefix,
        )
        .and_then(|jail_config| {
            let settings = jails::jail_settings(&jail_config, own).map_err(|e| e.to_string())?;
            let jail = Jail::new(settings).map_err(|e| e.to_string())?;
            Ok((jail, jail_config))
        });
        match rebuilt {
            Ok((jail, jail_config)) => {
                tracing::info!(jail = %name, defined_by = %definition.defined_by, "label-defined jail restored from the store");
                restored.push(JailRuntime::from_labels(
                    jail,
                    jail_config,
                    definition.defined_by.clone(),
                    false,
                ));
            }
            Err(error) => tracing::warn!(
                jail = %name,
                defined_by = %definition.defined_by,
                %error,
                "stored label definition no longer defines a jail; its bans are held until labels define it again"
            ),
        }
    }
    restored
}

/// What a reload changes: the jails, the sources, the firewall layout.
struct Targets<'a> {
    own: &'a [IpAddr],
    jails: &'a mpsc::Sender<crate::messages::JailEvent>,
    files: &'a mut FileSources,
    journals: &'a mut JournalSources,
    docker: Option<&'a crate::source::docker::DockerSource>,
    store: &'a StoreHandle,
    firewall_queue: Option<&'a mpsc::Sender<crate::messages::Enforcement>>,
    /// Why the daemon runs without the firewall it should manage: jails that block are refused.
    no_firewall: Option<&'a str>,
}

/// Re-reads the configuration from where it came from and applies it. A configuration that
/// does not validate changes nothing: the answer lists every error.
async fn reload(current: &Config, targets: Targets<'_>) -> Result<(Config, String), String> {
    let Targets {
        own,
        jails,
        files,
        journals,
        docker,
        store,
        firewall_queue,
        no_firewall,
    } = targets;
    let loaded = match &current.origin {
        ConfigOrigin::File(path) => Config::load(path),
        ConfigOrigin::Embedded => Config::load_or_default(None),
        ConfigOrigin::Text(name) => {
            return Err(format!(
                "the configuration \"{name}\" was not read from a file: nothing to reload"
            ));
        }
    };
    let config = loaded.map_err(|errors| {
        format!(
            "reload refused, the running configuration stays ({} error{}):\n{errors}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        )
    })?;
    if let Some(reason) = no_firewall {
        let blocking: Vec<&str> = config
            .jails
            .iter()
            .filter(|j| j.enabled && crate::firewall::JailRule::from_config(j).acts())
            .map(|j| j.name.as_str())
            .collect();
        if !blocking.is_empty() {
            return Err(format!(
                "reload refused, the running configuration stays: the jails that block \
                 addresses ({}) need a firewall, but logjail runs without one ({reason}); \
                 restart logjail once the firewall works",
                blocking.join(", ")
            ));
        }
    }
    let daemon_wide_changes = daemon_wide_differences(current, &config);
    let (reply, answer) = oneshot::channel();
    jails
        .send(crate::messages::JailEvent::Reconfigure {
            jails: config.jails.clone(),
            own_addresses: own.to_vec(),
            reply,
        })
        .await
        .map_err(|_| "the daemon is shutting down".to_string())?;
    let summary = answer
        .await
        .map_err(|_| "the daemon is shutting down".to_string())??;
    if let Some(queue) = firewall_queue {
        // After the jails lifted the removed jails' bans (queued first), lay out the rest.
        let mut changes: Vec<crate::messages::Enforcement> = summary
            .removed
            .iter()
            .map(|jail| crate::messages::Enforcement::Remove { jail: jail.clone() })
            .collect();
        changes.extend(config.jails.iter().filter(|j| j.enabled).map(|j| {
            crate::messages::Enforcement::Define(crate::firewall::JailRule::from_config(j))
        }));
        for change in changes {
            if queue.send(change).await.is_err() {
                return Err("the firewall is gone".to_string());
            }
        }
    }
    // Positions for files that start being followed now: the store has what earlier runs
    // (or this one, before it stopped following) wrote.
    let positions = store.positions().await;
    let filters = crate::routing::Filters::of(&config);
    files
        .apply(&config.jails, &filters, &positions)
        .await
        .map_err(|e| e.to_string())?;
    journals
        .apply(&config.jails, &filters, &positions)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(docker) = docker {
        docker.apply(&config, &filters).await;
    }
    let mut message = format!(
        "reloaded {}: {} jails ({} added, {} removed, {} changed, {} unchanged)",
        config.origin,
        summary.added.len() + summary.changed.len() + summary.unchanged.len(),
        summary.added.len(),
        summary.removed.len(),
        summary.changed.len(),
        summary.unchanged.len()
    );
    for (list, label) in [
        (&summary.added, "added"),
        (&summary.removed, "removed"),
        (&summary.changed, "changed"),
    ] {
        if !list.is_empty() {
            message.push_str(&format!("; {label}: {}", list.join(", ")));
        }
    }
    if !daemon_wide_changes.is_empty() {
        message.push_str(&format!(
            "; restart logjail to apply the changed {}",
            daemon_wide_changes.join(", ")
        ));
    }
    tracing::info!("{message}");
    Ok((config, message))
}

/// Sections a reload cannot apply to a running daemon (sockets, paths, backends).
fn daemon_wide_differences(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.store != new.store {
        changed.push("store");
    }
    if old.control != new.control {
        changed.push("control");
    }
    if old.firewall != new.firewall {
        changed.push("firewall");
    }
    if old.docker != new.docker {
        changed.push("docker");
    }
    if old.metrics != new.metrics {
        changed.push("metrics");
    }
    if old.log != new.log {
        changed.push("log");
    }
    changed
}

/// Opens the control socket and forwards its requests: reload to the daemon, the rest to the
/// jail task.
async fn start_control(
    config: &Config,
    jails: mpsc::Sender<crate::messages::JailEvent>,
    reloads: mpsc::Sender<ControlCall>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let path = config.control.socket.clone();
    let listener = crate::control::server::bind(&path)
        .await
        .map_err(|e| DaemonError::Control(e.to_string()))?;
    tracing::info!(socket = %path.display(), "control socket open");
    let (calls, mut incoming) = mpsc::channel::<ControlCall>(64);
    let server = tokio::spawn(crate::control::server::serve(
        listener,
        path,
        calls,
        stop.clone(),
    ));
    Ok(tokio::spawn(async move {
        while let Some(call) = incoming.recv().await {
            if matches!(call.request, crate::control::Request::Reload) {
                if reloads.send(call).await.is_err() {
                    break;
                }
                continue;
            }
            if jails
                .send(crate::messages::JailEvent::Control(call))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = server.await;
    }))
}

/// Serves `/metrics` and `/healthz` when enabled; each scrape asks the jail task and the
/// matcher for their figures.
async fn start_metrics(
    config: &Config,
    jails: mpsc::Sender<crate::messages::JailEvent>,
    matcher: mpsc::Sender<MatcherControl>,
    actions: crate::action::NotifierStats,
    firewall_errors: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, DaemonError> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let listener = crate::metrics::bind(config.metrics.listen)
        .await
        .map_err(|e| DaemonError::Control(e.to_string()))?;
    tracing::info!(listen = %config.metrics.listen, "metrics on /metrics and /healthz");
    let (requests, mut incoming) = mpsc::channel::<crate::metrics::SnapshotRequest>(16);
    let server = tokio::spawn(crate::metrics::serve(listener, requests, stop));
    Ok(Some(tokio::spawn(async move {
        while let Some(answer) = incoming.recv().await {
            let (jail_answer, jail_figures) = oneshot::channel();
            let (source_answer, source_figures) = oneshot::channel();
            if jails
                .send(crate::messages::JailEvent::Metrics(jail_answer))
                .await
                .is_err()
                || matcher
                    .send(MatcherControl::Stats(source_answer))
                    .await
                    .is_err()
            {
                break;
            }
            let (Ok(jails), Ok(sources)) = (jail_figures.await, source_figures.await) else {
                break;
            };
            let actions = actions
                .counts()
                .into_iter()
                .map(|counts| crate::metrics::ActionMetrics {
                    action: counts.kind.name(),
                    sent: counts.sent,
                    failed: counts.failed,
                    dropped: counts.dropped,
                })
                .collect();
            let _ = answer.send(crate::metrics::Snapshot {
                jails,
                sources,
                actions,
                firewall_errors: firewall_errors.load(std::sync::atomic::Ordering::Relaxed),
            });
        }
        let _ = server.await;
    })))
}

async fn open_store(path: &Path) -> Result<Store, DaemonError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(DaemonError::from)
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
