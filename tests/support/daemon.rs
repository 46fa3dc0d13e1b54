//! The one in-process daemon harness: `logjail::daemon::run_with` on a configuration the test
//! made, with the options a test picks (clock, own addresses, firewall, an event channel of
//! its own), waits on its control socket and its decisions, the real CLI against it, and a
//! stop that waits for the flush. Every test that runs the daemon inside its process starts
//! it here, so a change of the daemon's entry point is made in one place.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use logjail::clock::SharedClock;
use logjail::config::Config;
use logjail::daemon::{DaemonError, DaemonOptions};
use logjail::jail::Decision;
use logjail::messages::DaemonEvent;
use logjail::messages::Origin;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::process::cli_async;
use super::{WAIT, capture_log, log_tail, origin_name, reap_leftovers};

/// How long a daemon on local files gets for what takes it moments (the socket, an event, its
/// stop); a test against a real engine asks for [`WAIT`] instead.
pub const LOCAL_WAIT: Duration = Duration::from_secs(10);

/// Events kept for a test that reads them late; a flood test must not see them lag.
const EVENT_CAPACITY: usize = 65_536;

/// The options of one daemon before it starts, builder style. Defaults: the system clock,
/// no own addresses (test lines use documentation addresses, never this host's), no
/// firewall, a channel of its own for events, and [`LOCAL_WAIT`] as patience.
pub struct DaemonBuilder {
    config: Config,
    clock: Option<SharedClock>,
    own_addresses: Option<Vec<IpAddr>>,
    manage_firewall: bool,
    events: Option<broadcast::Sender<DaemonEvent>>,
    patience: Duration,
}

impl DaemonBuilder {
    /// The clock the daemon's jails and stamps use (a test with a paused tokio clock hands in
    /// one it moves itself).
    pub fn clock(mut self, clock: SharedClock) -> DaemonBuilder {
        self.clock = Some(clock);
        self
    }

    /// What `ignoreself` counts as this machine; `None` asks the system, as `logjail run` does.
    pub fn own_addresses(mut self, addresses: Option<Vec<IpAddr>>) -> DaemonBuilder {
        self.own_addresses = addresses;
        self
    }

    /// Whether bans go into the firewall of the namespace the test runs in. Only tests that
    /// run inside a namespace of their own may turn it on.
    pub fn manage_firewall(mut self, manage: bool) -> DaemonBuilder {
        self.manage_firewall = manage;
        self
    }

    /// Sends the daemon's events into a channel the test made (to share it between daemons
    /// or subscribe more than once); the harness still subscribes to it.
    pub fn events(mut self, sender: broadcast::Sender<DaemonEvent>) -> DaemonBuilder {
        self.events = Some(sender);
        self
    }

    /// The longest wait for the socket, one event or the stop.
    pub fn patience(mut self, patience: Duration) -> DaemonBuilder {
        self.patience = patience;
        self
    }

    /// Spawns the daemon on the current tokio runtime. Leftovers of killed Docker test runs
    /// are removed first when the configuration talks to Docker.
    pub fn start(self) -> TestDaemon {
        capture_log();
        if self.config.docker.enabled {
            reap_leftovers();
        }
        let sender = self
            .events
            .unwrap_or_else(|| broadcast::channel(EVENT_CAPACITY).0);
        let events = sender.subscribe();
        let mut options = DaemonOptions {
            events: sender,
            own_addresses: self.own_addresses,
            manage_firewall: self.manage_firewall,
            ..DaemonOptions::default()
        };
        if let Some(clock) = self.clock {
            options.clock = clock;
        }
        let socket = self.config.control.socket.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(logjail::daemon::run_with(
            self.config,
            options,
            shutdown.clone(),
        ));
        TestDaemon {
            events,
            backlog: VecDeque::new(),
            socket,
            patience: self.patience,
            shutdown,
            task: Some(task),
        }
    }
}

/// A daemon running in this process; cancelled when dropped (a failing test stops it too).
pub struct TestDaemon {
    /// Every event since the start, for tests that read the stream themselves.
    pub events: broadcast::Receiver<DaemonEvent>,
    /// Events received but not asked for yet.
    backlog: VecDeque<DaemonEvent>,
    socket: PathBuf,
    patience: Duration,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
}

/// `config` with `store:` and `control:` sections pointing into `dir` added, and metrics off
/// (tests run side by side; each would want the same port).
pub fn config_with_store(yaml: &str, dir: &Path) -> Config {
    let text = format!(
        "{yaml}\nstore:\n  path: {}\ncontrol:\n  socket: {}\nmetrics:\n  enabled: false\n",
        dir.join("logjail.db").display(),
        dir.join("logjail.sock").display()
    );
    Config::from_yaml_str(&text, "test.yaml").unwrap_or_else(|errors| panic!("{errors}"))
}

/// A configuration from YAML text that must be valid.
pub fn config_from_yaml(text: &str) -> Config {
    Config::from_yaml_str(text, "test.yaml").unwrap_or_else(|errors| panic!("{errors}"))
}

impl TestDaemon {
    /// The options for a daemon on `config` (store, socket and metrics are the test's).
    pub fn builder(config: Config) -> DaemonBuilder {
        DaemonBuilder {
            config,
            clock: None,
            own_addresses: Some(Vec::new()),
            manage_firewall: false,
            events: None,
            patience: LOCAL_WAIT,
        }
    }

