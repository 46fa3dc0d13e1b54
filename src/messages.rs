//! The messages between logjail's tasks, all in one place: what each stage hands the next.
//!
//! ```text
//!  sources ──LineBatch──► matcher ──JailEvent::Failure──► jail task ──StoreRequest──► store thread
//!     │         ▲                                            │  ▲
//!     │   MatcherControl                                     │  └── JailEvent::{Control, Define,
//!     │   (routes per origin)                                │       Reconfigure, Metrics}
//!     └── JailEvent::Define (label jails) ───────────────────┤
//!                                                            ├──Enforcement──► enforcer ──► firewall thread
//!                                                            └──DaemonEvent──► observers (tests, metrics)
//!  control socket ──ControlCall──► daemon (reload) / jail task (everything else)
//! ```
//!
//! Every channel that carries them is bounded; the owner of each piece of state is named in
//! `ARCHITECTURE.md`. This module sits low: it holds data only, and the stages import it,
//! never one another, to talk.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::config::JailConfig;
use crate::control::protocol::{Request, ResponseEnvelope};
use crate::filter::Filter;
use crate::jail::{BanOrder, Decision};

// ---- sources → matcher ------------------------------------------------------------------

/// Where a line was read, kept with every failure for status output and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A host log file, by the path configured.
    File { path: PathBuf },
    /// A container, by id (stable) and name (what people read).
    Container { id: String, name: String },
    /// The systemd journal, optionally one unit.
    Journal { unit: Option<String> },
    /// A container of a Kubernetes pod, by its CRI log files (`/var/log/pods`).
    Pod(PodContainer),
    /// No source of this member: the failures the fleet's members saw together
    /// (`share_failures`) reached maxretry.
    FleetFailures,
}

impl Origin {
    /// The key under which the source's read position is stored.
    pub fn position_key(&self) -> String {
        match self {
            Origin::File { path } => format!("file:{}", path.display()),
            Origin::Container { id, .. } => format!("container:{id}"),
            Origin::Journal { unit } => format!("journal:{}", unit.as_deref().unwrap_or("*")),
            // Never a source that is read; the key is only ever asked for completeness.
            Origin::FleetFailures => "fleet".to_string(),
            // The uid tells apart a pod deleted and created again under the same name.
            Origin::Pod(container) => format!(
                "pod:{}/{}/{}/{}",
                container.namespace, container.pod, container.uid, container.container
            ),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path } => write!(f, "file {}", path.display()),
            Origin::Container { name, id } => {
                write!(f, "container {name} ({})", id.get(..12).unwrap_or(id))
            }
            Origin::Journal { unit: Some(unit) } => write!(f, "journal unit {unit}"),
            Origin::Journal { unit: None } => f.write_str("journal"),
            Origin::FleetFailures => f.write_str("failures across the fleet"),
            // The uid's end tells apart a pod and its same-name successor (a StatefulSet's
            // `web-0` deleted and created again), as metrics labels must.
            Origin::Pod(container) => write!(
                f,
                "{container} ({})",
                container
                    .uid
                    .get(container.uid.len().saturating_sub(8)..)
                    .unwrap_or(&container.uid)
            ),
        }
    }
}

/// One container of one pod: what a pod's log files are grouped by, and what a jail selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodContainer {
    pub namespace: String,
    pub pod: String,
    /// Tells apart two pods of the same name one after the other (a StatefulSet's `web-0`
    /// deleted and created again).
    pub uid: String,
    pub container: String,
}

impl PodContainer {
    /// The pod's log directory name, `<namespace>_<pod>_<uid>`.
    pub fn pod_dir_name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.pod, self.uid)
    }

    /// Where the kubelet keeps this container's log files under `log_dir`.
    pub fn dir(&self, log_dir: &Path) -> PathBuf {
        log_dir.join(self.pod_dir_name()).join(&self.container)
    }

    /// The file of attempt `restart` (`<dir>/<restart>.log`).
    pub fn log_file(&self, log_dir: &Path, restart: u32) -> PathBuf {
        self.dir(log_dir).join(format!("{restart}.log"))
    }
}

impl fmt::Display for PodContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pod {}/{} container {}",
            self.namespace, self.pod, self.container
        )
    }
}

