//! Notifications about bans and unbans (webhooks, commands), run beside the pipeline so that a
//! slow or failing receiver can never hold up a ban.
//!
//! ```text
//! jail task ──notify() (try_send, never waits)──► queue ──► dispatcher ──spawn──► webhook / command
//!                 full: dropped, counted                    (≤ N at once)        (timeouts, retries)
//! ```
//!
//! Each notice carries the notification list its jail was configured with, so a reload needs
//! no message here: the next notice simply brings the new list. A failing action is logged and
//! counted ([`NotifierHandle::counts`]); nothing else happens.

pub mod command;
pub mod webhook;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::action::{ActionConfig, FirewallAction};
pub use crate::config::action::{NotifyConfig, NotifyEvent, NotifyKind};
use crate::duration::BanTime;
use crate::jail::{ActiveBan, BanOrder};
use crate::messages::Origin;

/// Notices waiting for the dispatcher; past this, new ones are dropped (and counted).
pub const DEFAULT_QUEUE: usize = 1024;
/// Actions running at once; a notice whose turn has not come waits in the queue.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The first wait before a webhook is tried again; each further wait doubles it.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// How long running actions get to finish once shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Outcomes kept for slow subscribers before they start missing some.
const OUTCOME_QUEUE: usize = 256;

/// A ban or unban to tell the configured receivers about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Whether the host was banned or its ban ended.
    pub event: NotifyEvent,
    /// The jail that decided it.
    pub jail: String,
    /// The host concerned.
    pub host: IpAddr,
    /// Failures counted when the ban was decided; 0 for unbans and manual bans.
    pub failures: u32,
    /// The ban's length (after increments); what ended, for an unban.
    pub bantime: BanTime,
    /// Which ban of this host it is.
    pub ban_count: u32,
    /// The matched log lines behind the ban (attacker-written; never put into chat text or
    /// shell code); empty for unbans.
    pub matches: Vec<String>,
    /// Where the failures were read; `None` for manual bans and unbans.
    pub origin: Option<String>,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The jail's firewall verdict is `log`: nothing was blocked, receivers should say
    /// "would ban".
    pub dry_run: bool,
    /// The jail's notifications at the time of the event; those whose `on:` includes the
    /// event run.
    pub actions: Arc<[NotifyConfig]>,
}

impl Notice {
    /// The notice for a ban decision of a jail configured with `action`.
    pub fn ban(order: &BanOrder, origin: Option<&Origin>, action: &ActionConfig) -> Self {
        Notice {
            event: NotifyEvent::Ban,
            jail: order.jail.clone(),
            host: order.host,
            failures: order.failures,
            bantime: order.bantime,
            ban_count: order.ban_count,
            matches: order.matches.clone(),
            origin: origin.map(ToString::to_string),
            time: order.start,
            dry_run: action.firewall == FirewallAction::Log,
            actions: action.notify.clone(),
        }
    }

    /// The notice for the end of `ban` at `now` in `jail`, configured with `action`.
    pub fn unban(jail: &str, ban: &ActiveBan, now: DateTime<Utc>, action: &ActionConfig) -> Self {
        Notice {
            event: NotifyEvent::Unban,
            jail: jail.to_string(),
            host: ban.host,
            failures: 0,
            bantime: ban.bantime,
            ban_count: ban.ban_count,
            matches: Vec::new(),
            origin: None,
            time: now,
            dry_run: action.firewall == FirewallAction::Log,
            actions: action.notify.clone(),
        }
    }

    /// The notifications that run for this notice.
    fn due(&self) -> impl Iterator<Item = &NotifyConfig> {
        self.actions.iter().filter(|a| a.runs_on(self.event))
    }
}

/// Tunables; [`Default`] is what the daemon uses, tests shorten the waits.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// See [`DEFAULT_QUEUE`]; at least 1.
    pub queue: usize,
    /// See [`DEFAULT_CONCURRENCY`]; at least 1.
    pub concurrency: usize,
    /// See [`DEFAULT_BACKOFF`].
    pub backoff: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            queue: DEFAULT_QUEUE,
            concurrency: DEFAULT_CONCURRENCY,
            backoff: DEFAULT_BACKOFF,
        }
    }
}

/// Counters of one kind of notification, for `/metrics`
/// (`logjail_action_failures_total{action="webhook"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionCounts {
    /// Which kind they count.
    pub kind: NotifyKind,
    /// Delivered: a 2xx answer, or a command that exited with 0.
    pub sent: u64,
    /// Given up on after every try: errors, timeouts, refusals, non-zero exits.
    pub failed: u64,
    /// Never tried: the queue was full, or the notifier had stopped.
    pub dropped: u64,
}

