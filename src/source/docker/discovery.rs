//! Discovery: which containers to follow, kept in step with Docker's events, and one follower
//! task per container.
//!
//! On every connection: subscribe to container events from the daemon's current time, list
//! every container, and reconcile (start followers for running containers, drain those that
//! stopped meanwhile, forget those that are gone). Then events drive the rest. Everything a
//! follower needs to resume (its last position) is kept here between its runs, so that a
//! container that restarts, or a daemon that comes back, continues where reading stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum, EventMessage,
};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::container::{self, FollowEnv, FollowSpec, Outcome, ReadPlan, Signals};
use super::own::OwnContainer;
use super::{Backoff, Settings, Wiring};
use crate::config::ReadMode;
use crate::messages::JailEvent;
use crate::messages::MatcherControl;
use crate::messages::{Origin, Position};
use crate::routing::Filters;
use crate::routing::Route;
use crate::routing::labels::{self, ContainerLabels, LabelContext};
use crate::routing::select::{ContainerFacts, any_selector, jail_selects};

/// How long after a container is removed (or renamed) its old origin is detached from the
/// matcher: lines it handed on just before may still wait in the queue, and the matcher
/// writes positions every second.
const DETACH_DELAY: Duration = Duration::from_secs(5);

/// How long after a follower was interrupted (Docker did not answer) a new one is tried.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// A container being followed (or followed before and stopped).
struct Watched {
    origin: Arc<Origin>,
    /// What selectors and labels look at, kept to decide the routes again on a reload.
    image: String,
    labels: HashMap<String, String>,
    /// `network_mode: host`: where the jails its labels define ban (see `LabelContext`).
    host_network: bool,
    routes: Arc<[Route]>,
    plan: ReadPlan,
    running: Option<Running>,
    /// `destroy` was seen: once the follower has drained, the container is forgotten.
    destroyed: bool,
}

/// A follower task.
struct Running {
    generation: u64,
    signals: Signals,
    handle: JoinHandle<Outcome>,
}

/// Why a connection to Docker ended.
enum SessionEnd {
    Stopped,
    Lost(String),
}

pub(super) struct Discovery {
    settings: Settings,
    wiring: Wiring,
    own: OwnContainer,
    /// Compiled filters by name: the configuration's, and built-ins compiled when a label
    /// asks for one.
    filters: Filters,
    /// Where each container's reading stopped, by container id: from the store at start,
    /// then from every follower that ends.
    positions: HashMap<String, Position>,
    containers: HashMap<String, Watched>,
    /// Containers looked at closely and found to need nothing (no jail, or opted out); they
    /// are not looked at again until removed.
    ignored: HashSet<String>,
    /// Followers say here that they ended (one message per task, so unbounded is bounded).
    ended_tx: mpsc::UnboundedSender<(String, u64)>,
    ended_rx: mpsc::UnboundedReceiver<(String, u64)>,
    next_generation: u64,
    detach_queue: VecDeque<(Instant, MatcherControl)>,
    /// Containers whose follower was interrupted, to try again.
    restart_queue: VecDeque<(Instant, String)>,
    /// Stored positions of containers that no longer exist were dropped (first listing).
    stale_positions_dropped: bool,
    /// Label problems already reported, by container id: each is said once.
    reported: HashMap<String, HashSet<String>>,
    /// New settings from a configuration reload.
    reconfigure: mpsc::Receiver<(Settings, oneshot::Sender<()>)>,
    stop: CancellationToken,
}

