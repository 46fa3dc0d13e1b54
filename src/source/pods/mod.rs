//! The pods source: the CRI log files the kubelet has the runtime write for every pod
//! container, `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log`, and what the node's
//! runtime says about its pods (labels, annotations) through its CRI socket.
//!
//! # Which files
//!
//! The path alone tells namespace, pod, uid, container and attempt ([`path`]), so jails can
//! select pods by namespace, pod and container globs ([`crate::routing::pod_select`]) with access to nothing but
//! the files. [`discovery`] looks at the log directory when inotify says something appeared
//! or went (and every few seconds in case it missed it) and keeps one follower per wanted
//! container ([`follower`]):
//! - a new pod or container: its newest `<n>.log` is read from its start;
//! - a restart (`<n>` incremented): the old file is read to its end, then the new one from
//!   its start, so that no line is lost and the order is kept;
//! - the kubelet's rotation (`0.log` renamed to `0.log.<stamp>`, the runtime told to reopen
//!   `0.log` with `ReopenContainerLog`, old files later gzipped) is followed by the file
//!   follower of [`crate::source::file`]: the renamed file is read until the new one has
//!   lines, nothing is read twice;
//! - a deleted pod: what is left is read, then its follower stops.
//!
//! Each line is handed on raw, with its position; the matcher's envelope decoder
//! ([`crate::filter::envelope`]) reads the CRI stamp (any number of fraction digits), the
//! stream, and joins `P` pieces up to the bound Docker lines have. A restarted logjail resumes
//! every container at its stored position, in whichever attempt's file (current or rotated)
//! that position is.
//!
//! # Pods' jail words
//!
//! [`cri`] asks the runtime (`ListPodSandbox`, `PodSandboxStatus`) for each pod's labels and
//! annotations, which the kubelet copies into the pod's sandbox: no Kubernetes API, no RBAC.
//! [`annotations`] reads `logjail.io/…` annotations (and labels) as the same words as Docker
//! labels (`logjail.io/jails`, `logjail.io/jail.NAME.KEY`), with errors naming the pod and the
//! key as written on it.

pub mod annotations;
pub mod cri;
pub mod discovery;
mod follower;
pub mod path;
mod router;
pub mod scan;

pub use discovery::{PodCommand, PodEvent, PodSourceSettings, PodWiring};
pub use path::{PodContainer, PodLogFile};

pub use crate::config::DEFAULT_POD_LOG_DIR as DEFAULT_LOG_DIR;
pub use router::REFRESH_EVERY;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::messages::{JailEvent, LineBatch, MatcherControl, Origin, Position};
use crate::routing::Filters;
use crate::source::watch::FileWatcher;

/// Events from discovery waiting for the router; discovery waits for each `Found` answer, so
/// a short queue is enough.
const EVENT_QUEUE: usize = 64;
/// Commands from the router waiting for discovery.
const COMMAND_QUEUE: usize = 64;

/// The channels the pods source feeds; the daemon owns the other ends.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Raw CRI lines of every followed container, to the matcher.
    pub lines: mpsc::Sender<LineBatch>,
    /// Which container feeds which jails, to the matcher.
    pub control: mpsc::Sender<MatcherControl>,
    /// Annotation-defined jails, to the jail task.
    pub jails: mpsc::Sender<JailEvent>,
    /// The shared inotify watcher.
    pub watcher: FileWatcher,
}

/// The running pods source: discovery (which files) and its router (which jails).
#[derive(Debug)]
pub struct PodsSource {
    stop: CancellationToken,
    router_stop: CancellationToken,
    discovery: JoinHandle<()>,
    router: JoinHandle<()>,
    reconfigure: mpsc::Sender<(router::RouterSettings, oneshot::Sender<()>)>,
    runtime_socket: Option<std::path::PathBuf>,
}

impl PodsSource {
    /// Starts the pods source when `pods.enabled`. `positions` are the stored read positions
    /// (the `pod:` ones are used).
    pub fn start(
        config: &Config,
        filters: &Filters,
        positions: &HashMap<String, Position>,
        wiring: Wiring,
    ) -> Option<PodsSource> {
        if !config.pods.enabled {
            return None;
        }
        let runtime_socket = match &config.pods.runtime_socket {
            Some(socket) => Some(socket.clone()),
            None => cri::find_runtime_socket(cri::DEFAULT_RUNTIME_SOCKETS.iter().map(Path::new)),
        };
        match &runtime_socket {
            Some(socket) => {
                tracing::info!(socket = %socket.display(), "pod annotations read from the container runtime")
            }
            None => tracing::warn!(
                "no container runtime socket found ({}): pods join only the jails of the \
                 configuration file (`pods:` sources), not those their annotations name",
                cri::DEFAULT_RUNTIME_SOCKETS.join(", ")
            ),
        }
        let positions: HashMap<String, Position> = positions
            .iter()
            .filter(|(key, _)| key.starts_with("pod:"))
            .map(|(key, position)| (key.clone(), position.clone()))
            .collect();
        let stop = CancellationToken::new();
        // The router outlives discovery: it answers discovery's last events, then ends.
        let router_stop = CancellationToken::new();
        let (events, event_queue) = mpsc::channel(EVENT_QUEUE);
        let (commands, command_queue) = mpsc::channel(COMMAND_QUEUE);
        let (reconfigure, reconfigure_queue) = mpsc::channel(1);
        let discovery = tokio::spawn(discovery::run(
            PodSourceSettings::new(config.pods.log_dir.clone()),
            PodWiring {
                lines: wiring.lines,
                events,
                watcher: wiring.watcher,
                origin_of: Arc::new(|container: &PodContainer| Origin::Pod(container.clone())),
            },
            positions,
            command_queue,
            stop.clone(),
        ));
        let router = tokio::spawn(router::run(
            router::RouterSettings::new(config, filters, runtime_socket.clone()),
            router::RouterWiring {
                events: event_queue,
                commands,
                control: wiring.control,
                jails: wiring.jails,
                reconfigure: reconfigure_queue,
            },
            router_stop.clone(),
        ));
        Some(PodsSource {
            stop,
            router_stop,
            discovery,
            router,
            reconfigure,
            runtime_socket,
        })
    }

    /// Applies a reloaded configuration's jails and filters; returns once every container is
    /// routed again. (A changed `pods:` section takes a restart.)
    pub async fn apply(&self, config: &Config, filters: &Filters) {
        let (done, applied) = oneshot::channel();
        let settings = router::RouterSettings::new(config, filters, self.runtime_socket.clone());
        if self.reconfigure.send((settings, done)).await.is_ok() {
            let _ = applied.await;
        }
    }

    /// Stops every follower and waits until they have handed on what they read; then the
    /// router, whose pending detaches go to the matcher.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.discovery.await {
            tracing::error!(%error, "the pods source failed");
        }
        self.router_stop.cancel();
        let _ = self.router.await;
    }
}
