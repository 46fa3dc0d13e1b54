//! Prometheus metrics on `/metrics` and a liveness check on `/healthz`, on loopback by default.
//!
//! Nothing here keeps state of its own: each scrape asks the tasks that own the numbers (the
//! jail task, the matcher) for a snapshot, so the figures are consistent and no lock is shared.
//! No label ever carries an address: addresses are unbounded and personal.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// One jail's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct JailMetrics {
    pub jail: String,
    pub failures_current: u64,
    pub failures_total: u64,
    pub bans_current: u64,
    pub bans_total: u64,
    /// `None` for permanent bans.
    pub bantime_seconds: Option<f64>,
    pub findtime_seconds: f64,
    pub maxretry: u64,
}

/// One source's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMetrics {
    /// `file /var/log/auth.log`, `container web`, `journal`.
    pub source: String,
    pub lines_read: u64,
    pub lines_matched: u64,
    /// Seconds between the last line's own time and when it was matched.
    pub read_lag_seconds: Option<f64>,
}

/// One notification kind's figures (`webhook`, `command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionMetrics {
    pub action: &'static str,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub jails: Vec<JailMetrics>,
    pub sources: Vec<SourceMetrics>,
    pub actions: Vec<ActionMetrics>,
    pub firewall_errors: u64,
    /// The fleet's figures, when this member shares bans.
    pub fleet: Option<FleetMetrics>,
}

/// The fleet as `/metrics` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetMetrics {
    pub degraded: bool,
    pub lag_seconds: f64,
    pub errors: u64,
    /// Shared changes the jails could not queue (the fleet task was behind).
    pub dropped: u64,
    pub members: usize,
}

/// Asks the owners for a snapshot; implemented by the daemon.
pub type SnapshotRequest = oneshot::Sender<Snapshot>;

/// Prometheus label values escape `\`, `"` and newlines.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric family drawn from one kind of row (jails, sources).
type Family<T> = (
    &'static str,
    &'static str,
    &'static str,
    fn(&T) -> Option<f64>,
);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The text exposition format (version 0.0.4).
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    family(&mut out, "logjail_up", "gauge", "1 while logjail runs.");
    let _ = writeln!(out, "logjail_up 1");
    family(
        &mut out,
        "logjail_build_info",
        "gauge",
        "The running version.",
    );
    let _ = writeln!(
        out,
        "logjail_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    let jail_families: [Family<JailMetrics>; 7] = [
        (
            "logjail_jail_failures",
            "gauge",
            "Hosts with failures in the jail's findtime window.",
            |j| Some(j.failures_current as f64),
        ),
        (
            "logjail_jail_failures_total",
            "counter",
            "Failures counted by the jail.",
            |j| Some(j.failures_total as f64),
        ),
        ("logjail_jail_bans", "gauge", "Bans in force.", |j| {
            Some(j.bans_current as f64)
        }),
        (
            "logjail_jail_bans_total",
            "counter",
            "Bans made (or restored) by the jail.",
            |j| Some(j.bans_total as f64),
        ),
        (
            "logjail_jail_bantime_seconds",
            "gauge",
            "Configured ban length before increments (absent when permanent).",
            |j| j.bantime_seconds,
        ),
        (
            "logjail_jail_findtime_seconds",
            "gauge",
            "Configured findtime window.",
            |j| Some(j.findtime_seconds),
        ),
        (
            "logjail_jail_maxretry",
            "gauge",
            "Configured failures that trigger a ban.",
            |j| Some(j.maxretry as f64),
        ),
    ];
    for (name, kind, help, value) in jail_families {
        family(&mut out, name, kind, help);
        for jail in &snapshot.jails {
            if let Some(value) = value(jail) {
                let _ = writeln!(out, "{name}{{jail=\"{}\"}} {value}", label(&jail.jail));
            }
        }
    }

    let source_families: [Family<SourceMetrics>; 3] = [
        (
            "logjail_source_lines_read_total",
            "counter",
            "Lines read from the source.",
            |s| Some(s.lines_read as f64),
        ),
        (
            "logjail_source_lines_matched_total",
            "counter",
            "Lines of the source that were failures for some jail.",
            |s| Some(s.lines_matched as f64),
        ),
        (
            "logjail_source_read_lag_seconds",
            "gauge",
            "Delay between the last line's own time and its matching.",
            |s| s.read_lag_seconds,
        ),
    ];
    for (name, kind, help, value) in source_families {
        family(&mut out, name, kind, help);
        for source in &snapshot.sources {
            if let Some(value) = value(source) {
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\"}} {value}",
                    label(&source.source)
                );
            }
        }
    }
    let action_families: [Family<ActionMetrics>; 3] = [
        (
            "logjail_action_sent_total",
            "counter",
            "Notifications delivered.",
            |a| Some(a.sent as f64),
        ),
        (
            "logjail_action_failures_total",
            "counter",
            "Notifications that failed after every try.",
            |a| Some(a.failed as f64),
        ),
        (
            "logjail_action_dropped_total",
            "counter",
            "Notifications dropped because the queue was full.",
            |a| Some(a.dropped as f64),
        ),
    ];
    for (name, kind, help, value) in action_families {
        family(&mut out, name, kind, help);
        for action in &snapshot.actions {
            if let Some(value) = value(action) {
                let _ = writeln!(out, "{name}{{action=\"{}\"}} {value}", action.action);
            }
        }
    }
    family(
        &mut out,
        "logjail_firewall_errors_total",
        "counter",
        "Firewall commands that failed.",
    );
    let _ = writeln!(
        out,
        "logjail_firewall_errors_total {}",
        snapshot.firewall_errors
    );
    if let Some(fleet) = &snapshot.fleet {
        let fleet_families: [(&str, &str, &str, f64); 5] = [
            (
                "logjail_fleet_degraded",
                "gauge",
                "1 while Redis is unreachable (local bans go on).",
                if fleet.degraded { 1.0 } else { 0.0 },
            ),
            (
                "logjail_fleet_lag_seconds",
                "gauge",
                "Delay of the last ban received from another member, start to arrival.",
                fleet.lag_seconds,
            ),
            (
                "logjail_fleet_errors_total",
                "counter",
                "Redis failures and refused records (bad signature, malformed).",
                fleet.errors as f64,
            ),
            (
                "logjail_fleet_dropped_total",
                "counter",
                "Shared ban changes not queued for Redis because the fleet task was behind.",
                fleet.dropped as f64,
            ),
            (
                "logjail_fleet_members",
                "gauge",
                "Members whose heartbeat is in Redis.",
                fleet.members as f64,
            ),
        ];
        for (name, kind, help, value) in fleet_families {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
}

/// How long a scrape waits for the tasks; a wedged daemon answers 503 instead of hanging.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics: cannot listen on {address}: {source}")]
pub struct MetricsError {
    pub address: SocketAddr,
    pub source: std::io::Error,
}

/// Binds the listener (so that a busy port is a start-up error, not a silent gap).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError { address, source })
}

