//! Discovery: which pod containers have log files, kept in step with the log directory, and
//! one follower per container that is wanted.
//!
//! The log directory is looked at (see [`super::scan`]) at start, whenever inotify says a pod
//! folder, a container folder or a container's next attempt file appeared or went, and every
//! `rescan_interval` in case a wake-up was missed. Each look is compared with what is known:
//! - a new container is announced ([`PodEvent::Found`]) and followed if the answer says so,
//!   from the start of its newest file (or from its stored position);
//! - a restart (a new `<n>.log`) hands the follower its next file: the old one is read to its
//!   end first, then the new one from its start;
//! - a container whose files are gone (its pod was deleted) has its follower read what is left
//!   and stop ([`PodEvent::Gone`]).
//!
//! Rotation within one attempt (`0.log` renamed, a new `0.log` opened by the runtime) is the
//! file follower's business and needs nothing here.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PodContainer;
use super::follower::{self, FollowEnv, FollowSpec, Outcome, Signals};
use super::scan::{self, Change, Inventory};
use crate::messages::{LineBatch, Origin, Position};
use crate::source::watch::FileWatcher;

/// How often the log directory is looked at without a wake-up.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// How often the log directory is looked at when inotify cannot be used at all.
const POLLING_RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How often an idle container log is looked at without a wake-up (as for Docker's json-file
/// logs: a local file system where inotify misses nothing, and hundreds of idle files).
pub const DEFAULT_SAFETY_POLL: Duration = Duration::from_secs(5);
/// How long after a follower failed (permission denied, I/O error) it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(10);
/// Looks in a row when each one added a watch (something appeared while the last was made).
const MAX_LOOKS_IN_A_ROW: usize = 3;

/// The origin a container's lines carry; its `position_key` is where the matcher stores its
/// position.
pub type OriginOf = Arc<dyn Fn(&PodContainer) -> Origin + Send + Sync>;

/// An origin for each container until the messages have one of their own: the container's
/// log directory as a file origin, which is unique per container and stable over restarts.
pub fn directory_origin(log_dir: &Path) -> OriginOf {
    let log_dir = log_dir.to_path_buf();
    Arc::new(move |container: &PodContainer| Origin::File {
        path: container.dir(&log_dir),
    })
}

/// What the pods source takes from the configuration.
#[derive(Debug, Clone)]
pub struct PodSourceSettings {
    /// `/var/log/pods` on a node.
    pub log_dir: PathBuf,
    pub rescan_interval: Duration,
    pub safety_poll: Duration,
}

impl PodSourceSettings {
    pub fn new(log_dir: PathBuf) -> PodSourceSettings {
        PodSourceSettings {
            log_dir,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            safety_poll: DEFAULT_SAFETY_POLL,
        }
    }
}

/// The channels the pods source feeds; the daemon owns the other ends.
#[derive(Clone)]
pub struct PodWiring {
    /// Raw CRI lines of every followed container, to the matcher.
    pub lines: mpsc::Sender<LineBatch>,
    /// What discovery found, for whoever routes lines to jails.
    pub events: mpsc::Sender<PodEvent>,
    /// The shared inotify watcher.
    pub watcher: FileWatcher,
    pub origin_of: OriginOf,
}

/// What discovery tells.
#[derive(Debug)]
pub enum PodEvent {
    /// A container has log files: answer whether to follow it (after routing its origin, so
    /// that its first lines find their jails). No answer (the sender dropped) is a no.
    /// Discovery waits for the answer: it must not wait on discovery in turn.
    Found {
        container: Arc<PodContainer>,
        origin: Arc<Origin>,
        /// Its newest attempt.
        restart: u32,
        /// When the look that first saw its files began. The runtime writes a container's
        /// log only after its pod's sandbox exists, so a listing of the runtime's pods begun
        /// after this instant has the pod, with its annotations.
        seen_at: Instant,
        follow: oneshot::Sender<bool>,
    },
    /// A followed container restarted: its attempt `restart` is read next.
    Restarted {
        container: Arc<PodContainer>,
        origin: Arc<Origin>,
        restart: u32,
    },
    /// A container that was followed is gone (its pod deleted) and its last lines are read:
    /// its origin can be detached and its position forgotten.
    Gone {
        container: Arc<PodContainer>,
        origin: Arc<Origin>,
        last_position: Option<Position>,
    },
    /// Reading a container's files failed; it is tried again later.
    Failed {
        container: Arc<PodContainer>,
        origin: Arc<Origin>,
        error: String,
    },
    /// After the first look: stored positions (by key) of containers that are gone, which can
    /// be forgotten.
    StalePositions(Vec<String>),
}

/// What discovery can be told while it runs.
#[derive(Debug)]
pub enum PodCommand {
    /// Ask again ([`PodEvent::Found`]) about every container not followed now: after a
    /// configuration reload, or when a pod's annotations became known.
    Reconsider,
    /// Stop following this container (no jail wants it any more); its position is kept.
    Release(PodContainer),
}

/// Runs discovery until `stop`: `positions` are the stored positions of pod containers, by
/// their origin's `position_key`.
pub async fn run(
    settings: PodSourceSettings,
    wiring: PodWiring,
    positions: HashMap<String, Position>,
    commands: mpsc::Receiver<PodCommand>,
    stop: CancellationToken,
) {
    Discovery::new(settings, wiring, positions, stop)
        .run(commands)
        .await;
}

/// A container seen in the log directory.
struct Tracked {
    container: Arc<PodContainer>,
    origin: Arc<Origin>,
    /// Its newest attempt seen.
    latest: u32,
    /// When the look that first found its files began (see [`PodEvent::Found`]).
    seen_at: Instant,
    state: State,
    /// Its files are gone: once its follower has read what is left, it is forgotten.
    gone: bool,
}

enum State {
    /// Not wanted (the answer to `Found` was no).
    Declined,
    /// Wanted before and released, or its follower ended: not read now.
    Idle,
    /// Its follower failed; tried again from `retry_at`.
    Failed {
        retry_at: Instant,
    },
    Following(Running),
}

/// A follower task and how to steer it.
struct Running {
    generation: u64,
    stop: CancellationToken,
    finish: CancellationToken,
    newer: mpsc::UnboundedSender<u32>,
    /// Released, and asked about again before it ended: asked once it has ended (a new
    /// follower before the old one's last position is known would read lines twice).
    ask_when_ended: bool,
}

struct Discovery {
    settings: PodSourceSettings,
    wiring: PodWiring,
    /// Where each container's reading stopped, by position key: from the store at start, then
    /// from every follower that ends.
    positions: HashMap<String, Position>,
    tracked: BTreeMap<PodContainer, Tracked>,
    /// Followers say here that they ended (one message per task, so unbounded is bounded).
    ended_tx: mpsc::UnboundedSender<(PodContainer, u64, Outcome)>,
    ended_rx: mpsc::UnboundedReceiver<(PodContainer, u64, Outcome)>,
    next_generation: u64,
    /// Woken by every directory watch.
    wake: Arc<Notify>,
    /// The watches that wake discovery, by what they watch; cancelling ends the task.
    watches: HashMap<PathBuf, CancellationToken>,
    /// Problems of the last look, each said once while it lasts.
    reported: HashSet<String>,
    /// The log directory could not be read at the last look (said once).
    unreadable: bool,
    first_look_done: bool,
    stop: CancellationToken,
}

impl Discovery {
    fn new(
        settings: PodSourceSettings,
        wiring: PodWiring,
        positions: HashMap<String, Position>,
        stop: CancellationToken,
    ) -> Discovery {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Discovery {
            settings,
            wiring,
            positions,
            tracked: BTreeMap::new(),
            ended_tx,
            ended_rx,
            next_generation: 0,
            wake: Arc::new(Notify::new()),
            watches: HashMap::new(),
            reported: HashSet::new(),
            unreadable: false,
            first_look_done: false,
            stop,
        }
    }

    fn rescan_interval(&self) -> Duration {
        if self.wiring.watcher.is_polling() {
            self.settings.rescan_interval.min(POLLING_RESCAN_INTERVAL)
        } else {
            self.settings.rescan_interval
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<PodCommand>) {
        tracing::info!(log_dir = %self.settings.log_dir.display(), "following pod logs");
        self.look().await;
        let mut next_look = Instant::now() + self.rescan_interval();
        let mut commands_open = true;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                Some((container, generation, outcome)) = self.ended_rx.recv() => {
                    self.follower_ended(container, generation, outcome).await;
                }
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.command(command).await,
                    None => commands_open = false,
                },
                _ = self.wake.notified() => {
                    self.look().await;
                    next_look = Instant::now() + self.rescan_interval();
                }
                _ = tokio::time::sleep_until(next_look) => {
                    self.look().await;
                    next_look = Instant::now() + self.rescan_interval();
                }
            }
        }
        for tracked in self.tracked.values() {
            if let State::Following(running) = &tracked.state {
                running.stop.cancel();
            }
        }
        for token in self.watches.values() {
            token.cancel();
        }
    }

    /// Looks at the log directory and acts on what changed.
    async fn look(&mut self) {
        let mut inventory = None;
        let mut looked_at = Instant::now();
        for _ in 0..MAX_LOOKS_IN_A_ROW {
            looked_at = Instant::now();
            let log_dir = self.settings.log_dir.clone();
            let found = match tokio::task::spawn_blocking(move || scan::scan(&log_dir)).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(%error, "looking at the pod log directory failed");
                    return;
                }
            };
            let found = match found {
                Ok(found) => {
                    if self.unreadable {
                        tracing::info!(log_dir = %self.settings.log_dir.display(), "pod log directory readable again");
                    }
                    self.unreadable = false;
                    found
                }
                Err(error) => {
                    if !self.unreadable {
                        tracing::warn!(%error, "pod logs: retrying at every look");
                    }
                    self.unreadable = true;
                    return;
                }
            };
            // Watches first, then another look if any was added: what appeared between the
            // look and the watch is seen now rather than at the next interval.
            let added = self.update_watches(&found);
            inventory = Some(found);
            if !added {
                break;
            }
        }
        let Some(inventory) = inventory else {
            return;
        };
        self.report_problems(&inventory);
        let known: BTreeMap<PodContainer, u32> = self
            .tracked
            .iter()
            .map(|(container, tracked)| (container.clone(), tracked.latest))
            .collect();
        for change in scan::changes(&known, &inventory) {
            if self.stop.is_cancelled() {
                return;
            }
            match change {
                Change::Appeared { container, latest } => {
                    self.appeared(container, latest, looked_at).await;
                }
                Change::Restarted { container, newer } => self.restarted(&container, &newer).await,
                Change::Gone { container } => self.gone(&container).await,
            }
        }
        self.retry_failed();
        if !self.first_look_done {
            self.first_look_done = true;
            self.drop_stale_positions().await;
        }
        // The next-attempt watches follow the newest attempts just learnt.
        self.update_watches(&inventory);
    }

    fn report_problems(&mut self, inventory: &Inventory) {
        let now: HashSet<String> = inventory.problems.iter().map(ToString::to_string).collect();
        for problem in &now {
            if !self.reported.contains(problem) {
                tracing::warn!("pod logs: passing over {problem}");
            }
        }
        self.reported = now;
    }

    /// Makes the watches those `inventory` needs; `true` when one was added.
    fn update_watches(&mut self, inventory: &Inventory) -> bool {
        if self.wiring.watcher.is_polling() {
            // Every watch would poll on its own: one look per interval does the same for all.
            return false;
        }
        // `true`: the entries of a directory; `false`: one name (and names it prefixes).
        let mut wanted: HashMap<PathBuf, bool> = HashMap::new();
        wanted.insert(self.settings.log_dir.clone(), true);
        for pod_dir in &inventory.pod_dirs {
            wanted.insert(pod_dir.clone(), true);
        }
        for dir in &inventory.empty_container_dirs {
            wanted.insert(dir.clone(), true);
        }
        for (container, attempts) in &inventory.containers {
            let newest = attempts.keys().next_back().copied().unwrap_or(0);
            let latest = self
                .tracked
                .get(container)
                .map_or(newest, |tracked| tracked.latest.max(newest));
            // Only the next attempt's name: writes to the current file must not wake
            // discovery.
            let next = container
                .dir(&self.settings.log_dir)
                .join(format!("{}.log", latest.saturating_add(1)));
            wanted.insert(next, false);
        }
        self.watches.retain(|path, token| {
            let keep = wanted.contains_key(path);
            if !keep {
                token.cancel();
            }
            keep
        });
        let mut added = false;
        for (path, whole_directory) in wanted {
            if self.watches.contains_key(&path) {
                continue;
            }
            let token = self.stop.child_token();
            let mut watch = if whole_directory {
                self.wiring.watcher.watch_directory(&path)
            } else {
                self.wiring.watcher.watch(&path)
            };
            let wake = Arc::clone(&self.wake);
            let cancelled = token.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = cancelled.cancelled() => break,
                        _ = watch.changed() => wake.notify_one(),
                    }
                }
            });
            self.watches.insert(path, token);
            added = true;
        }
        added
    }

    async fn appeared(&mut self, container: PodContainer, latest: u32, seen_at: Instant) {
        let container = Arc::new(container);
        let origin = Arc::new((self.wiring.origin_of)(&container));
        self.tracked.insert(
            (*container).clone(),
            Tracked {
                container: Arc::clone(&container),
                origin: Arc::clone(&origin),
                latest,
                seen_at,
                state: State::Declined,
                gone: false,
            },
        );
        self.ask(&container).await;
    }

    /// Asks whether to follow a container not followed now, and starts following it if so.
    async fn ask(&mut self, container: &PodContainer) {
        let Some(tracked) = self.tracked.get(container) else {
            return;
        };
        if tracked.gone || matches!(tracked.state, State::Following(_)) {
            return;
        }
        let (reply, answer) = oneshot::channel();
        let event = PodEvent::Found {
            container: Arc::clone(&tracked.container),
            origin: Arc::clone(&tracked.origin),
            restart: tracked.latest,
            seen_at: tracked.seen_at,
            follow: reply,
        };
        if self.wiring.events.send(event).await.is_err() {
            return;
        }
        let follow = tokio::select! {
            _ = self.stop.cancelled() => return,
            answer = answer => answer.unwrap_or(false),
        };
        if follow {
            self.start_follower(container);
        } else if let Some(tracked) = self.tracked.get_mut(container) {
            tracing::debug!(container = %tracked.container, "not wanted: not following it");
            tracked.state = State::Declined;
        }
    }

    fn start_follower(&mut self, container: &PodContainer) {
        let Some(tracked) = self.tracked.get_mut(container) else {
            return;
        };
        let key = tracked.origin.position_key();
        let resume = self.positions.get(&key).cloned();
        let dir = container.dir(&self.settings.log_dir);
        let latest = tracked.latest;
        // A stored position may be in an older attempt (the container restarted while
        // logjail was down): the rest of that one first, then every newer one.
        let first = match &resume {
            Some(Position::File { device, inode, .. }) => {
                scan::attempt_of(&dir, *device, *inode).filter(|attempt| *attempt <= latest)
            }
            _ => None,
        }
        .unwrap_or(latest);
        let attempts: VecDeque<u32> = (first..=latest).collect();
        let generation = self.next_generation;
        self.next_generation += 1;
        let stop = self.stop.child_token();
        let finish = CancellationToken::new();
        let (newer_tx, newer_rx) = mpsc::unbounded_channel();
        let spec = FollowSpec {
            container: Arc::clone(&tracked.container),
            origin: Arc::clone(&tracked.origin),
            dir,
            attempts,
            resume,
            safety_poll: self.settings.safety_poll,
        };
        let signals = Signals {
            stop: stop.clone(),
            finish: finish.clone(),
            newer: newer_rx,
        };
        let env = FollowEnv {
            lines: self.wiring.lines.clone(),
            watcher: self.wiring.watcher.clone(),
        };
        if tracked.gone {
            finish.cancel();
        }
        tracing::info!(container = %tracked.container, attempt = latest, "following pod container log");
        let ended = self.ended_tx.clone();
        let key = (*tracked.container).clone();
        tokio::spawn(async move {
            let outcome = follower::follow(spec, signals, env).await;
            let _ = ended.send((key, generation, outcome));
        });
        tracked.state = State::Following(Running {
            generation,
            stop,
            finish,
            newer: newer_tx,
            ask_when_ended: false,
        });
    }

    async fn restarted(&mut self, container: &PodContainer, newer: &[u32]) {
        let Some(tracked) = self.tracked.get_mut(container) else {
            return;
        };
        let Some(&newest) = newer.last() else {
            return;
        };
        if tracked.gone || newest <= tracked.latest {
            return;
        }
        tracked.latest = newest;
        let State::Following(running) = &tracked.state else {
            return;
        };
        for &attempt in newer {
            let _ = running.newer.send(attempt);
        }
        tracing::info!(container = %tracked.container, attempt = newest, "pod container restarted: reading its new log file");
        let event = PodEvent::Restarted {
            container: Arc::clone(&tracked.container),
            origin: Arc::clone(&tracked.origin),
            restart: newest,
        };
        let _ = self.wiring.events.send(event).await;
    }

    async fn gone(&mut self, container: &PodContainer) {
        let Some(tracked) = self.tracked.get_mut(container) else {
            return;
        };
        if tracked.gone {
            return;
        }
        tracked.gone = true;
        match &tracked.state {
            State::Following(running) => {
                // The end comes through `follower_ended`, once the last lines are read.
                running.finish.cancel();
            }
            State::Declined => {
                self.tracked.remove(container);
            }
            State::Idle | State::Failed { .. } => {
                if let Some(tracked) = self.tracked.remove(container) {
                    self.forget(tracked).await;
                }
            }
        }
    }

    /// Says that a container is gone and drops what is kept about it.
    async fn forget(&mut self, tracked: Tracked) {
        let last_position = self.positions.remove(&tracked.origin.position_key());
        tracing::info!(container = %tracked.container, "pod container gone: its logs are read");
        let event = PodEvent::Gone {
            container: tracked.container,
            origin: tracked.origin,
            last_position,
        };
        let _ = self.wiring.events.send(event).await;
    }

    async fn follower_ended(&mut self, container: PodContainer, generation: u64, outcome: Outcome) {
        let Some(tracked) = self.tracked.get_mut(&container) else {
            return;
        };
        let ask_again = match &tracked.state {
            State::Following(running) if running.generation == generation => running.ask_when_ended,
            _ => return,
        };
        let key = tracked.origin.position_key();
        if let Some(position) = outcome.last_position {
            self.positions.insert(key, position);
        }
        if tracked.gone {
            if let Some(tracked) = self.tracked.remove(&container) {
                self.forget(tracked).await;
            }
            return;
        }
        match outcome.error {
            Some(error) => {
                tracing::warn!(container = %tracked.container, %error, "reading pod container log failed: trying again later");
                tracked.state = State::Failed {
                    retry_at: Instant::now() + RETRY_DELAY,
                };
                let event = PodEvent::Failed {
                    container: Arc::clone(&tracked.container),
                    origin: Arc::clone(&tracked.origin),
                    error: error.to_string(),
                };
                let _ = self.wiring.events.send(event).await;
            }
            None => {
                tracked.state = State::Idle;
                if ask_again {
                    self.ask(&container).await;
                }
            }
        }
    }

    fn retry_failed(&mut self) {
        let now = Instant::now();
        let due: Vec<PodContainer> = self
            .tracked
            .iter()
            .filter(|(_, tracked)| {
                !tracked.gone
                    && matches!(tracked.state, State::Failed { retry_at } if retry_at <= now)
            })
            .map(|(container, _)| container.clone())
            .collect();
        for container in due {
            self.start_follower(&container);
        }
    }

    async fn command(&mut self, command: PodCommand) {
        match command {
            PodCommand::Reconsider => {
                for tracked in self.tracked.values_mut() {
                    if let State::Following(running) = &mut tracked.state
                        && running.stop.is_cancelled()
                    {
                        running.ask_when_ended = true;
                    }
                }
                let waiting: Vec<PodContainer> = self
                    .tracked
                    .iter()
                    .filter(|(_, tracked)| {
                        !tracked.gone && matches!(tracked.state, State::Declined | State::Idle)
                    })
                    .map(|(container, _)| container.clone())
                    .collect();
                for container in waiting {
                    self.ask(&container).await;
                }
            }
            PodCommand::Release(container) => {
                if let Some(tracked) = self.tracked.get(&container)
                    && let State::Following(running) = &tracked.state
                {
                    tracing::info!(container = %tracked.container, "no longer wanted: not following it");
                    // Its end (and its last position) comes through `follower_ended`.
                    running.stop.cancel();
                }
            }
        }
    }

    /// Stored positions of containers that no longer exist, said once after the first look.
    async fn drop_stale_positions(&mut self) {
        let present: HashSet<String> = self
            .tracked
            .values()
            .map(|tracked| tracked.origin.position_key())
            .collect();
        let stale: Vec<String> = self
            .positions
            .keys()
            .filter(|key| !present.contains(*key))
            .cloned()
            .collect();
        if stale.is_empty() {
            return;
        }
        for key in &stale {
            self.positions.remove(key);
        }
        let _ = self
            .wiring
            .events
            .send(PodEvent::StalePositions(stale))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    struct Running {
        lines: mpsc::Receiver<LineBatch>,
        events: mpsc::Receiver<PodEvent>,
        commands: mpsc::Sender<PodCommand>,
        stop: CancellationToken,
    }

    fn start(log_dir: &Path, positions: HashMap<String, Position>) -> Running {
        let stop = CancellationToken::new();
        let (lines_tx, lines) = mpsc::channel(16);
        let (events_tx, events) = mpsc::channel(16);
        let (commands, commands_rx) = mpsc::channel(4);
        let wiring = PodWiring {
            lines: lines_tx,
            events: events_tx,
            watcher: FileWatcher::start(stop.clone()).unwrap(),
            origin_of: directory_origin(log_dir),
        };
        tokio::spawn(run(
            PodSourceSettings::new(log_dir.to_path_buf()),
            wiring,
            positions,
            commands_rx,
            stop.clone(),
        ));
        Running {
            lines,
            events,
            commands,
            stop,
        }
    }

    impl Running {
        async fn event(&mut self) -> PodEvent {
            tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("an event in time")
                .expect("discovery runs")
        }

        /// Answers the next event, a `Found`, with `follow`.
        async fn answer_found(&mut self, follow: bool) -> Arc<PodContainer> {
            match self.event().await {
                PodEvent::Found {
                    container,
                    follow: reply,
                    ..
                } => {
                    reply.send(follow).unwrap();
                    container
                }
                other => panic!("expected Found, got {other:?}"),
            }
        }

        async fn texts(&mut self, count: usize) -> Vec<String> {
            let mut texts = Vec::new();
            while texts.len() < count {
                let batch = tokio::time::timeout(WAIT, self.lines.recv())
                    .await
                    .expect("lines in time")
                    .expect("discovery runs");
                texts.extend(batch.lines.into_iter().map(|line| line.text));
            }
            texts
        }
    }

    fn append(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn declined_containers_are_asked_again_and_released_ones_resume_where_they_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("shop_web-0_u-1");
        let log = pod_dir.join("nginx/0.log");
        append(&log, "one\n");
        let mut discovery = start(dir.path(), HashMap::new());
        let container = discovery.answer_found(false).await;
        assert_eq!(container.pod, "web-0");
        append(&log, "two\n");
        discovery
            .commands
            .send(PodCommand::Reconsider)
            .await
            .unwrap();
        discovery.answer_found(true).await;
        assert_eq!(discovery.texts(2).await, ["one", "two"]);
        discovery
            .commands
            .send(PodCommand::Release((*container).clone()))
            .await
            .unwrap();
        // Asked again once released: it is not followed any more.
        discovery
            .commands
            .send(PodCommand::Reconsider)
            .await
            .unwrap();
        append(&log, "three\n");
        discovery.answer_found(true).await;
        assert_eq!(
            discovery.texts(1).await,
            ["three"],
            "resumed, nothing twice"
        );
        std::fs::remove_dir_all(&pod_dir).unwrap();
        match discovery.event().await {
            PodEvent::Gone {
                container: gone,
                last_position: Some(Position::File { offset, .. }),
                ..
            } => {
                assert_eq!(gone, container);
                assert_eq!(offset, 14);
            }
            other => panic!("expected Gone with a position, got {other:?}"),
        }
        discovery.stop.cancel();
    }

    #[tokio::test]
    async fn positions_of_containers_gone_while_down_are_stale_after_the_first_look() {
        let dir = tempfile::tempdir().unwrap();
        append(&dir.path().join("shop_web-0_u-1/nginx/0.log"), "one\n");
        let origin_of = directory_origin(dir.path());
        let gone = PodContainer {
            namespace: "shop".into(),
            pod: "web-0".into(),
            uid: "u-0".into(),
            container: "nginx".into(),
        };
        let stale_key = origin_of(&gone).position_key();
        let position = Position::File {
            device: 1,
            inode: 2,
            offset: 3,
            head: Arc::from(&b""[..]),
        };
        let mut discovery = start(dir.path(), HashMap::from([(stale_key.clone(), position)]));
        discovery.answer_found(true).await;
        match discovery.event().await {
            PodEvent::StalePositions(keys) => assert_eq!(keys, [stale_key]),
            other => panic!("expected StalePositions, got {other:?}"),
        }
        discovery.stop.cancel();
    }
}
