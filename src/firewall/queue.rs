//! The enforcer task: carries the jails' ban changes to the firewall thread in the order they
//! were decided, and checks the firewall layout regularly so that a flushed `DOCKER-USER` or a
//! restarted Docker gets its jumps back within seconds.
//!
//! The jail task hands changes over a queue and goes on: a slow iptables call never holds up
//! counting. A failed change is logged and counted (`logjail_firewall_errors_total`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::firewall::{BanOutcome, FirewallHandle};

use crate::messages::Enforcement;

/// How often the layout is checked and repaired.
pub const LAYOUT_CHECK_EVERY: Duration = Duration::from_secs(5);

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
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { break };
                apply(&firewall, change, &errors).await;
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
