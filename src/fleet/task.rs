//! The fleet task: owns the Redis connections, publishes this member's shared bans and unbans,
//! and hands the other members' to the jail task; degraded (local bans go on) while Redis is
//! unreachable, and syncing both ways when it returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use redis::IntoConnectionInfo;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::decode_message;
use super::pull::{Pulled, Scope, foreign_ban, foreign_unban, pull};
use super::writes::{UnbanSent, add_ban, add_load_scripts, add_restore, add_unban};
use super::{BanRecord, FeedMessage, Keys, RecordError, Signer, UnbanRecord};
use crate::config::{FleetConfig, FleetTls, SecretSource};
use crate::messages::{FailureShare, FleetChange, FleetOutbound, JailEvent, StoreRequest};
use crate::store::task::StoreHandle;

/// Why the fleet cannot start (its secrets) or a Redis round failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// `password_file`, `hmac_key_file` or a `tls` file could not be read.
    #[error("fleet: cannot read {what} {path}: {source}")]
    Secret {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// `password_env` names a variable that is not set.
    #[error("fleet: the environment variable {0} (fleet.password_env) is not set")]
    MissingEnv(String),
    /// The HMAC key is not usable.
    #[error("fleet: hmac_key_file: {0}")]
    Key(RecordError),
    /// Redis refused or the connection failed.
    #[error("fleet: redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl FleetError {
    /// Whether Redis answered but refused this member (credentials or ACL), which retrying
    /// alone does not mend: said apart from an unreachable server in the log.
    pub fn is_refusal(&self) -> bool {
        match self {
            FleetError::Redis(error) => matches!(
                error.kind(),
                redis::ErrorKind::AuthenticationFailed
                    | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
            ),
            _ => false,
        }
    }
}

/// What the task needs, secrets read.
#[derive(Clone)]
pub struct FleetSettings {
    /// The member's id.
    pub name: String,
    /// The server, with the ACL user and password set from their sources.
    pub(super) client: redis::Client,
    /// Signs what is published, checks what is read.
    pub(super) signer: Signer,
    /// Key and channel names.
    pub(super) keys: Keys,
}

impl std::fmt::Debug for FleetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the password: never printed.
        f.debug_struct("FleetSettings")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn read_secret(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, FleetError> {
    let mut bytes = std::fs::read(path).map_err(|source| FleetError::Secret {
        what,
        path: path.display().to_string(),
        source,
    })?;
    // Files written by `echo` end with a newline that is no part of the secret.
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

/// The CA and client certificate files, read.
fn tls_certificates(tls: &FleetTls) -> Result<redis::TlsCertificates, FleetError> {
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| FleetError::Secret {
            what,
            path: path.display().to_string(),
            source,
        })
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read("tls.ca_file", path)?),
        None => None,
    };
    let client_tls = match &tls.client {
        Some(client) => Some(redis::ClientTlsConfig {
            client_cert: read("tls.cert_file", &client.cert_file)?,
            client_key: read("tls.key_file", &client.key_file)?,
        }),
        None => None,
    };
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

impl FleetSettings {
    /// Reads the password and the HMAC key from where the configuration says.
    pub fn from_config(config: &FleetConfig) -> Result<FleetSettings, FleetError> {
        let mut info = config.redis.as_str().into_connection_info()?;
        let mut redis = info.redis_settings().clone();
        if let Some(user) = &config.username {
            redis = redis.set_username(user);
        }
        match &config.password {
            Some(SecretSource::File(path)) => {
                let password = read_secret("password_file", path)?;
                redis = redis.set_password(String::from_utf8_lossy(&password));
            }
            Some(SecretSource::Env(variable)) => {
                let password = std::env::var(variable)
                    .map_err(|_| FleetError::MissingEnv(variable.clone()))?;
                redis = redis.set_password(password);
            }
            None => {}
        }
        info = info.set_redis_settings(redis);
        let client = match &config.tls {
            Some(tls) => redis::Client::build_with_tls(info, tls_certificates(tls)?)?,
            // `rediss://` without `tls:` checks the server against the Mozilla roots built in
            // (webpki-roots, as the webhooks do): the image has no system store to read.
            None => redis::Client::open(info)?,
        };
        let signer = match &config.hmac_key_file {
            Some(path) => {
                Signer::with_key(&read_secret("hmac_key_file", path)?).map_err(FleetError::Key)?
            }
            None => Signer::unsigned(),
        };
        Ok(FleetSettings {
            name: config.name.clone(),
            client,
            signer,
            keys: Keys::default(),
        })
    }
}

