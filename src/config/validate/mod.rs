//! Turns the parsed YAML into a [`Config`], collecting every error with its position instead of
//! stopping at the first.
//!
//! Every key is checked where it is written: a bad value in `defaults:` is reported once, and
//! jails then fall back to the built-in default for it, so one mistake never cascades into a
//! list of follow-up errors.

mod actions;
mod daemon;
mod filters;
mod fleet;
mod jails;
mod settings;

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use crate::config::error::{ConfigError, Scope};
use crate::config::positions::{COMPLEX_KEY, PositionIndex, YamlPath};
use crate::config::raw::{RawConfig, struct_keys};
use crate::config::{Config, ConfigOrigin};
use crate::filter::{Filter, builtin};
use jails::JailContext;
use settings::{Overrides, resolve_defaults};

/// Validates a parsed document. `value` has had its merge keys (`<<`) applied.
pub(super) fn validate(
    value: &Value,
    origin: ConfigOrigin,
    index: &PositionIndex,
) -> Result<Config, Vec<ConfigError>> {
    let base_dir = match &origin {
        ConfigOrigin::File(path) => path.parent().map(std::path::Path::to_path_buf),
        _ => None,
    };
    let mut validator = Validator {
        origin: origin.to_string(),
        base_dir,
        index,
        errors: Vec::new(),
        fail2ban_filters: BTreeMap::new(),
        filter_notes: BTreeMap::new(),
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

/// Walks the document once, collecting errors instead of returning at the first.
struct Validator<'a> {
    /// What errors show as the file name.
    origin: String,
    /// The configuration file's folder: relative paths in it (a jail's `fail2ban:` filter file)
    /// are read from there, not from wherever the daemon was started.
    base_dir: Option<std::path::PathBuf>,
    /// Where each key and value is, to place the errors.
    index: &'a PositionIndex,
    /// Everything found so far.
    errors: Vec<ConfigError>,
    /// Fail2Ban filter files the jails use, compiled under the names the jails refer to them by.
    fail2ban_filters: BTreeMap<String, Filter>,
    /// What `logjail check` says of each of those filters (see [`Config::filter_notes`]).
    filter_notes: BTreeMap<String, Vec<String>>,
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
        let resolved = resolve_defaults(&defaults);
        let context = JailContext {
            defaults: &defaults,
            resolved: &resolved,
            filters: &known_filters,
            chain_prefix: &firewall.chain_prefix,
        };
        let jails = self.jails(raw.jails.as_ref(), &root.key("jails"), &context);
        let mut filters = self.compile_used_builtins(filters, &jails, &root.key("jails"));
        filters.append(&mut self.fail2ban_filters);
        let fleet = self.fleet(raw.fleet.as_ref(), &root.key("fleet"));
        if fleet.is_none() && raw.fleet.is_none() {
            self.sharing_without_fleet(&jails, &root.key("jails"));
        }
        if fleet.is_some() || raw.fleet.is_none() {
            self.shared_failures_checked(&jails, fleet.as_ref(), &root.key("jails"));
        }

        Config {
            origin,
            defaults: resolved,
            jails,
            filters,
            user_filters,
            filter_notes: std::mem::take(&mut self.filter_notes),
            docker: self.docker(raw.docker.as_ref(), &root.key("docker")),
            pods: self.pods(raw.pods.as_ref(), &root.key("pods")),
            store: self.store(raw.store.as_ref(), &root.key("store")),
            firewall,
            control: self.control(raw.control.as_ref(), &root.key("control")),
            metrics: self.metrics(raw.metrics.as_ref(), &root.key("metrics")),
            log: self.log(raw.log.as_ref(), &root.key("log")),
            fleet,
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
                self.report(
                    place,
                    &path.key(COMPLEX_KEY),
                    Anchor::Key,
                    "keys must be plain words",
                );
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
    fn names() {
        assert!(check_name("nginx-http-auth", "jail").is_ok());
        assert!(check_name("wp_1", "jail").is_ok());
        assert!(check_name("-x", "jail").is_err());
        assert!(check_name("a b", "jail").is_err());
        assert!(check_name("", "jail").is_err());
    }
}
