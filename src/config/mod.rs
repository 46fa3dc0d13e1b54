//! The YAML configuration: a strict serde mirror, then validation that reports every error.
//!
//! # Loading
//!
//! One file, `/etc/logjail/logjail.yaml` unless `-c PATH` names another. A path given with
//! `-c` must exist; the default path is used when it exists; with no file at all the daemon
//! runs on [`Config::embedded_default`] (`src/config/default.yaml`). Checking runs in two
//! phases: the text is parsed into `serde_yaml::Value` and each level is deserialized on its
//! own into a `#[serde(deny_unknown_fields)]` mirror (`raw.rs`); the mirror is then validated
//! into the typed settings below. Every error of the file is reported in one go, each with
//! `file:line:column`, the jail or filter at fault and the key ([`ConfigErrors`]).
//!
//! # Schema
//!
//! ```yaml
//! defaults:            # what every jail starts from
//!   bantime: 10m       # 90s, 10m, 2h, 3d, 1w, 1h30m, whole seconds (259200); -1 = permanent
//!   findtime: 10m
//!   maxretry: 5
//!   ignoreip: [127.0.0.1/8, "::1"]   # or one string "127.0.0.1/8 ::1"
//!   ignoreself: true
//!   action: drop       # drop | reject | reject-with TYPE | log (dry run) — see below
//!   increment:         # longer bans for repeat offenders (off by default)
//!     enabled: true
//!     factor: 1        # bantime × factor × 2^(earlier bans)
//!     multipliers: [1, 2, 4, 8, 16]   # instead of the formula
//!     maxtime: 5w
//!     rndtime: 10m
//!     overalljails: false
//! jails:
//!   sshd:              # names: letters, digits, - and _
//!     enabled: true    # default true; false keeps the jail checked but not running
//!     filter: sshd     # default: the jail's name; built-in or under `filters:`
//!     sources:         # where the logs come from; none = containers labelled
//!       - file: /var/log/auth.log     #   `logjail.jails=sshd` only
//!         optional: true              # missing at startup is not an error
//!       - journal: {unit: ssh.service, match: [SYSLOG_IDENTIFIER=sshd]}
//!       - journal: [SYSLOG_IDENTIFIER=sshd]  # the match list alone; `journal: {}`: everything
//!       - container: {name: "ssh-*", image: "linuxserver/openssh*", label: "app=ssh"}
//!       - pods: {namespace: blog, pod: "wordpress-*", container: wordpress}  # globs, ≥ 1
//!     ports: [ssh, 2222, "8000:8100"]   # or `all` (default)
//!     protocol: tcp    # tcp | udp | all (default)
//!     chains: [input, docker-user]      # default: both; or prerouting (raw table)
//!     # … and any key of `defaults:` except that `increment` is merged key by key
//!   blacklist:
//!     manual: true     # no filter, no sources: bans come from the command line only
//!     bantime: 30d
//! filters:             # user filters, same shape as the built-in ones
//!   myapp:
//!     failregex: ['^login failed for .* from <HOST>$']
//! docker:   {enabled: true, host: "unix:///var/run/docker.sock", read_mode: auto}
//! pods:     {enabled: false, log_dir: /var/log/pods, runtime_socket: /run/k3s/containerd/containerd.sock}
//!           # runtime_socket default: the first of k3s's, containerd's and CRI-O's that exists
//! store:    {path: /var/lib/logjail/logjail.db}
//! firewall: {backend: auto, target: auto, mode: auto, keep_bans_on_exit: false,
//!            chain_prefix: logjail}   # target: auto | docker | kubernetes | host
//! control:  {socket: /run/logjail/logjail.sock}
//! metrics:  {enabled: false, listen: "127.0.0.1:9191"}
//! log:      {format: text, level: info}
//! fleet:    {redis: "rediss://redis:6380/0", name: node-1,   # absent: nothing shared
//!            # or name_env: NODE_NAME; neither: the host name
//!            username: logjail, password_file: /run/secrets/redis,  # or password_env: VAR
//!            hmac_key_file: /run/secrets/fleet-hmac, share: true,   # share: jails' default
//!            tls: {ca_file: /run/secrets/redis-ca.pem,   # rediss:// only; absent: Mozilla's roots
//!                  cert_file: /run/secrets/client.pem, key_file: /run/secrets/client.key}}
//! ```
//!
//! A jail may say `share: true|false` (its bans spread to the fleet or not) and
//! `share_failures: true` (its failures counted fleet-wide, so that tries spread over the members
//! add up to maxretry; needs the jail's bans shared); both need `fleet:`.
//!
//! `action:` is one action or a list of them; an action is a word (`drop`, `reject`, `log`),
//! `reject-with TYPE` (`icmp-port-unreachable`, `icmp-host-unreachable`,
//! `icmp-net-unreachable`, `tcp-reset` — the latter needs `protocol: tcp`) or a one-key mapping
//! (`{reject-with: tcp-reset}`). Exactly one of them sets the firewall verdict; any number of
//! notifications may sit next to it in the list:
//!
//! ```yaml
//! action:
//!   - drop
//!   - webhook: {url: "https://…", format: slack, on: [ban, unban], timeout: 10s, retries: 3,
//!               headers: {Authorization: "Bearer …"}}        # format: generic | slack | discord
//!   - command: {argv: [/usr/local/bin/notify, "<jail>", "<ip>"], on: [ban], timeout: 30s}
//! ```
//!
//! Command arguments are templates (`<ip>`, `<jail>`, `<event>`, `<failures>`, `<bantime>`,
//! `<ban_count>`, `<origin>`, `<time>`, `<matches>`), each filled in within its own argument;
//! nothing is ever run through a shell (see [`action`] and `crate::action`).
//!
//! A jail's own value of a key replaces the default (`ignoreip` included: list the default
//! networks again if you still want them); `increment` is merged key by key. Top-level keys
//! starting with `x-` are ignored so that they can hold YAML anchors; `<<` merge keys work.

