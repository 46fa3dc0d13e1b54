//! The jail task: owns every jail, turns failures into ban decisions, lifts bans when they end,
//! and hands decisions to the store, the log and whoever listens for events.

mod control;

pub use crate::messages::JailTaskError;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::action::{Notice, NotifierHandle};
use crate::address::RefusalWarnings;
use crate::clock::SharedClock;
use crate::config::JailConfig;
use crate::jail::{ActiveBan, BanHistory, BanOrder, Decision, IgnoreReason, Jail};
use crate::messages::Origin;
use crate::store::{BanRecord, JailDefinition};

use crate::messages::StoreRequest;
use crate::messages::{DaemonEvent, Enforcement, FailureEvent, JailEvent, ReloadSummary};
use crate::store::task::StoreHandle;

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
    /// The fleet task's queue, when this member shares bans.
    pub fleet: Option<FleetLink>,
}

/// How the jails reach the fleet task.
#[derive(Debug, Clone)]
pub struct FleetLink {
    /// This member's id, stamped on what it publishes.
    pub member: Arc<str>,
    /// Whether a jail without `share:` shares (`fleet.share`).
    pub share_default: bool,
    /// Bounded; the jails `try_send`, since the local path never waits on Redis.
    pub queue: mpsc::Sender<crate::messages::FleetOutbound>,
    /// Changes that did not fit, for `/metrics`.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    /// What the fleet task says of Redis, for `status`.
    pub health: Arc<crate::fleet::task::FleetHealth>,
}

impl FleetLink {
    /// Whether a jail shares its bans: its own `share:`, else the fleet's default.
    pub(crate) fn shares(&self, config: &JailConfig) -> bool {
        config.share.unwrap_or(self.share_default)
    }

    fn offer(&self, change: crate::messages::FleetOutbound) {
        if self.queue.try_send(change).is_err() {
            // The fleet task is behind (a burst while Redis is slow): this change is not
            // published now. The ban is kept locally; the next reconnection's push does not
            // know it either, so say it.
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("fleet: queue full, a ban change was not shared");
        }
    }
}

impl Effects {
    /// Shares a ban made here, when its jail shares.
    fn share_ban(&self, order: &BanOrder, config: &JailConfig) {
        if let Some(fleet) = &self.fleet
            && fleet.shares(config)
        {
            fleet.offer(crate::messages::FleetOutbound::Ban(
                crate::fleet::BanRecord {
                    origin: fleet.member.to_string(),
                    jail: order.jail.clone(),
                    ip: order.host,
                    start_ms: order.start.timestamp_millis(),
                    end_ms: order.end.map(|end| end.timestamp_millis()),
                    count: order.ban_count,
                },
            ));
        }
    }

    /// Adds a failure counted here to the fleet's count, when its jail counts fleet-wide.
    /// Never waits: a full queue drops it (counted), and the local count goes on.
    fn share_failure(&self, runtime: &JailRuntime, host: IpAddr, time: DateTime<Utc>) {
        if let Some(fleet) = &self.fleet
            && runtime.config.share_failures
            && fleet.shares(&runtime.config)
        {
            let settings = runtime.jail.settings();
            fleet.offer(crate::messages::FleetOutbound::Failure(
                crate::messages::FailureShare {
                    jail: runtime.name.to_string(),
                    host: crate::address::canonical(host),
                    at_ms: time.timestamp_millis(),
                    findtime_ms: i64::try_from(settings.findtime.as_millis()).unwrap_or(i64::MAX),
                    maxretry: settings.maxretry,
                },
            ));
        }
    }

    /// Shares an unban asked here (not an expiry: Redis expires the key itself) of a ban that
    /// ran to `end`; whether it was shared.
    pub fn share_unban(
        &self,
        jail: &str,
        host: IpAddr,
        end: Option<DateTime<Utc>>,
        config: &JailConfig,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(fleet) = &self.fleet else {
            return false;
        };
        if !fleet.shares(config) {
            return false;
        }
        fleet.offer(crate::messages::FleetOutbound::Unban(
            crate::fleet::UnbanRecord {
                origin: fleet.member.to_string(),
                jail: jail.to_string(),
                ip: host,
                at_ms: now.timestamp_millis(),
                end_ms: end.map(|end| end.timestamp_millis()),
            },
        ));
        true
    }

    pub async fn banned(
        &self,
        order: &BanOrder,
        origin: Option<&Arc<Origin>>,
        config: &JailConfig,
    ) {
        announce_ban(order, origin);
        self.share_ban(order, config);
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

/// The configuration file's enabled jails, ready to run.
pub fn configured_jails(
    config: &crate::config::Config,
    own_addresses: &[IpAddr],
) -> Result<Vec<JailRuntime>, JailTaskError> {
    config
        .jails
        .iter()
        .filter(|jail| jail.enabled)
        .map(|jail_config| {
            let settings = |source| JailTaskError::Settings {
                jail: jail_config.name.clone(),
                source,
            };
            let jail = Jail::new(jail_config.jail_settings(own_addresses).map_err(settings)?)
                .map_err(settings)?;
            Ok(JailRuntime::new(jail, jail_config.clone()))
        })
        .collect()
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
    /// The configuration file, or a container's labels (which a reload keeps).
    pub definer: Definer,
    /// The fleet member each ban from the fleet came from, for `banned`.
    pub fleet_origins: HashMap<IpAddr, String>,
    /// The shared bans lifted here, which the fleet does not hand back.
    pub fleet_lifted: crate::jail::lifts::Lifts,
}

/// What defined a jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Definer {
    /// The configuration file.
    Config,
    /// A container's labels (or a pod's annotations). `container` is who defined it;
    /// `sharing`, the others whose identical labels define it too (a Deployment's replicas).
    Labels {
        container: String,
        presence: Presence,
        sharing: BTreeSet<String>,
    },
}

/// Whether a label-defined jail's definer is there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Defined in this run by a container or pod that is still there.
    Seen,
    /// Restored from the store at start; no container has defined it again since.
    Restored,
    /// Every container or pod that defined it in this run is gone.
    Gone,
}

