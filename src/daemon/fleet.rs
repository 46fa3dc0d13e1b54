//! The fleet stage: reads the fleet's secrets, loads the other members' bans into the jails
//! before the firewall is laid out (so that a new member's firewall gets them in one batch),
//! then runs the fleet task once the jail task is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::fleet::UnbanRecord;
use crate::fleet::task::{FleetError, FleetHealth, FleetSettings, FleetTask, HeldChanges};
use crate::jail::task::{FleetLink, JailRuntime};
use crate::messages::{FleetChange, FleetOutbound, JailEvent, StoreRequest};
use crate::store::BanRecord;
use crate::store::task::StoreHandle;

/// How long the start waits for Redis before going on degraded: a member must start (and
/// protect its host) when Redis is down.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);
/// Shared changes in flight from the jails to the fleet task: a burst of 10,000 bans fits.
const FLEET_QUEUE: usize = 16_384;

/// The stage between its two steps: the other members' bans loaded, the task not started.
pub(super) struct FleetStage {
    settings: FleetSettings,
    pub(super) health: Arc<FleetHealth>,
    pub(super) link: FleetLink,
    inbound: mpsc::Receiver<FleetOutbound>,
    /// The loaded bans, for the store once the firewall has them (see [`FleetStage::store`]).
    loaded: Vec<BanRecord>,
    /// Unbans an earlier run made that Redis never took: sent by the task's first sync.
    unsent: Vec<UnbanRecord>,
}

impl FleetStage {
    /// Reads the secrets (a missing one stops the start: the user asked for a fleet) and
    /// applies every ban in force in Redis to the jails that share it, except those this
    /// member lifted in an earlier run whose unbans (`unsent`, from the store) Redis never
    /// took.
    pub(super) async fn load(
        config: &Config,
        runtimes: &mut [JailRuntime],
        unsent: Vec<UnbanRecord>,
        now: DateTime<Utc>,
    ) -> Result<Option<FleetStage>, FleetError> {
        let Some(fleet) = &config.fleet else {
            return Ok(None);
        };
        let settings = FleetSettings::from_config(fleet)?;
        let health = Arc::new(FleetHealth::default());
        let (queue, inbound) = mpsc::channel(FLEET_QUEUE);
        let link = FleetLink {
            member: Arc::from(fleet.name.as_str()),
            share_default: fleet.share,
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            health: health.clone(),
        };
        // Each page is applied as it arrives, while the next ones are fetched and checked.
        // A pull cut short leaves the bans applied so far: valid bans, and the task's first
        // sync brings the rest.
        // The jails remember those lifts as they do the ones made in this run: the bans are
        // not taken back, from this load or later from the fleet.
        for unban in &unsent {
            if let Some(runtime) = shared_jail(runtimes, &link, &unban.jail)
                && let Some(at) = DateTime::from_timestamp_millis(unban.at_ms)
            {
                let end = unban.end_ms.and_then(DateTime::from_timestamp_millis);
                runtime.fleet_lifted.note(unban.ip, at, end);
            }
        }
        let mut loaded = Vec::new();
        let outcome = tokio::time::timeout(
            CATCH_UP_PATIENCE,
            crate::fleet::task::catch_up(&settings, &health, |changes| {
                loaded.extend(apply(runtimes, &link, changes, now));
            }),
        )
        .await;
        match outcome {
            Ok(Ok(())) => {
                tracing::info!(member = %fleet.name, loaded = loaded.len(), "fleet: bans loaded from Redis");
            }
            Ok(Err(error)) => {
                degraded(
                    &health,
                    &error.to_string(),
                    error.is_refusal(),
                    loaded.len(),
                );
            }
            Err(_) => degraded(&health, "Redis did not answer in time", false, loaded.len()),
        }
        Ok(Some(FleetStage {
            settings,
            health,
            link,
            inbound,
            loaded,
            unsent,
        }))
    }

