//! Container labels: whether a container is watched, which jails it joins, and jails defined
//! entirely by labels.
//!
//! Labels are read as Docker stores them, a flat `key → value` map, which is what both the
//! mapping and the list form of a compose file's `labels:` become (and what Swarm copies from
//! a service's container spec). Values are trimmed, and one pair of quotes around a value is
//! dropped, since `- logjail.jails="sshd"` in a compose list keeps its quotes literally.
//! Lists (`logjail.jails`, `…port`, `…ignoreip`) are separated by commas and/or spaces. Under
//! Swarm, the labels go in a service's `labels:` (container labels), not in `deploy.labels`
//! (service labels, which its containers do not carry).
//!
//! | label | meaning |
//! |---|---|
//! | `logjail.enable=true` | watch the container (see the module doc of `docker` for what it joins) |
//! | `logjail.enable=false` | never watch it, even when a YAML selector matches |
//! | `logjail.jails=sshd,wp` | join these jails (YAML jails, or jails defined by this container's labels) |
//! | `logjail.jail.NAME.KEY=VALUE` | define jail `NAME` (and join it); keys below |
//!
//! A label-defined jail bans where the container's clients come in, and nowhere else: in
//! `DOCKER-USER` (its published ports), or in `INPUT` for a container on the host's network.
//! Its lines come from the container, and a compromised service can print anything; such a
//! jail can close the container's door but never the host's own services.
//!
//! Keys of a label-defined jail: `filter` (default: the jail's name), `maxretry`, `findtime`,
//! `bantime` (`-1` permanent), `port`/`ports` (`80,443`, `8000:8100`, `https`, `all`),
//! `protocol` (`tcp`, `udp`, `all`), `action` (`drop`, `reject`, `reject-with TYPE`, `log`: the
//! firewall verdict; notifications come from `defaults:`),
//! `ignoreip` (addresses and CIDR networks). What a jail does not say comes from the
//! configuration's `defaults:`, as for a YAML jail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::action::parse_action_word;
use crate::config::ports::parse_port_range;
use crate::config::{
    Chain, DefaultsConfig, FirewallAction, JailConfig, Ports, Protocol, RejectWith,
};
use crate::duration::{BanTime, parse_bantime, parse_duration};
use crate::messages::{DefinitionKind, JailDefinition};

/// Every logjail label starts with this; a container without any costs one prefix check.
pub const PREFIX: &str = "logjail.";
/// Turns a container on (`true`) or off (`false`).
pub const ENABLE: &str = "logjail.enable";
/// Jails the container joins.
pub const JAILS: &str = "logjail.jails";
/// `logjail.jail.NAME.KEY`: a jail defined by labels.
pub const JAIL_PREFIX: &str = "logjail.jail.";

/// Longest iptables chain name; a jail's chain is `PREFIX-JAIL` (as for YAML jails).
const MAX_CHAIN_NAME: usize = 28;

/// The keys a label-defined jail understands.
const JAIL_KEYS: &[&str] = &[
    "filter", "maxretry", "findtime", "bantime", "port", "ports", "protocol", "action", "ignoreip",
];

/// One label that cannot be used, with why; the caller names the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The label key as written on the container.
    pub label: String,
    /// Its value as written.
    pub value: String,
    /// What is wrong, and what to write instead.
    pub message: String,
    /// The jail the label belongs to and that is skipped because of it, if any.
    pub jail: Option<String>,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "label `{}={}`: {}", self.label, self.value, self.message)?;
        if let Some(jail) = &self.jail {
            write!(f, " (jail \"{jail}\" skipped)")?;
        }
        Ok(())
    }
}

/// What a container's labels ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerLabels {
    /// `logjail.enable`: `Some(false)` opts the container out of everything.
    pub enable: Option<bool>,
    /// Jails named by `logjail.jails`, in order, without duplicates.
    pub jails: Vec<String>,
    /// Jails defined by `logjail.jail.NAME.*` labels that are valid, in name order.
    pub defined: Vec<JailConfig>,
    /// Labels that cannot be used; each one's jail (if any) is left out of `defined`.
    pub errors: Vec<LabelError>,
}

