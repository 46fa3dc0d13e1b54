//! The daemon-wide sections (`docker`, `pods`, `store`, `firewall`, `control`, `metrics`, `log`,
//! `fleet`):
//! parsed and checked now so the file format is stable before the code using them lands.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Where the daemon looks when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/logjail/logjail.yaml";
/// Default of `store.path`.
pub const DEFAULT_STORE_PATH: &str = "/var/lib/logjail/logjail.db";
/// Default of `control.socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/logjail/logjail.sock";
/// Default of `metrics.listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9191";
/// Default of `firewall.chain_prefix`.
pub const DEFAULT_CHAIN_PREFIX: &str = "logjail";
/// Longest iptables chain name; a jail's chain is `PREFIX-JAIL`.
pub const MAX_CHAIN_NAME: usize = 28;

/// `docker:` — reading container logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// Whether to talk to Docker at all; hosts without Docker turn it off.
    pub enabled: bool,
    /// Docker endpoint like `DOCKER_HOST` (`unix:///var/run/docker.sock`, `tcp://HOST:PORT`);
    /// `None`: the `DOCKER_HOST` environment variable, else the standard socket.
    pub host: Option<String>,
    /// How container logs are read.
    pub read_mode: ReadMode,
    /// Containers without every one of these labels are never watched, whatever their
    /// `logjail.*` labels or the YAML selectors say: several logjail instances can share one
    /// engine (one per compose project, say) without judging each other's containers.
    pub require_labels: Vec<RequiredLabel>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: true,
            host: None,
            read_mode: ReadMode::Auto,
            require_labels: Vec::new(),
        }
    }
}

impl DockerConfig {
    /// Whether a container with these labels is within this instance's reach.
    pub fn in_scope<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.require_labels
            .iter()
            .all(|required| required.is_met(&labels))
    }
}

/// Where the kubelet keeps pod logs.
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";

/// `pods:` — reading the CRI log files of a Kubernetes node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodsConfig {
    /// Whether to follow pod logs at all; off by default, on in the Helm chart.
    pub enabled: bool,
    /// The kubelet's pod log directory.
    pub log_dir: PathBuf,
    /// The runtime's CRI socket, asked for pods' labels and annotations; `None`: the first of
    /// [`crate::source::pods::cri::DEFAULT_RUNTIME_SOCKETS`] that exists.
    pub runtime_socket: Option<PathBuf>,
}

impl Default for PodsConfig {
    fn default() -> Self {
        PodsConfig {
            enabled: false,
            log_dir: PathBuf::from(DEFAULT_POD_LOG_DIR),
            runtime_socket: None,
        }
    }
}

/// One entry of `docker.require_labels`: `KEY` (present, any value) or `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredLabel {
    /// The label's key.
    pub key: String,
    /// The exact value required; `None`: any value.
    pub value: Option<String>,
}

impl RequiredLabel {
    /// Parses `KEY` or `KEY=VALUE`; the key may not be empty or hold blanks.
    pub fn parse(text: &str) -> Result<RequiredLabel, String> {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key, Some(value.to_string())),
            None => (text, None),
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(format!(
                "\"{text}\" is not a label requirement: write KEY or KEY=VALUE (a key without blanks)"
            ));
        }
        Ok(RequiredLabel {
            key: key.to_string(),
            value,
        })
    }

    fn is_met<'a>(&self, labels: &impl Fn(&str) -> Option<&'a str>) -> bool {
        match (labels(&self.key), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(found), Some(wanted)) => found == wanted,
        }
    }
}

impl std::fmt::Display for RequiredLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// How container logs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Tail the json-file/local log files when readable, else use the API.
    Auto,
    /// Tail the log files under Docker's data root.
    Logfile,
    /// Follow the Docker API's logs stream.
    Api,
}