    /// Starts the daemon with `yaml` (which must have no `store:`, `control:` or `metrics:`),
    /// with the patience a real Docker engine needs.
    pub fn start(yaml: &str, dir: &Path) -> TestDaemon {
        TestDaemon::start_config(config_with_store(yaml, dir))
    }

    /// [`TestDaemon::start`] with a configuration made by the test (one read from a file can
    /// be reloaded).
    pub fn start_config(config: Config) -> TestDaemon {
        TestDaemon::builder(config).patience(WAIT).start()
    }

    /// The control socket of the configuration.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Waits until the control socket exists (the daemon takes commands from then on).
    pub async fn wait_for_socket(&self) {
        let socket = self.socket.clone();
        tokio::time::timeout(self.patience, async {
            while !socket.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "control socket {} within {:?}; log:\n{}",
                self.socket.display(),
                self.patience,
                log_tail()
            )
        });
    }

    /// The real `logjail` CLI against this daemon's socket.
    pub async fn cli(&self, args: &[&str]) -> Output {
        cli_async(&self.socket, args).await
    }

    /// Stops the daemon and waits for it (positions and bans flushed); panics if it does not
    /// stop in time or ends with an error.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(self.patience, task)
            .await
            .expect("daemon stops within its grace period")
            .unwrap()
            .unwrap();
    }

    /// The next event that `wanted` picks, from those kept back first: events for other
    /// containers are kept for later calls, not lost.
    pub async fn next_event<T>(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&DaemonEvent) -> Option<T>,
    ) -> T {
        if let Some(index) = self
            .backlog
            .iter()
            .position(|event| wanted(event).is_some())
        {
            let event = self.backlog.remove(index).unwrap();
            return wanted(&event).unwrap();
        }
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no {what} within {:?}; log:\n{}", self.patience, log_tail())
                })
                .expect("event channel open and not lagging");
            match wanted(&event) {
                Some(found) => return found,
                None => self.backlog.push_back(event),
            }
        }
    }

    /// The next event for which `want` holds.
    pub async fn next_where(
        &mut self,
        what: &str,
        mut want: impl FnMut(&DaemonEvent) -> bool,
    ) -> DaemonEvent {
        self.next_event(what, |event| want(event).then(|| event.clone()))
            .await
    }

    /// The next ban, whatever its jail and address.
    pub async fn next_ban(&mut self) -> DaemonEvent {
        self.next_where("ban", |event| matches!(event, DaemonEvent::Banned { .. }))
            .await
    }

    /// The next `count` failures judged by any jail, in order: address and decision.
    pub async fn failures(&mut self, count: usize) -> Vec<(IpAddr, Decision)> {
        let mut judged = Vec::new();
        while judged.len() < count {
            let failure = self
                .next_event("failure", |event| match event {
                    DaemonEvent::Failure { host, decision, .. } => Some((*host, decision.clone())),
                    _ => None,
                })
                .await;
            judged.push(failure);
        }
        judged
    }

    /// The next failure judged for a line of container `name`.
    pub async fn next_failure(&mut self, name: &str) -> Judged {
        let what = format!("failure from container {name}");
        self.next_event(&what, |event| match event {
            DaemonEvent::Failure {
                jail,
                host,
                origin,
                decision,
            } if origin_name(origin) == Some(name) => Some(Judged {
                jail: jail.to_string(),
                host: *host,
                origin: origin.clone(),
                decision: decision.clone(),
            }),
            _ => None,
        })
        .await
    }

    /// The failures of container `name` up to and including the first one from `marker`.
    pub async fn failures_until(&mut self, name: &str, marker: IpAddr) -> Vec<Judged> {
        let mut judged = Vec::new();
        loop {
            let next = self.next_failure(name).await;
            let done = next.host == marker;
            judged.push(next);
            if done {
                return judged;
            }
        }
    }

    /// The failures of container `name` judged so far and not asked for yet (no waiting).
    pub fn failures_so_far(&mut self, name: &str) -> Vec<Judged> {
        while let Ok(event) = self.events.try_recv() {
            self.backlog.push_back(event);
        }
        let mut judged = Vec::new();
        self.backlog.retain(|event| match event {
            DaemonEvent::Failure {
                jail,
                host,
                origin,
                decision,
            } if origin_name(origin) == Some(name) => {
                judged.push(Judged {
                    jail: jail.to_string(),
                    host: *host,
                    origin: origin.clone(),
                    decision: decision.clone(),
                });
                false
            }
            _ => true,
        });
        judged
    }

    /// Waits for a ban of `host` by `jail`.
    pub async fn banned(&mut self, jail: &str, host: IpAddr) -> DaemonEvent {
        let what = format!("ban of {host} in {jail}");
        self.next_event(&what, |event| match event {
            DaemonEvent::Banned { order, .. } if order.jail == jail && order.host == host => {
                Some(event.clone())
            }
            _ => None,
        })
        .await
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A failure as a jail judged it.
#[derive(Debug, Clone)]
pub struct Judged {
    pub jail: String,
    pub host: IpAddr,
    pub origin: Arc<Origin>,
    pub decision: Decision,
}

impl Judged {
    /// The failure count after this one, for a counted failure or a ban.
    pub fn count(&self) -> Option<u32> {
        match &self.decision {
            Decision::Counted { failures, .. } => Some(*failures),
            Decision::Ban(order) => Some(order.failures),
            _ => None,
        }
    }
}