    /// Hands the loaded bans to the store, in one message. Called once the firewall holds
    /// them and before the jail task starts: writing 100,000 rows would otherwise take the
    /// CPU from the firewall's start, and any later change to these bans is queued after.
    pub(super) async fn store(&mut self, store: &StoreHandle) {
        let loaded = std::mem::take(&mut self.loaded);
        if !loaded.is_empty() {
            store.send(StoreRequest::SaveBans(loaded)).await;
        }
    }

    /// Starts the fleet task, with this member's shared bans in force and its unsent unbans
    /// to push to Redis.
    pub(super) fn start(
        self,
        runtimes_bans: Vec<crate::fleet::BanRecord>,
        jails: mpsc::Sender<JailEvent>,
        store: StoreHandle,
    ) -> FleetTask {
        FleetTask::start(
            self.settings,
            self.health,
            HeldChanges {
                local: runtimes_bans,
                unsent: self.unsent,
            },
            self.inbound,
            jails,
            store,
        )
    }
}

fn degraded(health: &FleetHealth, why: &str, refused: bool, loaded: usize) {
    health.degraded.store(true, Ordering::Relaxed);
    health.errors.fetch_add(1, Ordering::Relaxed);
    if refused {
        tracing::warn!(error = %why, "fleet: Redis refused this member at start (check fleet.username, the password and the user's ACL); degraded, local bans go on and the member keeps retrying");
    } else {
        tracing::warn!(error = %why, loaded, "fleet: Redis unreachable at start; degraded, local bans go on and the fleet syncs when it returns");
    }
}

/// The jail named `jail`, when it runs here and shares.
fn shared_jail<'a>(
    runtimes: &'a mut [JailRuntime],
    link: &FleetLink,
    jail: &str,
) -> Option<&'a mut JailRuntime> {
    runtimes
        .iter_mut()
        .find(|r| *r.name == *jail && link.shares(&r.config))
}

/// Puts the other members' bans into the jails that share them, but not those lifted here
/// after they began; returns what to store.
fn apply(
    runtimes: &mut [JailRuntime],
    link: &FleetLink,
    changes: Vec<FleetChange>,
    now: DateTime<Utc>,
) -> Vec<BanRecord> {
    let mut records = Vec::new();
    for change in changes {
        let FleetChange::Ban {
            member,
            jail,
            host,
            start,
            end,
            ban_count,
        } = change
        else {
            continue;
        };
        let Some(runtime) = shared_jail(runtimes, link, &jail) else {
            continue;
        };
        if runtime.fleet_lifted.lifted_since(host, start) {
            tracing::info!(%jail, %host, %member, "fleet ban lifted here while Redis was away; not taken back");
            continue;
        }
        match runtime.jail.restore_ban(host, start, end, ban_count, now) {
            Ok(()) => {
                runtime.fleet_origins.insert(host, member.clone());
                records.push(BanRecord::from_fleet(
                    jail, host, start, end, ban_count, member,
                ));
            }
            Err(refused) => {
                tracing::info!(%jail, %host, %member, %refused, "fleet ban not applied here");
            }
        }
    }
    records
}

/// This member's own shared bans in force (from its store), for the fleet task to push.
pub(super) fn local_shared(
    runtimes: &[JailRuntime],
    link: &FleetLink,
) -> Vec<crate::fleet::BanRecord> {
    runtimes
        .iter()
        .filter(|r| link.shares(&r.config))
        .flat_map(|r| {
            r.jail
                .banned()
                .filter(|ban| !r.fleet_origins.contains_key(&ban.host))
                .map(|ban| crate::fleet::BanRecord {
                    origin: link.member.to_string(),
                    jail: r.name.to_string(),
                    ip: ban.host,
                    start_ms: ban.start.timestamp_millis(),
                    end_ms: ban.end.map(|end| end.timestamp_millis()),
                    count: ban.ban_count,
                })
        })
        .collect()
}
