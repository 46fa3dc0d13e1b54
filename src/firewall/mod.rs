//! The firewall: one blocking thread owns iptables and ipset and carries out bans on command.
//!
//! ```text
//!  INPUT ──► P-input  ──(proto, --dports)───────────────────────► P-j-JAIL-i ──► set/ban rules ──► DROP|REJECT
//!  FORWARD ─► DOCKER-USER ─► P-docker ─(proto, --ctorigdstport)─► P-j-JAIL-d ──► set/ban rules ──► DROP|REJECT
//!  raw PREROUTING ─► P-raw ───(proto, --dports)───────────────────► P-j-JAIL-r ──► set/ban rules ──► DROP
//! ```
//!
//! - One hook chain per builtin chain (`P-input`, `P-docker`, `P-raw`), jumped to from the
//!   top of `INPUT`, `DOCKER-USER` and raw `PREROUTING`: the only rules logjail adds to chains
//!   it does not own, so checking and repairing the layout means checking those jumps.
//! - The target (`firewall.target`, see `target`) decides where a jail's `docker-user` bans
//!   go: `DOCKER-USER` on Docker hosts and hosts without a runtime, raw `PREROUTING` on
//!   Kubernetes nodes, where every way in (hostPort, NodePort, ServiceLB, the node's own
//!   services) passes before any DNAT. The raw table cannot `REJECT`: bans there drop. Where Docker makes no
//!   `DOCKER-USER` (ip6tables under Docker 20.10) logjail makes it, and keeps the jump from
//!   `FORWARD` above Docker's rules, which Docker inserts at the top when it (re)starts.
//! - Per jail and hook a chain; the hook chain selects the jail's protocol and ports and
//!   jumps there. In `DOCKER-USER` the destination port is already DNAT-ed to the
//!   container's, so the published port is matched with `conntrack --ctorigdstport`.
//! - Ipset mode: per jail and family a `hash:ip` set with per-entry timeouts (bans end in the
//!   kernel even if logjail dies) and one rule per verdict matching it. Rules mode: one rule
//!   per banned address, its end kept in the rule's comment.
//! - `reject-with tcp-reset` cannot refuse a client of a published port from `DOCKER-USER`
//!   (the reset carries the container's post-DNAT address and is ignored), so there the
//!   jail rejects with ICMP port-unreachable, which conntrack translates back and which
//!   fails a TCP connect at once just the same; in `INPUT` the reset is used as configured.
//!
//! The `iptables` crate is synchronous, spawns a process per call and returns errors that
//! are not `Send`: everything runs on one dedicated thread, driven through
//! [`FirewallHandle`] over a bounded channel with one-shot replies. Child processes inherit
//! the network namespace of the thread that called [`Firewall::start`], which is how the
//! tests run the whole firewall inside a namespace of their own.
//!
//! On that thread `owner` keeps the jails and their bans; a layout check reads a snapshot
//! (`iptables -S`, `ipset list -t`), `plan` works out the operations that make it match the
//! bans and jails (a pure function, unit tested), and `apply` runs them.

mod apply;
pub mod backend;
mod ipset;
pub mod names;
mod owner;
mod plan;
pub mod queue;
pub mod rules;
pub mod safety;
pub mod target;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Chain, FirewallAction, FirewallConfig, JailConfig, Ports, Protocol};

pub use backend::{Backend, BackendChoice};
pub use ipset::MAX_TIMEOUT_SECS as IPSET_MAX_TIMEOUT_SECS;
pub use names::{Family, Hook, Names, Table};
pub use safety::OwnAddress;
pub use target::{Target, TargetChoice};

/// Commands waiting for the firewall thread; a full queue makes callers wait.
const DEFAULT_QUEUE: usize = 1024;

