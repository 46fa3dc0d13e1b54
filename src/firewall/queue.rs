//! The enforcer task: carries the jails' ban changes to the firewall thread in the order they
//! were decided, and checks the firewall layout regularly so that a flushed `DOCKER-USER` or a
//! restarted Docker gets its jumps back within seconds.
//!
//! The jail task hands changes over a queue and goes on: a slow iptables call never holds up
//! counting. A failed change is logged and counted (`logjail_firewall_errors_total`).
//!
//! Bans already queued one behind the other (a burst from a log, a thousand from another fleet
//! member) go to the firewall as one batch, one `ipset restore`, instead of one call each; the
//! order relative to unbans, layout changes and barriers is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::firewall::{BanOutcome, BanRequest, FirewallHandle};

use crate::messages::Enforcement;

/// How often the layout is checked and repaired.
pub const LAYOUT_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Most bans handed to the firewall in one batch: one restore stays short, so an unban
/// queued behind a long burst waits little.
const BAN_BATCH: usize = 10_000;

/// Runs until the queue closes (the jail task stopped) or `stop`, applying changes in order.
pub async fn run(
    firewall: FirewallHandle,
    mut changes: mpsc::Receiver<Enforcement>,
    docker_connected: Arc<tokio::sync::Notify>,
    errors: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut check = tokio::time::interval(LAYOUT_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; start has just laid everything out.
    check.tick().await;
    // A change taken from the queue while gathering a batch, applied next.
    let mut held: Option<Enforcement> = None;
    loop {
        if let Some(change) = held.take() {
            held = apply_gathering(&firewall, change, &mut changes, &errors).await;
            continue;
        }
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { break };
                held = apply_gathering(&firewall, change, &mut changes, &errors).await;
            }
            _ = check.tick() => check_layout(&firewall, &errors).await,
            () = docker_connected.notified() => check_layout(&firewall, &errors).await,
            () = stop.cancelled() => break,
        }
    }
}

async fn check_layout(firewall: &FirewallHandle, errors: &AtomicU64) {
    match firewall.ensure_layout().await {
        Ok(report) if !report.is_clean() => tracing::warn!(
            repaired = ?report.repaired,
            removed = ?report.removed,
            "firewall layout repaired (flushed by another tool, or Docker restarted)"
        ),
        Ok(_) => {}
        Err(error) => {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "firewall layout check failed");
        }
    }
}

/// Applies `change`; a ban takes the bans queued right behind it along. Returns the first
/// change that is not a ban, taken from the queue while gathering, for the caller to apply.
async fn apply_gathering(
    firewall: &FirewallHandle,
    change: Enforcement,
    changes: &mut mpsc::Receiver<Enforcement>,
    errors: &AtomicU64,
) -> Option<Enforcement> {
    let Enforcement::Ban { jail, host, end } = change else {
        apply(firewall, change, errors).await;
        return None;
    };
    let mut batch = vec![BanRequest { jail, host, end }];
    let mut next = None;
    while batch.len() < BAN_BATCH {
        match changes.try_recv() {
            Ok(Enforcement::Ban { jail, host, end }) => batch.push(BanRequest { jail, host, end }),
            Ok(other) => {
                next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    if batch.len() == 1 {
        let BanRequest { jail, host, end } = batch.remove(0);
        apply(firewall, Enforcement::Ban { jail, host, end }, errors).await;
    } else {
        ban_batch(firewall, batch, errors).await;
    }
    next
}

async fn ban_batch(firewall: &FirewallHandle, batch: Vec<BanRequest>, errors: &AtomicU64) {
    let count = batch.len();
    match firewall.ban_many(batch).await {
        Ok(outcome) => {
            for (request, reason) in &outcome.refused {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(jail = %request.jail, host = %request.host, %reason, "firewall refused a ban");
            }
            if outcome.ended > 0 {
                tracing::debug!(
                    ended = outcome.ended,
                    "bans ended before they reached the firewall"
                );
            }
        }
        Err(error) => {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(bans = count, %error, "firewall batch of bans failed");
        }
    }
}

async fn apply(firewall: &FirewallHandle, change: Enforcement, errors: &AtomicU64) {
    let result = match &change {
        Enforcement::Ban { jail, host, end } => {
            firewall.ban(jail, *host, *end).await.map(|outcome| {
                if outcome == BanOutcome::AlreadyEnded {
                    tracing::debug!(%jail, %host, "ban ended before it reached the firewall");
                }
            })
        }
        Enforcement::Unban { jail, host } => firewall.unban(jail, *host).await.map(|_| ()),
        Enforcement::Define(rule) => firewall.define_jail(rule.clone()).await,
        Enforcement::Remove { jail } => firewall.remove_jail(jail).await.map(|_| ()),
        Enforcement::Barrier(_) => Ok(()),
    };
    if let Err(error) = result {
        errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(?change, %error, "firewall change failed");
    }
    if let Enforcement::Barrier(applied) = change {
        let _ = applied.send(());
    }
}
