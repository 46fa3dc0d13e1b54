//! The jail task: owns every jail, turns failures into ban decisions, lifts bans when they end,
//! and hands decisions to the store, the log and whoever listens for events.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::action::{Notice, NotifierHandle};
use crate::clock::SharedClock;
use crate::config::{IncrementConfig, JailConfig};
use crate::jail::{
    ActiveBan, BanHistory, BanOrder, Decision, IgnoreList, IncrementSettings, Jail, JailSettings,
    SettingsError,
};
use crate::source::Origin;
use crate::store::BanRecord;

use super::store_task::{StoreHandle, StoreRequest};

/// A failure found by the matcher, on its way to one jail.
#[derive(Debug, Clone)]
pub struct FailureEvent {
    pub jail: Arc<str>,
    pub host: IpAddr,
    /// The line's own time, or when it was read if it carries none.
    pub time: DateTime<Utc>,
    /// The message, kept as evidence with the ban.
    pub line: String,
    pub origin: Arc<Origin>,
}

/// What the jail task receives.
#[derive(Debug)]
pub enum JailEvent {
    Failure(FailureEvent),
    /// A control request about jails (status, ban, unban, get, set).
    Control(crate::control::server::ControlCall),
    /// Per-jail figures for `/metrics`.
    Metrics(oneshot::Sender<Vec<crate::metrics::JailMetrics>>),
    /// A reload: make the configured jails these (label-defined jails are kept).
    Reconfigure {
        jails: Vec<JailConfig>,
        own_addresses: Vec<IpAddr>,
        reply: oneshot::Sender<Result<ReloadSummary, String>>,
    },
    /// Makes sure a jail defined at run time (by container labels) exists with these
    /// settings; answers why not when a different jail of that name exists.
    Define {
        config: Box<JailConfig>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What the daemon tells observers (tests, metrics, webhooks) about its decisions.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonEvent {
    /// A failure was judged by a jail (counted, ignored, stale, already banned or banned).
    Failure {
        jail: Arc<str>,
        host: IpAddr,
        origin: Arc<Origin>,
        decision: Decision,
    },
    Banned {
        order: BanOrder,
        origin: Option<Arc<Origin>>,
    },
    Unbanned {
        jail: Arc<str>,
        host: IpAddr,
    },
}

/// Everything a ban or an unban sets in motion besides the jail itself: the log event, the
/// store, notifications, the firewall and observers. One place, so that automatic, manual,
/// expired and reload-lifted bans all do the same.
#[derive(Debug, Clone)]
pub struct Effects {
    pub store: StoreHandle,
    pub observers: broadcast::Sender<DaemonEvent>,
    pub notifier: NotifierHandle,
    /// The firewall's queue; `None` when the daemon manages no firewall (tests, dry runs).
    pub enforcer: Option<mpsc::Sender<Enforcement>>,
    /// Why the daemon runs without the firewall it should manage (only log-only jails were
    /// configured and iptables does not work): label jails that block are refused then.
    pub no_firewall: Option<Arc<str>>,
}

/// A change for the firewall, applied in order by the enforcer task.
#[derive(Debug)]
pub enum Enforcement {
    Ban {
        jail: String,
        host: IpAddr,
        end: Option<DateTime<Utc>>,
    },
    Unban {
        jail: String,
        host: IpAddr,
    },
    /// A jail to lay out (or update, keeping its bans): at reload or from container labels.
    Define(crate::firewall::JailRule),
    /// A jail gone at reload: its chains and sets go too.
    Remove {
        jail: String,
    },
    /// Answered once every change queued before it has been applied (or has failed): an
    /// operator's `ban` or `unban` returns when the kernel has it, not merely the decision.
    Barrier(oneshot::Sender<()>),
}

impl Effects {
    pub async fn banned(
        &self,
        order: &BanOrder,
        origin: Option<&Arc<Origin>>,
        config: &JailConfig,
    ) {
        announce_ban(order, origin);
        self.store
            .send(StoreRequest::SaveBan(ban_record(order, origin)))
            .await;
        self.enforce(Enforcement::Ban {
            jail: order.jail.clone(),
            host: order.host,
            end: order.end,
        })
        .await;
        self.notifier
            .notify(Notice::ban(order, origin.map(|o| &**o), &config.action));
        let _ = self.observers.send(DaemonEvent::Banned {
            order: order.clone(),
            origin: origin.cloned(),
        });
    }

    pub async fn unbanned(
        &self,
        jail: &Arc<str>,
        ban: &ActiveBan,
        reason: &str,
        config: &JailConfig,
        now: DateTime<Utc>,
    ) {
        announce_unban(jail, ban, reason);
        self.store
            .send(StoreRequest::RemoveBan {
                jail: jail.to_string(),
                host: ban.host,
            })
            .await;
        self.enforce(Enforcement::Unban {
            jail: jail.to_string(),
            host: ban.host,
        })
        .await;
        self.notifier
            .notify(Notice::unban(jail, ban, now, &config.action));
        let _ = self.observers.send(DaemonEvent::Unbanned {
            jail: jail.clone(),
            host: ban.host,
        });
    }

    pub async fn enforce(&self, enforcement: Enforcement) {
        if let Some(enforcer) = &self.enforcer
            && enforcer.send(enforcement).await.is_err()
        {
            tracing::error!("the firewall is gone; a ban change was not applied");
        }
    }
}

/// Sends a control answer; for requests that ban or unban, only once the firewall has applied
/// what they queued. The wait happens on a task of its own: the jail task goes on counting.
async fn reply_when_applied(
    effects: &Effects,
    changes_bans: bool,
    reply: oneshot::Sender<crate::control::protocol::ResponseEnvelope>,
    response: crate::control::protocol::ResponseEnvelope,
) {
    /// A firewall that takes longer than this is reported by the enforcer; the operator gets
    /// the answer anyway.
    const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
    if !changes_bans || effects.enforcer.is_none() {
        let _ = reply.send(response);
        return;
    }
    let (applied, barrier) = oneshot::channel();
    effects.enforce(Enforcement::Barrier(applied)).await;
    tokio::spawn(async move {
        let _ = tokio::time::timeout(LONGEST_WAIT, barrier).await;
        let _ = reply.send(response);
    });
}

/// Builds a jail's runtime settings from its validated configuration.
pub fn jail_settings(
    config: &JailConfig,
    own_addresses: &[IpAddr],
) -> Result<JailSettings, SettingsError> {
    let mut settings = JailSettings::new(config.name.clone());
    settings.maxretry = config.maxretry;
    settings.findtime = config.findtime;
    settings.bantime = config.bantime;
    settings.increment = config.increment.as_ref().map(increment_settings);
    settings.ignore = IgnoreList::from_networks(
        config.ignoreip.iter().copied(),
        config.ignoreself,
        own_addresses.to_vec(),
    );
    settings.validate()?;
    Ok(settings)
}

fn increment_settings(config: &IncrementConfig) -> IncrementSettings {
    IncrementSettings {
        enabled: true,
        factor: config.factor,
        multipliers: (!config.multipliers.is_empty()).then(|| config.multipliers.clone()),
        maxtime: config.maxtime,
        rndtime: config.rndtime,
        overalljails: config.overalljails,
        lookback: None,
    }
}

/// Ban counts per (jail, host), seeded from the store's history at start.
#[derive(Debug, Default)]
pub struct CountedHistory {
    counts: HashMap<(Arc<str>, IpAddr), u32>,
}

impl CountedHistory {
    pub fn from_store(counts: HashMap<(String, IpAddr), u32>) -> Self {
        CountedHistory {
            counts: counts
                .into_iter()
                .map(|((jail, host), count)| ((Arc::from(jail.as_str()), host), count))
                .collect(),
        }
    }
}

impl BanHistory for CountedHistory {
    fn previous_bans(
        &self,
        host: IpAddr,
        jail: Option<&str>,
        _since: Option<DateTime<Utc>>,
    ) -> u32 {
        self.counts
            .iter()
            .filter(|((name, address), _)| {
                *address == host && jail.is_none_or(|wanted| &**name == wanted)
            })
            .map(|(_, count)| *count)
            .sum()
    }

    fn record_ban(&mut self, order: &BanOrder) {
        *self
            .counts
            .entry((Arc::from(order.jail.as_str()), order.host))
            .or_insert(0) += 1;
    }
}

/// A jail and what the task needs besides it.
pub struct JailRuntime {
    pub jail: Jail,
    pub config: JailConfig,
    pub name: Arc<str>,
    /// Where its failures came from (files, containers), for `status JAIL`; bounded.
    pub sources: BTreeSet<String>,
    /// Defined by container labels rather than the configuration file: a reload keeps it.
    pub from_labels: bool,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Most origins listed per jail in `status`; a jail fed by thousands of short-lived
/// containers must not grow without end.
const MAX_LISTED_SOURCES: usize = 256;

impl JailRuntime {
    pub fn new(jail: Jail, config: JailConfig) -> Self {
        let sources = config
            .sources
            .iter()
            .filter_map(|source| match source {
                crate::config::SourceConfig::File { path, .. } => {
                    Some(format!("file {}", path.as_str()))
                }
                _ => None,
            })
            .collect();
        JailRuntime {
            name: Arc::from(config.name.as_str()),
            jail,
            config,
            sources,
            from_labels: false,
        }
    }
}

/// How often hosts whose failures left the window are dropped, so memory follows the
/// attack rather than its peak.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs until the event channel closes (the matcher stopped), then returns the jails so the
/// daemon can report or keep them.
pub async fn run(
    mut jails: Vec<JailRuntime>,
    mut history: CountedHistory,
    mut events: mpsc::Receiver<JailEvent>,
    effects: Effects,
    clock: SharedClock,
    firewall: String,
) -> Vec<JailRuntime> {
    let mut index: HashMap<Arc<str>, usize> = jails
        .iter()
        .enumerate()
        .map(|(i, runtime)| (runtime.name.clone(), i))
        .collect();
    let mut purge = tokio::time::interval(PURGE_EVERY);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let until_expiry =
            next_expiry(&jails).map(|end| (end - clock.now()).to_std().unwrap_or(Duration::ZERO));
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    JailEvent::Failure(failure) => {
                        let Some(&slot) = index.get(&failure.jail) else {
                            tracing::warn!(jail = %failure.jail, "failure for an unknown jail");
                            continue;
                        };
                        on_failure(&mut jails[slot], failure, &mut history, &effects, &clock).await;
                    }
                    JailEvent::Control(call) => {
                        let context = super::control::Context {
                            history: &mut history,
                            effects: &effects,
                            now: clock.now(),
                            firewall: &firewall,
                        };
                        let changes_bans = call.request.changes_bans();
                        let response = super::control::answer(&mut jails, call.request, context).await;
                        reply_when_applied(&effects, changes_bans, call.reply, response).await;
                    }
                    JailEvent::Metrics(answer) => {
                        let now = clock.now();
                        let figures = jails
                            .iter_mut()
                            .map(|runtime| {
                                runtime.jail.purge(now);
                                jail_metrics(runtime)
                            })
                            .collect();
                        let _ = answer.send(figures);
                    }
                    JailEvent::Reconfigure { jails: configs, own_addresses, reply } => {
                        let answer = reconfigure(&mut jails, configs, &own_addresses, &effects, clock.now()).await;
                        index = jails
                            .iter()
                            .enumerate()
                            .map(|(i, runtime)| (runtime.name.clone(), i))
                            .collect();
                        let _ = reply.send(answer);
                    }
                    JailEvent::Define { config, reply } => {
                        let rule = crate::firewall::JailRule::from_config(&config);
                        let answer = match &effects.no_firewall {
                            Some(reason) if rule.acts() => Err(format!(
                                "it blocks addresses but logjail runs without a firewall \
                                 ({reason}); use action: log, or make the firewall work and \
                                 restart logjail"
                            )),
                            _ => define(&mut jails, &mut index, *config),
                        };
                        if answer.is_ok() {
                            effects.enforce(Enforcement::Define(rule)).await;
                        }
                        let _ = reply.send(answer);
                    }
                }
            }
            () = sleep_or_forever(until_expiry) => {
                expire(&mut jails, &effects, &clock).await;
            }
            _ = purge.tick() => {
                let now = clock.now();
                for runtime in &mut jails {
                    runtime.jail.purge(now);
                }
            }
        }
    }
    tracing::debug!("jails stopped");
    jails
}

