//! Validated jail settings: what a jail watches, when it bans, and what a ban blocks.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::action::ActionConfig;
use super::glob::Glob;
use super::ports::{Ports, Protocol};
use crate::duration::BanTime;
use crate::jail::{IgnoreList, IncrementSettings, JailSettings, SettingsError};

/// Fail2Ban's defaults, used when neither the jail nor `defaults:` sets a key.
pub const DEFAULT_BANTIME: Duration = Duration::from_secs(600);
/// See [`DEFAULT_BANTIME`].
pub const DEFAULT_FINDTIME: Duration = Duration::from_secs(600);
/// See [`DEFAULT_BANTIME`].
pub const DEFAULT_MAXRETRY: u32 = 5;

/// One jail, with every setting resolved (jail value, else `defaults:`, else built-in default).
#[derive(Debug, Clone, PartialEq)]
pub struct JailConfig {
    /// The key under `jails:`; also what the `logjail.jails` container label names.
    pub name: String,
    /// `enabled: false` keeps a jail in the file (and checked) without running it.
    pub enabled: bool,
    /// The filter finding failures; `None` for a manual jail (`manual: true`), which bans only
    /// from the command line.
    pub filter: Option<String>,
    /// Logs to read. Empty: the jail reads the containers that opt in by label only (or
    /// nothing, when manual). Labelled containers join a jail whatever its sources.
    pub sources: Vec<SourceConfig>,
    /// Failures from one host within `findtime` that trigger a ban.
    pub maxretry: u32,
    /// The sliding window failures are counted in.
    pub findtime: Duration,
    /// How long a ban lasts, before increments.
    pub bantime: BanTime,
    /// Networks never banned.
    pub ignoreip: Vec<IpNet>,
    /// Never ban the host's own addresses.
    pub ignoreself: bool,
    /// Destination ports the ban blocks.
    pub ports: Ports,
    /// Transport protocol the ban blocks.
    pub protocol: Protocol,
    /// What a ban does.
    pub action: ActionConfig,
    /// Longer bans for repeat offenders; `None` when disabled.
    pub increment: Option<IncrementConfig>,
    /// Firewall chains the ban is applied in; never empty, no duplicates.
    pub chains: Vec<Chain>,
    /// `share:`: whether bans are shared with the fleet; `None` follows `fleet.share`.
    pub share: Option<bool>,
    /// `share_failures:`: failures counted across the fleet, not only here.
    pub share_failures: bool,
}

impl JailConfig {
    /// Whether the jail bans only from the command line.
    pub fn is_manual(&self) -> bool {
        self.filter.is_none()
    }

    /// The settings the jail counts and bans with: the one translation from the validated
    /// configuration, used by the daemon, label-defined jails and `regex --bans` alike.
    /// `own_addresses` are this machine's, for `ignoreself`. Validation has checked every
    /// value, so an error here means a configuration built by hand, not from YAML.
    pub fn jail_settings(&self, own_addresses: &[IpAddr]) -> Result<JailSettings, SettingsError> {
        let mut settings = JailSettings::new(self.name.clone());
        settings.maxretry = self.maxretry;
        settings.findtime = self.findtime;
        settings.bantime = self.bantime;
        settings.increment = self.increment.as_ref().map(IncrementConfig::settings);
        settings.ignore = IgnoreList::from_networks(
            self.ignoreip.iter().copied(),
            self.ignoreself,
            own_addresses.to_vec(),
        );
        settings.validate()?;
        Ok(settings)
    }
}

/// The `defaults:` section resolved against the built-in defaults; jails start from these.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultsConfig {
    /// See [`JailConfig::bantime`].
    pub bantime: BanTime,
    /// See [`JailConfig::findtime`].
    pub findtime: Duration,
    /// See [`JailConfig::maxretry`].
    pub maxretry: u32,
    /// See [`JailConfig::ignoreip`].
    pub ignoreip: Vec<IpNet>,
    /// See [`JailConfig::ignoreself`].
    pub ignoreself: bool,
    /// See [`JailConfig::action`].
    pub action: ActionConfig,
    /// See [`JailConfig::increment`].
    pub increment: Option<IncrementConfig>,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            bantime: BanTime::Finite(DEFAULT_BANTIME),
            findtime: DEFAULT_FINDTIME,
            maxretry: DEFAULT_MAXRETRY,
            ignoreip: Vec::new(),
            ignoreself: true,
            action: ActionConfig::default(),
            increment: None,
        }
    }
}

/// Ban-time increments for hosts banned before (Fail2Ban's `bantime.*` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementConfig {
    /// Scales the growth: `bantime × factor × 2^(earlier bans)`, or with `multipliers`,
    /// `bantime × factor × multipliers[earlier bans]`; finite and greater than 0.
    pub factor: f64,
    /// Explicit growth steps replacing the doubling (the last one repeating), every entry at
    /// least 1. Empty: the doubling formula (an explicitly empty list is refused).
    pub multipliers: Vec<u32>,
    /// Upper bound of an incremented ban; `None`: unbounded.
    pub maxtime: Option<Duration>,
    /// Random extra time up to this much, so that botnets cannot predict the unban moment.
    pub rndtime: Option<Duration>,
    /// Count earlier bans of the host in every jail, not only this one.
    pub overalljails: bool,
}

impl IncrementConfig {
    /// The jail's increment settings for this section.
    fn settings(&self) -> IncrementSettings {
        IncrementSettings {
            enabled: true,
            factor: self.factor,
            multipliers: (!self.multipliers.is_empty()).then(|| self.multipliers.clone()),
            maxtime: self.maxtime,
            rndtime: self.rndtime,
            overalljails: self.overalljails,
            lookback: None,
        }
    }
}

