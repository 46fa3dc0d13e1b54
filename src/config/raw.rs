//! The serde mirror of the YAML file: exactly the keys that exist, nothing checked yet.
//!
//! Each struct is one level of the file and refuses unknown keys. Nested sections, lists of
//! tagged maps and values with several accepted shapes are kept as `serde_yaml::Value` and
//! deserialized on their own by the validator, so that an error in one of them cannot stop
//! the others from being checked. Numbers users commonly get wrong are read leniently as
//! [`Scalar`] so that validation can say what is wrong with them.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_yaml::Value;

use super::jail::Chain;
use super::ports::Protocol;
use super::sections::{
    FirewallBackend, FirewallMode, FirewallTarget, LogFormat, LogLevel, ReadMode,
};

/// The top level of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) defaults: Option<Value>,
    pub(super) jails: Option<Value>,
    pub(super) filters: Option<Value>,
    pub(super) docker: Option<Value>,
    pub(super) pods: Option<Value>,
    pub(super) store: Option<Value>,
    pub(super) firewall: Option<Value>,
    pub(super) control: Option<Value>,
    pub(super) metrics: Option<Value>,
    pub(super) log: Option<Value>,
    pub(super) fleet: Option<Value>,
}

/// `defaults:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) bantime: Option<Scalar>,
    pub(super) findtime: Option<Scalar>,
    pub(super) maxretry: Option<Scalar>,
    pub(super) ignoreip: Option<Value>,
    pub(super) ignoreself: Option<bool>,
    pub(super) action: Option<Value>,
    pub(super) increment: Option<Value>,
}

/// The keys `defaults:` and jails have in common, taken out of either so that one piece of
/// code checks them.
#[derive(Debug, Default)]
pub(super) struct RawShared {
    pub(super) bantime: Option<Scalar>,
    pub(super) findtime: Option<Scalar>,
    pub(super) maxretry: Option<Scalar>,
    pub(super) ignoreip: Option<Value>,
    pub(super) ignoreself: Option<bool>,
    pub(super) action: Option<Value>,
    pub(super) increment: Option<Value>,
}

impl From<RawDefaults> for RawShared {
    fn from(raw: RawDefaults) -> Self {
        RawShared {
            bantime: raw.bantime,
            findtime: raw.findtime,
            maxretry: raw.maxretry,
            ignoreip: raw.ignoreip,
            ignoreself: raw.ignoreself,
            action: raw.action,
            increment: raw.increment,
        }
    }
}

/// A jail's `filter:`: a filter's name, or `{fail2ban: PATH, OPTION: VALUE…}` for a Fail2Ban
/// filter file with the options a Fail2Ban jail would hand it (`mode: aggressive`). The
/// mapping's keys are the file's own options, so they are checked in validation, not here.
#[derive(Debug)]
pub(super) enum RawFilterRef {
    Name(String),
    Fail2Ban(serde_yaml::Mapping),
}

impl<'de> Deserialize<'de> for RawFilterRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Unexpected};
        // Written by hand so that a wrong type names both shapes instead of serde's
        // "did not match any variant".
        match Value::deserialize(deserializer)? {
            Value::String(name) => Ok(RawFilterRef::Name(name)),
            Value::Mapping(mapping) => Ok(RawFilterRef::Fail2Ban(mapping)),
            other => {
                let unexpected = match &other {
                    Value::Null => Unexpected::Unit,
                    Value::Bool(flag) => Unexpected::Bool(*flag),
                    Value::Sequence(_) => Unexpected::Seq,
                    _ => Unexpected::Other("a number or tagged value"),
                };
                Err(D::Error::invalid_type(
                    unexpected,
                    &"a filter name or `{fail2ban: PATH, OPTION: VALUE…}`",
                ))
            }
        }
    }
}

/// One entry of `jails:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJail {
    pub(super) enabled: Option<bool>,
    pub(super) manual: Option<bool>,
    pub(super) filter: Option<RawFilterRef>,
    pub(super) sources: Option<Value>,
    pub(super) maxretry: Option<Scalar>,
    pub(super) findtime: Option<Scalar>,
    pub(super) bantime: Option<Scalar>,
    pub(super) ignoreip: Option<Value>,
    pub(super) ignoreself: Option<bool>,
    pub(super) ports: Option<Value>,
    pub(super) protocol: Option<Protocol>,
    pub(super) action: Option<Value>,
    pub(super) increment: Option<Value>,
    pub(super) chains: Option<Vec<Chain>>,
    pub(super) share: Option<bool>,
    pub(super) share_failures: Option<bool>,
}

impl RawJail {
    /// Moves out the keys a jail shares with `defaults:`.
    pub(super) fn take_shared(&mut self) -> RawShared {
        RawShared {
            bantime: self.bantime.take(),
            findtime: self.findtime.take(),
            maxretry: self.maxretry.take(),
            ignoreip: self.ignoreip.take(),
            ignoreself: self.ignoreself.take(),
            action: self.action.take(),
            increment: self.increment.take(),
        }
    }
}

