//! The pods source's answer to "which jails does this container feed?": YAML jails whose
//! `pods:` selectors match it, and the jails its pod's `logjail.io/` annotations name or
//! define, read through the runtime's CRI socket (routes decided by
//! [`crate::routing::pod_routes`]). It tells the matcher, defines annotation jails at the jail
//! task, and tells discovery which containers to follow.
//!
//! Discovery waits for each answer, so nothing here waits on discovery: commands to it go out
//! only when its queue has room. A runtime that cannot be asked leaves the YAML jails working;
//! annotations are read again every [`REFRESH_EVERY`], and containers are routed again when a
//! pod's annotations change.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::annotations::{self, PodJails};
use super::cri::{CriClient, PodSandboxInfo};
use super::{PodCommand, PodContainer, PodEvent};
use crate::config::{Config, DefaultsConfig, JailConfig};
use crate::messages::{JailEvent, MatcherControl, Origin, Route};
use crate::routing::labels::{ContainerLabels, LabelContext};
use crate::routing::{Filters, pod_routes};

/// How often pods' annotations are read again from the runtime.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// How long after a pod is gone its origin stays routed: lines it read last may still be in
/// the line queue (the same grace Docker's removed containers get).
const DETACH_DELAY: Duration = Duration::from_secs(5);

/// What the router takes from the configuration.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub jails: Vec<JailConfig>,
    pub defaults: DefaultsConfig,
    pub chain_prefix: String,
    pub filters: Filters,
    pub filter_names: BTreeSet<String>,
    pub yaml_jails: BTreeSet<String>,
    /// The runtime's CRI socket; `None` when there is none (YAML jails only).
    pub runtime_socket: Option<PathBuf>,
}

impl RouterSettings {
    pub fn new(config: &Config, filters: &Filters, runtime_socket: Option<PathBuf>) -> Self {
        RouterSettings {
            jails: config.jails.clone(),
            defaults: config.defaults.clone(),
            chain_prefix: config.firewall.chain_prefix.clone(),
            filters: filters.clone(),
            filter_names: filters.label_choices(),
            yaml_jails: config.jails.iter().map(|jail| jail.name.clone()).collect(),
            runtime_socket,
        }
    }
}

/// The channels the router talks on.
pub struct RouterWiring {
    pub events: mpsc::Receiver<PodEvent>,
    pub commands: mpsc::Sender<PodCommand>,
    pub control: mpsc::Sender<MatcherControl>,
    pub jails: mpsc::Sender<JailEvent>,
    /// A reload's settings, answered once every container is routed again.
    pub reconfigure: mpsc::Receiver<(RouterSettings, oneshot::Sender<()>)>,
}

/// A pod, by what its log directory names: namespace, name, uid.
type PodKey = (String, String, String);

fn pod_key(container: &PodContainer) -> PodKey {
    (
        container.namespace.clone(),
        container.pod.clone(),
        container.uid.clone(),
    )
}

/// A container discovery told about.
struct Known {
    origin: Arc<Origin>,
    /// The routes the matcher has for it (empty: not followed).
    routes: Vec<Route>,
}

struct Router {
    settings: RouterSettings,
    wiring: RouterWiring,
    cri: Option<CriClient>,
    /// The runtime could not be asked last time (said once until it answers again).
    cri_down: bool,
    /// When the last listing of the runtime's pods was asked for.
    last_listing: Option<Instant>,
    /// The pods the runtime listed last, with their jail words read.
    pods: HashMap<PodKey, PodWords>,
    containers: BTreeMap<PodContainer, Known>,
    /// Problems already said, per pod, so that each is logged once while it lasts.
    reported: HashMap<PodKey, HashSet<String>>,
    detach_queue: VecDeque<(Instant, MatcherControl)>,
    /// Commands for discovery, sent as its queue has room.
    pending: VecDeque<PodCommand>,
}

