//! The front of the daemon: the control socket and the metrics endpoint, wired to the jail
//! task and the matcher. Reloads go to the daemon itself, everything else to the jail task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::action::NotifierStats;
use crate::config::Config;
use crate::control::Request;
use crate::messages::{ControlCall, JailEvent, MatcherControl};
use crate::metrics::{ActionMetrics, Snapshot, SnapshotRequest};

use super::DaemonError;

/// Reload requests waiting for the daemon.
const RELOAD_QUEUE: usize = 4;
/// Control requests waiting to be forwarded.
const CONTROL_QUEUE: usize = 64;
/// Scrapes waiting for their figures.
const SCRAPE_QUEUE: usize = 16;

/// Who the front talks to.
pub(super) struct Wiring {
    pub jails: mpsc::Sender<JailEvent>,
    pub matcher: mpsc::Sender<MatcherControl>,
    pub actions: NotifierStats,
    pub firewall_errors: Arc<AtomicU64>,
    /// The fleet's health and the jails' dropped shared changes, when this member shares.
    pub fleet: Option<crate::jail::task::FleetLink>,
}

/// The running control socket and metrics endpoint.
pub(super) struct Front {
    stop: CancellationToken,
    control: JoinHandle<()>,
    metrics: Option<JoinHandle<()>>,
    /// `reload` requests, answered by the daemon.
    pub reloads: mpsc::Receiver<ControlCall>,
}

impl Front {
    pub async fn start(config: &Config, wiring: Wiring) -> Result<Front, DaemonError> {
        let stop = CancellationToken::new();
        let (reload_sender, reloads) = mpsc::channel(RELOAD_QUEUE);
        let control = start_control(config, wiring.jails.clone(), reload_sender, &stop).await?;
        let metrics = start_metrics(config, wiring, &stop).await?;
        Ok(Front {
            stop,
            control,
            metrics,
            reloads,
        })
    }

    /// Closes the socket and the endpoint; their senders to the jails and matcher go with them.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.control.await;
        if let Some(task) = self.metrics {
            let _ = task.await;
        }
    }
}

/// Opens the control socket and forwards its requests: reload to the daemon, the rest to the
/// jail task.
async fn start_control(
    config: &Config,
    jails: mpsc::Sender<JailEvent>,
    reloads: mpsc::Sender<ControlCall>,
    stop: &CancellationToken,
) -> Result<JoinHandle<()>, DaemonError> {
    let path = config.control.socket.clone();
    let listener = crate::control::server::bind(&path).await?;
    tracing::info!(socket = %path.display(), "control socket open");
    let (calls, mut incoming) = mpsc::channel::<ControlCall>(CONTROL_QUEUE);
    let server = tokio::spawn(crate::control::server::serve(
        listener,
        path,
        calls,
        stop.clone(),
    ));
    Ok(tokio::spawn(async move {
        while let Some(call) = incoming.recv().await {
            let delivered = if matches!(call.request, Request::Reload) {
                reloads.send(call).await.is_ok()
            } else {
                jails.send(JailEvent::Control(call)).await.is_ok()
            };
            if !delivered {
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
    wiring: Wiring,
    stop: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, DaemonError> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let listener = crate::metrics::bind(config.metrics.listen).await?;
    tracing::info!(listen = %config.metrics.listen, "metrics on /metrics and /healthz");
    let (requests, mut incoming) = mpsc::channel::<SnapshotRequest>(SCRAPE_QUEUE);
    let server = tokio::spawn(crate::metrics::serve(listener, requests, stop.clone()));
    let Wiring {
        jails,
        matcher,
        actions,
        firewall_errors,
        fleet,
    } = wiring;
    Ok(Some(tokio::spawn(async move {
        while let Some(answer) = incoming.recv().await {
            let (jail_answer, jail_figures) = oneshot::channel();
            let (source_answer, source_figures) = oneshot::channel();
            if jails.send(JailEvent::Metrics(jail_answer)).await.is_err()
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
                .map(|counts| ActionMetrics {
                    action: counts.kind.name(),
                    sent: counts.sent,
                    failed: counts.failed,
                    dropped: counts.dropped,
                })
                .collect();
            let _ = answer.send(Snapshot {
                jails,
                sources,
                actions,
                firewall_errors: firewall_errors.load(Ordering::Relaxed),
                fleet: fleet.as_ref().map(|link| {
                    let status = link.health.status(&link.member);
                    crate::metrics::FleetMetrics {
                        degraded: status.degraded,
                        lag_seconds: status.lag_ms as f64 / 1000.0,
                        errors: status.errors,
                        dropped: link.dropped.load(Ordering::Relaxed),
                        members: status.members.len(),
                    }
                }),
            });
        }
        let _ = server.await;
    })))
}