pub mod action;
pub mod error;
pub mod glob;
pub mod ini;
pub mod jail;
pub mod ports;
pub mod positions;
mod raw;
pub mod sections;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub use self::action::{ActionConfig, FirewallAction, RejectWith};
pub use self::error::{ConfigError, ConfigErrors, Scope};
pub use self::glob::Glob;
pub use self::jail::{
    Chain, ContainerSelector, DefaultsConfig, IncrementConfig, JailConfig, JournalMatch,
    JournalSelector, LabelMatch, PodSelector, SourceConfig,
};
pub use self::ports::{PortRange, Ports, Protocol};
pub use self::positions::TextPosition;
pub use self::sections::{
    ClientCertificate, ControlConfig, DEFAULT_CONFIG_PATH, DEFAULT_POD_LOG_DIR, DockerConfig,
    FirewallBackend, FirewallConfig, FirewallMode, FirewallTarget, FleetConfig, FleetTls,
    LogConfig, LogFormat, LogLevel, MetricsConfig, PodsConfig, ReadMode, RequiredLabel,
    SecretSource, StoreConfig, check_redis_url, is_fleet_word,
};
use crate::filter::{Filter, FilterSpec};
use positions::PositionIndex;

/// The configuration used when no file exists; validated by a unit test.
const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// Where a configuration came from, for logs and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Read from this file.
    File(PathBuf),
    /// The built-in default (no file found).
    Embedded,
    /// Text given directly, under this name.
    Text(String),
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::File(path) => write!(f, "{}", path.display()),
            ConfigOrigin::Embedded => f.write_str("<embedded default>"),
            ConfigOrigin::Text(name) => f.write_str(name),
        }
    }
}

/// A validated configuration: everything the daemon needs, resolved and typed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from, to tell the user which file is in force.
    pub origin: ConfigOrigin,
    /// `defaults:` resolved, for jails created at run time (none yet) and for display.
    pub defaults: DefaultsConfig,
    /// The jails in file order, each with every setting resolved; disabled ones included.
    pub jails: Vec<JailConfig>,
    /// Compiled filters by name: every user filter and every built-in filter a jail uses, so
    /// that nothing is compiled twice and `logjail check` can report regex fallbacks.
    pub filters: BTreeMap<String, Filter>,
    /// The user filters as written under `filters:` (they shadow built-ins of the same name).
    pub user_filters: BTreeMap<String, FilterSpec>,
    /// For each Fail2Ban filter file a jail uses (by the name the jail refers to it by): where
    /// logjail reads it differently from Fail2Ban and which patterns run on fancy-regex, each
    /// with its file and line, for `logjail check`.
    pub filter_notes: BTreeMap<String, Vec<String>>,
    /// `docker:`.
    pub docker: DockerConfig,
    /// `pods:`.
    pub pods: PodsConfig,
    /// `store:`.
    pub store: StoreConfig,
    /// `firewall:`.
    pub firewall: FirewallConfig,
    /// `control:`.
    pub control: ControlConfig,
    /// `metrics:`.
    pub metrics: MetricsConfig,
    /// `log:`.
    pub log: LogConfig,
    /// `fleet:`; `None` when this host shares nothing.
    pub fleet: Option<FleetConfig>,
}

