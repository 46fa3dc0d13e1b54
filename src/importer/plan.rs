//! The logjail configuration an import makes, before it is written as YAML.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::action::FirewallAction;
use crate::config::jail::Chain;
use crate::config::ports::Protocol;
use crate::duration::BanTime;

use super::filters::FilterPlan;

/// The settings `defaults:` and a jail share; `None` leaves logjail's own default (for
/// `defaults:`) or the defaults' value (for a jail).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared {
    pub bantime: Option<BanTime>,
    pub findtime: Option<Duration>,
    pub maxretry: Option<u32>,
    pub ignoreip: Option<Vec<IpNet>>,
    pub ignoreself: Option<bool>,
    pub increment: Option<Increment>,
}

/// `increment:`; only what Fail2Ban set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Increment {
    pub enabled: Option<bool>,
    pub factor: Option<f64>,
    pub multipliers: Option<Vec<u32>>,
    pub maxtime: Option<Duration>,
    pub rndtime: Option<Duration>,
    pub overalljails: Option<bool>,
}

impl Increment {
    pub fn is_empty(&self) -> bool {
        *self == Increment::default()
    }
}

/// One entry of a jail's `sources:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `- file: PATH` (always `optional: true`: Fail2Ban runs without a jail whose logs are
    /// missing, logjail runs the jail without that file).
    File(String),
    /// `- journal: {unit, match, directory}`.
    Journal {
        unit: Option<String>,
        matches: Vec<String>,
        directory: Option<String>,
    },
    /// `- container: {name: "*"}`: every container's log, for Docker's json-file paths.
    AllContainers,
}

/// One imported jail.
#[derive(Debug, Clone, PartialEq)]
pub struct Jail {
    /// The logjail name (Fail2Ban's, unless it had to be shortened).
    pub name: String,
    /// Fail2Ban's name, shown in a comment when it differs.
    pub fail2ban_name: String,
    /// Where its section starts, for a comment.
    pub at: String,
    /// `None`: a manual jail (Fail2Ban's jail without a filter).
    pub filter: Option<FilterPlan>,
    pub sources: Vec<Source>,
    pub shared: Shared,
    /// `None`: every port.
    pub ports: Option<Vec<String>>,
    pub protocol: Option<Protocol>,
    pub chains: Option<Vec<Chain>>,
    pub action: Option<FirewallAction>,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Where it came from, for the header comment.
    pub source: PathBuf,
    pub defaults: Shared,
    pub jails: Vec<Jail>,
    /// `log: {level}` when Fail2Ban's loglevel asks for other than logjail's default.
    pub log_level: Option<&'static str>,
}
