//! Filters: decide whether a log line is a failure, and of which host.
//!
//! A raw line first loses its envelope ([`envelope`]: Docker json-file, CRI, syslog prefix) so
//! that a built-in filter sees the same message whether it came from a host syslog file or bare
//! from a container's stderr. The filter then runs its `failregex` set (Fail2Ban tags such as
//! `<HOST>` expanded by [`pattern`]) and its `ignoreregex` list.

pub mod builtin;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A filter as written in YAML: the `filters:` section of the config, a filter file given to
/// `logjail regex`, or one of the built-in filters compiled into the binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// One line for `logjail filters`.
    #[serde(default)]
    pub description: Option<String>,
    /// When the syslog envelope names the program (`sshd[123]:`), the line is only considered
    /// if the program matches this regex (whole-name match). Lines without a program tag
    /// (bare container output) are always considered.
    #[serde(default)]
    pub program: Option<String>,
    /// Optional prefix every failure line must match; its `<F-CONTENT>` part is what the
    /// failregexes see.
    #[serde(default)]
    pub prefregex: Option<String>,
    /// Patterns of failures; each must capture a host with `<HOST>`, `<ADDR>`, `<IP4>` or `<IP6>`.
    #[serde(default)]
    pub failregex: Vec<String>,
    /// Lines matching any of these are never failures.
    #[serde(default)]
    pub ignoreregex: Vec<String>,
    /// strftime-style format of the timestamp in the message, when the automatic detection
    /// does not find it.
    #[serde(default)]
    pub datepattern: Option<String>,
}

/// One failure found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The offending address (IPv4-mapped IPv6 addresses are reported as IPv4).
    pub host: IpAddr,
    /// The time the line carries (envelope or message); `None` when it carries none.
    pub time: Option<DateTime<Utc>>,
    /// `<F-USER>` capture, when the pattern has one.
    pub user: Option<String>,
    /// `<F-ID>` capture, when the pattern has one.
    pub id: Option<String>,
    /// Index of the failregex that matched, for per-regex hit counts.
    pub failregex_index: usize,
}