/// `fleet:` — bans (and, per jail, failure counts) shared with other members through Redis.
/// Off when the section is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis://HOST[:PORT][/DB]`, `rediss://…` (TLS) or `unix:///PATH`; never with a
    /// password in it (the YAML is often in version control).
    pub redis: String,
    /// This member's id, stamped on what it publishes so that nothing echoes back to it.
    pub name: String,
    /// The Redis ACL user, if not `default`.
    pub username: Option<String>,
    /// Where the Redis password comes from, if the server wants one.
    pub password: Option<SecretSource>,
    /// A key shared by the members signing every ban record (HMAC-SHA256): a record whose
    /// signature does not check is refused.
    pub hmac_key_file: Option<PathBuf>,
    /// Whether a jail without `share:` shares its bans.
    pub share: bool,
    /// Certificates for `rediss://`; absent, the Mozilla roots built into logjail check the
    /// server.
    pub tls: Option<FleetTls>,
}

/// `fleet.tls:` — a private CA (managed Redis, an in-cluster Redis with its own CA) and a
/// client certificate for servers that ask for one (`tls-auth-clients yes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetTls {
    /// PEM certificates trusted instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and its key, given together.
    pub client: Option<ClientCertificate>,
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `fleet.tls.cert_file`.
    pub cert_file: PathBuf,
    /// `fleet.tls.key_file`.
    pub key_file: PathBuf,
}

/// Where the member name came from when it was not written as `name:`, and why it cannot
/// be used; the message says what to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberNameError {
    /// `name_env` names a variable that is not set.
    Unset(String),
    /// The variable's value is not a word.
    BadEnv(String, String),
    /// Neither `name` nor `name_env`, and the host name is not a word (or unreadable).
    BadHost(Option<String>),
}

impl std::fmt::Display for MemberNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberNameError::Unset(variable) => write!(
                f,
                "the environment variable {variable} is not set: set it, or give `name:`"
            ),
            MemberNameError::BadEnv(variable, value) => write!(
                f,
                "the environment variable {variable} holds \"{value}\", not 1 to 64 letters, \
                 digits, `.`, `-` or `_`"
            ),
            MemberNameError::BadHost(Some(host)) => write!(
                f,
                "the member name defaults to the host name, but \"{host}\" is not 1 to 64 \
                 letters, digits, `.`, `-` or `_`: set `name:` or `name_env:`"
            ),
            MemberNameError::BadHost(None) => write!(
                f,
                "the member name defaults to the host name, which cannot be read: set `name:` \
                 or `name_env:`"
            ),
        }
    }
}

/// The member name when `name:` is not written: the variable `name_env` names (a Kubernetes
/// downward API `spec.nodeName`), or else the host name. The lookups are passed in so that
/// the rule is tested without touching the process's environment.
pub fn member_name_from(
    name_env: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    host: impl Fn() -> Option<String>,
) -> Result<String, MemberNameError> {
    match name_env {
        Some(variable) => match env(variable) {
            None => Err(MemberNameError::Unset(variable.to_string())),
            Some(value) if is_fleet_word(&value) => Ok(value),
            Some(value) => Err(MemberNameError::BadEnv(variable.to_string(), value)),
        },
        None => match host() {
            Some(host) if is_fleet_word(&host) => Ok(host),
            other => Err(MemberNameError::BadHost(other)),
        },
    }
}

/// This machine's host name, if it is text.
pub fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
}

/// Where a secret is read at start: a file (a mounted Secret) or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The file's content, trailing newline removed.
    File(PathBuf),
    /// The variable's value.
    Env(String),
}

/// Whether `name` can be a fleet member's id or a Redis key part: 1 to 64 letters, digits,
/// `.`, `-` or `_` (no `:`, which separates the parts of a key).
pub fn is_fleet_word(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Checks `fleet.redis`: the scheme, and that no password is written in it.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let rest = if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!(
                "a unix:// address needs an absolute socket path, as in unix:///run/redis/redis.sock (got \"{url}\")"
            ));
        }
        return Ok(());
    } else if let Some(rest) = url.strip_prefix("rediss://") {
        rest
    } else if let Some(rest) = url.strip_prefix("redis://") {
        rest
    } else {
        return Err(format!(
            "must start with redis://, rediss:// (TLS) or unix:// (got \"{url}\")"
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(
            "holds a password: give it in `password_file` or `password_env` instead of in the \
             file"
                .to_string(),
        );
    }
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return Err(format!("names no host (got \"{url}\")"));
    }
    Ok(())
}