/// Fail2Ban's increment factor default.
pub const DEFAULT_INCREMENT_FACTOR: f64 = 1.0;

/// Whose traffic a ban stops; the firewall target (`firewall.target`) decides which kernel
/// chain that is, because the place where a container's clients can be caught depends on how
/// the runtime forwards them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Chain {
    /// Traffic to the host's own services (host sshd, host mail server): filter `INPUT` on
    /// every target.
    #[serde(rename = "input", alias = "INPUT")]
    Input,
    /// Traffic to containers (published ports, hostPorts): `DOCKER-USER` on Docker hosts and
    /// hosts without a runtime, raw `PREROUTING` on Kubernetes nodes.
    #[serde(rename = "docker-user", alias = "DOCKER-USER")]
    DockerUser,
    /// Every packet that arrives, before conntrack and DNAT (raw `PREROUTING`), on every
    /// target; ports are the ones the client used. Only drops: the raw table cannot reject.
    #[serde(rename = "prerouting", alias = "PREROUTING")]
    Prerouting,
}

impl Chain {
    /// The word the configuration uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Chain::Input => "input",
            Chain::DockerUser => "docker-user",
            Chain::Prerouting => "prerouting",
        }
    }
}

/// `- pods: {namespace: "shop", pod: "wordpress-*", container: "wordpress"}`: every criterion
/// given must match; one not given matches every name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: Option<Glob>,
    /// The pod's name (`wordpress-7d9f8-x2x4z`): a Deployment's pods share its prefix.
    pub pod: Option<Glob>,
    pub container: Option<Glob>,
}

impl PodSelector {
    /// Whether the selector names anything at all; a selector without criteria would read
    /// every pod of the node, which configuration refuses.
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.pod.is_none() && self.container.is_none()
    }
}

/// One entry of a jail's `sources:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// `- file: PATH` — a host log file, or every file a glob matches.
    File {
        /// Absolute path; `*`, `?` and `[...]` match within one directory level.
        path: Glob,
        /// `optional: true`: when nothing matches the path at startup, the jail runs without
        /// this source instead of failing (used by the default sshd jail for
        /// `/var/log/auth.log`, absent on journald-only hosts).
        optional: bool,
    },
    /// `- journal: {unit: ssh.service}` — the systemd journal.
    Journal(JournalSelector),
    /// `- container: {name: "wp-*"}` — the logs of matching Docker containers.
    Container(ContainerSelector),
    /// `- pods: {namespace: blog, pod: "wordpress-*", container: wordpress}` — the CRI logs
    /// of matching pod containers on a Kubernetes node.
    Pods(PodSelector),
}

/// Which journal entries a journal source reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalSelector {
    /// Only entries of this systemd unit (`_SYSTEMD_UNIT`), when given.
    pub unit: Option<String>,
    /// Further `FIELD=value` matches, combined as `journalctl` combines them (same field: any
    /// of the values; different fields: all of them).
    pub matches: Vec<JournalMatch>,
    /// Journal files to read instead of the system journal (`journalctl --directory`): a
    /// sidecar container has no journald of its own and reads the host's `/var/log/journal`
    /// mounted into it.
    pub directory: Option<PathBuf>,
}

impl JournalSelector {
    /// The same selection written alike: matches sorted and without repeats (journalctl's
    /// meaning does not depend on their order), so that two jails reading the same entries
    /// share one follower and one stored position.
    pub fn canonical(&self) -> JournalSelector {
        let mut canonical = self.clone();
        canonical
            .matches
            .sort_by(|a, b| (&a.field, &a.value).cmp(&(&b.field, &b.value)));
        canonical
            .matches
            .dedup_by(|a, b| a.field == b.field && a.value == b.value);
        canonical
    }
}

/// A `FIELD=value` journal match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMatch {
    /// The journal field, e.g. `SYSLOG_IDENTIFIER`.
    pub field: String,
    /// The exact value the field must have.
    pub value: String,
}

/// Which containers a container source reads; every criterion given must match, at least one
/// is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSelector {
    /// Container name (without Docker's leading `/`).
    pub name: Option<Glob>,
    /// Image reference as the container reports it, e.g. `wordpress:6` or `ghcr.io/a/b:1`.
    pub image: Option<Glob>,
    /// A label the container must carry.
    pub label: Option<LabelMatch>,
}

/// `key=value` (the label must have this value) or `key` (the label must exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// Label key, e.g. `com.docker.compose.service`.
    pub key: String,
    /// Required value; `None`: any value.
    pub value: Option<String>,
}

impl LabelMatch {
    /// Parses `key=value` or `key`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().to_string())),
            None => (text.trim(), None),
        };
        if key.is_empty() {
            return Err(format!(
                "`{text}` has no label key (write `key=value` or `key`)"
            ));
        }
        Ok(LabelMatch {
            key: key.to_string(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_with_and_without_value() {
        assert_eq!(
            LabelMatch::parse("app=wp").unwrap(),
            LabelMatch {
                key: "app".into(),
                value: Some("wp".into())
            }
        );
        assert_eq!(LabelMatch::parse("app").unwrap().value, None);
        assert_eq!(
            LabelMatch::parse("app=").unwrap().value,
            Some(String::new())
        );
        assert!(LabelMatch::parse("=wp").is_err());
    }

    #[test]
    fn defaults_are_fail2bans() {
        let defaults = DefaultsConfig::default();
        assert_eq!(defaults.bantime, BanTime::Finite(Duration::from_secs(600)));
        assert_eq!(defaults.findtime, Duration::from_secs(600));
        assert_eq!(defaults.maxretry, 5);
        assert!(defaults.ignoreself);
        assert!(defaults.ignoreip.is_empty());
        assert_eq!(defaults.increment, None);
    }
}