/// Firewall failures, naming the command, jail, set or address involved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FirewallError {
    #[error("`{command}` failed (exit status {}): {stderr}", status.map_or("none".to_string(), |code| code.to_string()))]
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("cannot run `{command}`: {message}")]
    Spawn { command: String, message: String },
    #[error("{program}: {message}")]
    Iptables { program: String, message: String },
    #[error("iptables backend: {0}")]
    Backend(String),
    #[error("jail \"{jail}\" is not defined in the firewall")]
    UnknownJail { jail: String },
    #[error("jail \"{jail}\": will not ban {host}: it {reason}")]
    Refused {
        jail: String,
        host: IpAddr,
        reason: String,
    },
    #[error("jail \"{jail}\": {message}")]
    Jail { jail: String, message: String },
    #[error("ipset {set}: {message}")]
    Set { set: String, message: String },
    #[error("{family} firewall is not available: {message}")]
    FamilyUnavailable {
        family: &'static str,
        message: String,
    },
    #[error("the firewall thread has stopped")]
    Stopped,
}

/// What the firewall needs to know about a jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailRule {
    /// The jail's name; its chains and sets are named after it.
    pub name: String,
    /// Whose traffic its bans stop: `input` for host services, `docker-user` for the ways
    /// into containers (where that is depends on the target), `prerouting` for raw
    /// `PREROUTING` whatever the target.
    pub chains: Vec<Chain>,
    /// Destination ports a ban blocks (published ports, for containers).
    pub ports: Ports,
    /// Protocol a ban blocks.
    pub protocol: Protocol,
    /// Drop, reject, or only log.
    pub action: FirewallAction,
    /// Networks never banned, checked again here as the last line of defence.
    pub ignoreip: Vec<IpNet>,
}

impl JailRule {
    /// Whether the jail's bans reach the kernel: `action: log` and an empty `chains` touch
    /// no firewall.
    pub fn acts(&self) -> bool {
        self.action != FirewallAction::Log && !self.chains.is_empty()
    }

    pub fn from_config(jail: &JailConfig) -> JailRule {
        JailRule {
            name: jail.name.clone(),
            chains: jail.chains.clone(),
            ports: jail.ports.clone(),
            protocol: jail.protocol,
            action: jail.action.firewall,
            ignoreip: jail.ignoreip.clone(),
        }
    }
}

/// One ban to put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRequest {
    /// The deciding jail.
    pub jail: String,
    /// The address; IPv4-mapped IPv6 is banned as IPv4.
    pub host: IpAddr,
    /// When the ban ends (`None`: permanent); the set entry's timeout is what remains.
    pub end: Option<DateTime<Utc>>,
}

/// What a ban did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanOutcome {
    /// The address is now blocked.
    Banned,
    /// It was blocked already; its end was updated.
    Refreshed,
    /// Its end has passed; nothing was done.
    AlreadyEnded,
    /// The jail only logs (`action: log`); nothing reached the kernel.
    LogOnly,
}

/// What a batch of bans did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Bans now in force (new or refreshed), log-only jails included.
    pub applied: usize,
    /// Requests whose end had passed.
    pub ended: usize,
    /// Requests not carried out, with the reason (unknown jail, protected address, …).
    pub refused: Vec<(BanRequest, String)>,
}

/// What a layout check found missing and put back, for the log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutReport {
    /// One line per repair (`jump INPUT -> logjail-input`, `set logjail-s-sshd-4`, …).
    pub repaired: Vec<String>,
    /// Leftovers of earlier runs or removed jails that were deleted.
    pub removed: Vec<String>,
    /// Bans whose end had passed and were taken out.
    pub expired: usize,
}

impl LayoutReport {
    pub fn is_clean(&self) -> bool {
        self.repaired.is_empty() && self.removed.is_empty()
    }
}

/// A ban the firewall currently enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallBan {
    /// The banned address.
    pub host: IpAddr,
    /// When it ends (`None`: permanent).
    pub end: Option<DateTime<Utc>>,
}

/// `logjail status`'s view of the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallStatus {
    /// The iptables backend in use.
    pub backend: Backend,
    /// Why that backend (configured, or where Docker's chains were found).
    pub backend_reason: String,
    /// Sets or per-address rules, as in use (`auto` resolved).
    pub mode: ActiveMode,
    /// Why that mode: configured, or what `auto` found.
    pub mode_reason: String,
    /// The kind of host (`auto` resolved), which decides where `docker-user` bans go.
    pub target: Target,
    /// Why that target: configured, or what `auto` found.
    pub target_reason: String,
    /// Prefix of every chain and set logjail owns.
    pub prefix: String,
    /// Families with a working iptables (IPv6 may be missing on some hosts).
    pub families: Vec<Family>,
    /// Per jail, in name order.
    pub jails: Vec<JailFirewallStatus>,
}