/// How one notification ended; published to [`NotifierHandle::outcomes`] subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// Webhook or command.
    pub kind: NotifyKind,
    /// What the notice was about.
    pub event: NotifyEvent,
    /// The notice's jail.
    pub jail: String,
    /// The notice's host.
    pub host: IpAddr,
    /// Where it went, safe to show: a URL without path or credentials, or the program.
    pub target: String,
    /// How many times it was tried (webhooks retry; commands run once).
    pub tries: u32,
    /// `Err` says why it failed.
    pub result: Result<(), String>,
}

#[derive(Debug, Default)]
struct KindCounters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// What the handles and the workers share.
#[derive(Debug)]
struct Shared {
    /// Indexed like [`NotifyKind::ALL`].
    counters: [KindCounters; 2],
    /// Inside a burst of dropped notices, so that only its start and end are logged.
    dropping: AtomicBool,
    /// Notices dropped in the current burst, for the log line that ends it.
    dropped_in_burst: AtomicU64,
    outcomes: broadcast::Sender<ActionOutcome>,
}

impl Shared {
    fn counters(&self, kind: NotifyKind) -> &KindCounters {
        match kind {
            NotifyKind::Webhook => &self.counters[0],
            NotifyKind::Command => &self.counters[1],
        }
    }
}

/// Sends notices to the notifier; cheap to clone. The notifier drains and stops once every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct NotifierHandle {
    sender: mpsc::Sender<Notice>,
    shared: Arc<Shared>,
}

impl NotifierHandle {
    /// Queues a notice and returns at once. When the queue is full the notice is dropped and
    /// counted, and the start and end of such a burst are logged, never each notice.
    pub fn notify(&self, notice: Notice) {
        let due: Vec<NotifyKind> = notice.due().map(NotifyConfig::kind).collect();
        if due.is_empty() {
            return;
        }
        match self.sender.try_send(notice) {
            Ok(()) => {
                if self.shared.dropping.swap(false, Ordering::Relaxed) {
                    let dropped = self.shared.dropped_in_burst.swap(0, Ordering::Relaxed);
                    tracing::warn!(
                        target: "logjail::action",
                        dropped,
                        "notification queue has room again"
                    );
                }
            }
            Err(error) => {
                for kind in due {
                    self.shared
                        .counters(kind)
                        .dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                match error {
                    mpsc::error::TrySendError::Full(_) => {
                        self.shared.dropped_in_burst.fetch_add(1, Ordering::Relaxed);
                        if !self.shared.dropping.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                target: "logjail::action",
                                "notification queue full: dropping notices until it has room"
                            );
                        }
                    }
                    mpsc::error::TrySendError::Closed(_) => tracing::debug!(
                        target: "logjail::action",
                        "notifier stopped; notice dropped"
                    ),
                }
            }
        }
    }

    /// The counters of every kind, in [`NotifyKind::ALL`] order.
    pub fn counts(&self) -> Vec<ActionCounts> {
        self.stats().counts()
    }

    /// A view of the counters that does not keep the notifier running (for `/metrics`).
    pub fn stats(&self) -> NotifierStats {
        NotifierStats {
            shared: self.shared.clone(),
        }
    }

    /// How each notification from now on ends (tests wait on these instead of sleeping).
    pub fn outcomes(&self) -> broadcast::Receiver<ActionOutcome> {
        self.shared.outcomes.subscribe()
    }
}

/// The notifier's counters, readable after it stopped; cheap to clone.
#[derive(Debug, Clone)]
pub struct NotifierStats {
    shared: Arc<Shared>,
}

