//! The settings `defaults:` and jails share, and the values with several spellings
//! (durations, counts, networks, actions, ports, increments).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde_yaml::Value;

use super::{Anchor, Place, Validator, describe};
use crate::config::action::ActionConfig;
use crate::config::jail::{DEFAULT_INCREMENT_FACTOR, DefaultsConfig, IncrementConfig};
use crate::config::ports::{PortRange, Ports, parse_port_range};
use crate::config::positions::YamlPath;
use crate::config::raw::{RawDefaults, RawIncrement, RawShared, Scalar};
use crate::duration::{BanTime, DurationError, parse_bantime, parse_duration};

/// Settings that both `defaults:` and a jail may give; `None`: not given, or given wrong (and
/// reported).
#[derive(Debug, Default)]
pub(super) struct Overrides {
    pub(super) bantime: Option<BanTime>,
    pub(super) findtime: Option<Duration>,
    pub(super) maxretry: Option<u32>,
    pub(super) ignoreip: Option<Vec<IpNet>>,
    pub(super) ignoreself: Option<bool>,
    /// With where it was written, for errors that depend on the jail (tcp-reset).
    pub(super) action: Option<(ActionConfig, YamlPath)>,
    pub(super) increment: IncrementOverrides,
}

/// The keys of one `increment:` mapping that were given correctly.
#[derive(Debug, Default, Clone)]
pub(super) struct IncrementOverrides {
    pub(super) enabled: Option<bool>,
    pub(super) factor: Option<f64>,
    pub(super) multipliers: Option<Vec<u32>>,
    pub(super) maxtime: Option<Duration>,
    /// `Some(None)`: explicitly zero, i.e. no randomness.
    pub(super) rndtime: Option<Option<Duration>>,
    pub(super) overalljails: Option<bool>,
}

impl IncrementOverrides {
    /// Key by key, this level's value or else `fallback`'s.
    pub(super) fn or(&self, fallback: &IncrementOverrides) -> IncrementOverrides {
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

    pub(super) fn resolve(&self) -> Option<IncrementConfig> {
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

impl Validator<'_> {
    pub(super) fn defaults(&mut self, value: &Value, path: &YamlPath) -> Overrides {
        let place = Place::file();
        match self.mapping_of::<RawDefaults>(value, path, &place) {
            Some(raw) => self.overrides(raw.into(), path, &place),
            None => Overrides::default(),
        }
    }

    /// Checks the keys `defaults:` and jails share, each where it is written.
    pub(super) fn overrides(
        &mut self,
        raw: RawShared,
        path: &YamlPath,
        place: &Place,
    ) -> Overrides {
        Overrides {
            bantime: raw
                .bantime
                .and_then(|s| self.bantime(&s, &path.key("bantime"), place)),
            findtime: raw
                .findtime
                .and_then(|s| self.positive_duration(&s, &path.key("findtime"), place)),
            maxretry: raw
                .maxretry
                .and_then(|s| self.maxretry(&s, &path.key("maxretry"), place)),
            ignoreip: raw
                .ignoreip
                .and_then(|v| self.ignoreip(&v, &path.key("ignoreip"), place)),
            ignoreself: raw.ignoreself,
            action: raw.action.and_then(|v| {
                let action_path = path.key("action");
                self.action(&v, &action_path, place)
                    .map(|a| (a, action_path))
            }),
            increment: raw
                .increment
                .map(|v| self.increment(&v, &path.key("increment"), place))
                .unwrap_or_default(),
        }
    }

    pub(super) fn maxretry(
        &mut self,
        scalar: &Scalar,
        path: &YamlPath,
        place: &Place,
    ) -> Option<u32> {
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
    pub(super) fn duration(
        &mut self,
        scalar: &Scalar,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Duration> {
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

    pub(super) fn positive_duration(
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

    pub(super) fn bantime(
        &mut self,
        scalar: &Scalar,
        path: &YamlPath,
        place: &Place,
    ) -> Option<BanTime> {
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
    pub(super) fn ignoreip(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Vec<IpNet>> {
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

    pub(super) fn increment(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> IncrementOverrides {
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
    pub(super) fn multipliers(
        &mut self,
        value: &Value,
        path: &YamlPath,
        place: &Place,
    ) -> Option<Vec<u32>> {
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
        if items.is_empty() {
            self.report(
                place,
                path,
                Anchor::Value,
                "list at least one multiplier (e.g. [1, 2, 4, 8]) or remove the key",
            );
            return None;
        }
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

    pub(super) fn ports(&mut self, value: &Value, path: &YamlPath, place: &Place) -> Option<Ports> {
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
}

pub(super) fn resolve_defaults(overrides: &Overrides) -> DefaultsConfig {
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
            .map_or(builtin.action, |(a, _)| a.clone()),
        increment: overrides.increment.resolve(),
    }
}

pub(super) fn parse_network(text: &str) -> Result<IpNet, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