impl Discovery {
    pub(super) fn new(
        settings: Settings,
        wiring: Wiring,
        positions: HashMap<String, Position>,
        reconfigure: mpsc::Receiver<(Settings, oneshot::Sender<()>)>,
        stop: CancellationToken,
    ) -> Discovery {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        let own = OwnContainer::detect();
        if let Some(id) = &own.id {
            tracing::info!(container = %id, "logjail runs in a container: its own log is not read");
        }
        Discovery {
            filters: settings.filters.clone(),
            settings,
            wiring,
            own,
            positions,
            containers: HashMap::new(),
            ignored: HashSet::new(),
            ended_tx,
            ended_rx,
            next_generation: 0,
            detach_queue: VecDeque::new(),
            restart_queue: VecDeque::new(),
            stale_positions_dropped: false,
            reported: HashMap::new(),
            reconfigure,
            stop,
        }
    }

    /// Connects, follows events, reconnects with backoff, until `stop`.
    pub(super) async fn run(mut self) {
        let mut backoff = Backoff::new();
        let mut unreachable_reported = false;
        loop {
            let connected = tokio::select! {
                _ = self.stop.cancelled() => break,
                connected = super::connect(&self.settings.docker) => connected,
            };
            match connected {
                Ok(docker) => match self.session(&docker, &mut backoff).await {
                    SessionEnd::Stopped => break,
                    SessionEnd::Lost(reason) => {
                        tracing::warn!(%reason, "lost the connection to Docker: reconnecting");
                        unreachable_reported = false;
                    }
                },
                Err(error) if !unreachable_reported => {
                    tracing::warn!(%error, "cannot reach Docker: retrying in the background");
                    unreachable_reported = true;
                }
                Err(error) => tracing::debug!(%error, "cannot reach Docker"),
            }
            let delay = backoff.next_delay();
            let wake = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = tokio::time::sleep_until(wake) => break,
                    Some((id, generation)) = self.ended_rx.recv() => {
                        self.follower_ended(&id, generation, None).await;
                    }
                    Some((settings, done)) = self.reconfigure.recv() => {
                        self.reconfigured(None, settings).await;
                        let _ = done.send(());
                    }
                }
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
        self.shut_down().await;
    }