/// Applies a reloaded configuration: every new setting is checked before anything changes;
/// kept jails keep their failures and bans; removed jails lift their bans.
async fn reconfigure(
    jails: &mut Vec<JailRuntime>,
    configs: Vec<JailConfig>,
    own_addresses: &[IpAddr],
    effects: &Effects,
    now: DateTime<Utc>,
) -> Result<ReloadSummary, String> {
    let mut prepared = Vec::new();
    for config in configs.into_iter().filter(|c| c.enabled) {
        let settings = jail_settings(&config, own_addresses)
            .map_err(|e| format!("jail \"{}\": {e}", config.name))?;
        prepared.push((config, settings));
    }
    let mut summary = ReloadSummary::default();
    let mut kept = Vec::new();
    for runtime in std::mem::take(jails) {
        let still_configured = prepared.iter().any(|(c, _)| c.name == *runtime.name);
        if still_configured || runtime.from_labels {
            kept.push(runtime);
            continue;
        }
        let mut runtime = runtime;
        for ban in runtime.jail.unban_all() {
            effects
                .unbanned(&runtime.name, &ban, "jail removed", &runtime.config, now)
                .await;
        }
        summary.removed.push(runtime.name.to_string());
    }
    for (config, settings) in prepared {
        match kept.iter_mut().find(|r| *r.name == config.name) {
            Some(runtime) => {
                if runtime.config == config {
                    summary.unchanged.push(config.name.clone());
                } else {
                    summary.changed.push(config.name.clone());
                }
                runtime
                    .jail
                    .update_settings(settings)
                    .map_err(|e| e.to_string())?;
                runtime.config = config;
                runtime.from_labels = false;
            }
            None => {
                let jail = Jail::new(settings).map_err(|e| e.to_string())?;
                summary.added.push(config.name.clone());
                kept.push(JailRuntime::new(jail, config));
            }
        }
    }
    *jails = kept;
    Ok(summary)
}