/// `increment:` in `defaults:` or in a jail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncrement {
    pub(super) enabled: Option<bool>,
    pub(super) factor: Option<Scalar>,
    pub(super) multipliers: Option<Value>,
    pub(super) maxtime: Option<Scalar>,
    pub(super) rndtime: Option<Scalar>,
    pub(super) overalljails: Option<bool>,
}

/// One item of a jail's `sources:` list; exactly one of `file`, `journal`, `container`,
/// `pods`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) file: Option<String>,
    pub(super) optional: Option<bool>,
    pub(super) journal: Option<Value>,
    pub(super) container: Option<Value>,
    pub(super) pods: Option<Value>,
}

/// The mapping of a `journal:` source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) unit: Option<String>,
    #[serde(rename = "match")]
    pub(super) matches: Option<Vec<String>>,
    pub(super) directory: Option<String>,
}

/// The mapping of a `container:` source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainer {
    pub(super) name: Option<String>,
    pub(super) image: Option<String>,
    pub(super) label: Option<String>,
}

/// The mapping of a `pods:` source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPodSelector {
    pub(super) namespace: Option<String>,
    pub(super) pod: Option<String>,
    pub(super) container: Option<String>,
}

/// The mapping of a `{webhook: {...}}` action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) url: Option<String>,
    pub(super) format: Option<String>,
    pub(super) timeout: Option<Scalar>,
    pub(super) retries: Option<Scalar>,
    pub(super) on: Option<Value>,
    pub(super) headers: Option<Value>,
}

/// The mapping of a `{command: {...}}` action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    pub(super) argv: Option<Value>,
    pub(super) on: Option<Value>,
    pub(super) timeout: Option<Scalar>,
}

/// `docker:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocker {
    pub(super) enabled: Option<bool>,
    pub(super) host: Option<String>,
    pub(super) read_mode: Option<ReadMode>,
    pub(super) require_labels: Option<Vec<String>>,
}

/// `pods:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPods {
    pub(super) enabled: Option<bool>,
    pub(super) log_dir: Option<String>,
    pub(super) runtime_socket: Option<String>,
}

/// `store:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) path: Option<String>,
}

/// `firewall:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirewall {
    pub(super) backend: Option<FirewallBackend>,
    pub(super) target: Option<FirewallTarget>,
    pub(super) mode: Option<FirewallMode>,
    pub(super) keep_bans_on_exit: Option<bool>,
    pub(super) chain_prefix: Option<String>,
}

/// `control:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) socket: Option<String>,
}

/// `metrics:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) enabled: Option<bool>,
    pub(super) listen: Option<String>,
}

/// `fleet:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) redis: Option<String>,
    pub(super) name: Option<String>,
    pub(super) name_env: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) hmac_key_file: Option<String>,
    pub(super) share: Option<bool>,
    pub(super) tls: Option<RawFleetTls>,
}

/// `fleet.tls:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleetTls {
    pub(super) ca_file: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<LogFormat>,
    pub(super) level: Option<LogLevel>,
}

/// Any YAML scalar, kept as written so validation can explain what is wrong with it
/// (`maxretry: -1`, `bantime: 1.5`, `findtime: soon`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(text) => write!(f, "\"{text}\""),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                // Too large for i64: keep the digits, validation reports the overflow.
                Ok(i64::try_from(v).map_or_else(|_| Scalar::Text(v.to_string()), Scalar::Int))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// The keys a `#[derive(Deserialize)]` struct accepts, read from serde's own field list so that
/// the unknown-key check can never disagree with the struct.
pub(super) fn struct_keys<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    // The catcher always fails on purpose; only the field list it saw matters.
    let _ = T::deserialize(KeyCatcher { keys: &mut keys });
    keys
}

/// A deserializer that records the field list serde passes to `deserialize_struct`.
struct KeyCatcher<'a> {
    keys: &'a mut &'static [&'static str],
}

impl<'de> Deserializer<'de> for KeyCatcher<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.keys = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_keys_come_from_serde() {
        assert_eq!(struct_keys::<RawStore>(), ["path"]);
        assert_eq!(struct_keys::<RawJournal>(), ["unit", "match", "directory"]);
        assert!(struct_keys::<RawJail>().contains(&"maxretry"));
        assert!(struct_keys::<crate::filter::FilterSpec>().contains(&"failregex"));
    }

    #[test]
    fn scalars_keep_what_was_written() {
        let read = |text: &str| serde_yaml::from_str::<Scalar>(text).unwrap();
        assert_eq!(read("-1"), Scalar::Int(-1));
        assert_eq!(read("1.5"), Scalar::Float(1.5));
        assert_eq!(read("10m"), Scalar::Text("10m".into()));
        assert_eq!(read("true"), Scalar::Bool(true));
        assert_eq!(
            read("18446744073709551615"),
            Scalar::Text("18446744073709551615".into())
        );
        assert!(serde_yaml::from_str::<Scalar>("[1]").is_err());
    }
}