impl Config {
    /// Whether `jail` shares its bans with the fleet: its own `share:`, else the fleet's
    /// default; never without a fleet.
    pub fn shares(&self, jail: &JailConfig) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|fleet| jail.share.unwrap_or(fleet.share))
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigError {
                origin: path.display().to_string(),
                position: None,
                scope: Scope::File,
                key: String::new(),
                message: format!("cannot read the configuration: {error}"),
            }])
        })?;
        Self::parse(&text, ConfigOrigin::File(path.to_path_buf()))
    }

    /// Validates configuration text; `origin_name` is what errors show as the file name.
    pub fn from_yaml_str(text: &str, origin_name: &str) -> Result<Config, ConfigErrors> {
        Self::parse(text, ConfigOrigin::Text(origin_name.to_string()))
    }

    /// The configuration the daemon runs with when there is no file: the Docker source on,
    /// jails for every built-in filter that containers join by label, `sshd` on the host's
    /// `/var/log/auth.log` when it exists, and the manual `blacklist` jail (30 days, all
    /// ports, INPUT and DOCKER-USER).
    pub fn embedded_default() -> Config {
        #[allow(clippy::expect_used)]
        Self::parse(EMBEDDED_DEFAULT, ConfigOrigin::Embedded)
            .expect("the embedded default configuration is checked by a unit test")
    }

    /// The configuration in force: the file given with `-c` (which must exist), else
    /// [`DEFAULT_CONFIG_PATH`] when it exists, else [`Config::embedded_default`].
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Self::load_or_default_at(path, Path::new(DEFAULT_CONFIG_PATH))
    }

    /// [`Config::load_or_default`] with the default location as a parameter, for tests and
    /// packagers.
    pub fn load_or_default_at(
        path: Option<&Path>,
        default_path: &Path,
    ) -> Result<Config, ConfigErrors> {
        match path {
            Some(path) => Self::load(path),
            // `exists` is false for broken links too; anything present but unreadable is
            // reported by `load` rather than silently replaced by the default.
            None if default_path.exists() || default_path.is_symlink() => Self::load(default_path),
            None => Ok(Self::embedded_default()),
        }
    }

    /// The jail with this name.
    pub fn jail(&self, name: &str) -> Option<&JailConfig> {
        self.jails.iter().find(|jail| jail.name == name)
    }

    fn parse(text: &str, origin: ConfigOrigin) -> Result<Config, ConfigErrors> {
        let origin_name = origin.to_string();
        let syntax_error = |position: Option<TextPosition>, message: String| {
            ConfigErrors(vec![ConfigError {
                origin: origin_name.clone(),
                position,
                scope: Scope::File,
                key: String::new(),
                message: format!("YAML syntax: {message}"),
            }])
        };
        // serde_yaml (libyaml) decides what parses; yaml-rust2 only supplies positions, so a
        // document only it refuses is still read, with errors then lacking positions.
        let index = PositionIndex::build(text);
        if let Ok(index) = &index
            && !index.duplicates().is_empty()
        {
            // Reported before serde_yaml's own duplicate error, which points at the mapping
            // rather than at the repeated key.
            let errors = index.duplicates().iter().map(|duplicate| ConfigError {
                origin: origin_name.clone(),
                position: Some(duplicate.position),
                scope: Scope::File,
                key: duplicate.path.to_string(),
                message: format!("key given twice (first at line {})", duplicate.first.line),
            });
            return Err(ConfigErrors(errors.collect()));
        }
        let mut value: Value = match (serde_yaml::from_str(text), &index) {
            (Ok(value), _) => value,
            // Both parsers refuse it: yaml-rust2 words it without a position suffix.
            (Err(_), Err(syntax)) => {
                return Err(syntax_error(Some(syntax.position), syntax.message.clone()));
            }
            (Err(error), Ok(_)) => {
                let position = error.location().map(|location| TextPosition {
                    line: location.line(),
                    column: location.column(),
                });
                let message = error.to_string();
                let message = match message.rfind(" at line ") {
                    Some(end) => message[..end].to_string(),
                    None => message,
                };
                return Err(syntax_error(position, message));
            }
        };
        let index = index.unwrap_or_default();
        value
            .apply_merge()
            .map_err(|error| syntax_error(None, format!("merge key `<<`: {error}")))?;
        validate::validate(&value, origin, &index).map_err(ConfigErrors)
    }
}