/// The fleet's health, shared with `status` and `/metrics`; written only by the task.
#[derive(Debug, Default)]
pub struct FleetHealth {
    /// Whether Redis is unreachable now (local bans go on).
    pub degraded: AtomicBool,
    /// Redis failures and refused records since start.
    pub errors: AtomicU64,
    /// When the last full sync with Redis finished, ms since the epoch (0: never).
    pub last_sync_ms: AtomicI64,
    /// Delay between a foreign ban's start and its arrival here, of the last one, in ms.
    pub lag_ms: AtomicI64,
    /// Members whose heartbeat was seen at the last look.
    pub members: std::sync::Mutex<Vec<String>>,
}

impl FleetHealth {
    /// What `status` shows, for `member`.
    pub fn status(&self, member: &str) -> crate::control::protocol::FleetStatus {
        let last_sync = self.last_sync_ms.load(Ordering::Relaxed);
        crate::control::protocol::FleetStatus {
            member: member.to_string(),
            degraded: self.degraded.load(Ordering::Relaxed),
            members: self.members.lock().map(|m| m.clone()).unwrap_or_default(),
            last_sync: (last_sync > 0)
                .then(|| DateTime::from_timestamp_millis(last_sync))
                .flatten()
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Hands every ban of the fleet in force that another member made to `on_bans`, a page at a
/// time, for the jails before any source starts. Fails (and the daemon starts degraded) when
/// Redis does not answer. The recorded unbans wait for the task's first sync: at start they
/// could only lift bans this member's store restored, which that sync lifts a moment later.
pub async fn catch_up(
    settings: &FleetSettings,
    health: &FleetHealth,
    on_bans: impl FnMut(Vec<FleetChange>),
) -> Result<(), FleetError> {
    pull(settings, health, Scope::Bans, on_bans).await.map(drop)
}

/// Refused records are logged once per member, then only counted: a member with the wrong
/// key would otherwise fill the log with one line per ban.
#[derive(Default)]
pub(super) struct Refusals {
    warned: std::collections::HashSet<String>,
}

impl Refusals {
    pub(super) fn note(&mut self, health: &FleetHealth, member: &str, error: &RecordError) {
        health.errors.fetch_add(1, Ordering::Relaxed);
        if self.warned.insert(member.to_string()) {
            tracing::warn!(member = %member, %error, "fleet: record refused");
        }
    }
}

/// The member a message claims to come from, read without trusting it, to name in warnings.
fn claimed_origin(text: &str) -> String {
    text.split_once(' ')
        .and_then(|(_, json)| serde_json::from_str::<serde_json::Value>(json).ok())
        .and_then(|v| v.get("origin").and_then(|o| o.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// Most changes handed to the jail task in one message: a burst from another member crosses
/// as a few batches, not thousands of messages, and a batch stays short for the jail task.
const CHANGE_BATCH: usize = 1000;
/// Most outgoing changes sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 1000;
/// Failures kept for the fleet's counts while Redis is away; past it the oldest are dropped
/// (each member still counts its own).
const PENDING_FAILURES: usize = 10_000;
/// Heartbeats live this long: a member not heard from for it is no longer listed.
const MEMBER_TTL: Duration = Duration::from_secs(30);
/// How often the heartbeat and the member list are refreshed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// The first wait before reconnecting, doubled at each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The running task's handle, for shutdown.
pub struct FleetTask {
    join: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

impl FleetTask {
    /// Starts the task. `local` are the shared bans this member holds now (restored from its
    /// store), pushed to Redis at every (re)connection so that nothing made while Redis was
    /// away is lost; `unsent` the unbans an earlier run could not send (from the store, where
    /// the task keeps those it holds); `inbound` is what the jails share from now on.
    pub fn start(
        settings: FleetSettings,
        health: Arc<FleetHealth>,
        held: HeldChanges,
        inbound: mpsc::Receiver<FleetOutbound>,
        jails: mpsc::Sender<JailEvent>,
        store: StoreHandle,
    ) -> FleetTask {
        let HeldChanges { local, unsent } = held;
        let shutdown = CancellationToken::new();
        let state = State {
            local: local
                .into_iter()
                .map(|ban| ((ban.jail.clone(), ban.ip), ban))
                .collect(),
            pending_failures: std::collections::VecDeque::new(),
            refusals: Refusals::default(),
            pending_unbans: unsent
                .into_iter()
                .map(|unban| ((unban.jail.clone(), unban.ip), unban))
                .collect(),
            pending_changed: false,
            in_flight: Vec::new(),
        };
        let join = tokio::spawn(run(
            settings,
            health.clone(),
            state,
            Channels {
                inbound,
                jails,
                store,
            },
            shutdown.clone(),
        ));
        FleetTask { join, shutdown }
    }

    /// Stops the task (what is queued is published if Redis answers).
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.join.await;
    }
}

/// What a member holds for the fleet at start, from its store.
#[derive(Debug, Default)]
pub struct HeldChanges {
    /// Its own shared bans in force.
    pub local: Vec<BanRecord>,
    /// Unbans it made that Redis never took.
    pub unsent: Vec<UnbanRecord>,
}

/// Whom the task talks to.
struct Channels {
    /// The jails' shared changes.
    inbound: mpsc::Receiver<FleetOutbound>,
    /// The other members' changes, for the jails.
    jails: mpsc::Sender<JailEvent>,
    /// Where the unbans waiting for Redis are kept across restarts.
    store: StoreHandle,
}

/// What the task owns between connections.
struct State {
    /// This member's shared bans in force, by (jail, address).
    local: HashMap<(String, IpAddr), BanRecord>,
    /// Failures for the fleet's counts not yet added (Redis away), oldest first, bounded.
    pending_failures: std::collections::VecDeque<FailureShare>,
    refusals: Refusals,
    /// Unbans made (here, from the CLI or an expiry) that Redis has not taken: sent at the
    /// next connection, or the other members would keep a ban this member lifted.
    pending_unbans: HashMap<(String, IpAddr), UnbanRecord>,
    /// Whether `pending_unbans` changed since the store was last told.
    pending_changed: bool,
    /// Unbans queued on the connection and not yet acknowledged: pending again if it fails.
    in_flight: Vec<UnbanRecord>,
}

async fn run(
    settings: FleetSettings,
    health: Arc<FleetHealth>,
    mut state: State,
    mut channels: Channels,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    'connections: loop {
        let outcome = session(&settings, &health, &mut state, &mut channels, &shutdown).await;
        let Err(error) = outcome else { break };
        state.requeue_in_flight();
        health.errors.fetch_add(1, Ordering::Relaxed);
        if shutdown.is_cancelled() {
            break;
        }
        if !health.degraded.swap(true, Ordering::Relaxed) {
            // A connection that worked and then broke: retry soon, as after a start.
            backoff = FIRST_BACKOFF;
            if error.is_refusal() {
                tracing::warn!(%error, "fleet: Redis refused this member (check fleet.username, the password and the user's ACL); degraded, local bans go on");
            } else {
                tracing::warn!(%error, "fleet: Redis unreachable; degraded, local bans go on");
            }
        }
        state.save_pending(&channels.store).await;
        // While away, keep taking the jails' changes so they never wait on Redis.
        let until = tokio::time::sleep(backoff);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break 'connections,
                () = &mut until => break,
                change = channels.inbound.recv() => match change {
                    Some(change) => {
                        state.hold(change);
                        state.save_pending(&channels.store).await;
                    }
                    None => break 'connections,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    // Stopping: what the jails queued and Redis did not take waits in the store.
    state.hold_queued(&mut channels.inbound);
    state.save_pending(&channels.store).await;
}

impl State {
    fn remember(&mut self, change: FleetOutbound) {
        match change {
            FleetOutbound::Ban(ban) => {
                // Banned again: an earlier unban of the address is no longer to be sent.
                let key = (ban.jail.clone(), ban.ip);
                if self.pending_unbans.remove(&key).is_some() {
                    self.pending_changed = true;
                }
                self.local.insert(key, ban);
            }
            FleetOutbound::Unban(unban) => {
                self.local.remove(&(unban.jail.clone(), unban.ip));
            }
            FleetOutbound::Failure(failure) => {
                // The oldest go first: they are the nearest to leaving their window anyway.
                if self.pending_failures.len() >= PENDING_FAILURES {
                    self.pending_failures.pop_front();
                }
                self.pending_failures.push_back(failure);
            }
        }
    }

    /// Takes a change while Redis is away: bans wait in `local`, unbans in `pending_unbans`.
    fn hold(&mut self, change: FleetOutbound) {
        if let FleetOutbound::Unban(unban) = &change {
            self.pending_unbans
                .insert((unban.jail.clone(), unban.ip), unban.clone());
            self.pending_changed = true;
        }
        self.remember(change);
    }

    /// The unbans waiting for Redis that still have something to lift at `now_ms`: not those
    /// whose ban would have ended anyway (kept by a run long ago, say).
    fn unbans_to_send(&self, now_ms: i64) -> impl Iterator<Item = &UnbanRecord> {
        self.pending_unbans
            .values()
            .filter(move |unban| unban.end_ms.is_none_or(|end_ms| end_ms > now_ms))
    }

    /// Holds what the jails queued and the task will not send (it is stopping).
    fn hold_queued(&mut self, inbound: &mut mpsc::Receiver<FleetOutbound>) {
        while let Ok(change) = inbound.try_recv() {
            self.hold(change);
        }
    }

    /// Tells the store the unbans waiting for Redis, when they changed.
    async fn save_pending(&mut self, store: &StoreHandle) {
        if std::mem::take(&mut self.pending_changed) {
            let unbans = self.pending_unbans.values().cloned().collect();
            store.send(StoreRequest::ReplaceFleetUnbans(unbans)).await;
        }
    }

    /// The connection acknowledged what was queued on it.
    fn sent(&mut self) {
        self.in_flight.clear();
    }

    /// The connection failed with unbans queued on it: they are sent at the next one, unless
    /// this member banned the address again since.
    fn requeue_in_flight(&mut self) {
        for unban in std::mem::take(&mut self.in_flight) {
            let key = (unban.jail.clone(), unban.ip);
            if self
                .local
                .get(&key)
                .is_none_or(|ban| ban.start_ms <= unban.at_ms)
            {
                self.pending_unbans.entry(key).or_insert(unban);
                self.pending_changed = true;
            }
        }
    }
}

/// Publishes what the jails queued before they stopped; failures no one will wait for the
/// count of are left.
async fn publish_queued(
    settings: &FleetSettings,
    state: &mut State,
    connection: &mut MultiplexedConnection,
    inbound: &mut mpsc::Receiver<FleetOutbound>,
) -> Result<(), FleetError> {
    while let Ok(change) = inbound.try_recv() {
        if !matches!(change, FleetOutbound::Failure(_)) {
            publish(settings, state, connection, change).await?;
        }
    }
    Ok(())
}

/// One connection's life: sync both ways, then publish and listen until an error or shutdown
/// (`Ok`).
async fn session(
    settings: &FleetSettings,
    health: &FleetHealth,
    state: &mut State,
    channels: &mut Channels,
    shutdown: &CancellationToken,
) -> Result<(), FleetError> {
    let Channels {
        inbound,
        jails,
        store,
    } = channels;
    let mut connection = settings.client.get_multiplexed_async_connection().await?;
    // The scripts this connection may run, in Redis's cache (empty after a restart).
    let mut load = redis::pipe();
    add_load_scripts(&mut load);
    load.query_async::<()>(&mut connection).await?;
    let mut pubsub = settings.client.get_async_pubsub().await?;
    // Subscribed before the pull, so that nothing published in between is missed.
    pubsub.subscribe(settings.keys.feed()).await?;
    let mut feed = pubsub.into_on_message();

    let mut pulled = Vec::new();
    let Pulled {
        in_redis,
        unbans: recorded,
    } = tokio::select! {
        outcome = pull(settings, health, Scope::Everything, |bans| pulled.extend(bans)) => outcome?,
        // Stopping mid-sync: what the jails queued is still published; the rest of the sync
        // is the next start's.
        () = shutdown.cancelled() => {
            return publish_queued(settings, state, &mut connection, inbound).await;
        }
    };
    pulled.extend(recorded.iter().cloned().filter_map(foreign_unban));
    let now_ms = Utc::now().timestamp_millis();
    state.local.retain(|_, ban| ban.remaining(now_ms).is_some());
    // An unban recorded by another member is not applied to a ban this member made after
    // it: that ban is pushed below and is the newer word.
    let superseded: std::collections::HashSet<(String, IpAddr)> = recorded
        .iter()
        .filter(|unban| {
            state
                .local
                .get(&(unban.jail.clone(), unban.ip))
                .is_some_and(|ban| ban.start_ms > unban.at_ms)
        })
        .map(|unban| (unban.jail.clone(), unban.ip))
        .collect();
    pulled.retain(|change| match change {
        FleetChange::Unban { jail, host, .. } => !superseded.contains(&(jail.clone(), *host)),
        FleetChange::Ban { .. } => true,
    });
    // This member's own bans that another member lifted while this one was away: not pushed
    // back (Redis lacks their key because of the unban, not because it lost it).
    for unban in &recorded {
        let key = (unban.jail.clone(), unban.ip);
        if !superseded.contains(&key) {
            state.local.remove(&key);
        }
    }
    // This member's bans that Redis lacks (made while it was away, or lost with it) are
    // written and announced: members that pulled before this push learn them from the feed.
    let mut pipe = redis::pipe();
    let mut pushed = 0;
    for ban in state.local.values() {
        if in_redis.contains_key(&settings.keys.ban(&ban.jail, ban.ip)) {
            continue;
        }
        // Put back unless, by the time Redis runs it, another member holds the address or
        // lifted it after this ban began (the sync may have read Redis just before).
        add_restore(&mut pipe, &settings.keys, &settings.signer, ban, now_ms);
        pushed += 1;
    }
    // Unbans made while Redis was away, unless another member banned the address since.
    for unban in state.unbans_to_send(now_ms) {
        let newer = in_redis
            .get(&settings.keys.ban(&unban.jail, unban.ip))
            .is_some_and(|start_ms| *start_ms > unban.at_ms);
        if !newer {
            add_unban(
                &mut pipe,
                &settings.keys,
                &settings.signer,
                unban,
                UnbanSent::Late,
                now_ms,
            );
            pushed += 1;
        }
    }
    if pushed > 0 {
        pipe.query_async::<()>(&mut connection).await?;
    }
    if !state.pending_unbans.is_empty() {
        state.pending_unbans.clear();
        state.pending_changed = true;
        state.save_pending(store).await;
    }
    for changes in pulled.chunks(CHANGE_BATCH) {
        if jails
            .send(JailEvent::Fleet(changes.to_vec()))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    // Failures seen while Redis was away join the counts now (the stale ones count for
    // nothing: the window is checked against their own time).
    let pending: Vec<FailureShare> = state.pending_failures.drain(..).collect();
    for batch in pending.chunks(PUBLISH_BATCH) {
        if !count_failures(settings, health, state, &mut connection, jails, batch).await? {
            return Ok(());
        }
    }
    if health.degraded.swap(false, Ordering::Relaxed) {
        tracing::info!(pushed, "fleet: Redis back; synced");
    } else {
        tracing::info!(member = %settings.name, "fleet: connected");
    }

    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                return publish_queued(settings, state, &mut connection, inbound).await;
            }
            change = inbound.recv() => {
                let Some(change) = change else { return Ok(()) };
                // A burst is sent as one pipeline rather than one round trip per ban, and
                // its failures as one more.
                let mut pipe = redis::pipe();
                let mut queued = 0;
                let mut failures = Vec::new();
                let mut next = Some(change);
                while let Some(change) = next.take() {
                    match change {
                        FleetOutbound::Failure(failure) => failures.push(failure),
                        change => {
                            queue(&mut pipe, settings, state, change);
                            queued += 1;
                        }
                    }
                    if queued + failures.len() < PUBLISH_BATCH {
                        next = inbound.try_recv().ok();
                    }
                }
                if queued > 0 {
                    pipe.query_async::<()>(&mut connection).await?;
                    state.sent();
                }
                if !failures.is_empty()
                    && !count_failures(settings, health, state, &mut connection, jails, &failures).await?
                {
                    return Ok(());
                }
            }
            message = feed.next() => {
                let Some(message) = message else {
                    return Err(FleetError::Redis(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the change feed closed",
                    ))));
                };
                // The messages already here join this one: a burst is one batch for the jails.
                let mut changes = Vec::new();
                let mut next = Some(message);
                while let Some(message) = next.take() {
                    if let Ok(text) = message.get_payload::<String>()
                        && let Some(change) = receive(settings, health, state, &text)
                    {
                        changes.push(change);
                    }
                    if changes.len() < CHANGE_BATCH {
                        next = feed.next().now_or_never().flatten();
                    }
                }
                if !changes.is_empty() && jails.send(JailEvent::Fleet(changes)).await.is_err() {
                    return Ok(());
                }
            }
            _ = heartbeat.tick() => {
                beat(settings, health, &mut connection).await?;
            }
        }
    }
}

/// Checks one feed message; `None` for this member's own, refused or ended ones.
fn receive(
    settings: &FleetSettings,
    health: &FleetHealth,
    state: &mut State,
    text: &str,
) -> Option<FleetChange> {
    let message = match decode_message(text, &settings.signer) {
        Ok(message) => message,
        Err(error) => {
            state.refusals.note(health, &claimed_origin(text), &error);
            return None;
        }
    };
    if message.origin() == settings.name {
        return None;
    }
    let now_ms = Utc::now().timestamp_millis();
    match message {
        FeedMessage::Ban(ban) => {
            health
                .lag_ms
                .store((now_ms - ban.start_ms).max(0), Ordering::Relaxed);
            foreign_ban(ban, now_ms)
        }
        FeedMessage::Unban(unban) => {
            // Lifted by another member: not this member's to push again after a reconnect.
            state.local.remove(&(unban.jail.clone(), unban.ip));
            foreign_unban(unban)
        }
    }
}

fn queue(
    pipe: &mut redis::Pipeline,
    settings: &FleetSettings,
    state: &mut State,
    change: FleetOutbound,
) {
    let now_ms = Utc::now().timestamp_millis();
    match &change {
        FleetOutbound::Ban(ban) => {
            if ban.remaining(now_ms).is_none() {
                return;
            }
            // Banned: its failures across the fleet start again from none, as a local
            // count does (a no-op for jails that do not count fleet-wide).
            pipe.cmd("DEL")
                .arg(settings.keys.failures(&ban.jail, ban.ip))
                .ignore();
            add_ban(pipe, &settings.keys, &settings.signer, ban, now_ms);
        }
        // Counted by `count_failures`, in a pipeline of their own.
        FleetOutbound::Failure(_) => {}
        FleetOutbound::Unban(unban) => {
            add_unban(
                pipe,
                &settings.keys,
                &settings.signer,
                unban,
                UnbanSent::Live,
                now_ms,
            );
            state.in_flight.push(unban.clone());
        }
    }
    state.remember(change);
}

/// Adds failures to the fleet's counts and hands the jails the addresses that reached their
/// maxretry; `false` when the jail task is gone. On an error the failures are kept for the
/// next connection.
async fn count_failures(
    settings: &FleetSettings,
    health: &FleetHealth,
    state: &mut State,
    connection: &mut MultiplexedConnection,
    jails: &mpsc::Sender<JailEvent>,
    failures: &[FailureShare],
) -> Result<bool, FleetError> {
    let now_ms = Utc::now().timestamp_millis();
    let tally = match super::tally::add_and_count(
        connection,
        &settings.keys,
        &settings.signer,
        &settings.name,
        failures,
        now_ms,
    )
    .await
    {
        Ok(tally) => tally,
        Err(error) => {
            for failure in failures {
                state.remember(FleetOutbound::Failure(failure.clone()));
            }
            return Err(error.into());
        }
    };
    for (member, error) in &tally.refused {
        state.refusals.note(health, member, error);
    }
    if tally.reached.is_empty() {
        return Ok(true);
    }
    Ok(jails
        .send(JailEvent::FleetCounts(tally.reached))
        .await
        .is_ok())
}

async fn publish(
    settings: &FleetSettings,
    state: &mut State,
    connection: &mut MultiplexedConnection,
    change: FleetOutbound,
) -> Result<(), FleetError> {
    let mut pipe = redis::pipe();
    queue(&mut pipe, settings, state, change.clone());
    // On failure a ban stays in `local` and an unban in `in_flight` (`queue`): the push after
    // reconnecting sends either.
    pipe.query_async::<()>(connection).await?;
    state.sent();
    Ok(())
}

/// Refreshes this member's heartbeat and reads who else is there.
async fn beat(
    settings: &FleetSettings,
    health: &FleetHealth,
    connection: &mut MultiplexedConnection,
) -> Result<(), FleetError> {
    let now_ms = Utc::now().timestamp_millis();
    redis::cmd("SET")
        .arg(settings.keys.member(&settings.name))
        .arg(now_ms)
        .arg("PX")
        .arg(u64::try_from(MEMBER_TTL.as_millis()).unwrap_or(30_000))
        .query_async::<()>(connection)
        .await?;
    let mut cursor: u64 = 0;
    let mut members = Vec::new();
    let prefix = settings.keys.member("");
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(settings.keys.member_pattern())
            .arg("COUNT")
            .arg(500)
            .query_async(connection)
            .await?;
        members.extend(
            keys.iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)),
        );
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    members.sort();
    if let Ok(mut seen) = health.members.lock() {
        *seen = members;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::encode_message;

    /// An unban made now of a ban that had an hour left.
    fn unban_record(member: &str, jail: &str, host: IpAddr) -> UnbanRecord {
        let at_ms = Utc::now().timestamp_millis();
        UnbanRecord {
            origin: member.to_string(),
            jail: jail.to_string(),
            ip: host,
            at_ms,
            end_ms: Some(at_ms + 3_600_000),
        }
    }

    fn settings(name: &str, key: &[u8]) -> FleetSettings {
        FleetSettings {
            name: name.to_string(),
            // Opening a client connects to nothing.
            client: redis::Client::open("redis://127.0.0.1:1").unwrap(),
            signer: Signer::with_key(key).unwrap(),
            keys: Keys::default(),
        }
    }

    fn ban(origin: &str, end_ms: i64) -> BanRecord {
        BanRecord {
            origin: origin.to_string(),
            jail: "sshd".to_string(),
            ip: "203.0.113.7".parse().unwrap(),
            start_ms: Utc::now().timestamp_millis(),
            end_ms: Some(end_ms),
            count: 1,
        }
    }

    fn state() -> State {
        State {
            local: HashMap::new(),
            pending_failures: std::collections::VecDeque::new(),
            refusals: Refusals::default(),
            pending_unbans: HashMap::new(),
            pending_changed: false,
            in_flight: Vec::new(),
        }
    }

    #[test]
    fn own_messages_are_skipped_and_others_become_changes_with_the_same_end() {
        let a = settings("a", b"k");
        let b = settings("b", b"k");
        let health = FleetHealth::default();
        let end = Utc::now().timestamp_millis() + 60_000;
        let wire = encode_message(&FeedMessage::Ban(ban("a", end)), &a.signer);
        assert_eq!(receive(&a, &health, &mut state(), &wire), None, "no echo");
        let Some(FleetChange::Ban {
            member, end: got, ..
        }) = receive(&b, &health, &mut state(), &wire)
        else {
            panic!("B takes A's ban");
        };
        assert_eq!(member, "a");
        assert_eq!(got.map(|e| e.timestamp_millis()), Some(end));
        assert_eq!(health.errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn records_signed_with_another_key_or_ended_are_refused() {
        let b = settings("b", b"k");
        let intruder = settings("x", b"another key");
        let health = FleetHealth::default();
        let mut state = state();
        let future = Utc::now().timestamp_millis() + 60_000;
        let forged = encode_message(&FeedMessage::Ban(ban("x", future)), &intruder.signer);
        assert_eq!(receive(&b, &health, &mut state, &forged), None);
        assert_eq!(receive(&b, &health, &mut state, &forged), None);
        assert_eq!(health.errors.load(Ordering::Relaxed), 2, "each one counted");
        assert_eq!(state.refusals.warned.len(), 1, "warned once for member x");
        assert!(state.refusals.warned.contains("x"));
        let ended = encode_message(&FeedMessage::Ban(ban("a", 1)), &b.signer);
        assert_eq!(receive(&b, &health, &mut state, &ended), None);
    }

    #[test]
    fn an_unban_from_another_member_is_not_pushed_back_later() {
        let b = settings("b", b"k");
        let health = FleetHealth::default();
        let mut state = state();
        let own = ban("b", Utc::now().timestamp_millis() + 60_000);
        state.remember(FleetOutbound::Ban(own.clone()));
        assert_eq!(state.local.len(), 1);
        let unban = unban_record("c", "sshd", own.ip);
        let wire = encode_message(&FeedMessage::Unban(unban), &b.signer);
        assert!(matches!(
            receive(&b, &health, &mut state, &wire),
            Some(FleetChange::Unban { .. })
        ));
        assert!(state.local.is_empty());
    }

    #[test]
    fn an_unban_made_while_away_waits_until_the_address_is_banned_again() {
        let mut state = state();
        let own = ban("a", Utc::now().timestamp_millis() + 60_000);
        state.remember(FleetOutbound::Ban(own.clone()));
        state.hold(FleetOutbound::Unban(unban_record("a", "sshd", own.ip)));
        assert!(state.local.is_empty());
        assert_eq!(state.pending_unbans.len(), 1, "kept for the reconnection");
        assert!(std::mem::take(&mut state.pending_changed), "for the store");
        let mut again = own.clone();
        again.start_ms += 1;
        state.hold(FleetOutbound::Ban(again));
        assert!(
            state.pending_unbans.is_empty(),
            "a newer ban drops the unban"
        );
        assert!(state.pending_changed, "the store forgets it too");
    }

    #[test]
    fn an_unban_kept_past_the_end_of_its_ban_is_not_sent() {
        let mut state = state();
        let host: IpAddr = "203.0.113.7".parse().unwrap();
        let ended = unban_record("a", "sshd", host);
        let endless = UnbanRecord {
            end_ms: None,
            ..unban_record("a", "web", host)
        };
        state.hold(FleetOutbound::Unban(ended.clone()));
        state.hold(FleetOutbound::Unban(endless.clone()));
        let now = ended.at_ms + 60_000;
        let mut sent: Vec<_> = state.unbans_to_send(now).map(|u| u.jail.clone()).collect();
        sent.sort();
        assert_eq!(sent, ["sshd", "web"], "within the hour both are sent");
        let later = ended.at_ms + 3_600_001;
        let sent: Vec<_> = state.unbans_to_send(later).collect();
        assert_eq!(
            sent,
            vec![&endless],
            "the ended one has nothing left to lift"
        );
    }

    #[test]
    fn unbans_on_a_failed_connection_are_sent_again_unless_acknowledged_or_superseded() {
        let a = settings("a", b"k");
        let mut state = state();
        let host: IpAddr = "203.0.113.7".parse().unwrap();
        let mut pipe = redis::pipe();
        queue(
            &mut pipe,
            &a,
            &mut state,
            FleetOutbound::Unban(unban_record("a", "sshd", host)),
        );
        state.sent();
        state.requeue_in_flight();
        assert!(state.pending_unbans.is_empty(), "acknowledged: not resent");

        queue(
            &mut pipe,
            &a,
            &mut state,
            FleetOutbound::Unban(unban_record("a", "sshd", host)),
        );
        state.requeue_in_flight();
        assert_eq!(state.pending_unbans.len(), 1, "lost with the connection");

        let mut state = self::state();
        queue(
            &mut pipe,
            &a,
            &mut state,
            FleetOutbound::Unban(unban_record("a", "sshd", host)),
        );
        let mut newer = ban("a", Utc::now().timestamp_millis() + 60_000);
        newer.start_ms = Utc::now().timestamp_millis() + 1_000;
        state.remember(FleetOutbound::Ban(newer));
        state.requeue_in_flight();
        assert!(state.pending_unbans.is_empty(), "banned again since");
    }
}