/// How far a source has read, stored so that a restart resumes there: no line counted twice,
/// none skipped.
///
/// Not `Copy` (a journal cursor is a string): sources that read many lines attach it only to
/// the lines where it is needed (see [`RawLine::position`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A file, by identity (a rotated file keeps its inode, a new file gets another) and the
    /// offset just past the last line handed on.
    File {
        device: u64,
        inode: u64,
        offset: u64,
        /// The file's first bytes (up to [`crate::source::FILE_HEAD_BYTES`]; empty when unknown, as in
        /// stores written before they were kept). A file deleted while logjail was down can
        /// leave its inode number to a new file; a different beginning tells them apart.
        head: Arc<[u8]>,
    },
    /// A stream with timestamps (the Docker API; the journal, as stored before cursors, or
    /// when a cursor was refused): the time of the last line handed on, and how many lines
    /// carried exactly that time (they are skipped on resume).
    Time {
        time: DateTime<Utc>,
        seen_at_time: u32,
    },
    /// The journal: the cursor of the last entry handed on, which `journalctl` resumes right
    /// after whatever the entries' time stamps say. The time and count are those of
    /// [`Position::Time`], kept to resume by time should `journalctl` refuse the cursor.
    Cursor {
        cursor: String,
        time: DateTime<Utc>,
        seen_at_time: u32,
    },
}

/// One raw line, as read: envelope (json-file, CRI, syslog) still on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    pub text: String,
    /// The source's position just after this line. `None` on a line that has none (a Docker
    /// API line without a time) or whose position a later line of the same batch carries:
    /// what is stored is the last position of a batch, so a source may give only its last
    /// line one (the journal does: a cursor is a string).
    pub position: Option<Position>,
}

/// Lines travel in batches: one channel send per batch keeps the per-line cost low when a
/// container floods, and a batch never waits for more lines to come.
#[derive(Debug, Clone)]
pub struct LineBatch {
    pub origin: Arc<Origin>,
    pub lines: Vec<RawLine>,
}

// ---- routing → matcher ------------------------------------------------------------------

/// Changes to which origins feed which jails, sent by whoever starts the sources.
#[derive(Debug)]
pub enum MatcherControl {
    /// Lines of `origin` go to these jails (replacing an earlier route).
    Attach {
        origin: Arc<Origin>,
        routes: Arc<[Route]>,
    },
    /// `origin` is gone (container removed): drop its state; `forget_position` also drops
    /// its stored position.
    Detach {
        origin: Arc<Origin>,
        forget_position: bool,
    },
    /// Per-source figures for `/metrics`.
    Stats(tokio::sync::oneshot::Sender<Vec<crate::metrics::SourceMetrics>>),
}

// ---- matcher, sources, control → jail task; jail task → observers, firewall ------------

/// A failure found by the matcher, on its way to one jail.
#[derive(Debug, Clone)]
pub struct FailureEvent {
    pub jail: Arc<str>,
    pub host: IpAddr,
    /// The line's own time, or when it was read if it carries none.
    pub time: DateTime<Utc>,
    /// The message, kept as evidence with the ban.
    pub line: String,
    pub origin: Arc<Origin>,
}

/// What the jail task receives.
#[derive(Debug)]
pub enum JailEvent {
    Failure(FailureEvent),
    /// A control request about jails (status, ban, unban, get, set).
    Control(crate::messages::ControlCall),
    /// Per-jail figures for `/metrics`.
    Metrics(oneshot::Sender<Vec<crate::metrics::JailMetrics>>),
    /// A reload: make the configured jails these (label-defined jails are kept).
    Reconfigure {
        jails: Vec<JailConfig>,
        own_addresses: Vec<IpAddr>,
        reply: oneshot::Sender<Result<ReloadSummary, JailTaskError>>,
    },
    /// Makes sure a jail defined at run time (by container labels) exists with these
    /// settings; answers why not when a different jail of that name exists. `definition` is
    /// what defined it, stored so that the jail and its bans come back after a restart.
    Define {
        config: Box<JailConfig>,
        definition: Box<JailDefinition>,
        reply: oneshot::Sender<Result<(), JailTaskError>>,
    },
    /// A container or pod that may have defined jails is gone (`defined_by` as in its
    /// definitions: `container web`, `pod shop/app-0`).
    DefinerGone {
        defined_by: String,
    },
    /// Bans and unbans other fleet members made, in the order they were made, checked
    /// (signature, origin, expiry) by the fleet task; the jail applies its own ignoreip and
    /// refusals to each. Sent in batches: a burst of thousands is one message.
    Fleet(Vec<FleetChange>),
    /// Addresses whose failures across the fleet reached maxretry (`share_failures`).
    FleetCounts(Vec<FleetCount>),
}