impl NotifierStats {
    /// The counters of every kind, in [`NotifyKind::ALL`] order.
    pub fn counts(&self) -> Vec<ActionCounts> {
        NotifyKind::ALL
            .into_iter()
            .map(|kind| {
                let counters = self.shared.counters(kind);
                ActionCounts {
                    kind,
                    sent: counters.sent.load(Ordering::Relaxed),
                    failed: counters.failed.load(Ordering::Relaxed),
                    dropped: counters.dropped.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// Starts the notifier task.
pub struct Notifier;

impl Notifier {
    /// Starts with the default options. The task ends when `shutdown` is cancelled (running
    /// actions are stopped, commands killed) or when every handle is dropped (queued notices
    /// are still sent, within their timeouts).
    pub fn start(shutdown: CancellationToken) -> (NotifierHandle, JoinHandle<()>) {
        Self::start_with(NotifierOptions::default(), shutdown)
    }

    /// [`Notifier::start`] with options.
    pub fn start_with(
        options: NotifierOptions,
        shutdown: CancellationToken,
    ) -> (NotifierHandle, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(Shared {
            counters: Default::default(),
            dropping: AtomicBool::new(false),
            dropped_in_burst: AtomicU64::new(0),
            outcomes: broadcast::channel(OUTCOME_QUEUE).0,
        });
        let dispatcher = Dispatcher {
            client: webhook::client(),
            shared: shared.clone(),
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            backoff: options.backoff,
            shutdown,
            running: JoinSet::new(),
        };
        let task = tokio::spawn(dispatcher.run(receiver));
        (NotifierHandle { sender, shared }, task)
    }
}

/// Takes notices off the queue and starts their actions, a bounded number at once.
struct Dispatcher {
    /// Shared by every webhook, so connections are reused; `Err` says why TLS or the client
    /// could not be set up, and every webhook then fails with that.
    client: Result<reqwest::Client, String>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    backoff: Duration,
    shutdown: CancellationToken,
    running: JoinSet<()>,
}

impl Dispatcher {
    async fn run(mut self, mut receiver: mpsc::Receiver<Notice>) {
        if let Err(error) = &self.client {
            tracing::error!(target: "logjail::action", %error, "webhooks cannot be sent");
        }
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(joined) = self.running.join_next(), if !self.running.is_empty() => {
                    log_panic(joined);
                }
                notice = receiver.recv() => match notice {
                    Some(notice) => self.dispatch(notice).await,
                    None => {
                        // Every handle is gone: let what runs finish (each within its
                        // timeout), unless shutdown comes first.
                        while !self.running.is_empty() {
                            tokio::select! {
                                () = self.shutdown.cancelled() => break,
                                Some(joined) = self.running.join_next() => log_panic(joined),
                            }
                        }
                        break;
                    }
                },
            }
        }
        // Every running action watches `shutdown` too and ends at once (commands killed);
        // the grace only bounds a task that does not.
        let stragglers = async {
            while let Some(joined) = self.running.join_next().await {
                log_panic(joined);
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, stragglers)
            .await
            .is_err()
        {
            // Dropping a command's task still kills it and its process group.
            self.running.shutdown().await;
        }
        tracing::debug!(target: "logjail::action", "notifier stopped");
    }

    async fn dispatch(&mut self, notice: Notice) {
        let notice = Arc::new(notice);
        for (index, config) in notice.actions.iter().enumerate() {
            if !config.runs_on(notice.event) {
                continue;
            }
            let permit = tokio::select! {
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = self.shutdown.cancelled() => return,
            };
            let job = Job {
                notice: notice.clone(),
                index,
                client: self.client.clone(),
                shared: self.shared.clone(),
                backoff: self.backoff,
                shutdown: self.shutdown.clone(),
            };
            self.running.spawn(async move {
                job.run().await;
                drop(permit);
            });
        }
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(target: "logjail::action", %error, "a notification task panicked");
    }
}

/// One notification of one notice.
struct Job {
    notice: Arc<Notice>,
    /// Which of `notice.actions`.
    index: usize,
    client: Result<reqwest::Client, String>,
    shared: Arc<Shared>,
    backoff: Duration,
    shutdown: CancellationToken,
}

impl Job {
    async fn run(self) {
        let Some(config) = self.notice.actions.get(self.index) else {
            return;
        };
        let (target, tries, result) = match config {
            NotifyConfig::Webhook(webhook) => {
                let target = webhook.target();
                let (tries, result) = match &self.client {
                    Ok(client) => {
                        webhook::send(client, webhook, &self.notice, self.backoff, &self.shutdown)
                            .await
                    }
                    Err(error) => (0, Err(format!("no HTTP client: {error}"))),
                };
                (target, tries, result)
            }
            NotifyConfig::Command(command) => {
                let target = command::program(command);
                let result = command::run(command, &self.notice, &self.shutdown).await;
                (target, 1, result)
            }
        };
        let kind = config.kind();
        let notice = &self.notice;
        let counters = self.shared.counters(kind);
        match &result {
            Ok(()) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    target: "logjail::action",
                    action = %kind,
                    event = %notice.event,
                    jail = %notice.jail,
                    host = %notice.host,
                    to = %target,
                    tries,
                    "notification sent"
                );
            }
            Err(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "logjail::action",
                    action = %kind,
                    event = %notice.event,
                    jail = %notice.jail,
                    host = %notice.host,
                    to = %target,
                    tries,
                    error = %error,
                    "notification failed"
                );
            }
        }
        let _ = self.shared.outcomes.send(ActionOutcome {
            kind,
            event: notice.event,
            jail: notice.jail.clone(),
            host: notice.host,
            target,
            tries,
            result,
        });
    }
}

/// The ban's length in whole seconds, `-1` for a permanent ban (Fail2Ban's spelling).
pub(crate) fn bantime_seconds(bantime: BanTime) -> i64 {
    match bantime {
        BanTime::Finite(duration) => i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        BanTime::Permanent => -1,
    }
}

/// At most `limit` bytes of `text`, cut at a character boundary, with a mark when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é… (6 bytes)");
    }

    #[test]
    fn bantime_in_seconds() {
        assert_eq!(
            bantime_seconds(BanTime::Finite(Duration::from_secs(600))),
            600
        );
        assert_eq!(bantime_seconds(BanTime::Permanent), -1);
    }
}