    async fn session(&mut self, docker: &Docker, backoff: &mut Backoff) -> SessionEnd {
        // Events from the daemon's "now", asked for before the list: whatever changes while
        // the list is made comes as an event (possibly twice, which is harmless).
        let since = match docker.info().await {
            Ok(info) => info
                .system_time
                .and_then(|time| chrono::DateTime::parse_from_rfc3339(&time).ok())
                .map(|time| time.with_timezone(&chrono::Utc)),
            Err(error) => return SessionEnd::Lost(error.to_string()),
        }
        .unwrap_or_else(chrono::Utc::now);
        let filters: HashMap<String, Vec<String>> = [
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                ["start", "die", "destroy", "rename"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]
        .into();
        let mut events = Box::pin(docker.events(Some(EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                since.timestamp(),
                since.timestamp_subsec_nanos()
            )),
            until: None,
            filters: Some(filters),
        })));
        let listed = match docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
        {
            Ok(listed) => listed,
            Err(error) => return SessionEnd::Lost(error.to_string()),
        };
        tracing::info!(
            api = %docker.client_version(),
            containers = listed.len(),
            "connected to Docker"
        );
        self.wiring.connected.notify_one();
        // The listing restarts whatever needs it.
        self.restart_queue.clear();
        self.reconcile(docker, listed).await;
        backoff.reset();
        loop {
            let detach_due = self.detach_queue.front().map(|(due, _)| *due);
            let restart_due = self.restart_queue.front().map(|(due, _)| *due);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return SessionEnd::Stopped,
                Some((id, generation)) = self.ended_rx.recv() => {
                    self.follower_ended(&id, generation, Some(docker)).await;
                }
                _ = sleep_until_some(detach_due) => self.send_due_detaches(false).await,
                _ = sleep_until_some(restart_due) => self.restart_due(docker).await,
                Some((settings, done)) = self.reconfigure.recv() => {
                    self.reconfigured(Some(docker), settings).await;
                    let _ = done.send(());
                }
                event = events.next() => match event {
                    Some(Ok(event)) => self.on_event(docker, event).await,
                    Some(Err(error)) => return SessionEnd::Lost(error.to_string()),
                    None => return SessionEnd::Lost("the event stream ended".to_string()),
                },
            }
        }
    }

    /// Brings the followers in line with the containers that exist now.
    async fn reconcile(&mut self, docker: &Docker, listed: Vec<ContainerSummary>) {
        let mut present = HashSet::new();
        for summary in listed {
            let Some(id) = summary.id.clone() else {
                continue;
            };
            present.insert(id.clone());
            if self.own.is(&id) {
                continue;
            }
            let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
            if let Some(watched) = self.containers.get(&id) {
                match (&watched.running, running) {
                    (Some(task), true) if !task.signals.died.is_cancelled() => {}
                    (_, true) => self.start_follower(docker, &id).await,
                    (Some(task), false) => task.signals.died.cancel(),
                    (None, false) => {}
                }
                continue;
            }
            if self.ignored.contains(&id) {
                continue;
            }
            // A stopped container matters only if it was being read when logjail stopped: its
            // last lines may not have been read.
            if !running && !self.positions.contains_key(&id) {
                continue;
            }
            let name = summary
                .names
                .as_ref()
                .and_then(|names| names.first())
                .map(|name| name.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let labels = summary.labels.clone().unwrap_or_default();
            let facts = ContainerFacts {
                name: &name,
                image: summary.image.as_deref().unwrap_or(""),
                labels: &labels,
            };
            if !self.worth_a_look(&facts) {
                continue;
            }
            self.examine(docker, &id).await;
            if !running
                && let Some(task) = self.containers.get(&id).and_then(|w| w.running.as_ref())
            {
                task.signals.died.cancel();
            }
        }
        let gone: Vec<String> = self
            .containers
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.destroyed(&id).await;
        }
        self.ignored.retain(|id| present.contains(id));
        if !self.stale_positions_dropped {
            // Containers removed while logjail was down: their positions go.
            self.stale_positions_dropped = true;
            let stale: Vec<String> = self
                .positions
                .keys()
                .filter(|id| !present.contains(*id) && !self.containers.contains_key(*id))
                .cloned()
                .collect();
            for id in stale {
                self.positions.remove(&id);
                let origin = Arc::new(Origin::Container {
                    id,
                    name: String::new(),
                });
                let _ = self
                    .wiring
                    .control
                    .send(MatcherControl::Detach {
                        origin,
                        forget_position: true,
                    })
                    .await;
            }
        }
    }

    /// Starts new followers for containers whose follower was interrupted, if they run.
    async fn restart_due(&mut self, docker: &Docker) {
        let now = Instant::now();
        while let Some((due, _)) = self.restart_queue.front() {
            if *due > now {
                break;
            }
            let Some((_, id)) = self.restart_queue.pop_front() else {
                break;
            };
            let idle = self
                .containers
                .get(&id)
                .is_some_and(|w| w.running.is_none() && !w.destroyed);
            if !idle {
                continue;
            }
            match docker.inspect_container(&id, None).await {
                Ok(inspect)
                    if inspect
                        .state
                        .as_ref()
                        .and_then(|s| s.running)
                        .unwrap_or(false) =>
                {
                    self.start_follower(docker, &id).await;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(container = %id, %error, "cannot inspect container: trying again later");
                    self.restart_queue
                        .push_back((Instant::now() + RESTART_DELAY, id));
                    break;
                }
            }
        }
    }

    async fn on_event(&mut self, docker: &Docker, event: EventMessage) {
        let Some(actor) = event.actor else {
            return;
        };
        let Some(id) = actor.id else {
            return;
        };
        if self.own.is(&id) {
            return;
        }
        let attributes = actor.attributes.unwrap_or_default();
        match event.action.as_deref() {
            Some("start") => {
                if self.containers.contains_key(&id) {
                    let following = self
                        .containers
                        .get(&id)
                        .and_then(|w| w.running.as_ref())
                        .is_some_and(|task| !task.signals.died.is_cancelled());
                    if !following {
                        self.start_follower(docker, &id).await;
                    }
                    return;
                }
                if self.ignored.contains(&id) {
                    return;
                }
                let facts = ContainerFacts {
                    name: attributes.get("name").map(String::as_str).unwrap_or(""),
                    image: attributes.get("image").map(String::as_str).unwrap_or(""),
                    labels: &attributes,
                };
                if self.worth_a_look(&facts) {
                    self.examine(docker, &id).await;
                }
            }
            Some("die") => {
                if let Some(task) = self.containers.get(&id).and_then(|w| w.running.as_ref()) {
                    task.signals.died.cancel();
                }
            }
            Some("destroy") => self.destroyed(&id).await,
            Some("rename") => {
                let Some(name) = attributes.get("name") else {
                    return;
                };
                let name = name.trim_start_matches('/').to_string();
                if self.containers.contains_key(&id) {
                    self.renamed(docker, &id, name).await;
                } else if self.ignored.remove(&id) {
                    // The new name may be one a YAML selector wants.
                    self.examine(docker, &id).await;
                }
            }
            _ => {}
        }
    }

    /// The cheap check every container gets: any logjail label, or a YAML selector that
    /// matches what the list or the event already tells.
    fn worth_a_look(&self, facts: &ContainerFacts<'_>) -> bool {
        self.in_scope(facts.labels)
            && (labels::has_logjail_labels(facts.labels.keys())
                || (self.settings.any_selector
                    && self
                        .settings
                        .jails
                        .iter()
                        .any(|jail| jail_selects(jail, facts))))
    }

    /// `docker.require_labels`: containers of another instance are none of ours.
    fn in_scope(&self, container_labels: &HashMap<String, String>) -> bool {
        self.settings
            .docker
            .in_scope(|key| container_labels.get(key).map(String::as_str))
    }

    /// Inspects a container and decides what to do with it: follow it (and start now if it
    /// runs), or ignore it.
    async fn examine(&mut self, docker: &Docker, id: &str) {
        let inspect = match docker.inspect_container(id, None).await {
            Ok(inspect) => inspect,
            Err(error) => {
                tracing::debug!(container = %id, %error, "cannot inspect container (gone already?)");
                return;
            }
        };
        let name = inspect
            .name
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let config = inspect.config.clone().unwrap_or_default();
        let container_labels = config.labels.clone().unwrap_or_default();
        let image = config.image.clone().unwrap_or_default();
        let facts = ContainerFacts {
            name: &name,
            image: &image,
            labels: &container_labels,
        };
        let host_network = inspect
            .host_config
            .as_ref()
            .and_then(|host| host.network_mode.as_deref())
            == Some("host");
        let context = LabelContext {
            defaults: &self.settings.defaults,
            filters: &self.settings.filter_names,
            yaml_jails: &self.settings.yaml_jails,
            chain_prefix: &self.settings.chain_prefix,
            host_network,
        };
        let parsed = labels::parse(&container_labels, &context);
        let origin = Arc::new(Origin::Container {
            id: id.to_string(),
            name: name.clone(),
        });
        if !self.in_scope(&container_labels) {
            tracing::debug!(%origin, "lacks a label of docker.require_labels: not watching it");
            self.ignored.insert(id.to_string());
            return;
        }
        if parsed.opted_out() {
            tracing::info!(%origin, "logjail.enable=false: not watching this container");
            self.ignored.insert(id.to_string());
            return;
        }
        let routes = self
            .routes_for(&origin, &facts, &parsed, host_network)
            .await;
        if routes.is_empty() {
            self.ignored.insert(id.to_string());
            return;
        }
        let plan = read_plan(self.settings.docker.read_mode, &inspect, &origin);
        let jails: Vec<&str> = routes.iter().map(|route| &*route.jail).collect();
        tracing::info!(
            %origin,
            jails = %jails.join(","),
            read = match &plan { ReadPlan::Logfile(_) => "logfile", ReadPlan::Api => "api" },
            "watching container"
        );
        let routes: Arc<[Route]> = routes.into();
        if self
            .wiring
            .control
            .send(MatcherControl::Attach {
                origin: origin.clone(),
                routes: routes.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        self.containers.insert(
            id.to_string(),
            Watched {
                origin,
                image,
                labels: container_labels,
                host_network,
                routes,
                plan,
                running: None,
                destroyed: false,
            },
        );
        let running = inspect
            .state
            .and_then(|state| state.running)
            .unwrap_or(false);
        // A stopped container is read too, when it has a stored position: to its end.
        if running || self.positions.contains_key(id) {
            self.start_follower(docker, id).await;
            if !running && let Some(task) = self.containers.get(id).and_then(|w| w.running.as_ref())
            {
                task.signals.died.cancel();
            }
        }
    }

    /// The jails a container feeds (decided by [`crate::routing::container_routes`]), once
    /// the jail task has created the jails its labels define. Problems are reported once, here.
    async fn routes_for(
        &mut self,
        origin: &Arc<Origin>,
        facts: &ContainerFacts<'_>,
        parsed: &ContainerLabels,
        host_network: bool,
    ) -> Vec<Route> {
        let planned = crate::routing::container_routes(
            &self.settings.jails,
            &mut self.filters,
            origin,
            facts,
            parsed,
            host_network,
        );
        let (routes, problems) =
            crate::source::define_workload_jails(&self.wiring.jails, planned).await;
        if parsed.enable == Some(true)
            && parsed.jails.is_empty()
            && parsed.defined.is_empty()
            && routes.is_empty()
            && problems.is_empty()
        {
            tracing::info!(
                %origin,
                "logjail.enable=true but no jail: add logjail.jails=NAME or \
                 logjail.jail.NAME.filter=FILTER (or a YAML `container:` source)"
            );
        }
        let id = match &**origin {
            Origin::Container { id, .. } => id.clone(),
            _ => String::new(),
        };
        let reported = self.reported.entry(id).or_default();
        for problem in problems {
            if reported.insert(problem.clone()) {
                tracing::warn!(%origin, "{problem}");
            }
        }
        routes
    }

    /// A configuration reload: jails and filters may have changed. Watched containers get
    /// their routes decided again (and lose their follower when no jail wants them any more);
    /// containers passed over before are looked at again.
    async fn reconfigured(&mut self, docker: Option<&Docker>, settings: Settings) {
        let docker_section = self.settings.docker.clone();
        self.settings = settings;
        // The `docker:` section itself takes a restart (the daemon says so).
        self.settings.docker = docker_section;
        self.filters = self.settings.filters.clone();
        self.ignored.clear();
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            let Some(watched) = self.containers.get(&id) else {
                continue;
            };
            if watched.destroyed {
                continue;
            }
            let origin = watched.origin.clone();
            let labels = watched.labels.clone();
            let image = watched.image.clone();
            let host_network = watched.host_network;
            let name = match &*origin {
                Origin::Container { name, .. } => name.clone(),
                _ => String::new(),
            };
            let facts = ContainerFacts {
                name: &name,
                image: &image,
                labels: &labels,
            };
            let context = LabelContext {
                defaults: &self.settings.defaults,
                filters: &self.settings.filter_names,
                yaml_jails: &self.settings.yaml_jails,
                chain_prefix: &self.settings.chain_prefix,
                host_network,
            };
            let parsed = labels::parse(&labels, &context);
            let routes = if parsed.opted_out() {
                Vec::new()
            } else {
                self.routes_for(&origin, &facts, &parsed, host_network)
                    .await
            };
            if routes.is_empty() {
                tracing::info!(%origin, "no jail wants this container any more: not watching it");
                self.stop_follower(&id).await;
                self.containers.remove(&id);
                self.detach_later(origin, false);
                continue;
            }
            let routes: Arc<[Route]> = routes.into();
            if let Some(watched) = self.containers.get_mut(&id) {
                watched.routes = routes.clone();
            }
            let _ = self
                .wiring
                .control
                .send(MatcherControl::Attach { origin, routes })
                .await;
        }
        if let Some(docker) = docker {
            match docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
            {
                Ok(listed) => self.reconcile(docker, listed).await,
                // The connection is failing: the next one lists the containers anyway.
                Err(error) => tracing::debug!(%error, "cannot list containers after a reload"),
            }
        }
    }

    /// Starts (or restarts) the follower of a watched container, from where reading stopped.
    async fn start_follower(&mut self, docker: &Docker, id: &str) {
        self.stop_follower(id).await;
        let Some(watched) = self.containers.get_mut(id) else {
            return;
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        let signals = Signals {
            stop: self.stop.child_token(),
            died: CancellationToken::new(),
        };
        let spec = FollowSpec {
            id: id.to_string(),
            origin: watched.origin.clone(),
            plan: watched.plan.clone(),
            resume: self.positions.get(id).cloned(),
        };
        let env = FollowEnv {
            docker: docker.clone(),
            lines: self.wiring.lines.clone(),
            watcher: self.wiring.watcher.clone(),
        };
        let ended = self.ended_tx.clone();
        let task_signals = signals.clone();
        let task_id = id.to_string();
        let handle = tokio::spawn(async move {
            let outcome = container::follow(spec, task_signals, env).await;
            let _ = ended.send((task_id, generation));
            outcome
        });
        watched.running = Some(Running {
            generation,
            signals,
            handle,
        });
    }

    /// Stops a container's follower now and keeps its position.
    async fn stop_follower(&mut self, id: &str) {
        let Some(task) = self.containers.get_mut(id).and_then(|w| w.running.take()) else {
            return;
        };
        task.signals.stop.cancel();
        self.collect(id, task.handle).await;
    }

    async fn collect(&mut self, id: &str, handle: JoinHandle<Outcome>) -> Outcome {
        match handle.await {
            Ok(outcome) => {
                if let Some(position) = &outcome.last_position {
                    self.positions.insert(id.to_string(), position.clone());
                }
                outcome
            }
            Err(error) => {
                tracing::error!(container = %id, %error, "container follower failed");
                Outcome::default()
            }
        }
    }

    async fn follower_ended(&mut self, id: &str, generation: u64, docker: Option<&Docker>) {
        let Some(watched) = self.containers.get_mut(id) else {
            return;
        };
        if watched.running.as_ref().map(|task| task.generation) != Some(generation) {
            return;
        }
        let Some(task) = watched.running.take() else {
            return;
        };
        let died = task.signals.died.is_cancelled();
        let outcome = self.collect(id, task.handle).await;
        let Some(watched) = self.containers.get_mut(id) else {
            return;
        };
        if watched.destroyed {
            self.forget(id);
            return;
        }
        if outcome.file_unreadable && matches!(watched.plan, ReadPlan::Logfile(_)) {
            watched.plan = ReadPlan::Api;
            if !died && let Some(docker) = docker {
                self.start_follower(docker, id).await;
            }
        } else if outcome.interrupted && !died {
            self.restart_queue
                .push_back((Instant::now() + RESTART_DELAY, id.to_string()));
        }
    }

    async fn destroyed(&mut self, id: &str) {
        self.ignored.remove(id);
        self.reported.remove(id);
        let Some(watched) = self.containers.get_mut(id) else {
            return;
        };
        watched.destroyed = true;
        if let Origin::Container { name, .. } = &*watched.origin
            && !name.is_empty()
        {
            // The jails its labels alone defined keep their bans until they end, and the
            // next container's labels win (compose re-creating it with other labels).
            let _ = self
                .wiring
                .jails
                .send(JailEvent::DefinerGone {
                    defined_by: format!("container {name}"),
                })
                .await;
        }
        let Some(watched) = self.containers.get(id) else {
            return;
        };
        match &watched.running {
            // Let it read what the container wrote last; it is forgotten when it ends.
            Some(task) => task.signals.died.cancel(),
            None => self.forget(id),
        }
    }

    /// Drops a removed container: its position, and (after a delay) its matcher state.
    fn forget(&mut self, id: &str) {
        self.positions.remove(id);
        if let Some(watched) = self.containers.remove(id) {
            tracing::debug!(origin = %watched.origin, "container removed");
            self.detach_later(watched.origin, true);
        }
    }

    async fn renamed(&mut self, docker: &Docker, id: &str, name: String) {
        let Some(watched) = self.containers.get_mut(id) else {
            return;
        };
        let old = watched.origin.clone();
        let origin = Arc::new(Origin::Container {
            id: id.to_string(),
            name,
        });
        tracing::info!(from = %old, to = %origin, "container renamed");
        watched.origin = origin.clone();
        let routes = watched.routes.clone();
        let was_following = watched
            .running
            .as_ref()
            .map(|task| !task.signals.died.is_cancelled());
        if self
            .wiring
            .control
            .send(MatcherControl::Attach { origin, routes })
            .await
            .is_err()
        {
            return;
        }
        // The follower carries the origin: restart it under the new name, where it stopped.
        match was_following {
            Some(true) => self.start_follower(docker, id).await,
            Some(false) => {
                self.start_follower(docker, id).await;
                if let Some(task) = self.containers.get(id).and_then(|w| w.running.as_ref()) {
                    task.signals.died.cancel();
                }
            }
            None => {}
        }
        self.detach_later(old, false);
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

    async fn send_due_detaches(&mut self, all: bool) {
        let now = Instant::now();
        while let Some((due, _)) = self.detach_queue.front() {
            if !all && *due > now {
                break;
            }
            let Some((_, control)) = self.detach_queue.pop_front() else {
                break;
            };
            let _ = self.wiring.control.send(control).await;
        }
    }

    async fn shut_down(mut self) {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            self.stop_follower(&id).await;
        }
        self.send_due_detaches(true).await;
        tracing::debug!("docker source stopped");
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// How to read a container: its json-file log when the driver writes one and it can be
/// opened here (unless `read_mode: api`), else the API.
fn read_plan(mode: ReadMode, inspect: &ContainerInspectResponse, origin: &Origin) -> ReadPlan {
    if mode == ReadMode::Api {
        return ReadPlan::Api;
    }
    let driver = inspect
        .host_config
        .as_ref()
        .and_then(|config| config.log_config.as_ref())
        .and_then(|log| log.typ.clone())
        .unwrap_or_default();
    let path = inspect.log_path.clone().unwrap_or_default();
    let reason = if driver != "json-file" {
        format!("its log driver is {driver:?}, not json-file")
    } else if path.is_empty() {
        "Docker reports no log path".to_string()
    } else {
        match File::open(&path) {
            Ok(_) => return ReadPlan::Logfile(PathBuf::from(path)),
            Err(error) => format!("cannot open its log file {path}: {error}"),
        }
    };
    if mode == ReadMode::Logfile {
        tracing::warn!(%origin, %reason, "read_mode is logfile, but reading through the Docker API");
    } else {
        tracing::debug!(%origin, %reason, "reading through the Docker API");
    }
    ReadPlan::Api
}

/// Names a label may use as a filter: the configuration's and the built-ins.
/// Whether any YAML jail selects containers (otherwise only labels make one interesting).
pub(super) fn has_selectors(jails: &[crate::config::JailConfig]) -> bool {
    any_selector(jails)
}