impl ContainerLabels {
    /// Whether the labels turn the container on: `logjail.enable=true`, or any jail named or
    /// defined (which implies it), unless `logjail.enable=false` says otherwise.
    pub fn wants_watching(&self) -> bool {
        match self.enable {
            Some(enable) => enable,
            None => !self.jails.is_empty() || !self.defined.is_empty(),
        }
    }

    /// Whether the container explicitly opted out.
    pub fn opted_out(&self) -> bool {
        self.enable == Some(false)
    }
}

/// What label parsing needs to know about the configuration.
#[derive(Debug, Clone)]
pub struct LabelContext<'a> {
    /// What a label-defined jail does not say.
    pub defaults: &'a DefaultsConfig,
    /// Names of filters a label may use: user filters and built-ins.
    pub filters: &'a BTreeSet<String>,
    /// Names of the jails of the configuration file, which labels may not redefine.
    pub yaml_jails: &'a BTreeSet<String>,
    /// `firewall.chain_prefix`, which bounds the length of jail names.
    pub chain_prefix: &'a str,
    /// The container uses the host's network (`network_mode: host`): its clients reach it
    /// through `INPUT`. Otherwise through its published ports, that is `DOCKER-USER`.
    pub host_network: bool,
}

/// Whether the container has any logjail label at all: the cheap check made for every
/// container before anything else is looked at.
pub fn has_logjail_labels<'a>(mut keys: impl Iterator<Item = &'a String>) -> bool {
    keys.any(|key| key.starts_with(PREFIX))
}

/// Reads a container's labels. Never fails: labels that cannot be used are listed in
/// `errors`, and a label-defined jail with any bad label is left out whole.
pub fn parse(labels: &HashMap<String, String>, context: &LabelContext<'_>) -> ContainerLabels {
    let mut result = ContainerLabels::default();
    // Label-defined jails, by name: their keys and values, gathered before building them.
    let mut jail_labels: BTreeMap<String, Vec<(&str, &str, &str)>> = BTreeMap::new();
    let mut sorted: Vec<(&String, &String)> = labels
        .iter()
        .filter(|(key, _)| key.starts_with(PREFIX))
        .collect();
    // Errors come out in a stable order, whatever the map's.
    sorted.sort();
    for (key, value) in sorted {
        let clean = clean_value(value);
        if key == ENABLE {
            match parse_bool(clean) {
                Some(enable) => result.enable = Some(enable),
                None => result.errors.push(LabelError {
                    label: key.clone(),
                    value: value.clone(),
                    message: "must be true or false".to_string(),
                    jail: None,
                }),
            }
        } else if key == JAILS {
            for name in split_list(clean) {
                if let Err(message) = check_jail_name(name, context.chain_prefix) {
                    result.errors.push(LabelError {
                        label: key.clone(),
                        value: value.clone(),
                        message,
                        jail: Some(name.to_string()),
                    });
                } else if !result.jails.iter().any(|known| known == name) {
                    result.jails.push(name.to_string());
                }
            }
        } else if let Some(rest) = key.strip_prefix(JAIL_PREFIX) {
            match rest.rsplit_once('.') {
                Some((name, jail_key)) if !name.is_empty() && !jail_key.is_empty() => {
                    jail_labels.entry(name.to_string()).or_default().push((
                        key.as_str(),
                        jail_key,
                        clean,
                    ));
                }
                _ => result.errors.push(LabelError {
                    label: key.clone(),
                    value: value.clone(),
                    message: format!(
                        "expected `{JAIL_PREFIX}NAME.KEY` with KEY one of: {}",
                        JAIL_KEYS.join(", ")
                    ),
                    jail: None,
                }),
            }
        } else {
            result.errors.push(LabelError {
                label: key.clone(),
                value: value.clone(),
                message: format!(
                    "unknown logjail label (known: {ENABLE}, {JAILS}, {JAIL_PREFIX}NAME.KEY)"
                ),
                jail: None,
            });
        }
    }
    for (name, entries) in jail_labels {
        match define_jail(&name, &entries, context) {
            Ok(jail) => result.defined.push(jail),
            Err(errors) => {
                for (label, message) in errors {
                    result.errors.push(LabelError {
                        value: labels.get(&label).cloned().unwrap_or_default(),
                        label,
                        message,
                        jail: Some(name.clone()),
                    });
                }
            }
        }
    }
    result
}