/// Validates a configuration file for `logjail check`: the same as [`Config::load`].
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    Config::load(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::BanTime;
    use std::time::Duration;

    #[test]
    fn a_fleet_without_name_or_name_env_is_named_after_the_host() {
        let text = "fleet: {redis: \"redis://127.0.0.1:6379\"}\n";
        match sections::host_name().filter(|host| is_fleet_word(host)) {
            Some(host) => {
                let config = Config::from_yaml_str(text, "fleet.yaml").unwrap();
                assert_eq!(config.fleet.unwrap().name, host);
            }
            // A host name that is not a word: the error says what to set.
            None => {
                let errors = Config::from_yaml_str(text, "fleet.yaml").unwrap_err();
                assert!(errors.to_string().contains("set `name:` or `name_env:`"));
            }
        }
        let config = Config::from_yaml_str(
            "fleet: {redis: \"rediss://redis.example.net:6380\", name: a, tls: {ca_file: /ca.pem}}\n",
            "fleet.yaml",
        )
        .unwrap();
        let fleet = config.fleet.unwrap();
        assert_eq!(fleet.name, "a", "name: wins over the host name");
        assert_eq!(
            fleet.tls,
            Some(FleetTls {
                ca_file: Some(PathBuf::from("/ca.pem")),
                client: None
            })
        );
    }

    #[test]
    fn embedded_default_validates() {
        let config = Config::parse(EMBEDDED_DEFAULT, ConfigOrigin::Embedded)
            .unwrap_or_else(|errors| panic!("{errors}"));
        assert!(config.docker.enabled);
        let blacklist = config.jail("blacklist").unwrap();
        assert!(blacklist.is_manual());
        assert!(blacklist.sources.is_empty());
        assert_eq!(
            blacklist.bantime,
            BanTime::Finite(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(blacklist.ports, Ports::All);
        assert_eq!(blacklist.protocol, Protocol::All);
        assert_eq!(blacklist.chains, [Chain::Input, Chain::DockerUser]);
        let sshd = config.jail("sshd").unwrap();
        assert_eq!(sshd.filter.as_deref(), Some("sshd"));
        assert_eq!(
            sshd.sources,
            [SourceConfig::File {
                path: Glob::for_path("/var/log/auth.log").unwrap(),
                optional: true
            }]
        );
    }

    #[test]
    fn embedded_default_has_a_label_jail_for_every_builtin_filter_but_recidive() {
        let config = Config::embedded_default();
        for name in crate::filter::builtin::names().filter(|name| *name != "recidive") {
            let jail = config
                .jail(name)
                .unwrap_or_else(|| panic!("no jail for built-in filter {name}"));
            assert_eq!(jail.filter.as_deref(), Some(name));
        }
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let errors = Config::from_yaml_str("jails:\n  sshd: {maxretry: 3\n", "t.yaml").unwrap_err();
        assert_eq!(errors.len(), 1);
        let error = &errors.errors()[0];
        assert!(error.position.is_some(), "{errors}");
        assert!(error.message.starts_with("YAML syntax: "), "{errors}");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_with_a_position() {
        let errors = Config::from_yaml_str(
            "jails:\n  a: {manual: true}\n  a: {manual: true}\n",
            "t.yaml",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(
            errors.errors()[0].position.map(|p| p.line),
            Some(3),
            "{errors}"
        );
    }

    #[test]
    fn pods_section_and_pods_sources() {
        let config = Config::from_yaml_str(
            "pods: {enabled: true, runtime_socket: /run/k3s/containerd/containerd.sock}\n\
             jails:\n  wp:\n    filter: wordpress\n    sources:\n\
             \x20     - pods: {namespace: blog, pod: \"wordpress-*\"}\n",
            "t.yaml",
        )
        .unwrap_or_else(|errors| panic!("{errors}"));
        assert!(config.pods.enabled);
        assert_eq!(config.pods.log_dir, Path::new("/var/log/pods"));
        assert_eq!(
            config.pods.runtime_socket.as_deref(),
            Some(Path::new("/run/k3s/containerd/containerd.sock"))
        );
        let [SourceConfig::Pods(selector)] = &config.jail("wp").unwrap().sources[..] else {
            panic!("not one pods source");
        };
        assert_eq!(selector.namespace.as_ref().map(Glob::as_str), Some("blog"));
        assert_eq!(selector.pod.as_ref().map(Glob::as_str), Some("wordpress-*"));
        assert_eq!(selector.container, None);
        assert!(!Config::from_yaml_str("", "t.yaml").unwrap().pods.enabled);
    }

    #[test]
    fn bad_pods_settings_are_reported_each_with_its_key() {
        let errors = Config::from_yaml_str(
            "pods: {log_dir: var/log/pods, runtime_socket: crio.sock, socket: x}\n\
             jails:\n  wp:\n    filter: wordpress\n    sources:\n\
             \x20     - pods: {}\n\
             \x20     - pods: {pod: \"[wp\"}\n\
             \x20     - pods: {namespace: blog, image: x}\n",
            "t.yaml",
        )
        .unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.len(), 6, "{text}");
        for expected in [
            "log_dir",
            "runtime_socket",
            "socket",
            "give at least one of `namespace`, `pod` or `container`",
            "without a closing `]`",
            "image",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn an_empty_file_is_a_configuration_without_jails() {
        let config = Config::from_yaml_str("", "empty.yaml").unwrap();
        assert!(config.jails.is_empty());
        assert_eq!(config.defaults, DefaultsConfig::default());
    }
}