impl Definer {
    pub fn is_labels(&self) -> bool {
        matches!(self, Definer::Labels { .. })
    }

    /// For `status JAIL`: who defined the jail, when it was not the configuration file.
    pub fn describe(&self) -> Option<String> {
        match self {
            Definer::Config => None,
            Definer::Labels {
                container,
                presence: Presence::Seen,
                sharing,
            } if sharing.is_empty() => Some(format!("labels of {container}")),
            Definer::Labels {
                container,
                presence: Presence::Seen,
                sharing,
            } => Some(format!(
                "labels of {container} (and {})",
                sharing.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            Definer::Labels {
                container,
                presence: Presence::Restored,
                ..
            } => Some(format!(
                "labels of {container} (restored; not seen since logjail started)"
            )),
            Definer::Labels {
                container,
                presence: Presence::Gone,
                ..
            } => Some(format!(
                "labels of {container} (gone; the bans stay until they end)"
            )),
        }
    }
}

/// Stored bans whose jail is not defined now (it left the configuration file, or its
/// container's labels were stored by a logjail too old to keep definitions). They are not
/// enforced; they stay in the store until they end, and a jail of that name defined again
/// (by the configuration or by labels) takes them over.
#[derive(Debug, Default)]
pub struct HeldBans {
    by_jail: HashMap<String, Vec<BanRecord>>,
}

impl HeldBans {
    fn hold(&mut self, ban: BanRecord) {
        self.by_jail.entry(ban.jail.clone()).or_default().push(ban);
    }

    /// Gives the jail just defined its held bans, still in force at `now`, and queues them for
    /// the firewall. `lay_out` first queues the jail's layout: a jail added by a reload is laid
    /// out by the daemon only after the jail task answers, too late for these bans.
    async fn hand_over(
        &mut self,
        runtime: &mut JailRuntime,
        effects: &Effects,
        now: DateTime<Utc>,
        lay_out: bool,
    ) {
        let Some(bans) = self.by_jail.remove(&*runtime.name) else {
            return;
        };
        if lay_out {
            effects
                .enforce(Enforcement::Define(crate::firewall::JailRule::from_config(
                    &runtime.config,
                )))
                .await;
        }
        let restored = restore_into(runtime, &bans, now);
        if restored > 0 {
            tracing::info!(jail = %runtime.name, restored, "held bans taken over by the jail defined again");
        }
        for ban in runtime.jail.banned() {
            effects
                .enforce(Enforcement::Ban {
                    jail: runtime.name.to_string(),
                    host: ban.host,
                    end: ban.end,
                })
                .await;
        }
    }
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
            definer: Definer::Config,
            fleet_origins: HashMap::new(),
            fleet_lifted: crate::jail::lifts::Lifts::default(),
        }
    }

    /// A jail defined by a container's labels.
    pub fn from_labels(jail: Jail, config: JailConfig, container: String, seen: bool) -> Self {
        let mut runtime = JailRuntime::new(jail, config);
        runtime.definer = Definer::Labels {
            container,
            presence: if seen {
                Presence::Seen
            } else {
                Presence::Restored
            },
            sharing: BTreeSet::new(),
        };
        runtime
    }
}