/// The labels that define jail `name` (`logjail.jail.NAME.*`, as given), to be stored so that
/// the jail and its bans come back at the next start; see [`restore`].
pub fn definition(
    name: &str,
    labels: &HashMap<String, String>,
    defined_by: &str,
    host_network: bool,
) -> JailDefinition {
    definition_of(
        DefinitionKind::ContainerLabels,
        name,
        labels,
        defined_by,
        host_network,
    )
}

/// [`definition`] for any kind of definer: a pod's annotations are stored in the label words
/// they are read as.
pub fn definition_of(
    kind: DefinitionKind,
    name: &str,
    labels: &HashMap<String, String>,
    defined_by: &str,
    host_network: bool,
) -> JailDefinition {
    let defining = labels
        .iter()
        .filter(|(key, _)| defining_jail(key) == Some(name))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    JailDefinition {
        jail: name.to_string(),
        kind,
        defined_by: defined_by.to_string(),
        host_network,
        labels: defining,
    }
}

/// The jail a `logjail.jail.NAME.KEY` label belongs to, split as [`parse`] splits it.
fn defining_jail(key: &str) -> Option<&str> {
    let (name, jail_key) = key.strip_prefix(JAIL_PREFIX)?.rsplit_once('.')?;
    (!name.is_empty() && !jail_key.is_empty()).then_some(name)
}