/// `store:` — where bans survive restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// SQLite database file.
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from(DEFAULT_STORE_PATH),
        }
    }
}

/// `firewall:` — how bans reach the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Which iptables flavour to drive.
    pub backend: FirewallBackend,
    /// What kind of host the bans are for (`auto`: detected at start), which decides where a
    /// jail's `docker-user` bans sit: Docker's `DOCKER-USER`, or raw `PREROUTING` on a
    /// Kubernetes node, where hostPort, NodePort and ServiceLB DNAT before any filter chain.
    pub target: FirewallTarget,
    /// One ipset per jail, one rule per banned host, or (`auto`, the default) sets when ipset
    /// works and rules otherwise.
    pub mode: FirewallMode,
    /// Leave bans in the kernel when the daemon stops (they are restored from the store on
    /// start either way).
    pub keep_bans_on_exit: bool,
    /// Prefix of the chains and sets logjail creates (`logjail-sshd`), so that it only ever
    /// touches its own.
    pub chain_prefix: String,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            backend: FirewallBackend::Auto,
            target: FirewallTarget::Auto,
            mode: FirewallMode::Auto,
            keep_bans_on_exit: false,
            chain_prefix: DEFAULT_CHAIN_PREFIX.to_string(),
        }
    }
}

/// Which iptables flavour to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallBackend {
    /// Whichever the host's Docker uses.
    Auto,
    /// `iptables-nft`.
    Nft,
    /// `iptables-legacy`.
    Legacy,
}

/// What kind of host logjail protects: where traffic to containers can be caught before
/// the runtime's DNAT hides the port the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallTarget {
    /// Detected at start: `kubernetes` where kube-proxy's chains or a k3s/CRI-O socket are,
    /// `docker` where Docker's chains or socket are, `kubernetes` again for a plain containerd
    /// socket without Docker, `host` otherwise.
    Auto,
    /// A Docker host: container bans in `DOCKER-USER`, after Docker's DNAT.
    Docker,
    /// A Kubernetes node (k3s, kubeadm, any CNI portmap): container bans in raw `PREROUTING`,
    /// before conntrack and every DNAT.
    Kubernetes,
    /// No container runtime: the Docker layout, with `DOCKER-USER` made by logjail, so a
    /// Docker started later finds its bans in place.
    Host,
}

impl std::fmt::Display for FirewallTarget {
    /// As written in the configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FirewallTarget::Auto => "auto",
            FirewallTarget::Docker => "docker",
            FirewallTarget::Kubernetes => "kubernetes",
            FirewallTarget::Host => "host",
        })
    }
}

/// How bans are expressed in the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallMode {
    /// Ipset when it works on this host, else rules (with a warning): what a fresh host
    /// without the ipset package gets, so that the first run works.
    Auto,
    /// One set per jail and one rule matching it: cheap with many bans. Refuses to start
    /// without a working ipset.
    Ipset,
    /// One rule per banned host, for hosts without ipset.
    Rules,
}

impl std::fmt::Display for FirewallMode {
    /// As written in the configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FirewallMode::Auto => "auto",
            FirewallMode::Ipset => "ipset",
            FirewallMode::Rules => "rules",
        })
    }
}

/// `control:` — the socket the CLI talks to the daemon through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Unix socket path.
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        }
    }
}

/// `metrics:` — the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// On by default, on loopback only: the sidecar shares the host's network, so the
    /// endpoint is never on every interface unless `listen` says so.
    pub enabled: bool,
    /// Address the HTTP endpoint listens on.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9191)),
        }
    }
}

/// `log:` — the daemon's own log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// Human-readable lines or one JSON object per line.
    pub format: LogFormat,
    /// Least severe level written.
    pub level: LogLevel,
}