impl FirewallStatus {
    /// The one line `logjail status` and the start log show for the firewall:
    /// `nft (…), ipset mode (…), kubernetes target (auto: …)`. The backend comes first, as
    /// it did before targets existed: scripts read it there.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}), {} mode ({}), {} target ({})",
            self.backend,
            self.backend_reason,
            self.mode,
            self.mode_reason,
            self.target,
            self.target_reason
        )
    }
}

/// How bans are expressed in the kernel once `firewall.mode` is resolved at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActiveMode {
    /// A `hash:ip` set per jail and family.
    Ipset,
    /// One rule per banned address.
    Rules,
}

impl std::fmt::Display for ActiveMode {
    /// As `firewall.mode` spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActiveMode::Ipset => "ipset",
            ActiveMode::Rules => "rules",
        })
    }
}

/// One jail's firewall state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailFirewallStatus {
    /// Jail name.
    pub name: String,
    /// The configured action.
    pub action: FirewallAction,
    /// Per hook: the jail's chain and what it really does there (it can differ from the
    /// configured action, see the module documentation on `tcp-reset`).
    pub hooks: Vec<HookStatus>,
    /// IPv4 bans logjail enforces.
    pub bans_v4: usize,
    /// IPv6 bans logjail enforces.
    pub bans_v6: usize,
    /// Ipset mode: entries per set as the kernel counts them (timed-out entries may linger
    /// until the kernel collects them).
    pub sets: Vec<SetStatus>,
}

/// A jail's chain under one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStatus {
    /// Which builtin chain.
    pub hook: Hook,
    /// The jail's chain name.
    pub chain: String,
    /// What banned packets get, e.g. `reject-with icmp-port-unreachable`.
    pub verdict: String,
}

/// One ban set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatus {
    /// Its family.
    pub family: Family,
    /// Its name.
    pub name: String,
    /// Entries the kernel holds (`None`: the set is missing).
    pub kernel_entries: Option<usize>,
}

/// What tests and embedders may change; `Default` is what the daemon uses.
#[derive(Debug, Clone)]
pub struct FirewallOptions {
    /// Turns ban ends into set timeouts and decides which bans have expired.
    pub clock: SharedClock,
    /// The host's own addresses, never banned; `None` asks the kernel at start and at every
    /// layout check.
    pub own_addresses: Option<Vec<OwnAddress>>,
    /// Commands in flight to the firewall thread.
    pub queue: usize,
    /// Bans about to be applied right after the start, by jail and family (a restart's, a new
    /// fleet member's): their sets are created with room for them, since the kernel otherwise
    /// regrows a set's hash at each doubling on the way (100,000 entries into a set created
    /// for 4,096 take about 1.7 times as long to add).
    pub expected_bans: BTreeMap<(String, Family), usize>,
}

impl Default for FirewallOptions {
    fn default() -> Self {
        FirewallOptions {
            clock: Arc::new(SystemClock),
            own_addresses: None,
            queue: DEFAULT_QUEUE,
            expected_bans: BTreeMap::new(),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, FirewallError>>;

enum Command {
    Ban(BanRequest, Reply<BanOutcome>),
    BanMany(Vec<BanRequest>, Reply<BatchOutcome>),
    Unban(String, IpAddr, Reply<bool>),
    UnbanAll(String, Reply<usize>),
    EnsureLayout(Reply<LayoutReport>),
    DefineJail(JailRule, Reply<()>),
    RemoveJail(String, Reply<usize>),
    Bans(String, Reply<Vec<FirewallBan>>),
    Status(Reply<FirewallStatus>),
    Shutdown(bool, Reply<()>),
}

/// Starts the firewall thread.
pub struct Firewall;

impl Firewall {
    /// Detects the backend, reconciles what exists (reusing this prefix's chains and sets,
    /// adopting their bans, removing leftovers of jails that no longer exist) and returns
    /// once the layout is in place. The thread runs until [`FirewallHandle::shutdown`] or
    /// until every handle is dropped (which leaves bans in place, like a crash would).
    pub async fn start(
        config: FirewallConfig,
        jails: Vec<JailRule>,
        options: FirewallOptions,
    ) -> Result<(FirewallHandle, JoinHandle<()>), FirewallError> {
        let (sender, receiver) = mpsc::channel(options.queue.max(1));
        let (started, start_result) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("logjail-firewall".to_string())
            .spawn(move || owner::run(config, jails, options, receiver, started))
            .map_err(|error| FirewallError::Spawn {
                command: "firewall thread".to_string(),
                message: error.to_string(),
            })?;
        match start_result.await {
            Ok(Ok(())) => Ok((FirewallHandle { sender }, thread)),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(FirewallError::Stopped)
            }
        }
    }
}

/// Talks to the firewall thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct FirewallHandle {
    sender: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("firewall command")
    }
}