/// A pod's jail words, read from its annotations and labels.
#[derive(Default)]
struct PodWords {
    /// The words in container-label form (`logjail.jails`), as stored with a definition.
    labels: HashMap<String, String>,
    /// What they ask for. Its errors are in `problems` instead, said as the pod has them
    /// (annotation or label, the key as written), so that routing does not repeat them in
    /// container-label words.
    parsed: ContainerLabels,
    problems: Vec<String>,
}

/// Runs until `stop` or until discovery's events end.
pub async fn run(settings: RouterSettings, wiring: RouterWiring, stop: CancellationToken) {
    let mut router = Router {
        settings,
        wiring,
        cri: None,
        cri_down: false,
        last_listing: None,
        pods: HashMap::new(),
        containers: BTreeMap::new(),
        reported: HashMap::new(),
        detach_queue: VecDeque::new(),
        pending: VecDeque::new(),
    };
    router.refresh_pods().await;
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        let next_detach = router.detach_queue.front().map(|(at, _)| *at);
        let commands = router.wiring.commands.clone();
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            event = router.wiring.events.recv() => match event {
                Some(event) => router.event(event).await,
                None => break,
            },
            Ok(permit) = commands.reserve(), if !router.pending.is_empty() => {
                if let Some(command) = router.pending.pop_front() {
                    permit.send(command);
                }
            }
            Some((settings, done)) = router.wiring.reconfigure.recv() => {
                router.settings = settings;
                router.cri = None;
                router.refresh_pods().await;
                router.route_again(true).await;
                let _ = done.send(());
            }
            _ = refresh.tick() => {
                router.refresh_pods().await;
                router.route_again(false).await;
            }
            () = sleep_until_some(next_detach) => router.detach_due().await,
        }
    }
    // What is queued for the matcher still goes: the lines it read last are matched first.
    for (_, detach) in router.detach_queue.drain(..) {
        let _ = router.wiring.control.send(detach).await;
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Router {
    async fn event(&mut self, event: PodEvent) {
        match event {
            PodEvent::Found {
                container,
                origin,
                restart,
                seen_at,
                follow,
            } => {
                if !self.pods.contains_key(&pod_key(&container))
                    && self.last_listing.is_none_or(|at| at < seen_at)
                {
                    // A pod new since the last listing: its annotations decide its jails,
                    // before its first line is read (an opt-out, a jail of its own). A
                    // listing asked for after its files were seen has it; one asked for
                    // earlier may not, however recent. Many pods found in one look share
                    // the one listing the first of them asks for.
                    self.refresh_pods().await;
                }
                let routes = self.routes_for(&container, &origin).await;
                let wanted = !routes.is_empty();
                if wanted {
                    self.attach(&origin, &routes).await;
                    tracing::info!(%container, restart, jails = %names(&routes), "following pod container");
                } else {
                    tracing::debug!(%container, "no jail reads this pod container");
                }
                self.containers
                    .insert((*container).clone(), Known { origin, routes });
                let _ = follow.send(wanted);
            }
            PodEvent::Restarted {
                container, restart, ..
            } => {
                tracing::info!(%container, restart, "pod container restarted; following its new log");
            }
            PodEvent::Gone {
                container, origin, ..
            } => {
                self.containers.remove(&container);
                if !self
                    .containers
                    .keys()
                    .any(|c| pod_key(c) == pod_key(&container))
                {
                    self.reported.remove(&pod_key(&container));
                    // The jails its annotations alone defined keep their bans until they end,
                    // and a rollout's new pods may define them anew.
                    let _ = self
                        .wiring
                        .jails
                        .send(JailEvent::DefinerGone {
                            defined_by: format!("pod {}/{}", container.namespace, container.pod),
                        })
                        .await;
                }
                tracing::info!(%container, "pod container gone; its last lines were read");
                self.detach_later(origin, true);
            }
            PodEvent::Failed {
                container, error, ..
            } => {
                tracing::warn!(%container, %error, "cannot read pod container log; trying again later");
            }
            PodEvent::StalePositions(keys) => {
                for key in keys {
                    if let Some(container) = container_of_key(&key) {
                        let _ = self
                            .wiring
                            .control
                            .send(MatcherControl::Detach {
                                origin: Arc::new(Origin::Pod(container)),
                                forget_position: true,
                            })
                            .await;
                    }
                }
            }
        }
    }

    /// Routes every known container again (jails, filters or annotations changed): the
    /// matcher learns the new routes, discovery lets go of containers no jail wants and asks
    /// again about those it passed over.
    async fn route_again(&mut self, reloaded: bool) {
        let containers: Vec<PodContainer> = self.containers.keys().cloned().collect();
        let mut reconsider = false;
        for container in containers {
            let Some(known) = self.containers.get(&container) else {
                continue;
            };
            let origin = known.origin.clone();
            let before = names(&known.routes);
            let was_followed = !known.routes.is_empty();
            let routes = self.routes_for(&container, &origin).await;
            if names(&routes) == before {
                // After a reload filters may have changed under the same names.
                if reloaded && !routes.is_empty() {
                    self.attach(&origin, &routes).await;
                }
                continue;
            }
            match (was_followed, routes.is_empty()) {
                (true, true) => {
                    tracing::info!(%container, "no jail reads this pod container any more");
                    self.pending
                        .push_back(PodCommand::Release(container.clone()));
                    self.detach_later(origin.clone(), false);
                }
                (_, false) => {
                    self.attach(&origin, &routes).await;
                    if !was_followed {
                        reconsider = true;
                    }
                }
                (false, true) => {}
            }
            if let Some(known) = self.containers.get_mut(&container) {
                known.routes = routes;
            }
        }
        if reconsider
            && !self
                .pending
                .iter()
                .any(|c| matches!(c, PodCommand::Reconsider))
        {
            self.pending.push_back(PodCommand::Reconsider);
        }
    }

    /// The jails `container` feeds, after the jail task accepted the jails its pod defines.
    /// Problems are said once per pod while they last.
    async fn routes_for(&mut self, container: &PodContainer, origin: &Arc<Origin>) -> Vec<Route> {
        let key = pod_key(container);
        let no_words = PodWords::default();
        let words = self.pods.get(&key).unwrap_or(&no_words);
        if words.parsed.opted_out() {
            return Vec::new();
        }
        let mut problems = words.problems.clone();
        let planned = pod_routes(
            &self.settings.jails,
            &mut self.settings.filters,
            container,
            &words.labels,
            &words.parsed,
        );
        let (routes, planned_problems) =
            crate::source::define_workload_jails(&self.wiring.jails, planned).await;
        problems.extend(planned_problems.iter().map(|problem| {
            format!(
                "pod {}/{}: {}",
                container.namespace,
                container.pod,
                annotations::in_pod_words(problem)
            )
        }));
        let reported = self.reported.entry(key).or_default();
        for problem in problems {
            if reported.insert(problem.clone()) {
                tracing::warn!(%origin, "{problem}");
            }
        }
        routes
    }

    async fn attach(&self, origin: &Arc<Origin>, routes: &[Route]) {
        let _ = self
            .wiring
            .control
            .send(MatcherControl::Attach {
                origin: origin.clone(),
                routes: routes.to_vec().into(),
            })
            .await;
    }

    fn detach_later(&mut self, origin: Arc<Origin>, forget_position: bool) {
        self.detach_queue.push_back((
            Instant::now() + DETACH_DELAY,
            MatcherControl::Detach {
                origin,
                forget_position,
            },
        ));
    }

    async fn detach_due(&mut self) {
        let now = Instant::now();
        while self.detach_queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, detach)) = self.detach_queue.pop_front() {
                // A container followed again since (same pod and container) keeps its routes.
                if let MatcherControl::Detach { origin, .. } = &detach
                    && let Origin::Pod(container) = &**origin
                    && self
                        .containers
                        .get(container)
                        .is_some_and(|known| !known.routes.is_empty())
                {
                    continue;
                }
                let _ = self.wiring.control.send(detach).await;
            }
        }
    }

    /// Lists the runtime's pods and reads their jail words. Without a socket, or while the
    /// runtime does not answer, the last listing stays.
    async fn refresh_pods(&mut self) {
        let Some(socket) = self.settings.runtime_socket.clone() else {
            return;
        };
        self.last_listing = Some(Instant::now());
        if self.cri.is_none() {
            match CriClient::connect(&socket).await {
                Ok(client) => self.cri = Some(client),
                Err(error) => {
                    self.runtime_down(&error.to_string());
                    return;
                }
            }
        }
        let Some(cri) = self.cri.as_mut() else {
            return;
        };
        match cri.pods().await {
            Ok(pods) => {
                if self.cri_down {
                    tracing::info!(socket = %socket.display(), "container runtime answers again: pod annotations are read");
                    self.cri_down = false;
                }
                self.pods = pods
                    .iter()
                    .map(|pod| (pod_key_of(pod), self.words_of(pod)))
                    .collect();
            }
            Err(error) => {
                self.cri = None;
                self.runtime_down(&error.to_string());
            }
        }
    }

    fn runtime_down(&mut self, error: &str) {
        if !self.cri_down {
            tracing::warn!(
                %error,
                "cannot read pod annotations from the container runtime; jails of the \
                 configuration file still read pods, annotations are tried again every {} s",
                REFRESH_EVERY.as_secs()
            );
            self.cri_down = true;
        }
    }

    fn words_of(&self, pod: &PodSandboxInfo) -> PodWords {
        if !annotations::has_jail_words(pod) {
            return PodWords::default();
        }
        let context = LabelContext {
            defaults: &self.settings.defaults,
            filters: &self.settings.filter_names,
            yaml_jails: &self.settings.yaml_jails,
            chain_prefix: &self.settings.chain_prefix,
            // Pods are reached through their ports before DNAT, never through INPUT.
            host_network: false,
        };
        let PodJails { mut parsed, errors } = annotations::parse(pod, &context);
        parsed.errors.clear();
        PodWords {
            labels: annotations::jail_words(pod).labels,
            parsed,
            problems: errors.iter().map(ToString::to_string).collect(),
        }
    }
}