/// Output format of the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Least severe level the daemon logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level as `tracing` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Checks a `docker.host` value; the message says what is accepted.
pub fn check_docker_host(host: &str) -> Result<(), String> {
    const EXPECTED: &str = "use unix:///path/to/docker.sock or tcp://HOST:PORT";
    if let Some(path) = host.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(());
        }
        return Err(format!(
            "`{host}`: the socket path must be absolute ({EXPECTED})"
        ));
    }
    if let Some(address) = host.strip_prefix("tcp://") {
        let port = address.rsplit_once(':').map(|(_, port)| port);
        let host_part = address.rsplit_once(':').map(|(host, _)| host).unwrap_or("");
        if !host_part.is_empty() && port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
            return Ok(());
        }
        return Err(format!("`{host}`: expected tcp://HOST:PORT"));
    }
    Err(format!("`{host}` is not a Docker endpoint ({EXPECTED})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_name_comes_from_the_variable_or_else_the_host_name() {
        let env = |variable: &str| (variable == "NODE_NAME").then(|| "node-7".to_string());
        let host = || Some("edge-1.example.net".to_string());
        assert_eq!(
            member_name_from(Some("NODE_NAME"), env, host).unwrap(),
            "node-7"
        );
        assert_eq!(
            member_name_from(Some("NODE"), env, host),
            Err(MemberNameError::Unset("NODE".to_string()))
        );
        assert_eq!(
            member_name_from(None, env, host).unwrap(),
            "edge-1.example.net"
        );
        let spaced = |_: &str| Some("node 7".to_string());
        assert_eq!(
            member_name_from(Some("NODE_NAME"), spaced, host),
            Err(MemberNameError::BadEnv(
                "NODE_NAME".to_string(),
                "node 7".to_string()
            ))
        );
        let long = || Some("h".repeat(65));
        let error = member_name_from(None, env, long).unwrap_err();
        assert!(
            error.to_string().contains("set `name:` or `name_env:`"),
            "{error}"
        );
        assert!(matches!(
            member_name_from(None, env, || None),
            Err(MemberNameError::BadHost(None))
        ));
    }

    #[test]
    fn docker_hosts() {
        assert!(check_docker_host("unix:///var/run/docker.sock").is_ok());
        assert!(check_docker_host("tcp://10.0.0.5:2375").is_ok());
        assert!(check_docker_host("tcp://[fd00::5]:2376").is_ok());
        assert!(
            check_docker_host("unix://docker.sock")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(check_docker_host("tcp://10.0.0.5").is_err());
        assert!(check_docker_host("tcp://:2375").is_err());
        assert!(check_docker_host("/var/run/docker.sock").is_err());
    }

    #[test]
    fn required_labels_need_the_key_and_the_exact_value_when_given() {
        let docker = DockerConfig {
            require_labels: vec![
                RequiredLabel::parse("com.docker.compose.project=shop").unwrap(),
                RequiredLabel::parse("team").unwrap(),
            ],
            ..DockerConfig::default()
        };
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        };
        assert!(docker.in_scope(labels(&[
            ("com.docker.compose.project", "shop"),
            ("team", ""),
        ])));
        assert!(!docker.in_scope(labels(&[
            ("com.docker.compose.project", "shopfront"),
            ("team", "a"),
        ])));
        assert!(!docker.in_scope(labels(&[("com.docker.compose.project", "shop")])));
        assert!(DockerConfig::default().in_scope(labels(&[])));
        // Only the first `=` separates: values may hold more.
        let with_equals = RequiredLabel::parse("k=a=b").unwrap();
        assert_eq!(with_equals.value.as_deref(), Some("a=b"));
        assert_eq!(with_equals.to_string(), "k=a=b");
        assert!(RequiredLabel::parse("").is_err());
        assert!(RequiredLabel::parse("=v").is_err());
    }

    #[test]
    fn metrics_default_listen_matches_the_documented_address() {
        assert_eq!(
            MetricsConfig::default().listen,
            DEFAULT_METRICS_LISTEN.parse::<SocketAddr>().unwrap()
        );
    }
}