/// How often hosts whose failures left the window are dropped, so memory follows the
/// attack rather than its peak.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs until the event channel closes (the matcher stopped), then returns the jails so the
/// daemon can report or keep them.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut jails: Vec<JailRuntime>,
    mut held: HeldBans,
    mut history: CountedHistory,
    mut events: mpsc::Receiver<JailEvent>,
    effects: Effects,
    clock: SharedClock,
    firewall: String,
) -> Vec<JailRuntime> {
    let mut index = index_of(&jails);
    // Failures of an address that is never a client (a filter reports `0.0.0.0` and `::` as
    // Fail2Ban does): refused here, with a warning rate-limited per jail, since whoever
    // writes such lines chooses how many come.
    let mut refusals = RefusalWarnings::new();
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
                        on_failure(
                            &mut jails[slot],
                            failure,
                            &mut history,
                            &mut refusals,
                            &effects,
                            &clock,
                        )
                        .await;
                    }
                    JailEvent::Control(call) => {
                        let context = control::Context {
                            history: &mut history,
                            effects: &effects,
                            now: clock.now(),
                            firewall: &firewall,
                        };
                        let changes_bans = call.request.changes_bans();
                        let response = control::answer(&mut jails, call.request, context).await;
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
                        index = index_of(&jails);
                        if answer.is_ok() {
                            for runtime in &mut jails {
                                held.hand_over(runtime, &effects, clock.now(), true).await;
                            }
                        }
                        let _ = reply.send(answer);
                    }
                    JailEvent::DefinerGone { defined_by } => definer_gone(&mut jails, &defined_by),
                    JailEvent::FleetCounts(counts) => {
                        on_fleet_counts(&mut jails, &index, counts, &mut history, &effects, clock.now()).await;
                    }
                    JailEvent::Fleet(changes) => {
                        on_fleet(&mut jails, &index, changes, &effects, clock.now()).await;
                    }
                    JailEvent::Define { config, definition, reply } => {
                        let name = Arc::<str>::from(config.name.as_str());
                        let blocks = crate::firewall::JailRule::from_config(&config).acts();
                        let answer = match &effects.no_firewall {
                            Some(reason) if blocks => Err(JailTaskError::NoFirewall { reason: reason.clone() }),
                            _ => define(&mut jails, &mut index, *config, *definition, &effects, clock.now()).await,
                        };
                        if answer.is_ok()
                            && let Some(&slot) = index.get(&name)
                        {
                            // `define` queued the layout already.
                            held.hand_over(&mut jails[slot], &effects, clock.now(), false).await;
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
                if retire_unclaimed(&mut jails, &effects).await {
                    index = index_of(&jails);
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
) -> Result<ReloadSummary, JailTaskError> {
    let mut prepared = Vec::new();
    for config in configs.into_iter().filter(|c| c.enabled) {
        let settings =
            config
                .jail_settings(own_addresses)
                .map_err(|source| JailTaskError::Settings {
                    jail: config.name.clone(),
                    source,
                })?;
        prepared.push((config, settings));
    }
    let mut summary = ReloadSummary::default();
    let mut kept = Vec::new();
    for runtime in std::mem::take(jails) {
        let still_configured = prepared.iter().any(|(c, _)| c.name == *runtime.name);
        if still_configured || runtime.definer.is_labels() {
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
                runtime.jail.update_settings(settings)?;
                runtime.config = config;
                if runtime.definer.is_labels() {
                    // The configuration file took the name over: its definition wins, and
                    // the labels' is no longer restored at start.
                    effects
                        .store
                        .send(StoreRequest::RemoveDefinition(runtime.name.to_string()))
                        .await;
                }
                runtime.definer = Definer::Config;
            }
            None => {
                let jail = Jail::new(settings)?;
                summary.added.push(config.name.clone());
                kept.push(JailRuntime::new(jail, config));
            }
        }
    }
    *jails = kept;
    Ok(summary)
}

/// Adds a jail defined at run time by a container's labels, confirms an identical one, or
/// lets changed labels redefine it. A new or redefined jail's definition goes to the store
/// and its layout to the firewall (its bans move to the new ports and verdict there).
///
/// Changed labels win when they come from the container that defined the jail (re-created
/// with other labels) or when no container has defined it since logjail started (a jail
/// restored from the store). Another container's different definition is refused.
async fn define(
    jails: &mut Vec<JailRuntime>,
    index: &mut HashMap<Arc<str>, usize>,
    config: JailConfig,
    definition: JailDefinition,
    effects: &Effects,
    now: DateTime<Utc>,
) -> Result<(), JailTaskError> {
    let rule = crate::firewall::JailRule::from_config(&config);
    let own = jails
        .first()
        .map(|r| r.jail.settings().ignore.own_addresses().to_vec())
        .unwrap_or_else(crate::address::own_addresses);
    let save = StoreRequest::SaveDefinition {
        definition: definition.clone(),
        now,
    };
    if let Some(&slot) = index.get(config.name.as_str()) {
        let runtime = &mut jails[slot];
        let Definer::Labels {
            container,
            presence,
            sharing,
        } = &mut runtime.definer
        else {
            return Err(JailTaskError::DefinedInConfig { jail: config.name });
        };
        let same_container = *container == definition.defined_by;
        if runtime.config == config {
            if *presence != Presence::Seen {
                tracing::info!(jail = %config.name, container = %definition.defined_by, "label-defined jail defined again by container labels");
                *container = definition.defined_by.clone();
                *presence = Presence::Seen;
                effects.store.send(save).await;
            } else if !same_container {
                // Identical labels on another container (or pod) share the jail.
                sharing.insert(definition.defined_by.clone());
            }
            return Ok(());
        }
        // Changed labels win from the only container that defines the jail now, or when no
        // one that defined it is there (restored from the store, or all gone: the new pods of
        // a rollout once the old ones went).
        if *presence == Presence::Seen && !(same_container && sharing.is_empty()) {
            return Err(JailTaskError::DefinedElsewhere { jail: config.name });
        }
        let settings = config.jail_settings(&own)?;
        runtime.jail.update_settings(settings)?;
        tracing::info!(
            jail = %config.name,
            container = %definition.defined_by,
            bans = runtime.jail.banned().count(),
            "jail redefined by changed container labels; its bans follow the new definition"
        );
        runtime.config = config;
        runtime.definer = Definer::Labels {
            container: definition.defined_by.clone(),
            presence: Presence::Seen,
            sharing: BTreeSet::new(),
        };
        effects.store.send(save).await;
        effects.enforce(Enforcement::Define(rule)).await;
        return Ok(());
    }
    let settings = config.jail_settings(&own)?;
    let jail = Jail::new(settings)?;
    tracing::info!(jail = %config.name, container = %definition.defined_by, "jail defined by container labels");
    index.insert(Arc::from(config.name.as_str()), jails.len());
    jails.push(JailRuntime::from_labels(
        jail,
        config,
        definition.defined_by.clone(),
        true,
    ));
    effects.store.send(save).await;
    effects.enforce(Enforcement::Define(rule)).await;
    Ok(())
}

/// A container or pod that defined jails is gone: the jails it alone defined keep their bans
/// until they end (and go then, see [`retire_unclaimed`]), and the next definer's labels win.
fn definer_gone(jails: &mut [JailRuntime], defined_by: &str) {
    for runtime in jails {
        let Definer::Labels {
            container,
            presence,
            sharing,
        } = &mut runtime.definer
        else {
            continue;
        };
        if sharing.remove(defined_by) || *container != defined_by || *presence != Presence::Seen {
            continue;
        }
        match sharing.pop_first() {
            Some(next) => *container = next,
            None => {
                tracing::info!(jail = %runtime.name, defined_by, bans = runtime.jail.banned().count(), "the last container defining this jail is gone; its bans stay until they end");
                *presence = Presence::Gone;
            }
        }
    }
}

/// Retires label-defined jails restored at start that no container has defined again and
/// whose last ban has ended: nothing is left for them to hold. A container that shows up
/// later defines its jail anew. Returns whether any went.
async fn retire_unclaimed(jails: &mut Vec<JailRuntime>, effects: &Effects) -> bool {
    let (retired, kept): (Vec<JailRuntime>, Vec<JailRuntime>) =
        std::mem::take(jails).into_iter().partition(|runtime| {
            matches!(
                runtime.definer,
                Definer::Labels {
                    presence: Presence::Restored | Presence::Gone,
                    ..
                }
            ) && runtime.jail.banned().next().is_none()
        });
    *jails = kept;
    for runtime in &retired {
        tracing::info!(jail = %runtime.name, "restored label-defined jail retired: its bans ended and no container defines it");
        effects
            .store
            .send(StoreRequest::RemoveDefinition(runtime.name.to_string()))
            .await;
        effects
            .enforce(Enforcement::Remove {
                jail: runtime.name.to_string(),
            })
            .await;
    }
    !retired.is_empty()
}

fn index_of(jails: &[JailRuntime]) -> HashMap<Arc<str>, usize> {
    jails
        .iter()
        .enumerate()
        .map(|(i, runtime)| (runtime.name.clone(), i))
        .collect()
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
    refusals: &mut RefusalWarnings,
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
        Decision::Counted { failures, maxretry } => {
            tracing::debug!(
                jail = %runtime.name,
                host = %failure.host,
                failures,
                maxretry,
                origin = %failure.origin,
                "failure"
            );
            effects.share_failure(runtime, failure.host, failure.time);
        }
        Decision::Ignored {
            reason: IgnoreReason::NotAClient(reason),
        } => match refusals.record(&runtime.name, now) {
            Some(refused) => tracing::warn!(
                jail = %runtime.name,
                host = %failure.host,
                origin = %failure.origin,
                refused_since_last_warning = refused,
                "a failure line names {}, {reason}; not counted, never banned (the next such \
                 failures of this jail are logged at debug level, with a warning at most every \
                 {} minutes)",
                failure.host,
                crate::address::REFUSAL_WARNING_INTERVAL.num_minutes()
            ),
            None => tracing::debug!(
                jail = %runtime.name,
                host = %failure.host,
                origin = %failure.origin,
                "a failure line names {}, {reason}; not counted, never banned",
                failure.host
            ),
        },
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

/// Bans the addresses whose failures across the fleet reached maxretry, each through its
/// jail's own rules (ignore list, ban in force, increments), as a ban made here: it is shared,
/// so the members that saw fewer tries learn it.
async fn on_fleet_counts(
    jails: &mut [JailRuntime],
    index: &HashMap<Arc<str>, usize>,
    counts: Vec<crate::messages::FleetCount>,
    history: &mut CountedHistory,
    effects: &Effects,
    now: DateTime<Utc>,
) {
    let origin = Arc::new(Origin::FleetFailures);
    for count in counts {
        let Some(&slot) = index.get(count.jail.as_str()) else {
            continue;
        };
        let runtime = &mut jails[slot];
        // A reload may have turned the sharing off since the failure went out.
        if !runtime.config.share_failures {
            continue;
        }
        let decision =
            runtime
                .jail
                .on_fleet_count(count.host, count.failures, now, history, &mut rand::rng());
        if let Decision::Ban(order) = &decision {
            tracing::info!(
                jail = %runtime.name,
                host = %count.host,
                failures = count.failures,
                members = %count.members.join(","),
                "failures across the fleet reached maxretry"
            );
            effects.banned(order, Some(&origin), &runtime.config).await;
        }
    }
}

/// How much later than an unban a ban held here must have begun to be kept as a newer one:
/// the two times come from two members' clocks, and one a little behind must not leave a ban
/// the fleet lifted in force here.
const UNBAN_CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(1);

/// Applies other members' bans and unbans to the jails of those names, if this member runs
/// them: through each jail's own ignoreip and refusals (own addresses, loopback), into its own
/// firewall target. Not shared again. The bans of a batch are stored in one request.
async fn on_fleet(
    jails: &mut [JailRuntime],
    index: &HashMap<Arc<str>, usize>,
    changes: Vec<crate::messages::FleetChange>,
    effects: &Effects,
    now: DateTime<Utc>,
) {
    use crate::messages::FleetChange;
    let mut records = Vec::new();
    for change in changes {
        let jail = match &change {
            FleetChange::Ban { jail, .. } | FleetChange::Unban { jail, .. } => jail.clone(),
        };
        let Some(&slot) = index.get(jail.as_str()) else {
            tracing::debug!(%jail, "fleet: change for a jail not run here");
            continue;
        };
        let runtime = &mut jails[slot];
        if let Some(fleet) = &effects.fleet
            && !fleet.shares(&runtime.config)
        {
            continue;
        }
        match change {
            FleetChange::Ban {
                member,
                host,
                start,
                end,
                ban_count,
                ..
            } => {
                if runtime.fleet_lifted.lifted_since(host, start) {
                    tracing::info!(jail = %runtime.name, %host, %member, "fleet ban lifted here since; not taken back");
                    continue;
                }
                let before = runtime.jail.ban_of(host).map(|ban| ban.end);
                if let Err(refused) = runtime.jail.restore_ban(host, start, end, ban_count, now) {
                    tracing::info!(jail = %runtime.name, %host, %member, %refused, "fleet ban not applied here");
                    continue;
                }
                let after = runtime.jail.ban_of(host).map(|ban| ban.end);
                if before.is_some() && before == after {
                    continue;
                }
                tracing::info!(target: "logjail::ban", jail = %runtime.name, %host, %member, "ban from the fleet");
                runtime.fleet_origins.insert(host, member.clone());
                records.push(BanRecord::from_fleet(
                    runtime.name.to_string(),
                    host,
                    start,
                    end,
                    ban_count,
                    member,
                ));
                effects
                    .enforce(Enforcement::Ban {
                        jail: runtime.name.to_string(),
                        host,
                        end,
                    })
                    .await;
            }
            FleetChange::Unban {
                member, host, at, ..
            } => {
                if runtime
                    .jail
                    .ban_of(host)
                    .is_some_and(|ban| ban.start > at + UNBAN_CLOCK_SLACK)
                {
                    tracing::info!(jail = %runtime.name, %host, %member, "fleet unban older than the ban held here; kept");
                    continue;
                }
                if let Some(ban) = runtime.jail.unban(host) {
                    // The ban's row must be written before its removal is.
                    if !records.is_empty() {
                        effects
                            .store
                            .send(StoreRequest::SaveBans(std::mem::take(&mut records)))
                            .await;
                    }
                    runtime.fleet_origins.remove(&host);
                    let reason = format!("fleet unban by {member}");
                    let config = runtime.config.clone();
                    effects
                        .unbanned(&runtime.name, &ban, &reason, &config, now)
                        .await;
                }
            }
        }
    }
    if !records.is_empty() {
        effects.store.send(StoreRequest::SaveBans(records)).await;
    }
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
        // Bans from the fleet are not made through a `BanOrder` of this member's jails.
        fleet_member: None,
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

/// Puts bans read from the store back into their jails (with their remaining time). Bans of
/// jails that are not defined now are held (see [`HeldBans`]), and each such jail is logged
/// once.
pub fn restore_bans(
    jails: &mut [JailRuntime],
    bans: &[BanRecord],
    now: DateTime<Utc>,
) -> (usize, HeldBans) {
    let mut restored = 0;
    let mut held = HeldBans::default();
    for ban in bans {
        match jails.iter_mut().find(|r| *r.name == *ban.jail) {
            Some(runtime) => restored += restore_into(runtime, std::slice::from_ref(ban), now),
            None => held.hold(ban.clone()),
        }
    }
    for (jail, bans) in &held.by_jail {
        tracing::warn!(
            %jail,
            bans = bans.len(),
            "stored bans of a jail that is not defined now (not in the configuration file, no \
             stored label definition): held, not enforced, until the configuration or a \
             container's labels define the jail again, or they end"
        );
    }
    (restored, held)
}

/// Restores `bans` into one jail; returns how many it took.
fn restore_into(runtime: &mut JailRuntime, bans: &[BanRecord], now: DateTime<Utc>) -> usize {
    let mut restored = 0;
    for ban in bans {
        match runtime
            .jail
            .restore_ban(ban.host, ban.start, ban.end, ban.ban_count, now)
        {
            Ok(()) => {
                restored += 1;
                if let Some(member) = &ban.fleet_member {
                    runtime.fleet_origins.insert(ban.host, member.clone());
                }
            }
            Err(refused) => {
                tracing::warn!(jail = %ban.jail, host = %ban.host, %refused, "stored ban not restored")
            }
        }
    }
    restored
}

/// Jails that container labels defined in earlier runs and that still hold bans in force,
/// rebuilt from their stored definitions (as the same labels would define them now), so that
/// their bans are back in the firewall before any source starts, whether or not the container
/// is still there. Definitions that the configuration file now takes over, or whose bans have
/// all ended, are forgotten: a container that still carries the labels defines its jail again
/// when it is seen. One that no longer parses is kept, its bans held (see `HeldBans`).
pub async fn restored_label_jails(
    config: &crate::config::Config,
    definitions: &[JailDefinition],
    bans: &[BanRecord],
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
            let settings = jail_config.jail_settings(own).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::TimeZone;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::clock::TokioClock;
    use crate::config::{DefaultsConfig, Ports};
    use crate::routing::labels::{self, LabelContext};
    use crate::store::Store;

    const HOST: &str = "203.0.113.7";

    fn start_time() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    /// A label jail `web` of the built-in `wordpress` filter, blocking `port`.
    fn web_labels(port: &str) -> HashMap<String, String> {
        [
            ("logjail.jail.web.filter", "wordpress"),
            ("logjail.jail.web.port", port),
            ("logjail.jail.web.bantime", "1h"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn defined(labels: &HashMap<String, String>, container: &str) -> (JailConfig, JailDefinition) {
        let defaults = DefaultsConfig::default();
        let parsed = labels::parse(
            labels,
            &LabelContext {
                defaults: &defaults,
                filters: &["wordpress".to_string()].into(),
                yaml_jails: &BTreeSet::new(),
                chain_prefix: "logjail",
                host_network: false,
            },
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let config = parsed.defined.into_iter().next().unwrap();
        let definition =
            labels::definition("web", labels, &format!("container {container}"), false);
        (config, definition)
    }

    fn stored_ban(jail: &str, start: DateTime<Utc>) -> BanRecord {
        BanRecord {
            jail: jail.to_string(),
            host: HOST.parse().unwrap(),
            start,
            end: Some(start + chrono::Duration::hours(1)),
            ban_count: 2,
            failures: 5,
            origin: Some("container web (abc)".to_string()),
            matches: Vec::new(),
            fleet_member: None,
        }
    }

    /// The jail task on a real (in-memory) SQLite store, with the firewall's queue captured.
    struct Harness {
        events: mpsc::Sender<JailEvent>,
        firewall: mpsc::Receiver<Enforcement>,
        store: StoreHandle,
        task: tokio::task::JoinHandle<Vec<JailRuntime>>,
        store_thread: std::thread::JoinHandle<()>,
    }

    impl Harness {
        fn start(mut jails: Vec<JailRuntime>, bans: &[BanRecord]) -> Harness {
            let clock: SharedClock = Arc::new(TokioClock::starting_at(start_time()));
            let (store, _, store_thread) =
                crate::store::task::start(Store::in_memory().unwrap(), clock.now(), start_time())
                    .unwrap();
            let (_, held) = restore_bans(&mut jails, bans, clock.now());
            let (enforcer, firewall) = mpsc::channel(64);
            let (notifier, _) = crate::action::Notifier::start(CancellationToken::new());
            let effects = Effects {
                store: store.clone(),
                observers: broadcast::channel(16).0,
                notifier,
                enforcer: Some(enforcer),
                no_firewall: None,
                fleet: None,
            };
            let (events, receiver) = mpsc::channel(16);
            let task = tokio::spawn(run(
                jails,
                held,
                CountedHistory::default(),
                receiver,
                effects,
                clock,
                "test".to_string(),
            ));
            Harness {
                events,
                firewall,
                store,
                task,
                store_thread,
            }
        }

        async fn define(
            &self,
            config: JailConfig,
            definition: JailDefinition,
        ) -> Result<(), String> {
            let (reply, answer) = oneshot::channel();
            self.events
                .send(JailEvent::Define {
                    config: Box::new(config),
                    definition: Box::new(definition),
                    reply,
                })
                .await
                .unwrap();
            answer.await.unwrap().map_err(|e| e.to_string())
        }

        /// Everything queued for the firewall so far.
        fn firewall_changes(&mut self) -> Vec<Enforcement> {
            std::iter::from_fn(|| self.firewall.try_recv().ok()).collect()
        }

        /// Stops the task; the jails as it left them and the definitions in the store.
        async fn stop(self) -> (Vec<JailRuntime>, Vec<JailDefinition>) {
            drop(self.events);
            let jails = self.task.await.unwrap();
            self.store.flush().await;
            let (answer, wait) = oneshot::channel();
            // The definitions, read through the store thread that owns the connection.
            self.store
                .send(crate::messages::StoreRequest::Definitions(answer))
                .await;
            let definitions = wait.await.unwrap();
            drop(self.store);
            self.store_thread.join().unwrap();
            (jails, definitions)
        }
    }

    /// A jail restored from a stored definition, not yet seen in this run.
    fn restored_web(port: &str) -> JailRuntime {
        let (config, definition) = defined(&web_labels(port), "web");
        let rebuilt = labels::restore(&definition, &DefaultsConfig::default(), "logjail").unwrap();
        assert_eq!(rebuilt, config, "restoring gives what the labels define");
        let settings = rebuilt.jail_settings(&[]).unwrap();
        JailRuntime::from_labels(
            Jail::new(settings).unwrap(),
            rebuilt,
            "container web".to_string(),
            false,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_ban_lifted_here_since_is_not_taken_back_and_an_older_unban_keeps_a_newer_ban()
    {
        use crate::messages::FleetChange;
        let (config, _) = defined(&web_labels("80"), "web");
        let jail = Jail::new(config.jail_settings(&[]).unwrap()).unwrap();
        let mut runtime = JailRuntime::new(jail, config);
        let minutes = |m| start_time() + chrono::Duration::minutes(m);
        let (lifted, held): (IpAddr, IpAddr) =
            ("192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap());
        // Lifted here at +10 min, a ban that ran to +60.
        runtime
            .fleet_lifted
            .note(lifted, minutes(10), Some(minutes(60)));
        let mut harness = Harness::start(vec![runtime], &[]);
        let ban = |host: IpAddr, start| FleetChange::Ban {
            member: "b".to_string(),
            jail: "web".to_string(),
            host,
            start,
            end: Some(start + chrono::Duration::hours(1)),
            ban_count: 1,
        };
        let batch = vec![
            // The ban lifted here, read back from the fleet: left out.
            ban(lifted, minutes(0)),
            // A ban held here that began after another member's unban: kept.
            ban(held, minutes(30)),
            FleetChange::Unban {
                member: "c".to_string(),
                jail: "web".to_string(),
                host: held,
                at: minutes(20),
            },
            // A new ban of the lifted address, made after the lift: taken.
            ban(lifted, minutes(15)),
        ];
        harness.events.send(JailEvent::Fleet(batch)).await.unwrap();
        let mut firewall = std::mem::replace(&mut harness.firewall, mpsc::channel(1).1);
        let (jails, _) = harness.stop().await;
        let changes: Vec<String> = std::iter::from_fn(|| firewall.try_recv().ok())
            .map(|change| match change {
                Enforcement::Ban { host, .. } => format!("ban {host}"),
                Enforcement::Unban { host, .. } => format!("unban {host}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(changes, ["ban 192.0.2.11", "ban 192.0.2.10"]);
        let starts: Vec<_> = jails[0].jail.banned().map(|b| (b.host, b.start)).collect();
        assert!(starts.contains(&(lifted, minutes(15))), "{starts:?}");
        assert!(starts.contains(&(held, minutes(30))), "{starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_batch_is_applied_in_order_and_a_repeat_changes_nothing() {
        use crate::messages::FleetChange;
        // A jail running in its own right (a restored one not claimed again would go).
        let (config, _) = defined(&web_labels("80"), "web");
        let jail = Jail::new(config.jail_settings(&[]).unwrap()).unwrap();
        let mut harness = Harness::start(vec![JailRuntime::new(jail, config)], &[]);
        let end = Some(start_time() + chrono::Duration::hours(1));
        let ban = |host: &str| FleetChange::Ban {
            member: "b".to_string(),
            jail: "web".to_string(),
            host: host.parse().unwrap(),
            start: start_time(),
            end,
            ban_count: 1,
        };
        let unban = |host: &str| FleetChange::Unban {
            member: "c".to_string(),
            jail: "web".to_string(),
            host: host.parse().unwrap(),
            at: start_time() + chrono::Duration::minutes(1),
        };
        let batch = vec![
            ban("192.0.2.1"),
            ban("192.0.2.2"),
            unban("192.0.2.1"),
            // A jail this member does not run: skipped, the rest of the batch still applies.
            FleetChange::Ban {
                member: "b".to_string(),
                jail: "elsewhere".to_string(),
                host: "192.0.2.3".parse().unwrap(),
                start: start_time(),
                end,
                ban_count: 1,
            },
            ban("192.0.2.4"),
        ];
        harness
            .events
            .send(JailEvent::Fleet(batch.clone()))
            .await
            .unwrap();
        // The same batch again (a reconnect pulls what the feed already brought): the bans
        // in force stay as they are, and the unbanned address is not banned twice over.
        harness
            .events
            .send(JailEvent::Fleet(batch[1..].to_vec()))
            .await
            .unwrap();
        let mut firewall = std::mem::replace(&mut harness.firewall, mpsc::channel(1).1);
        let (jails, _) = harness.stop().await;
        let changes: Vec<String> = std::iter::from_fn(|| firewall.try_recv().ok())
            .map(|change| match change {
                Enforcement::Ban { host, end: e, .. } if e == end => format!("ban {host}"),
                Enforcement::Unban { host, .. } => format!("unban {host}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            changes,
            [
                "ban 192.0.2.1",
                "ban 192.0.2.2",
                "unban 192.0.2.1",
                "ban 192.0.2.4"
            ]
        );
        let mut banned: Vec<IpAddr> = jails[0].jail.banned().map(|b| b.host).collect();
        banned.sort();
        assert_eq!(
            banned,
            [
                "192.0.2.2".parse::<IpAddr>().unwrap(),
                "192.0.2.4".parse().unwrap()
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_of_the_unspecified_address_are_never_counted_nor_banned() {
        // Filters report `0.0.0.0` and `::` as Fail2Ban does; the jail task is where they
        // stop, however many come.
        let (config, _) = defined(&web_labels("80"), "web");
        let jail = Jail::new(config.jail_settings(&[]).unwrap()).unwrap();
        let mut harness = Harness::start(vec![JailRuntime::new(jail, config)], &[]);
        let origin = Arc::new(Origin::File {
            path: "/var/log/assp.log".into(),
        });
        let failure = |host: &str| {
            JailEvent::Failure(FailureEvent {
                jail: Arc::from("web"),
                host: host.parse().unwrap(),
                time: start_time(),
                line: format!("[TLS-out] {host} [SMTP Error] 535 5.7.8 Error"),
                origin: origin.clone(),
            })
        };
        for _ in 0..20 {
            for nobody in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
                harness.events.send(failure(nobody)).await.unwrap();
            }
        }
        // A client's failures, as many as maxretry, in the same jail: that one is banned.
        for _ in 0..5 {
            harness.events.send(failure(HOST)).await.unwrap();
        }
        // The firewall's queue, read once the task has judged everything.
        let mut firewall = std::mem::replace(&mut harness.firewall, mpsc::channel(1).1);
        let (jails, _) = harness.stop().await;
        let status = jails[0].jail.status();
        assert_eq!(status.total_failed, 5, "only the client's failures count");
        let banned: Vec<IpAddr> = jails[0].jail.banned().map(|ban| ban.host).collect();
        assert_eq!(banned, [HOST.parse::<IpAddr>().unwrap()]);
        let enforced: Vec<IpAddr> = std::iter::from_fn(|| firewall.try_recv().ok())
            .filter_map(|change| match change {
                Enforcement::Ban { host, .. } => Some(host),
                _ => None,
            })
            .collect();
        assert_eq!(enforced, [HOST.parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_labels_take_a_restored_jail_over_with_its_ban() {
        let mut harness =
            Harness::start(vec![restored_web("80")], &[stored_ban("web", start_time())]);
        let (config, definition) = defined(&web_labels("80"), "web");
        harness.define(config, definition.clone()).await.unwrap();
        // Identical: nothing to lay out again, the ban stays as it was.
        assert!(harness.firewall_changes().is_empty());
        let (jails, definitions) = harness.stop().await;
        assert_eq!(jails.len(), 1);
        assert_eq!(
            jails[0].definer,
            Definer::Labels {
                container: "container web".into(),
                presence: Presence::Seen,
                sharing: BTreeSet::new(),
            }
        );
        let ban = jails[0].jail.banned().next().unwrap();
        assert_eq!(ban.end, Some(start_time() + chrono::Duration::hours(1)));
        assert_eq!(ban.ban_count, 2);
        assert_eq!(definitions, vec![definition]);
    }

    #[tokio::test(start_paused = true)]
    async fn changed_labels_win_and_the_bans_follow() {
        let mut harness =
            Harness::start(vec![restored_web("80")], &[stored_ban("web", start_time())]);
        let (config, definition) = defined(&web_labels("8080"), "web");
        harness.define(config, definition.clone()).await.unwrap();
        let changes = harness.firewall_changes();
        assert!(
            matches!(&changes[..], [Enforcement::Define(rule)]
                if rule.name == "web" && rule.ports == Ports::List(vec![crate::config::PortRange { first: 8080, last: 8080 }])),
            "{changes:?}"
        );
        // The same container, re-created with yet other labels later in the run: they win too.
        let (config, _) = defined(&web_labels("8081"), "web");
        let (_, other_definition) = defined(&web_labels("8081"), "web");
        harness
            .define(config, other_definition.clone())
            .await
            .unwrap();
        assert_eq!(harness.firewall_changes().len(), 1);
        let (jails, definitions) = harness.stop().await;
        assert_eq!(jails[0].jail.banned().count(), 1, "the ban stays");
        assert_eq!(definitions, vec![other_definition]);
    }

    #[tokio::test(start_paused = true)]
    async fn another_containers_different_definition_is_refused() {
        let harness = Harness::start(Vec::new(), &[]);
        let (config, definition) = defined(&web_labels("80"), "web");
        harness.define(config.clone(), definition).await.unwrap();
        let (other, other_definition) = defined(&web_labels("8080"), "intruder");
        let refused = harness.define(other, other_definition).await.unwrap_err();
        assert!(
            refused.contains("a different jail named \"web\""),
            "{refused}"
        );
        // The same definition from another container is shared.
        let (_, shared) = defined(&web_labels("80"), "replica");
        harness.define(config, shared).await.unwrap();
        let (jails, definitions) = harness.stop().await;
        assert_eq!(
            jails[0].config.ports,
            Ports::List(vec![crate::config::PortRange {
                first: 80,
                last: 80
            }])
        );
        assert_eq!(definitions.len(), 1);
        assert_eq!(definitions[0].defined_by, "container web");
    }

    /// A Deployment's rollout: the old replicas share the jail; a new pod with changed
    /// annotations is refused while any old one is there, and wins once they are all gone,
    /// the ban kept.
    #[tokio::test(start_paused = true)]
    async fn a_rollouts_new_definition_wins_once_the_old_definers_are_gone() {
        let mut harness = Harness::start(Vec::new(), &[]);
        let (config, first) = defined(&web_labels("80"), "old-1");
        harness.define(config.clone(), first).await.unwrap();
        let (_, second) = defined(&web_labels("80"), "old-2");
        harness.define(config, second).await.unwrap();
        let ban = harness
            .events
            .send(JailEvent::Control(crate::messages::ControlCall {
                request: crate::control::Request::Ban {
                    jail: "web".into(),
                    ip: HOST.into(),
                    duration: None,
                },
                reply: oneshot::channel().0,
            }))
            .await;
        assert!(ban.is_ok());
        let (changed, new_pod) = defined(&web_labels("8080"), "new-1");
        let gone = |who: &str| JailEvent::DefinerGone {
            defined_by: format!("container {who}"),
        };
        harness.events.send(gone("old-1")).await.unwrap();
        let refused = harness
            .define(changed.clone(), new_pod.clone())
            .await
            .unwrap_err();
        assert!(refused.contains("a different jail"), "{refused}");
        harness.events.send(gone("old-2")).await.unwrap();
        harness.firewall_changes();
        harness.define(changed, new_pod.clone()).await.unwrap();
        assert!(
            matches!(&harness.firewall_changes()[..], [Enforcement::Define(rule)] if rule.name == "web"),
            "the new definition is laid out"
        );
        harness.events.send(gone("new-1")).await.unwrap();
        let (jails, definitions) = harness.stop().await;
        assert_eq!(jails[0].jail.banned().count(), 1, "the ban stays");
        assert_eq!(
            jails[0].definer,
            Definer::Labels {
                container: "container new-1".into(),
                presence: Presence::Gone,
                sharing: BTreeSet::new(),
            }
        );
        assert_eq!(
            jails[0].definer.describe().unwrap(),
            "labels of container new-1 (gone; the bans stay until they end)"
        );
        assert_eq!(definitions, vec![new_pod]);
    }

    #[tokio::test(start_paused = true)]
    async fn held_bans_go_to_the_jail_defined_again() {
        // A ban stored by a logjail that kept no definitions: nothing to restore it into.
        let mut harness = Harness::start(Vec::new(), &[stored_ban("web", start_time())]);
        let (config, definition) = defined(&web_labels("80"), "web");
        harness.define(config, definition).await.unwrap();
        let changes = harness.firewall_changes();
        assert!(
            matches!(&changes[0], Enforcement::Define(rule) if rule.name == "web"),
            "{changes:?}"
        );
        assert!(
            matches!(&changes[1..], [Enforcement::Ban { jail, host, end }]
                if jail == "web" && host.to_string() == HOST
                    && *end == Some(start_time() + chrono::Duration::hours(1))),
            "{changes:?}"
        );
        let (jails, _) = harness.stop().await;
        assert_eq!(jails[0].jail.banned().next().unwrap().ban_count, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_that_adds_the_jail_lays_it_out_before_its_held_bans() {
        let mut harness = Harness::start(Vec::new(), &[stored_ban("web", start_time())]);
        let (config, _) = defined(&web_labels("80"), "web");
        let (reply, answer) = oneshot::channel();
        harness
            .events
            .send(JailEvent::Reconfigure {
                jails: vec![config],
                own_addresses: Vec::new(),
                reply,
            })
            .await
            .unwrap();
        let summary = answer.await.unwrap().unwrap();
        assert_eq!(summary.added, ["web"]);
        let changes = harness.firewall_changes();
        assert!(
            matches!(&changes[..], [Enforcement::Define(rule), Enforcement::Ban { jail, .. }]
                if rule.name == "web" && jail == "web"),
            "{changes:?}"
        );
        let (jails, _) = harness.stop().await;
        assert_eq!(jails[0].definer, Definer::Config);
        assert_eq!(jails[0].jail.banned().count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_jail_nobody_defines_goes_when_its_bans_end() {
        let mut harness =
            Harness::start(vec![restored_web("80")], &[stored_ban("web", start_time())]);
        // Still banned: the jail stays through purges.
        tokio::time::advance(Duration::from_secs(30 * 60)).await;
        tokio::task::yield_now().await;
        assert!(harness.firewall_changes().is_empty());
        // The ban ends after an hour; a purge (every minute) after that retires the jail.
        for _ in 0..32 {
            tokio::time::advance(Duration::from_secs(60)).await;
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
        }
        let changes = harness.firewall_changes();
        assert!(
            matches!(&changes[..], [Enforcement::Unban { jail, .. }, Enforcement::Remove { jail: removed }]
                if jail == "web" && removed == "web"),
            "{changes:?}"
        );
        let (jails, definitions) = harness.stop().await;
        assert!(jails.is_empty());
        assert!(definitions.is_empty());
    }
}
