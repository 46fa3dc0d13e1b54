//! Turns the parsed YAML into a [`Config`], collecting every error with its position instead of
//! stopping at the first.
//!
//! Every key is checked where it is written: a bad value in `defaults:` is reported once, and
//! jails then fall back to the built-in default for it, so one mistake never cascades into a
//! list of follow-up errors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use super::action::{
    ActionConfig, FirewallAction, RejectWith, is_action_name, parse_action_entry, parse_action_word,
};
use super::error::{ConfigError, Scope};
use super::glob::Glob;
use super::jail::{
    Chain, ContainerSelector, DEFAULT_INCREMENT_FACTOR, DefaultsConfig, IncrementConfig,
    JailConfig, JournalMatch, JournalSelector, LabelMatch, SourceConfig,
};
use super::ports::{PortRange, Ports, Protocol, parse_port_range};
use super::positions::{PositionIndex, YamlPath};
use super::raw::{
    RawConfig, RawContainer, RawControl, RawDefaults, RawDocker, RawFirewall, RawIncrement,
    RawJail, RawJournal, RawLog, RawMetrics, RawSource, RawStore, Scalar, struct_keys,
};
use super::sections::{
    ControlConfig, DockerConfig, FirewallConfig, LogConfig, MAX_CHAIN_NAME, MetricsConfig,
    StoreConfig, check_docker_host,
};
use super::{Config, ConfigOrigin};
use crate::duration::{BanTime, DurationError, parse_bantime, parse_duration};
use crate::filter::{Filter, FilterError, FilterField, FilterSpec, builtin};

/// Validates a parsed document. `value` has had its merge keys (`<<`) applied.
pub(super) fn validate(
    value: &Value,
    origin: ConfigOrigin,
    index: &PositionIndex,
) -> Result<Config, Vec<ConfigError>> {
    let mut validator = Validator {
        origin: origin.to_string(),
        index,
        errors: Vec::new(),
    };
    let config = validator.config(value, origin);
    if validator.errors.is_empty() {
        Ok(config)
    } else {
        let mut errors = validator.errors;
        // Text order reads best; errors without a position (none today) come first.
        errors.sort_by_key(|error| error.position);
        Err(errors)
    }
}

/// Which end of a `key: value` pair an error points at.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    Key,
    Value,
}

/// The scope errors are reported in and how many path steps it hides (`jails.sshd`).
#[derive(Debug, Clone)]
struct Place {
    scope: Scope,
    depth: usize,
}

impl Place {
    fn file() -> Self {
        Place {
            scope: Scope::File,
            depth: 0,
        }
    }
}

/// Settings that both `defaults:` and a jail may give; `None`: not given, or given wrong (and
/// reported).
#[derive(Debug, Default)]
struct Overrides {
    bantime: Option<BanTime>,
    findtime: Option<Duration>,
    maxretry: Option<u32>,
    ignoreip: Option<Vec<IpNet>>,
    ignoreself: Option<bool>,
    /// With where it was written, for errors that depend on the jail (tcp-reset).
    action: Option<(ActionConfig, YamlPath)>,
    increment: IncrementOverrides,
}

/// The keys of one `increment:` mapping that were given correctly.
#[derive(Debug, Default, Clone)]
struct IncrementOverrides {
    enabled: Option<bool>,
    factor: Option<f64>,
    multipliers: Option<Vec<u32>>,
    maxtime: Option<Duration>,
    /// `Some(None)`: explicitly zero, i.e. no randomness.
    rndtime: Option<Option<Duration>>,
    overalljails: Option<bool>,
}

impl IncrementOverrides {
    /// Key by key, this level's value or else `fallback`'s.
    fn or(&self, fallback: &IncrementOverrides) -> IncrementOverrides {
        IncrementOverrides {
            enabled: self.enabled.or(fallback.enabled),
            factor: self.factor.or(fallback.factor),
            multipliers: self
                .multipliers
                .clone()
                .or_else(|| fallback.multipliers.clone()),
            maxtime: self.maxtime.or(fallback.maxtime),
            rndtime: self.rndtime.or(fallback.rndtime),
            overalljails: self.overalljails.or(fallback.overalljails),
        }
    }

    fn resolve(&self) -> Option<IncrementConfig> {
        if !self.enabled.unwrap_or(false) {
            return None;
        }
        Some(IncrementConfig {
            factor: self.factor.unwrap_or(DEFAULT_INCREMENT_FACTOR),
            multipliers: self.multipliers.clone().unwrap_or_default(),
            maxtime: self.maxtime,
            rndtime: self.rndtime.flatten(),
            overalljails: self.overalljails.unwrap_or(false),
        })
    }
}

/// What jails are checked against.
struct JailContext<'a> {
    defaults: &'a Overrides,
    /// Built-in and user filter names.
    filters: &'a BTreeSet<String>,
    chain_prefix: &'a str,
}

