//! logjail: a Fail2Ban for containers.
//!
//! The crate is laid out along the path a log line takes:
//!
//! ```text
//!  log line ──► source ──► envelope ──► filter ──► failure ──► jail ──► ban decision ──► firewall + store
//!  (container,   (docker,    (json-file,  (failregex,  (host, time,  (maxretry in   (bantime,      (iptables/ipset,
//!   host file,    file,       CRI,         ignoreregex, user, line)   findtime,      increments)    SQLite)
//!   journal)      journal)    syslog)      <HOST>)                    ignoreip)
//! ```
//!
//! Every message between the stages is a type in [`messages`]; which origin feeds which jail
//! (and the jails container labels define) is decided in [`routing`]. `ARCHITECTURE.md` names
//! the tasks, their messages, who owns which state, and the start and stop order.
//!
//! In data-flow order (each folder holds its pure logic and, where it has one, its task):
//!
//! - [`source`]: followers of host files (inotify, rotation, resume), the journal and Docker
//!   containers, and their supervisors; they only read, remember where they are, and follow
//!   what [`routing`] says.
//! - [`filter`]: envelopes (json-file, CRI, syslog), dates, failregex/ignoreregex with Fail2Ban's
//!   tags, the built-in filter library, and the matcher task that runs them on every line.
//! - [`jail`]: pure per-host failure counting and ban decisions, with ban-time increments; the
//!   jail task that owns every jail and answers the control requests about them.
//! - [`firewall`]: the thread that owns iptables and ipset (layout as a pure plan, then applied)
//!   and the queue that carries the jails' decisions to it.
//! - [`store`]: SQLite for bans, ban history, read positions and label jail definitions, and the
//!   thread that owns the connection.
//! - [`fleet`]: sharing bans between hosts through Redis: the protocol (key layout, signed ban
//!   records) and the fleet task (`fleet::task`) that publishes this member's shared bans and
//!   hands the others' to the jail task.
//! - [`action`]: notifications about bans and unbans (webhooks, commands), off the ban path.
//! - [`daemon`]: only wiring: [`daemon::Daemon`] starts the stages in order and stops them in
//!   reverse; [`daemon::run`] is what `logjail run` calls.
//!
//! Around them:
//!
//! - [`config`]: the YAML file, parsed strictly and validated with every error reported at once.
//! - [`messages`]: the typed messages the tasks exchange, and the data they carry.
//! - [`routing`]: routes (origin → jail, filter) from the configuration and container labels.
//! - [`control`]: the Unix-socket protocol between the CLI and the daemon.
//! - [`metrics`]: Prometheus text on `/metrics`, `/healthz`.
//! - [`cli`]: the commands behind the `logjail` binary (`run`, `check`, `regex`, `status`, …),
//!   and Fail2Ban's `fail2ban-client` and `fail2ban-regex` when called by those names.
//! - [`importer`]: a Fail2Ban configuration folder translated into logjail YAML, with a report
//!   of what mapped (`logjail import-fail2ban`).
//! - [`clock`], [`duration`]: time sources and Fail2Ban-style durations (`10m`, `3d`, `-1`).
//! - [`address`]: the one rule for addresses entering logjail (canonical form, never-a-client
//!   addresses refused), used by filters, the control requests, jails and the firewall.

pub mod action;
pub mod address;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod filter;
pub mod firewall;
pub mod fleet;
pub mod importer;
pub mod jail;
pub mod messages;
pub mod metrics;
pub mod routing;
pub mod source;
pub mod store;