/// Rebuilds a jail that labels defined in an earlier run from its stored definition, with the
/// configuration's current `defaults:`, exactly as the same labels would define it now.
///
/// Its filter need not exist any more: a restored jail reads nothing until a container's
/// labels define it again (when the filter is checked as usual); until then it holds its
/// bans, which belong to the attackers, not to the container.
pub fn restore(
    definition: &JailDefinition,
    defaults: &DefaultsConfig,
    chain_prefix: &str,
) -> Result<JailConfig, String> {
    let labels: HashMap<String, String> = definition
        .labels
        .iter()
        .filter(|(key, _)| defining_jail(key) == Some(definition.jail.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let filter = labels
        .iter()
        .find(|(key, _)| key.ends_with(".filter"))
        .map(|(_, value)| clean_value(value).to_string())
        .unwrap_or_else(|| definition.jail.clone());
    let context = LabelContext {
        defaults,
        filters: &BTreeSet::from([filter]),
        yaml_jails: &BTreeSet::new(),
        chain_prefix,
        host_network: definition.host_network,
    };
    let mut parsed = parse(&labels, &context);
    match parsed
        .defined
        .iter()
        .position(|jail| jail.name == definition.jail)
    {
        Some(found) => Ok(parsed.defined.swap_remove(found)),
        None if parsed.errors.is_empty() => Err("no label defines it".to_string()),
        None => Err(parsed
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Builds one label-defined jail from its `(label, key, cleaned value)` entries; every bad
/// label of it is reported as `(label, message)`.
fn define_jail(
    name: &str,
    entries: &[(&str, &str, &str)],
    context: &LabelContext<'_>,
) -> Result<JailConfig, Vec<(String, String)>> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut fail = |label: &str, message: String| {
        errors.push((label.to_string(), message));
    };
    let defaults = context.defaults;
    let first_label = entries.first().map(|(label, _, _)| *label).unwrap_or("");
    if let Err(message) = check_jail_name(name, context.chain_prefix) {
        fail(first_label, message);
    }
    if context.yaml_jails.contains(name) {
        fail(
            first_label,
            format!(
                "jail \"{name}\" is defined in the configuration file and labels cannot redefine \
                 it: join it with `{JAILS}={name}`, or give the label jail another name"
            ),
        );
    }
    let mut jail = JailConfig {
        name: name.to_string(),
        enabled: true,
        filter: Some(name.to_string()),
        sources: Vec::new(),
        maxretry: defaults.maxretry,
        findtime: defaults.findtime,
        bantime: defaults.bantime,
        ignoreip: defaults.ignoreip.clone(),
        ignoreself: defaults.ignoreself,
        ports: Ports::All,
        protocol: Protocol::All,
        action: defaults.action.clone(),
        increment: defaults.increment.clone(),
        // Where this container's clients come in, and nowhere else: a jail defined by a
        // container's labels (and fed by its own, possibly forged, output) can close the
        // container's door, not the host's sshd.
        chains: if context.host_network {
            vec![Chain::Input]
        } else {
            vec![Chain::DockerUser]
        },
        // For the same reason a label jail's bans stay on this host: a container's forged
        // output must not ban across the fleet.
        share: Some(false),
        share_failures: false,
    };
    let mut filter_label = None;
    let mut action_label = None;
    for &(label, key, value) in entries {
        let parsed: Result<(), String> = match key {
            "filter" => {
                filter_label = Some(label);
                jail.filter = Some(value.to_string());
                Ok(())
            }
            "maxretry" => parse_maxretry(value).map(|n| jail.maxretry = n),
            "findtime" => match parse_duration(value) {
                Ok(duration) if duration.is_zero() => Err("must be longer than 0".to_string()),
                Ok(duration) => {
                    jail.findtime = duration;
                    Ok(())
                }
                Err(error) => Err(error.to_string()),
            },
            "bantime" => match parse_bantime(value) {
                Ok(BanTime::Finite(duration)) if duration.is_zero() => {
                    Err("must be longer than 0 (use -1 for a permanent ban)".to_string())
                }
                Ok(bantime) => {
                    jail.bantime = bantime;
                    Ok(())
                }
                Err(error) => Err(error.to_string()),
            },
            "port" | "ports" => parse_ports(value).map(|ports| jail.ports = ports),
            "protocol" => parse_protocol(value).map(|protocol| jail.protocol = protocol),
            "action" => {
                action_label = Some(label);
                parse_action_word(value).map(|action| jail.action.firewall = action)
            }
            "ignoreip" => parse_networks(value).map(|networks| jail.ignoreip = networks),
            other => Err(format!(
                "unknown jail key `{other}` (known: {})",
                JAIL_KEYS.join(", ")
            )),
        };
        if let Err(message) = parsed {
            fail(label, message);
        }
    }
    let filter = jail.filter.clone().unwrap_or_default();
    if !context.filters.contains(&filter) {
        let message = match filter_label {
            Some(_) => format!(
                "unknown filter \"{filter}\" (see `logjail filters`; your own go under `filters:` \
                 in the configuration)"
            ),
            None => format!(
                "no filter named \"{filter}\": add `{JAIL_PREFIX}{name}.filter=NAME` \
                 (see `logjail filters`)"
            ),
        };
        fail(filter_label.unwrap_or(first_label), message);
    }
    if jail.action.firewall == FirewallAction::Reject(RejectWith::TcpReset)
        && jail.protocol != Protocol::Tcp
    {
        fail(
            action_label.unwrap_or(first_label),
            format!("`tcp-reset` answers only TCP: add `{JAIL_PREFIX}{name}.protocol=tcp`"),
        );
    }
    if errors.is_empty() {
        Ok(jail)
    } else {
        Err(errors)
    }
}

/// Jail names end up in firewall chain and set names: the same rule as for YAML jails.
fn check_jail_name(name: &str, chain_prefix: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "jail names use letters, digits, `-` and `_`, starting with a letter or digit \
             (got \"{name}\")"
        ));
    }
    if chain_prefix.len() + 1 + name.len() > MAX_CHAIN_NAME {
        return Err(format!(
            "jail name \"{name}\" is too long: its firewall chain `{chain_prefix}-{name}` would \
             exceed {MAX_CHAIN_NAME} characters"
        ));
    }
    Ok(())
}

/// Drops surrounding whitespace and one pair of matching quotes.
fn clean_value(value: &str) -> &str {
    let value = value.trim();
    for quote in ['"', '\''] {
        if value.len() >= 2
            && let Some(inner) = value
                .strip_prefix(quote)
                .and_then(|v| v.strip_suffix(quote))
        {
            return inner.trim();
        }
    }
    value
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_maxretry(value: &str) -> Result<u32, String> {
    match value.parse::<i64>() {
        Err(_) => Err(format!("must be a whole number (got `{value}`)")),
        Ok(n) if n < 1 => Err(format!("must be at least 1 (got {n})")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("is too large (got {n})")),
    }
}

fn parse_ports(value: &str) -> Result<Ports, String> {
    let items: Vec<&str> = split_list(value).collect();
    if items.is_empty() {
        return Err("give at least one port, or `all`".to_string());
    }
    if items.iter().any(|item| item.eq_ignore_ascii_case("all")) {
        return if items.len() == 1 {
            Ok(Ports::All)
        } else {
            Err("`all` cannot be combined with other ports".to_string())
        };
    }
    let mut ranges = Vec::new();
    for item in items {
        let range = parse_port_range(item)?;
        if !ranges.contains(&range) {
            ranges.push(range);
        }
    }
    Ok(Ports::List(ranges))
}

fn parse_protocol(value: &str) -> Result<Protocol, String> {
    match value.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "all" => Ok(Protocol::All),
        _ => Err(format!(
            "unknown protocol `{value}` (expected tcp, udp or all)"
        )),
    }
}

fn parse_networks(value: &str) -> Result<Vec<IpNet>, String> {
    let mut networks = Vec::new();
    for item in split_list(value) {
        let network = if let Ok(network) = item.parse::<IpNet>() {
            network.trunc()
        } else if let Ok(address) = item.parse::<IpAddr>() {
            IpNet::from(address)
        } else {
            return Err(format!(
                "\"{item}\" is not an IP address or CIDR network (host names are not resolved)"
            ));
        };
        if !networks.contains(&network) {
            networks.push(network);
        }
    }
    Ok(networks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;
    use std::time::Duration;

    struct Fixture {
        defaults: DefaultsConfig,
        filters: BTreeSet<String>,
        yaml_jails: BTreeSet<String>,
        host_network: bool,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                defaults: DefaultsConfig::default(),
                filters: ["sshd", "wordpress", "nginx-http-auth"]
                    .map(String::from)
                    .into(),
                yaml_jails: ["sshd".to_string()].into(),
                host_network: false,
            }
        }

        fn parse(&self, labels: &[(&str, &str)]) -> ContainerLabels {
            let labels: HashMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            parse(
                &labels,
                &LabelContext {
                    defaults: &self.defaults,
                    filters: &self.filters,
                    yaml_jails: &self.yaml_jails,
                    chain_prefix: "logjail",
                    host_network: self.host_network,
                },
            )
        }
    }

    #[test]
    fn a_container_without_logjail_labels_is_not_wanted() {
        let labels = Fixture::new().parse(&[("com.docker.compose.service", "web")]);
        assert_eq!(labels, ContainerLabels::default());
        assert!(!labels.wants_watching());
        let keys = ["a".to_string(), "logjail.enable".to_string()];
        assert!(has_logjail_labels(keys.iter()));
        assert!(!has_logjail_labels(keys[..1].iter()));
    }

    #[test]
    fn enable_and_jails() {
        let fixture = Fixture::new();
        let labels = fixture.parse(&[("logjail.enable", "true")]);
        assert!(labels.wants_watching());
        assert!(labels.jails.is_empty());

        let labels = fixture.parse(&[("logjail.jails", " sshd, wordpress sshd ,")]);
        assert!(labels.wants_watching(), "naming jails implies enable");
        assert_eq!(labels.jails, ["sshd", "wordpress"]);
        assert!(labels.errors.is_empty());

        let labels = fixture.parse(&[("logjail.enable", "false"), ("logjail.jails", "sshd")]);
        assert!(!labels.wants_watching());
        assert!(labels.opted_out());

        let labels = fixture.parse(&[("logjail.enable", "maybe")]);
        assert_eq!(
            labels.errors[0].to_string(),
            "label `logjail.enable=maybe`: must be true or false"
        );
    }

    #[test]
    fn a_label_jail_bans_where_the_containers_clients_come_in() {
        let mut fixture = Fixture::new();
        let labels = [("logjail.jail.wp.filter", "wordpress")];
        let published = fixture.parse(&labels);
        assert_eq!(published.defined[0].chains, [Chain::DockerUser]);
        fixture.host_network = true;
        let host = fixture.parse(&labels);
        assert_eq!(host.defined[0].chains, [Chain::Input]);
    }

    #[test]
    fn a_jail_defined_by_labels_takes_the_rest_from_defaults() {
        let mut fixture = Fixture::new();
        fixture.defaults.maxretry = 7;
        let labels = fixture.parse(&[
            ("logjail.jail.wp.filter", "wordpress"),
            ("logjail.jail.wp.maxretry", "3"),
            ("logjail.jail.wp.findtime", "10m"),
            ("logjail.jail.wp.bantime", "1h"),
            ("logjail.jail.wp.port", "80,443"),
            ("logjail.jail.wp.action", "reject"),
            ("logjail.jail.wp.ignoreip", "10.1.2.3/8 192.168.0.1"),
        ]);
        assert!(labels.errors.is_empty(), "{:?}", labels.errors);
        assert!(labels.wants_watching(), "defining a jail implies enable");
        let [jail] = labels.defined.as_slice() else {
            panic!("{labels:?}")
        };
        assert_eq!(jail.name, "wp");
        assert_eq!(jail.filter.as_deref(), Some("wordpress"));
        assert_eq!(jail.maxretry, 3);
        assert_eq!(jail.findtime, Duration::from_secs(600));
        assert_eq!(jail.bantime, BanTime::Finite(Duration::from_secs(3600)));
        assert_eq!(
            jail.ports,
            Ports::List(vec![
                PortRange {
                    first: 80,
                    last: 80
                },
                PortRange {
                    first: 443,
                    last: 443
                }
            ])
        );
        assert_eq!(
            jail.action.firewall,
            FirewallAction::Reject(RejectWith::IcmpPortUnreachable)
        );
        assert_eq!(
            jail.ignoreip,
            [
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.168.0.1/32".parse().unwrap()
            ]
        );
        assert!(jail.sources.is_empty());

        let labels = fixture.parse(&[("logjail.jail.wordpress.bantime", "-1")]);
        let jail = &labels.defined[0];
        assert_eq!(
            jail.filter.as_deref(),
            Some("wordpress"),
            "filter defaults to name"
        );
        assert_eq!(jail.maxretry, 7);
        assert_eq!(jail.bantime, BanTime::Permanent);
    }

    #[test]
    fn compose_style_values_with_quotes_and_spaces_work() {
        let labels = Fixture::new().parse(&[
            ("logjail.jails", "\"sshd\""),
            ("logjail.jail.web.filter", " 'nginx-http-auth' "),
            ("logjail.jail.web.port", "\"http, https\""),
        ]);
        assert!(labels.errors.is_empty(), "{:?}", labels.errors);
        assert_eq!(labels.jails, ["sshd"]);
        assert_eq!(labels.defined[0].filter.as_deref(), Some("nginx-http-auth"));
        assert_eq!(
            labels.defined[0].ports,
            Ports::List(vec![
                PortRange {
                    first: 80,
                    last: 80
                },
                PortRange {
                    first: 443,
                    last: 443
                }
            ])
        );
    }

    #[test]
    fn a_bad_label_skips_its_jail_only_and_names_the_label() {
        let labels = Fixture::new().parse(&[
            ("logjail.jail.bad.filter", "no-such-filter"),
            ("logjail.jail.bad.findtime", "10x"),
            ("logjail.jail.good.filter", "sshd"),
            ("logjail.jail.net.filter", "sshd"),
            ("logjail.jail.net.ignoreip", "10.0.0.0/33"),
        ]);
        assert_eq!(
            labels
                .defined
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>(),
            ["good"]
        );
        let errors: Vec<String> = labels.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "label `logjail.jail.bad.findtime=10x`: `10x` is not a duration (use e.g. 90s, \
                 10m, 2h, 3d, 1w or plain seconds) (jail \"bad\" skipped)",
                "label `logjail.jail.bad.filter=no-such-filter`: unknown filter \
                 \"no-such-filter\" (see `logjail filters`; your own go under `filters:` in the \
                 configuration) (jail \"bad\" skipped)",
                "label `logjail.jail.net.ignoreip=10.0.0.0/33`: \"10.0.0.0/33\" is not an IP \
                 address or CIDR network (host names are not resolved) (jail \"net\" skipped)",
            ]
        );
    }

    #[test]
    fn label_jails_cannot_redefine_yaml_jails_or_use_bad_names() {
        let labels = Fixture::new().parse(&[
            ("logjail.jail.sshd.maxretry", "2"),
            ("logjail.jail.a.b.filter", "sshd"),
            ("logjail.jail.x.colour", "red"),
            ("logjail.jail.y.filter", "sshd"),
            ("logjail.jail.y.action", "reject-with tcp-reset"),
            ("logjail.jail.z.maxretry", "0"),
            ("logjail.jails", "ok,b@d"),
            ("logjail.other", "1"),
        ]);
        assert!(labels.defined.is_empty(), "{:?}", labels.defined);
        assert_eq!(labels.jails, ["ok"]);
        let messages: Vec<String> = labels.errors.iter().map(ToString::to_string).collect();
        let expect = [
            "`logjail.jails=ok,b@d`: jail names use letters",
            "`logjail.other=1`: unknown logjail label",
            "`logjail.jail.a.b.filter=sshd`: jail names use letters",
            "`logjail.jail.sshd.maxretry=2`: jail \"sshd\" is defined in the configuration file",
            "`logjail.jail.x.colour=red`: unknown jail key `colour`",
            "`logjail.jail.x.colour=red`: no filter named \"x\"",
            "`logjail.jail.y.action=reject-with tcp-reset`: `tcp-reset` answers only TCP",
            "`logjail.jail.z.maxretry=0`: must be at least 1",
        ];
        for expected in expect {
            assert!(
                messages.iter().any(|m| m.contains(expected)),
                "no error containing {expected:?} in {messages:#?}"
            );
        }
        assert_eq!(messages.len(), expect.len() + 1, "{messages:#?}");
    }

    #[test]
    fn ports_protocol_and_long_names() {
        let labels = Fixture::new().parse(&[
            ("logjail.jail.s.filter", "sshd"),
            ("logjail.jail.s.ports", "all"),
            ("logjail.jail.s.protocol", "TCP"),
            ("logjail.jail.s.action", "reject-with tcp-reset"),
            ("logjail.jail.a-very-long-jail-name-indeed.filter", "sshd"),
        ]);
        assert_eq!(labels.defined.len(), 1, "{:?}", labels.errors);
        assert_eq!(labels.defined[0].ports, Ports::All);
        assert_eq!(labels.defined[0].protocol, Protocol::Tcp);
        assert!(labels.errors[0].message.contains("too long"), "{labels:?}");
    }

    #[test]
    fn a_stored_definition_rebuilds_the_same_jail_even_without_its_filter() {
        let mut fixture = Fixture::new();
        fixture.host_network = true;
        let given = [
            ("logjail.jail.shop.filter", "wordpress"),
            ("logjail.jail.shop.port", "443"),
            ("logjail.jail.shop.action", "reject"),
            ("logjail.jail.other.filter", "sshd"),
            ("logjail.jails", "shop"),
            ("com.docker.compose.service", "shop"),
        ];
        let parsed = fixture.parse(&given);
        let shop = parsed.defined.iter().find(|j| j.name == "shop").unwrap();
        let labels: HashMap<String, String> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stored = definition("shop", &labels, "container shop", true);
        // Only the labels that define this jail are kept.
        assert_eq!(
            stored.labels.keys().collect::<Vec<_>>(),
            [
                "logjail.jail.shop.action",
                "logjail.jail.shop.filter",
                "logjail.jail.shop.port"
            ]
        );
        let rebuilt = restore(&stored, &fixture.defaults, "logjail").unwrap();
        assert_eq!(&rebuilt, shop);
        assert_eq!(
            rebuilt.chains,
            vec![Chain::Input],
            "host network: INPUT, as defined"
        );
        // A filter the configuration no longer has does not lose the jail (and its bans).
        let mut renamed = stored.clone();
        renamed
            .labels
            .insert("logjail.jail.shop.filter".into(), "gone-filter".into());
        assert_eq!(
            restore(&renamed, &fixture.defaults, "logjail")
                .unwrap()
                .filter
                .as_deref(),
            Some("gone-filter")
        );
        // Labels that no longer define a jail say why.
        let mut broken = stored;
        broken
            .labels
            .insert("logjail.jail.shop.maxretry".into(), "many".into());
        let error = restore(&broken, &fixture.defaults, "logjail").unwrap_err();
        assert!(error.contains("logjail.jail.shop.maxretry"), "{error}");
    }
}