/// Serves `/metrics` and `/healthz` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    snapshots: mpsc::Sender<SnapshotRequest>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        };
        let snapshots = snapshots.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, snapshots.clone()));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

async fn snapshot(snapshots: &mpsc::Sender<SnapshotRequest>) -> Option<Snapshot> {
    let (answer, wait) = oneshot::channel();
    snapshots.send(answer).await.ok()?;
    tokio::time::timeout(SNAPSHOT_TIMEOUT, wait)
        .await
        .ok()?
        .ok()
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn respond(
    request: Request<hyper::body::Incoming>,
    snapshots: mpsc::Sender<SnapshotRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match request.uri().path() {
        "/metrics" => match snapshot(&snapshots).await {
            Some(snapshot) => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snapshot),
            ),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "logjail does not answer\n".into(),
            ),
        },
        "/healthz" => match snapshot(&snapshots).await {
            Some(_) => text(StatusCode::OK, "text/plain", "ok\n".into()),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "logjail does not answer\n".into(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_escaped_labels_and_no_addresses() {
        let snapshot = Snapshot {
            jails: vec![JailMetrics {
                jail: "sshd".into(),
                failures_current: 2,
                failures_total: 7,
                bans_current: 1,
                bans_total: 3,
                bantime_seconds: None,
                findtime_seconds: 600.0,
                maxretry: 5,
            }],
            sources: vec![SourceMetrics {
                source: "file /var/log/\"odd\".log".into(),
                lines_read: 100,
                lines_matched: 7,
                read_lag_seconds: Some(0.25),
            }],
            actions: vec![ActionMetrics {
                action: "webhook",
                sent: 1,
                failed: 2,
                dropped: 0,
            }],
            firewall_errors: 0,
            fleet: Some(FleetMetrics {
                degraded: true,
                lag_seconds: 0.25,
                errors: 3,
                dropped: 0,
                members: 2,
            }),
        };
        let text = render(&snapshot);
        assert!(text.contains("logjail_fleet_degraded 1\n"));
        assert!(text.contains("logjail_fleet_lag_seconds 0.25\n"));
        assert!(text.contains("logjail_fleet_errors_total 3\n"));
        assert!(text.contains("logjail_action_failures_total{action=\"webhook\"} 2\n"));
        assert!(text.contains("logjail_up 1\n"));
        assert!(text.contains("logjail_jail_failures_total{jail=\"sshd\"} 7\n"));
        assert!(text.contains("logjail_jail_bans{jail=\"sshd\"} 1\n"));
        assert!(text.contains("# TYPE logjail_jail_bans_total counter\n"));
        assert!(
            !text.contains("logjail_jail_bantime_seconds{"),
            "permanent: no sample"
        );
        assert!(text.contains(
            "logjail_source_lines_read_total{source=\"file /var/log/\\\"odd\\\".log\"} 100\n"
        ));
        assert!(text.contains("logjail_source_read_lag_seconds{source="));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(series.starts_with("logjail_"), "{line}");
        }
    }
}