/// What another fleet member did to a jail of this name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetChange {
    Ban {
        /// The member that made the ban.
        member: String,
        jail: String,
        host: IpAddr,
        start: DateTime<Utc>,
        /// The same end on every member, whatever the delay: the same remaining time.
        end: Option<DateTime<Utc>>,
        ban_count: u32,
    },
    Unban {
        member: String,
        jail: String,
        host: IpAddr,
        /// When it was lifted: a ban held here that began after it is a newer one, and stays.
        at: DateTime<Utc>,
    },
}

/// What the jail task hands the fleet task about its shared jails: bans made here (from a
/// log or the CLI) and unbans asked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOutbound {
    Ban(crate::fleet::BanRecord),
    Unban(crate::fleet::UnbanRecord),
    /// A failure counted here in a jail with `share_failures`, to add to the fleet's count.
    Failure(FailureShare),
}

/// One failure for the fleet's count of its address, with the jail's window and limit as
/// they are on this member now, so the fleet task needs no copy of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureShare {
    pub jail: String,
    pub host: IpAddr,
    /// The failure's time, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The jail's findtime, in milliseconds.
    pub findtime_ms: i64,
    pub maxretry: u32,
}

/// The fleet's count of an address's failures in a jail, once it reached the jail's maxretry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCount {
    pub jail: String,
    pub host: IpAddr,
    /// Failures within findtime, on every member, checked one by one.
    pub failures: u32,
    /// The members they were seen on (for the log).
    pub members: Vec<String>,
}

/// What the daemon tells observers (tests, metrics, webhooks) about its decisions.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonEvent {
    /// A failure was judged by a jail (counted, ignored, stale, already banned or banned).
    Failure {
        jail: Arc<str>,
        host: IpAddr,
        origin: Arc<Origin>,
        decision: Decision,
    },
    Banned {
        order: BanOrder,
        origin: Option<Arc<Origin>>,
    },
    Unbanned {
        jail: Arc<str>,
        host: IpAddr,
    },
}

/// A change for the firewall, applied in order by the enforcer task.
#[derive(Debug)]
pub enum Enforcement {
    Ban {
        jail: String,
        host: IpAddr,
        end: Option<DateTime<Utc>>,
    },
    Unban {
        jail: String,
        host: IpAddr,
    },
    /// A jail to lay out (or update, keeping its bans): at reload or from container labels.
    Define(crate::firewall::JailRule),
    /// A jail gone at reload: its chains and sets go too.
    Remove {
        jail: String,
    },
    /// Answered once every change queued before it has been applied (or has failed): an
    /// operator's `ban` or `unban` returns when the kernel has it, not merely the decision.
    Barrier(oneshot::Sender<()>),
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

// ---- jail task, matcher → store thread --------------------------------------------------

/// What the store thread is asked to do.
#[derive(Debug)]
pub enum StoreRequest {
    SaveBan(BanRecord),
    /// Many bans at once (the fleet's bans at start, a batch from another member): one
    /// message on the queue, written in as few transactions as the store allows.
    SaveBans(Vec<BanRecord>),
    RemoveBan {
        jail: String,
        host: IpAddr,
    },
    SavePositions {
        positions: Vec<(String, Position)>,
        now: DateTime<Utc>,
    },
    ForgetPosition(String),
    /// A jail defined at run time (by labels), kept so its bans can be restored at start.
    SaveDefinition {
        definition: JailDefinition,
        now: DateTime<Utc>,
    },
    /// A run-time jail that is gone, or that the configuration file took over.
    RemoveDefinition(String),
    /// The fleet task's unbans waiting for Redis, all of them (a handful: only unbans asked
    /// while Redis is away wait), so that a restart before Redis returns still sends them.
    ReplaceFleetUnbans(Vec<crate::fleet::UnbanRecord>),
    PurgeExpired(DateTime<Utc>),
    /// Answered once every request sent before it is written.
    Flush(oneshot::Sender<()>),
    /// The stored read positions (for sources started after a reload).
    Positions(oneshot::Sender<HashMap<String, Position>>),
    /// The stored jail definitions.
    Definitions(oneshot::Sender<Vec<JailDefinition>>),
}

// ---- control socket → daemon ------------------------------------------------------------

/// A request waiting for its answer, as the daemon receives it.
#[derive(Debug)]
pub struct ControlCall {
    pub request: Request,
    pub reply: oneshot::Sender<ResponseEnvelope>,
}

/// One jail an origin feeds, with the filter that jail runs.
#[derive(Debug, Clone)]
pub struct Route {
    pub jail: Arc<str>,
    pub filter: Arc<Filter>,
}

/// A ban as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    pub jail: String,
    pub host: IpAddr,
    pub start: DateTime<Utc>,
    /// `None` for a permanent ban.
    pub end: Option<DateTime<Utc>>,
    /// Which ban of this host this is (1 for the first), for increments.
    pub ban_count: u32,
    pub failures: u32,
    /// Where the failures were seen (container, file), for `status` after a restart.
    pub origin: Option<String>,
    /// The log lines that led to the ban.
    pub matches: Vec<String>,
    /// The fleet member that made the ban and shared it; `None` when it was made here.
    pub fleet_member: Option<String>,
}