struct Validator<'a> {
    origin: String,
    index: &'a PositionIndex,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn report(
        &mut self,
        place: &Place,
        path: &YamlPath,
        anchor: Anchor,
        message: impl Into<String>,
    ) {
        let position = match anchor {
            Anchor::Key => self.index.key_position(path),
            Anchor::Value => self.index.value_position(path),
        };
        self.errors.push(ConfigError {
            origin: self.origin.clone(),
            position,
            scope: place.scope.clone(),
            key: path.display_from(place.depth),
            message: message.into(),
        });
    }

    // ----- the document -------------------------------------------------------------------

    fn config(&mut self, value: &Value, origin: ConfigOrigin) -> Config {
        let root = YamlPath::root();
        let file = Place::file();
        let raw = match value {
            Value::Null => RawConfig::default(),
            Value::Mapping(mapping) => {
                // `x-…` keys hold YAML anchors for reuse, as in Compose files.
                let kept: Mapping = mapping
                    .iter()
                    .filter(|(key, _)| !key.as_str().is_some_and(|k| k.starts_with("x-")))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                self.mapping_of::<RawConfig>(&Value::Mapping(kept), &root, &file)
                    .unwrap_or_default()
            }
            other => {
                self.report(
                    &file,
                    &root,
                    Anchor::Value,
                    format!(
                        "the configuration must be a mapping of sections (defaults, jails, \
                         filters, …), not {}",
                        describe(other)
                    ),
                );
                RawConfig::default()
            }
        };

        let firewall = self.firewall(raw.firewall.as_ref(), &root.key("firewall"));
        let defaults_path = root.key("defaults");
        let defaults = match &raw.defaults {
            Some(value) => self.defaults(value, &defaults_path),
            None => Overrides::default(),
        };
        let (filters, user_filters) = self.filters(raw.filters.as_ref(), &root.key("filters"));
        let mut known_filters: BTreeSet<String> = builtin::names().map(str::to_string).collect();
        known_filters.extend(user_filters.keys().cloned());
        let context = JailContext {
            defaults: &defaults,
            filters: &known_filters,
            chain_prefix: &firewall.chain_prefix,
        };
        let jails = self.jails(raw.jails.as_ref(), &root.key("jails"), &context);
        let filters = self.compile_used_builtins(filters, &jails, &root.key("jails"));

        Config {
            origin,
            defaults: resolve_defaults(&defaults),
            jails,
            filters,
            user_filters,
            docker: self.docker(raw.docker.as_ref(), &root.key("docker")),
            store: self.store(raw.store.as_ref(), &root.key("store")),
            firewall,
            control: self.control(raw.control.as_ref(), &root.key("control")),
            metrics: self.metrics(raw.metrics.as_ref(), &root.key("metrics")),
            log: self.log(raw.log.as_ref(), &root.key("log")),
        }
    }

    /// Deserializes one level of the file into its mirror struct, reporting every unknown key
    /// and every key of the wrong type, and returning the struct built from the keys that are
    /// right (so that the caller can check those too).
    fn mapping_of<T: DeserializeOwned>(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<T> {
        let mapping = match value {
            Value::Null => return self.deserialize_or_report(Mapping::new(), path, place),
            Value::Mapping(mapping) => mapping,
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!("must be a mapping of settings, not {}", describe(other)),
                );
                return None;
            }
        };
        let known = struct_keys::<T>();
        let mut accepted = Mapping::new();
        for (key, item) in mapping {
            let Some(name) = key_text(key) else {
                self.report(place, path, Anchor::Value, "keys must be plain words");
                continue;
            };
            let key_path = path.key(&name);
            if !known.contains(&name.as_str()) {
                self.report(
                    place,
                    &key_path,
                    Anchor::Key,
                    unknown_key_message(&name, known),
                );
                continue;
            }
            // One key at a time, so that a wrong type names its key and position.
            let single: Mapping = [(key.clone(), item.clone())].into_iter().collect();
            match T::deserialize(Value::Mapping(single)) {
                Ok(_) => {
                    accepted.insert(key.clone(), item.clone());
                }
                Err(error) => self.report(place, &key_path, Anchor::Value, serde_message(&error)),
            }
        }
        self.deserialize_or_report(accepted, path, place)
    }

    fn deserialize_or_report<T: DeserializeOwned>(
        &mut self,
        mapping: Mapping,
        path: &YamlPath,
        place: &Place,
    ) -> Option<T> {
        match T::deserialize(Value::Mapping(mapping)) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.report(place, path, Anchor::Value, serde_message(&error));
                None
            }
        }
    }

    // ----- defaults and the settings jails share ------------------------------------------

    fn defaults(&mut self, value: &Value, path: &YamlPath) -> Overrides {
        let place = Place::file();
        let Some(raw) = self.mapping_of::<RawDefaults>(value, path, &place) else {
            return Overrides::default();
        };
        Overrides {
            bantime: raw
                .bantime
                .and_then(|s| self.bantime(&s, &path.key("bantime"), &place)),
            findtime: raw
                .findtime
                .and_then(|s| self.positive_duration(&s, &path.key("findtime"), &place)),
            maxretry: raw
                .maxretry
                .and_then(|s| self.maxretry(&s, &path.key("maxretry"), &place)),
            ignoreip: raw
                .ignoreip
                .and_then(|v| self.ignoreip(&v, &path.key("ignoreip"), &place)),
            ignoreself: raw.ignoreself,
            action: raw.action.and_then(|v| {
                let action_path = path.key("action");
                self.action(&v, &action_path, &place)
                    .map(|a| (a, action_path))
            }),
            increment: raw
                .increment
                .map(|v| self.increment(&v, &path.key("increment"), &place))
                .unwrap_or_default(),
        }
    }

    fn maxretry(&mut self, scalar: &Scalar, path: &YamlPath, place: &Place) -> Option<u32> {
        let number = match scalar {
            Scalar::Int(n) => Some(*n),
            Scalar::Text(text) => text.trim().parse::<i64>().ok(),
            Scalar::Float(_) | Scalar::Bool(_) => None,
        };
        let message = match number {
            None => format!("must be a whole number (got {scalar})"),
            Some(n) if n < 1 => format!("must be at least 1 (got {n})"),
            Some(n) => match u32::try_from(n) {
                Ok(n) => return Some(n),
                Err(_) => format!("is too large (got {n})"),
            },
        };
        self.report(place, path, Anchor::Value, message);
        None
    }

    /// A finite duration; zero allowed (callers that need more check it).
    fn duration(&mut self, scalar: &Scalar, path: &YamlPath, place: &Place) -> Option<Duration> {
        let result = match scalar {
            Scalar::Int(n) if *n < 0 => Err(format!("must not be negative (got {n})")),
            Scalar::Int(n) => Ok(Duration::from_secs(n.unsigned_abs())),
            Scalar::Text(text) => parse_duration(text).map_err(|error| match error {
                DurationError::Negative(_) => format!("must not be negative (got {})", text.trim()),
                other => other.to_string(),
            }),
            Scalar::Float(_) | Scalar::Bool(_) => Err(format!(
                "{scalar} is not a duration (use e.g. 90s, 10m, 2h, 3d, 1w or whole seconds)"
            )),
        };
        match result {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.report(place, path, Anchor::Value, message);
                None
            }
        }
    }

    fn positive_duration(
        &mut self,
        scalar: &Scalar,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Duration> {
        let duration = self.duration(scalar, path, place)?;
        if duration.is_zero() {
            self.report(place, path, Anchor::Value, "must be longer than 0");
            return None;
        }
        Some(duration)
    }

    fn bantime(&mut self, scalar: &Scalar, path: &YamlPath, place: &Place) -> Option<BanTime> {
        let result = match scalar {
            Scalar::Int(n) => parse_bantime(&n.to_string()).map_err(|e| e.to_string()),
            Scalar::Text(text) => parse_bantime(text).map_err(|e| e.to_string()),
            Scalar::Float(_) | Scalar::Bool(_) => Err(format!(
                "{scalar} is not a duration (use e.g. 10m, 2h, 3d, 1w, whole seconds, or -1 for \
                 a permanent ban)"
            )),
        };
        match result {
            Ok(BanTime::Finite(duration)) if duration.is_zero() => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    "must be longer than 0 (use -1 for a permanent ban)",
                );
                None
            }
            Ok(bantime) => Some(bantime),
            Err(message) => {
                self.report(place, path, Anchor::Value, message);
                None
            }
        }
    }

    /// `ignoreip:` as a list, or one string of addresses separated by spaces or commas (the
    /// Fail2Ban spelling).
    fn ignoreip(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<Vec<IpNet>> {
        let mut all_strings = true;
        let entries: Vec<(YamlPath, &str)> = match value {
            Value::Null => Vec::new(),
            Value::String(text) => vec![(path.clone(), text.as_str())],
            Value::Sequence(items) => {
                let mut entries = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(text) => entries.push((path.index(i), text.as_str())),
                        other => {
                            self.report(
                                place,
                                &path.index(i),
                                Anchor::Value,
                                format!(
                                    "must be an IP address or CIDR network, not {}",
                                    describe(other)
                                ),
                            );
                            all_strings = false;
                        }
                    }
                }
                entries
            }
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!(
                        "must be a list of IP addresses or CIDR networks, not {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let mut networks = Vec::new();
        let mut ok = all_strings;
        for (entry_path, text) in entries {
            for word in text.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
                match parse_network(word) {
                    Ok(network) => networks.push(network),
                    Err(message) => {
                        self.report(place, &entry_path, Anchor::Value, message);
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(networks)
    }

    fn action(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<ActionConfig> {
        let items: Vec<(YamlPath, &Value)> = match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (path.index(i), item))
                .collect(),
            single => vec![(path.clone(), single)],
        };
        let mut firewall: Option<FirewallAction> = None;
        let mut ok = true;
        for (item_path, item) in &items {
            let parsed = match item {
                Value::String(word) => parse_action_word(word),
                Value::Mapping(entry) if entry.len() == 1 => {
                    let (key, argument) = entry
                        .iter()
                        .next()
                        .map_or((None, None), |(k, v)| (key_text(k), Some(v)));
                    match (key, argument) {
                        (Some(key), Some(Value::Null) | None) => parse_action_entry(&key, None),
                        (Some(key), Some(Value::String(argument))) => {
                            parse_action_entry(&key, Some(argument))
                        }
                        (Some(key), Some(other)) if is_action_name(&key) => Err(format!(
                            "the argument of `{key}` must be a word, not {}",
                            describe(other)
                        )),
                        (Some(key), Some(_)) => parse_action_entry(&key, None),
                        (None, _) => Err("an action name must be a word".to_string()),
                    }
                }
                Value::Mapping(_) => Err(
                    "an action mapping has exactly one key, e.g. `{reject-with: tcp-reset}`; \
                     list several actions with `-`"
                        .to_string(),
                ),
                other => Err(format!(
                    "must be drop, reject, reject-with TYPE or log, not {}",
                    describe(other)
                )),
            };
            match parsed {
                Ok(action) => match firewall {
                    Some(first) => {
                        self.report(
                            place,
                            item_path,
                            Anchor::Value,
                            format!("only one of drop, reject and log per jail (`{first}` is already given)"),
                        );
                        ok = false;
                    }
                    None => firewall = Some(action),
                },
                Err(message) => {
                    self.report(place, item_path, Anchor::Value, message);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match firewall {
            Some(firewall) => Some(ActionConfig { firewall }),
            None => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    "needs one of drop, reject, reject-with TYPE or log",
                );
                None
            }
        }
    }

    fn increment(&mut self, value: &Value, path: &YamlPath, place: &Place) -> IncrementOverrides {
        let Some(raw) = self.mapping_of::<RawIncrement>(value, path, place) else {
            return IncrementOverrides::default();
        };
        let factor = raw.factor.and_then(|scalar| {
            let number = match &scalar {
                Scalar::Int(n) => Some(*n as f64),
                Scalar::Float(x) => Some(*x),
                Scalar::Text(text) => text.trim().parse::<f64>().ok(),
                Scalar::Bool(_) => None,
            };
            match number {
                Some(x) if x.is_finite() && x > 0.0 => Some(x),
                _ => {
                    self.report(
                        place,
                        &path.key("factor"),
                        Anchor::Value,
                        format!("must be a number greater than 0 (got {scalar})"),
                    );
                    None
                }
            }
        });
        IncrementOverrides {
            enabled: raw.enabled,
            factor,
            multipliers: raw
                .multipliers
                .and_then(|v| self.multipliers(&v, &path.key("multipliers"), place)),
            maxtime: raw
                .maxtime
                .and_then(|s| self.positive_duration(&s, &path.key("maxtime"), place)),
            rndtime: raw.rndtime.and_then(|s| {
                self.duration(&s, &path.key("rndtime"), place)
                    .map(|d| (!d.is_zero()).then_some(d))
            }),
            overalljails: raw.overalljails,
        }
    }

    /// `multipliers:` as a list of whole numbers, or one string of them (`"1 2 4 8 16"`, the
    /// Fail2Ban spelling).
    fn multipliers(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<Vec<u32>> {
        let items: Vec<(YamlPath, String)> = match value {
            Value::String(text) => text
                .split_whitespace()
                .map(|word| (path.clone(), word.to_string()))
                .collect(),
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let text = match item {
                        Value::Number(n) => n.to_string(),
                        Value::String(s) => s.clone(),
                        other => describe(other).to_string(),
                    };
                    (path.index(i), text)
                })
                .collect(),
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!("must be a list of whole numbers, not {}", describe(other)),
                );
                return None;
            }
        };
        let mut multipliers = Vec::new();
        let mut ok = true;
        for (item_path, text) in items {
            match text.trim().parse::<u32>() {
                Ok(n) if n >= 1 => multipliers.push(n),
                _ => {
                    self.report(
                        place,
                        &item_path,
                        Anchor::Value,
                        format!("multipliers must be whole numbers of at least 1 (got {text})"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(multipliers)
    }

    // ----- filters ------------------------------------------------------------------------

    /// Checks and compiles the user filters; returns the compiled ones and their specs.
    fn filters(
        &mut self,
        value: Option<&Value>,
        path: &YamlPath,
    ) -> (BTreeMap<String, Filter>, BTreeMap<String, FilterSpec>) {
        let mut compiled = BTreeMap::new();
        let mut specs = BTreeMap::new();
        let mapping = match value {
            None | Some(Value::Null) => return (compiled, specs),
            Some(Value::Mapping(mapping)) => mapping,
            Some(other) => {
                self.report(
                    &Place::file(),
                    path,
                    Anchor::Value,
                    format!(
                        "must be a mapping of filter names to filters, not {}",
                        describe(other)
                    ),
                );
                return (compiled, specs);
            }
        };
        for (key, value) in mapping {
            let Some(name) = key_text(key) else {
                self.report(
                    &Place::file(),
                    path,
                    Anchor::Value,
                    "filter names must be plain words",
                );
                continue;
            };
            let filter_path = path.key(&name);
            let place = Place {
                scope: Scope::Filter(name.clone()),
                depth: 2,
            };
            if let Err(message) = check_name(&name, "filter") {
                self.report(&place, &filter_path, Anchor::Key, message);
                continue;
            }
            let Some(spec) = self.mapping_of::<FilterSpec>(
                &single_strings_as_lists(value),
                &filter_path,
                &place,
            ) else {
                continue;
            };
            match compile_filter(&name, &spec) {
                Ok(filter) => {
                    compiled.insert(name.clone(), filter);
                }
                Err(errors) => {
                    for error in errors {
                        let (error_path, anchor) = match error.field {
                            Some(field) => (filter_field_path(&filter_path, field), Anchor::Value),
                            None => (filter_path.clone(), Anchor::Key),
                        };
                        self.report(&place, &error_path, anchor, one_line(&error.message));
                    }
                }
            }
            specs.insert(name, spec);
        }
        (compiled, specs)
    }

    /// Adds the built-in filters the jails use to the compiled user filters.
    fn compile_used_builtins(
        &mut self,
        mut filters: BTreeMap<String, Filter>,
        jails: &[JailConfig],
        jails_path: &YamlPath,
    ) -> BTreeMap<String, Filter> {
        for jail in jails {
            let Some(name) = &jail.filter else { continue };
            if filters.contains_key(name) {
                continue;
            }
            let Some(spec) = builtin::spec(name) else {
                continue;
            };
            match compile_filter(name, &spec) {
                Ok(filter) => {
                    filters.insert(name.clone(), filter);
                }
                Err(errors) => {
                    // A built-in that does not compile is our bug, but say where it is used.
                    let place = Place {
                        scope: Scope::Jail(jail.name.clone()),
                        depth: 2,
                    };
                    let path = jails_path.key(&jail.name).key("filter");
                    for error in errors {
                        self.report(&place, &path, Anchor::Value, format!("built-in {error}"));
                    }
                }
            }
        }
        filters
    }

    // ----- jails --------------------------------------------------------------------------

    fn jails(
        &mut self,
        value: Option<&Value>,
        path: &YamlPath,
        context: &JailContext<'_>,
    ) -> Vec<JailConfig> {
        let mapping = match value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Mapping(mapping)) => mapping,
            Some(other) => {
                self.report(
                    &Place::file(),
                    path,
                    Anchor::Value,
                    format!(
                        "must be a mapping of jail names to jails, not {}",
                        describe(other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut jails = Vec::new();
        for (key, value) in mapping {
            let Some(name) = key_text(key) else {
                self.report(
                    &Place::file(),
                    path,
                    Anchor::Value,
                    "jail names must be plain words",
                );
                continue;
            };
            if let Some(jail) = self.jail(&name, value, &path.key(&name), context) {
                jails.push(jail);
            }
        }
        jails
    }

    fn jail(
        &mut self,
        name: &str,
        value: &Value,
        path: &YamlPath,
        context: &JailContext<'_>,
    ) -> Option<JailConfig> {
        let place = Place {
            scope: Scope::Jail(name.to_string()),
            depth: 2,
        };
        let name_ok = match check_name(name, "jail") {
            Err(message) => {
                self.report(&place, path, Anchor::Key, message);
                false
            }
            Ok(()) if context.chain_prefix.len() + 1 + name.len() > MAX_CHAIN_NAME => {
                self.report(
                    &place,
                    path,
                    Anchor::Key,
                    format!(
                        "name too long: its firewall chain `{}-{name}` would exceed {MAX_CHAIN_NAME} \
                         characters (shorten the name or firewall.chain_prefix)",
                        context.chain_prefix
                    ),
                );
                false
            }
            Ok(()) => true,
        };
        let raw = self.mapping_of::<RawJail>(value, path, &place)?;
        let own = Overrides {
            bantime: raw
                .bantime
                .and_then(|s| self.bantime(&s, &path.key("bantime"), &place)),
            findtime: raw
                .findtime
                .and_then(|s| self.positive_duration(&s, &path.key("findtime"), &place)),
            maxretry: raw
                .maxretry
                .and_then(|s| self.maxretry(&s, &path.key("maxretry"), &place)),
            ignoreip: raw
                .ignoreip
                .and_then(|v| self.ignoreip(&v, &path.key("ignoreip"), &place)),
            ignoreself: raw.ignoreself,
            action: raw.action.and_then(|v| {
                let action_path = path.key("action");
                self.action(&v, &action_path, &place)
                    .map(|a| (a, action_path))
            }),
            increment: raw
                .increment
                .map(|v| self.increment(&v, &path.key("increment"), &place))
                .unwrap_or_default(),
        };

        let manual = raw.manual.unwrap_or(false);
        let sources = match &raw.sources {
            Some(value) => self.sources(value, &path.key("sources"), &place),
            None => Some(Vec::new()),
        };
        let filter = if manual {
            if raw.filter.is_some() {
                self.report(
                    &place,
                    &path.key("filter"),
                    Anchor::Key,
                    "a manual jail has no filter (remove `filter`, or `manual: true`)",
                );
            }
            if sources.as_ref().is_some_and(|s| !s.is_empty()) {
                self.report(
                    &place,
                    &path.key("sources"),
                    Anchor::Key,
                    "a manual jail reads no logs (remove `sources`, or `manual: true`)",
                );
            }
            None
        } else if raw.manual.is_none() && value.get("manual").is_some_and(|v| !v.is_null()) {
            // `manual` was rejected (already reported): whether a filter is needed is unknown.
            None
        } else if raw.filter.is_none() && value.get("filter").is_some() {
            // Given but rejected as the wrong type (already reported), or left empty.
            if value.get("filter").is_some_and(Value::is_null) {
                self.report(
                    &place,
                    &path.key("filter"),
                    Anchor::Key,
                    "must name a filter (or set `manual: true` for a jail without one)",
                );
            }
            None
        } else {
            self.jail_filter(name, raw.filter.as_deref(), path, &place, context.filters)
        };

        let protocol = raw.protocol.unwrap_or(Protocol::All);
        let ports = match &raw.ports {
            Some(value) => self.ports(value, &path.key("ports"), &place),
            None => Some(Ports::All),
        };
        let action = own.action.as_ref().or(context.defaults.action.as_ref());
        if let Some((action, action_path)) = action
            && action.firewall == FirewallAction::Reject(RejectWith::TcpReset)
            && protocol != Protocol::Tcp
        {
            self.report(
                &place,
                action_path,
                Anchor::Value,
                "`tcp-reset` answers only TCP: this jail needs `protocol: tcp`",
            );
        }
        let chains = match &raw.chains {
            Some(chains) if chains.is_empty() => {
                self.report(
                    &place,
                    &path.key("chains"),
                    Anchor::Value,
                    "give at least one chain (input, docker-user)",
                );
                None
            }
            Some(chains) => {
                let mut unique: Vec<Chain> = Vec::new();
                for chain in chains {
                    if !unique.contains(chain) {
                        unique.push(*chain);
                    }
                }
                Some(unique)
            }
            None => Some(vec![Chain::Input, Chain::DockerUser]),
        };

        let defaults = context.defaults;
        let jail = JailConfig {
            name: name.to_string(),
            enabled: raw.enabled.unwrap_or(true),
            filter: filter.clone(),
            sources: sources?,
            maxretry: own
                .maxretry
                .or(defaults.maxretry)
                .unwrap_or(super::jail::DEFAULT_MAXRETRY),
            findtime: own
                .findtime
                .or(defaults.findtime)
                .unwrap_or(super::jail::DEFAULT_FINDTIME),
            bantime: own
                .bantime
                .or(defaults.bantime)
                .unwrap_or(BanTime::Finite(super::jail::DEFAULT_BANTIME)),
            ignoreip: own
                .ignoreip
                .clone()
                .or_else(|| defaults.ignoreip.clone())
                .unwrap_or_default(),
            ignoreself: own.ignoreself.or(defaults.ignoreself).unwrap_or(true),
            ports: ports?,
            protocol,
            action: action.map(|(a, _)| *a).unwrap_or_default(),
            increment: own.increment.or(&defaults.increment).resolve(),
            chains: chains?,
        };
        (name_ok && (manual || filter.is_some())).then_some(jail)
    }

    /// The filter a (non-manual) jail uses: `filter:`, or by default the jail's own name.
    fn jail_filter(
        &mut self,
        jail: &str,
        filter: Option<&str>,
        path: &YamlPath,
        place: &Place,
        known: &BTreeSet<String>,
    ) -> Option<String> {
        let wanted = filter.unwrap_or(jail);
        if known.contains(wanted) {
            return Some(wanted.to_string());
        }
        let hint = match suggest(wanted, known.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        match filter {
            Some(_) => self.report(
                place,
                &path.key("filter"),
                Anchor::Value,
                format!(
                    "unknown filter \"{wanted}\" ({hint}see `logjail filters`; your own go under \
                     `filters:`)"
                ),
            ),
            None => self.report(
                place,
                path,
                Anchor::Key,
                format!(
                    "no filter named \"{jail}\" ({hint}see `logjail filters`): set `filter: NAME`, \
                     or `manual: true` for a jail that only bans from the command line"
                ),
            ),
        }
        None
    }

    fn ports(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<Ports> {
        let mut all_scalars = true;
        let entries: Vec<(YamlPath, String)> = match value {
            Value::Number(n) => vec![(path.clone(), n.to_string())],
            Value::String(text) => text
                .split(',')
                .map(|word| (path.clone(), word.trim().to_string()))
                .collect(),
            Value::Sequence(items) => {
                let mut entries = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Number(n) => entries.push((path.index(i), n.to_string())),
                        Value::String(text) => {
                            entries.push((path.index(i), text.trim().to_string()))
                        }
                        other => {
                            let message = format!(
                                "must be a port, a range like 8000:8100 or a service name, not {}",
                                describe(other)
                            );
                            self.report(place, &path.index(i), Anchor::Value, message);
                            all_scalars = false;
                        }
                    }
                }
                entries
            }
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!("must be `all` or a list of ports, not {}", describe(other)),
                );
                return None;
            }
        };
        if !all_scalars {
            return None;
        }
        if entries.is_empty() {
            self.report(
                place,
                path,
                Anchor::Value,
                "give at least one port, or `all`",
            );
            return None;
        }
        if entries
            .iter()
            .any(|(_, text)| text.eq_ignore_ascii_case("all"))
        {
            if entries.len() == 1 {
                return Some(Ports::All);
            }
            self.report(
                place,
                path,
                Anchor::Value,
                "`all` already covers every port; list no others",
            );
            return None;
        }
        let mut ranges: Vec<PortRange> = Vec::new();
        let mut ok = true;
        for (entry_path, text) in entries {
            match parse_port_range(&text) {
                Ok(range) => {
                    if !ranges.contains(&range) {
                        ranges.push(range);
                    }
                }
                Err(message) => {
                    self.report(place, &entry_path, Anchor::Value, message);
                    ok = false;
                }
            }
        }
        ok.then_some(Ports::List(ranges))
    }

    fn sources(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Vec<SourceConfig>> {
        let items = match value {
            Value::Null => return Some(Vec::new()),
            Value::Sequence(items) => items,
            other => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    format!(
                        "must be a list of sources (`- file: PATH`, `- journal: {{…}}`, \
                         `- container: {{…}}`), not {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let mut sources = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.source(item, &path.index(i), place) {
                Some(source) => sources.push(source),
                None => ok = false,
            }
        }
        ok.then_some(sources)
    }

    fn source(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<SourceConfig> {
        let raw = self.mapping_of::<RawSource>(value, path, place)?;
        // Presence, not value: `- journal:` with nothing after it is the whole journal.
        let given: Vec<&str> = ["file", "journal", "container"]
            .into_iter()
            .filter(|kind| value.get(kind).is_some())
            .collect();
        match given.as_slice() {
            [] => {
                self.report(
                    place,
                    path,
                    Anchor::Value,
                    "a source needs one of `file`, `journal` or `container`",
                );
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                self.report(
                    place,
                    &path.key(second),
                    Anchor::Key,
                    "one kind of source per list item: start another item with `-`",
                );
                return None;
            }
        }
        if raw.optional.is_some() && given != ["file"] {
            self.report(
                place,
                &path.key("optional"),
                Anchor::Key,
                "only a `file` source can be optional",
            );
            return None;
        }
        match given[0] {
            "file" => {
                let file_path = path.key("file");
                let text = raw.file.unwrap_or_default();
                if !text.starts_with('/') {
                    self.report(
                        place,
                        &file_path,
                        Anchor::Value,
                        format!("must be an absolute path (got \"{text}\")"),
                    );
                    return None;
                }
                match Glob::for_path(&text) {
                    Ok(glob) => Some(SourceConfig::File {
                        path: glob,
                        optional: raw.optional.unwrap_or(false),
                    }),
                    Err(message) => {
                        self.report(place, &file_path, Anchor::Value, message);
                        None
                    }
                }
            }
            "journal" => self
                .journal(
                    raw.journal.as_ref().unwrap_or(&Value::Null),
                    &path.key("journal"),
                    place,
                )
                .map(SourceConfig::Journal),
            _ => self
                .container(
                    raw.container.as_ref().unwrap_or(&Value::Null),
                    &path.key("container"),
                    place,
                )
                .map(SourceConfig::Container),
        }
    }

    fn journal(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<JournalSelector> {
        let raw = self.mapping_of::<RawJournal>(value, path, place)?;
        let mut ok = true;
        if raw
            .unit
            .as_deref()
            .is_some_and(|unit| unit.trim().is_empty())
        {
            self.report(place, &path.key("unit"), Anchor::Value, "must not be empty");
            ok = false;
        }
        let mut matches = Vec::new();
        for (i, text) in raw.matches.unwrap_or_default().iter().enumerate() {
            match parse_journal_match(text) {
                Ok(m) => matches.push(m),
                Err(message) => {
                    self.report(place, &path.key("match").index(i), Anchor::Value, message);
                    ok = false;
                }
            }
        }
        ok.then_some(JournalSelector {
            unit: raw.unit.map(|unit| unit.trim().to_string()),
            matches,
        })
    }

    fn container(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<ContainerSelector> {
        if !value.is_mapping() {
            self.report(
                place,
                path,
                Anchor::Value,
                format!(
                    "must be a mapping with `name`, `image` and/or `label`, not {}",
                    describe(value)
                ),
            );
            return None;
        }
        let raw = self.mapping_of::<RawContainer>(value, path, place)?;
        if raw.name.is_none() && raw.image.is_none() && raw.label.is_none() {
            self.report(
                place,
                path,
                Anchor::Value,
                "give at least one of `name`, `image` or `label` (labelled containers join a jail \
                 by themselves, without a source)",
            );
            return None;
        }
        let mut ok = true;
        let mut glob = |validator: &mut Self, text: Option<String>, key: &str| match text {
            None => None,
            Some(text) => match Glob::new(&text) {
                Ok(glob) => Some(glob),
                Err(message) => {
                    validator.report(place, &path.key(key), Anchor::Value, message);
                    ok = false;
                    None
                }
            },
        };
        let name = glob(self, raw.name, "name");
        let image = glob(self, raw.image, "image");
        let label = match raw.label.map(|text| LabelMatch::parse(&text)) {
            None => None,
            Some(Ok(label)) => Some(label),
            Some(Err(message)) => {
                self.report(place, &path.key("label"), Anchor::Value, message);
                ok = false;
                None
            }
        };
        ok.then_some(ContainerSelector { name, image, label })
    }

    // ----- daemon sections ----------------------------------------------------------------

    fn docker(&mut self, value: Option<&Value>, path: &YamlPath) -> DockerConfig {
        let mut config = DockerConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawDocker>(v, path, &Place::file()))
        else {
            return config;
        };
        config.enabled = raw.enabled.unwrap_or(config.enabled);
        config.read_mode = raw.read_mode.unwrap_or(config.read_mode);
        if let Some(host) = raw.host {
            match check_docker_host(&host) {
                Ok(()) => config.host = Some(host),
                Err(message) => {
                    self.report(&Place::file(), &path.key("host"), Anchor::Value, message)
                }
            }
        }
        config
    }

    fn store(&mut self, value: Option<&Value>, path: &YamlPath) -> StoreConfig {
        let mut config = StoreConfig::default();
        if let Some(raw) = value.and_then(|v| self.mapping_of::<RawStore>(v, path, &Place::file()))
            && let Some(file) = raw.path
            && let Some(file) = self.absolute_path(&file, &path.key("path"))
        {
            config.path = file;
        }
        config
    }

    fn control(&mut self, value: Option<&Value>, path: &YamlPath) -> ControlConfig {
        let mut config = ControlConfig::default();
        if let Some(raw) =
            value.and_then(|v| self.mapping_of::<RawControl>(v, path, &Place::file()))
            && let Some(socket) = raw.socket
            && let Some(socket) = self.absolute_path(&socket, &path.key("socket"))
        {
            config.socket = socket;
        }
        config
    }

    fn absolute_path(&mut self, text: &str, path: &YamlPath) -> Option<PathBuf> {
        if text.starts_with('/') {
            Some(PathBuf::from(text))
        } else {
            self.report(
                &Place::file(),
                path,
                Anchor::Value,
                format!("must be an absolute path (got \"{text}\")"),
            );
            None
        }
    }

    fn firewall(&mut self, value: Option<&Value>, path: &YamlPath) -> FirewallConfig {
        let mut config = FirewallConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawFirewall>(v, path, &Place::file()))
        else {
            return config;
        };
        config.backend = raw.backend.unwrap_or(config.backend);
        config.mode = raw.mode.unwrap_or(config.mode);
        config.keep_bans_on_exit = raw.keep_bans_on_exit.unwrap_or(config.keep_bans_on_exit);
        if let Some(prefix) = raw.chain_prefix {
            let valid = prefix.len() <= 16
                && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if valid {
                config.chain_prefix = prefix;
            } else {
                self.report(
                    &Place::file(),
                    &path.key("chain_prefix"),
                    Anchor::Value,
                    format!(
                        "must be 1 to 16 letters, digits, `-` or `_`, starting with a letter \
                         (got \"{prefix}\")"
                    ),
                );
            }
        }
        config
    }

    fn metrics(&mut self, value: Option<&Value>, path: &YamlPath) -> MetricsConfig {
        let mut config = MetricsConfig::default();
        let Some(raw) = value.and_then(|v| self.mapping_of::<RawMetrics>(v, path, &Place::file()))
        else {
            return config;
        };
        config.enabled = raw.enabled.unwrap_or(config.enabled);
        if let Some(listen) = raw.listen {
            match listen.parse::<SocketAddr>() {
                Ok(address) => config.listen = address,
                Err(_) => self.report(
                    &Place::file(),
                    &path.key("listen"),
                    Anchor::Value,
                    format!(
                        "must be IP:PORT such as 127.0.0.1:9191 or [::1]:9191 (got \"{listen}\")"
                    ),
                ),
            }
        }
        config
    }

    fn log(&mut self, value: Option<&Value>, path: &YamlPath) -> LogConfig {
        let mut config = LogConfig::default();
        if let Some(raw) = value.and_then(|v| self.mapping_of::<RawLog>(v, path, &Place::file())) {
            config.format = raw.format.unwrap_or(config.format);
            config.level = raw.level.unwrap_or(config.level);
        }
        config
    }
}

/// The one place that talks to the filter engine.
fn compile_filter(name: &str, spec: &FilterSpec) -> Result<Filter, Vec<FilterError>> {
    Filter::compile(name, spec)
}

fn filter_field_path(filter: &YamlPath, field: FilterField) -> YamlPath {
    match field {
        FilterField::Program => filter.key("program"),
        FilterField::Prefregex => filter.key("prefregex"),
        FilterField::Failregex(i) => filter.key("failregex").index(i),
        FilterField::Ignoreregex(i) => filter.key("ignoreregex").index(i),
        FilterField::Datepattern => filter.key("datepattern"),
    }
}

/// The regex crate explains parse errors over several lines, quoting the pattern with its tags
/// expanded (which is not what the user wrote); one error per line keeps the first line and the
/// reason: `regex parse error: unclosed group`.
fn one_line(message: &str) -> String {
    let mut lines = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.last() {
        Some(last) => {
            let reason = last.strip_prefix("error: ").unwrap_or(last);
            format!("{}: {reason}", first.trim_end_matches(':'))
        }
        None => first.to_string(),
    }
}

/// A filter whose `failregex`/`ignoreregex` is one string instead of a list means a one-item
/// list; accepting it spares users a confusing type error.
fn single_strings_as_lists(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Mapping(mapping) = &mut value {
        for key in ["failregex", "ignoreregex"] {
            if let Some(item) = mapping.get_mut(key)
                && item.is_string()
            {
                *item = Value::Sequence(vec![item.clone()]);
            }
        }
    }
    value
}

fn resolve_defaults(overrides: &Overrides) -> DefaultsConfig {
    let builtin = DefaultsConfig::default();
    DefaultsConfig {
        bantime: overrides.bantime.unwrap_or(builtin.bantime),
        findtime: overrides.findtime.unwrap_or(builtin.findtime),
        maxretry: overrides.maxretry.unwrap_or(builtin.maxretry),
        ignoreip: overrides.ignoreip.clone().unwrap_or(builtin.ignoreip),
        ignoreself: overrides.ignoreself.unwrap_or(builtin.ignoreself),
        action: overrides
            .action
            .as_ref()
            .map_or(builtin.action, |(a, _)| *a),
        increment: overrides.increment.resolve(),
    }
}

/// Jail and filter names end up in firewall chain names, set names and container labels.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} names use letters, digits, `-` and `_`, starting with a letter or digit \
             (got \"{name}\")"
        ))
    }
}

fn parse_network(text: &str) -> Result<IpNet, String> {
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(network.trunc());
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    Err(format!(
        "\"{text}\" is not an IP address or CIDR network (host names are not resolved)"
    ))
}

fn parse_journal_match(text: &str) -> Result<JournalMatch, String> {
    let (field, value) = text
        .split_once('=')
        .ok_or_else(|| format!("\"{text}\" is not FIELD=VALUE (e.g. SYSLOG_IDENTIFIER=sshd)"))?;
    let valid_field = field.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && field
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid_field {
        return Err(format!(
            "\"{field}\" is not a journal field name (upper-case letters, digits and `_`)"
        ));
    }
    Ok(JournalMatch {
        field: field.to_string(),
        value: value.to_string(),
    })
}

/// A mapping key as text; YAML lets keys be numbers or booleans, which we read as written.
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde_yaml's message without a position (those it has are about the whole `Value`, not the
/// file).
fn serde_message(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

fn unknown_key_message(key: &str, known: &[&str]) -> String {
    match suggest(key, known.iter().copied()) {
        Some(near) => format!("unknown key (did you mean `{near}`?)"),
        None => format!("unknown key (expected one of: {})", known.join(", ")),
    }
}

/// The closest of `candidates` to a misspelt `word`, if any is close enough to be a typo (a
/// few letters off, or the same word with another ending: `maxretries` → `maxretry`).
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .filter_map(|candidate| {
            let lower = candidate.to_ascii_lowercase();
            let distance = edit_distance(&word, &lower);
            let shared_stem = word
                .chars()
                .zip(lower.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let close = distance <= (lower.len() / 3).max(1)
                || shared_stem >= (lower.len().saturating_sub(1)).max(4);
            close.then_some((distance, candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, small inputs only.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys_only() {
        let keys = ["maxretry", "findtime", "bantime"];
        assert_eq!(suggest("max_retry", keys.into_iter()), Some("maxretry"));
        assert_eq!(suggest("MaxRetrys", keys.into_iter()), Some("maxretry"));
        assert_eq!(suggest("bantim", keys.into_iter()), Some("bantime"));
        assert_eq!(suggest("maxretries", keys.into_iter()), Some("maxretry"));
        assert_eq!(suggest("colour", keys.into_iter()), None);
        assert_eq!(suggest("max", keys.into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn networks_addresses_and_host_bits() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(
            parse_network("example.org")
                .unwrap_err()
                .contains("not resolved")
        );
    }

    #[test]
    fn multi_line_regex_errors_become_one_line() {
        let error = regex::Regex::new("(a").unwrap_err().to_string();
        assert!(error.contains('\n'));
        assert_eq!(one_line(&error), "regex parse error: unclosed group");
        assert_eq!(one_line("has no failregex"), "has no failregex");
    }

    #[test]
    fn journal_matches() {
        let m = parse_journal_match("SYSLOG_IDENTIFIER=sshd").unwrap();
        assert_eq!(
            (m.field.as_str(), m.value.as_str()),
            ("SYSLOG_IDENTIFIER", "sshd")
        );
        assert!(parse_journal_match("_SYSTEMD_UNIT=ssh.service").is_ok());
        assert!(parse_journal_match("unit=ssh").is_err());
        assert!(parse_journal_match("SYSLOG_IDENTIFIER").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("nginx-http-auth", "jail").is_ok());
        assert!(check_name("wp_1", "jail").is_ok());
        assert!(check_name("-x", "jail").is_err());
        assert!(check_name("a b", "jail").is_err());
        assert!(check_name("", "jail").is_err());
    }
}