impl FirewallHandle {
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, FirewallError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(command(reply))
            .await
            .map_err(|_| FirewallError::Stopped)?;
        answer.await.map_err(|_| FirewallError::Stopped)?
    }

    /// Bans one address until `end` (`None`: permanently). Banning an address that is
    /// banned already updates its end.
    pub async fn ban(
        &self,
        jail: &str,
        host: IpAddr,
        end: Option<DateTime<Utc>>,
    ) -> Result<BanOutcome, FirewallError> {
        let request = BanRequest {
            jail: jail.to_string(),
            host,
            end,
        };
        self.ask(|reply| Command::Ban(request, reply)).await
    }

    /// Applies many bans at once (`ipset restore` / `iptables-restore`): the restore at
    /// start. Idempotent: bans in force are refreshed, never duplicated. A request that cannot
    /// be carried out is reported in the outcome, not as an error.
    pub async fn ban_many(&self, requests: Vec<BanRequest>) -> Result<BatchOutcome, FirewallError> {
        self.ask(|reply| Command::BanMany(requests, reply)).await
    }

    /// Lifts a ban; `false` when the address was not banned in that jail.
    pub async fn unban(&self, jail: &str, host: IpAddr) -> Result<bool, FirewallError> {
        let jail = jail.to_string();
        self.ask(|reply| Command::Unban(jail, host, reply)).await
    }

    /// Lifts every ban of a jail; returns how many there were.
    pub async fn unban_all(&self, jail: &str) -> Result<usize, FirewallError> {
        let jail = jail.to_string();
        self.ask(|reply| Command::UnbanAll(jail, reply)).await
    }

    /// Checks chains, jumps and sets and puts back what is missing (after Docker restarted or
    /// another tool flushed the rules); also takes out bans whose end has passed. Call it
    /// periodically and on Docker events.
    pub async fn ensure_layout(&self) -> Result<LayoutReport, FirewallError> {
        self.ask(Command::EnsureLayout).await
    }

    /// Adds a jail at run time (container labels), or updates one, keeping its bans.
    pub async fn define_jail(&self, rule: JailRule) -> Result<(), FirewallError> {
        self.ask(|reply| Command::DefineJail(rule, reply)).await
    }

    /// Removes a jail with its chains and sets; returns how many bans it had.
    pub async fn remove_jail(&self, jail: &str) -> Result<usize, FirewallError> {
        let jail = jail.to_string();
        self.ask(|reply| Command::RemoveJail(jail, reply)).await
    }

    /// The bans a jail enforces, e.g. to compare with the store after a start.
    pub async fn bans(&self, jail: &str) -> Result<Vec<FirewallBan>, FirewallError> {
        let jail = jail.to_string();
        self.ask(|reply| Command::Bans(jail, reply)).await
    }

    pub async fn status(&self) -> Result<FirewallStatus, FirewallError> {
        self.ask(Command::Status).await
    }

    /// Stops the thread. Without `keep_bans`, removes the jumps, chains and sets; with it,
    /// leaves everything in place (set entries still expire on their own).
    pub async fn shutdown(&self, keep_bans: bool) -> Result<(), FirewallError> {
        self.ask(|reply| Command::Shutdown(keep_bans, reply)).await
    }
}