impl BanRecord {
    /// A ban another fleet member made and shared, as this member stores it.
    pub fn from_fleet(
        jail: String,
        host: IpAddr,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        ban_count: u32,
        member: String,
    ) -> BanRecord {
        BanRecord {
            jail,
            host,
            start,
            end,
            ban_count,
            failures: 0,
            origin: Some(format!("fleet member {member}")),
            matches: Vec::new(),
            fleet_member: Some(member),
        }
    }
}

/// What defined a jail at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefinitionKind {
    /// `logjail.jail.NAME.*` labels of a Docker container.
    ContainerLabels,
    /// `logjail.io/jail.NAME.*` annotations (or labels) of a Kubernetes pod, stored in the
    /// container-label words they are read as.
    PodAnnotations,
}

impl DefinitionKind {
    /// The name stored in the `kind` column.
    pub fn name(self) -> &'static str {
        match self {
            DefinitionKind::ContainerLabels => "container-labels",
            DefinitionKind::PodAnnotations => "pod-annotations",
        }
    }

    /// The kind stored under [`name`](Self::name), if this version knows it.
    pub fn from_name(name: &str) -> Option<DefinitionKind> {
        match name {
            "container-labels" => Some(DefinitionKind::ContainerLabels),
            "pod-annotations" => Some(DefinitionKind::PodAnnotations),
            _ => None,
        }
    }
}

/// A jail defined at run time, stored as what defined it, so that the same parser rebuilds it
/// at the next start (with the chains, ports, protocol and verdict its bans need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailDefinition {
    pub jail: String,
    pub kind: DefinitionKind,
    /// Who defined it, for `status` and the log (`container web`).
    pub defined_by: String,
    /// The container used the host's network: its jail bans in `INPUT`, not `DOCKER-USER`.
    pub host_network: bool,
    /// The labels (keys and values as given) that define this jail, and only those.
    pub labels: BTreeMap<String, String>,
}

/// Why the jail task refused a change (a reload, a label-defined jail).
#[derive(Debug, thiserror::Error)]
pub enum JailTaskError {
    /// A jail of the new configuration has settings a jail cannot run with.
    #[error("jail \"{jail}\": {source}")]
    Settings {
        jail: String,
        #[source]
        source: crate::jail::SettingsError,
    },
    #[error(transparent)]
    Invalid(#[from] crate::jail::SettingsError),
    #[error("a jail named \"{jail}\" is defined in the configuration file")]
    DefinedInConfig { jail: String },
    #[error(
        "a different jail named \"{jail}\" already exists (defined in the configuration or by \
         another container's labels)"
    )]
    DefinedElsewhere { jail: String },
    #[error(
        "it blocks addresses but logjail runs without a firewall ({reason}); use action: log, \
         or make the firewall work and restart logjail"
    )]
    NoFirewall { reason: Arc<str> },
}