fn pod_key_of(pod: &PodSandboxInfo) -> PodKey {
    (pod.namespace.clone(), pod.name.clone(), pod.uid.clone())
}

/// The jail names of `routes`, for the log.
fn names(routes: &[Route]) -> String {
    routes
        .iter()
        .map(|route| &*route.jail)
        .collect::<Vec<_>>()
        .join(",")
}

/// The container a stored position key (`pod:NS/POD/UID/CONTAINER`) names.
fn container_of_key(key: &str) -> Option<PodContainer> {
    let rest = key.strip_prefix("pod:")?;
    let mut parts = rest.split('/');
    let container = PodContainer {
        namespace: parts.next()?.to_string(),
        pod: parts.next()?.to_string(),
        uid: parts.next()?.to_string(),
        container: parts.next()?.to_string(),
    };
    parts.next().is_none().then_some(container)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_key_names_its_container_again() {
        let container = PodContainer {
            namespace: "shop".into(),
            pod: "wordpress-7d9f8-x2x4z".into(),
            uid: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into(),
            container: "wordpress".into(),
        };
        let key = Origin::Pod(container.clone()).position_key();
        assert_eq!(container_of_key(&key), Some(container));
        assert_eq!(container_of_key("container:abc"), None);
        assert_eq!(container_of_key("pod:a/b/c"), None);
        assert_eq!(container_of_key("pod:a/b/c/d/e"), None);
    }
}