/// Adds a jail defined at run time, or accepts a definition identical to the existing one.
fn define(
    jails: &mut Vec<JailRuntime>,
    index: &mut HashMap<Arc<str>, usize>,
    config: JailConfig,
) -> Result<(), String> {
    if let Some(&slot) = index.get(config.name.as_str()) {
        return if jails[slot].config == config {
            Ok(())
        } else {
            Err(format!(
                "a different jail named \"{}\" already exists (defined in the configuration \
                 or by another container's labels)",
                config.name
            ))
        };
    }
    let own = jails
        .first()
        .map(|r| r.jail.settings().ignore.own_addresses().to_vec())
        .unwrap_or_else(super::own_addresses);
    let settings = jail_settings(&config, &own).map_err(|e| e.to_string())?;
    let jail = Jail::new(settings).map_err(|e| e.to_string())?;
    tracing::info!(jail = %config.name, "jail defined by container labels");
    index.insert(Arc::from(config.name.as_str()), jails.len());
    let mut runtime = JailRuntime::new(jail, config);
    runtime.from_labels = true;
    jails.push(runtime);
    Ok(())
}

fn jail_metrics(runtime: &JailRuntime) -> crate::metrics::JailMetrics {
    let status = runtime.jail.status();
    let settings = runtime.jail.settings();
    crate::metrics::JailMetrics {
        jail: runtime.name.to_string(),
        failures_current: status.currently_failed as u64,
        failures_total: status.total_failed,
        bans_current: status.currently_banned as u64,
        bans_total: status.total_banned,
        bantime_seconds: settings.bantime.finite().map(|d| d.as_secs_f64()),
        findtime_seconds: settings.findtime.as_secs_f64(),
        maxretry: u64::from(settings.maxretry),
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

fn next_expiry(jails: &[JailRuntime]) -> Option<DateTime<Utc>> {
    jails.iter().filter_map(|r| r.jail.next_expiry()).min()
}

async fn on_failure(
    runtime: &mut JailRuntime,
    failure: FailureEvent,
    history: &mut CountedHistory,
    effects: &Effects,
    clock: &SharedClock,
) {
    let now = clock.now();
    if runtime.sources.len() < MAX_LISTED_SOURCES {
        runtime.sources.insert(failure.origin.to_string());
    }
    let decision = runtime.jail.on_failure(
        failure.host,
        failure.time,
        &failure.line,
        now,
        history,
        &mut rand::rng(),
    );
    match &decision {
        Decision::Ban(order) => {
            effects
                .banned(order, Some(&failure.origin), &runtime.config)
                .await;
        }
        Decision::Counted { failures, maxretry } => tracing::debug!(
            jail = %runtime.name,
            host = %failure.host,
            failures,
            maxretry,
            origin = %failure.origin,
            "failure"
        ),
        Decision::Ignored { reason } => tracing::debug!(
            jail = %runtime.name,
            host = %failure.host,
            %reason,
            "failure of an ignored address"
        ),
        Decision::Stale { .. } | Decision::AlreadyBanned { .. } => {}
    }
    let _ = effects.observers.send(DaemonEvent::Failure {
        jail: runtime.name.clone(),
        host: failure.host,
        origin: failure.origin,
        decision,
    });
}

/// The one log event per ban; the `recidive` filter reads these lines, so their shape
/// (`ban jail=… host=…`) is part of logjail's interface.
pub fn announce_ban(order: &BanOrder, origin: Option<&Arc<Origin>>) {
    let origin = origin
        .map(|o| o.to_string())
        .unwrap_or_else(|| "manual".to_string());
    tracing::info!(
        target: "logjail::ban",
        jail = %order.jail,
        host = %order.host,
        failures = order.failures,
        bantime = %order.bantime,
        ban_count = order.ban_count,
        origin = %origin,
        "ban"
    );
}

fn ban_record(order: &BanOrder, origin: Option<&Arc<Origin>>) -> BanRecord {
    BanRecord {
        jail: order.jail.clone(),
        host: order.host,
        start: order.start,
        end: order.end,
        ban_count: order.ban_count,
        failures: order.failures,
        origin: origin.map(|o| o.to_string()),
        matches: order.matches.clone(),
    }
}

async fn expire(jails: &mut [JailRuntime], effects: &Effects, clock: &SharedClock) {
    let now = clock.now();
    for runtime in jails.iter_mut() {
        for ended in runtime.jail.expire(now) {
            effects
                .unbanned(&runtime.name, &ended, "expired", &runtime.config, now)
                .await;
        }
    }
}

fn announce_unban(jail: &str, ban: &ActiveBan, reason: &str) {
    tracing::info!(target: "logjail::ban", jail = %jail, host = %ban.host, reason = %reason, "unban");
}

/// Puts bans read from the store back into their jails (with their remaining time); bans of
/// jails that no longer exist are reported and left to expire in the store.
pub fn restore_bans(jails: &mut [JailRuntime], bans: &[BanRecord], now: DateTime<Utc>) -> usize {
    let mut restored = 0;
    for ban in bans {
        let Some(runtime) = jails.iter_mut().find(|r| *r.name == *ban.jail) else {
            tracing::warn!(jail = %ban.jail, host = %ban.host, "stored ban of a jail that is not configured; not restored");
            continue;
        };
        match runtime
            .jail
            .restore_ban(ban.host, ban.start, ban.end, ban.ban_count, now)
        {
            Ok(()) => restored += 1,
            Err(refused) => {
                tracing::warn!(jail = %ban.jail, host = %ban.host, %refused, "stored ban not restored")
            }
        }
    }
    restored
}
