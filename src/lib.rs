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
//! - [`config`]: the YAML file, parsed strictly and validated with every error reported at once.
//! - [`filter`]: envelopes (json-file, CRI, syslog), dates, failregex/ignoreregex with Fail2Ban's
//!   tags, and the built-in filter library.
//! - [`jail`]: pure per-host failure counting and ban decisions, with ban-time increments.
//! - [`cli`]: the commands behind the `logjail` binary (`check`, `filters`, `regex`, …).
//! - [`duration`]: Fail2Ban-style durations (`10m`, `3d`, `259200`, `-1`).

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod filter;
pub mod jail;
pub mod metrics;
pub mod source;
pub mod store;
