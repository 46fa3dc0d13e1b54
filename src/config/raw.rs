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
use super::sections::{FirewallBackend, FirewallMode, LogFormat, LogLevel, ReadMode};

/// The top level of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub defaults: Option<Value>,
    pub jails: Option<Value>,
    pub filters: Option<Value>,
    pub docker: Option<Value>,
    pub store: Option<Value>,
    pub firewall: Option<Value>,
    pub control: Option<Value>,
    pub metrics: Option<Value>,
    pub log: Option<Value>,
}

/// `defaults:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub bantime: Option<Scalar>,
    pub findtime: Option<Scalar>,
    pub maxretry: Option<Scalar>,
    pub ignoreip: Option<Value>,
    pub ignoreself: Option<bool>,
    pub action: Option<Value>,
    pub increment: Option<Value>,
}

/// One entry of `jails:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJail {
    pub enabled: Option<bool>,
    pub manual: Option<bool>,
    pub filter: Option<String>,
    pub sources: Option<Value>,
    pub maxretry: Option<Scalar>,
    pub findtime: Option<Scalar>,
    pub bantime: Option<Scalar>,
    pub ignoreip: Option<Value>,
    pub ignoreself: Option<bool>,
    pub ports: Option<Value>,
    pub protocol: Option<Protocol>,
    pub action: Option<Value>,
    pub increment: Option<Value>,
    pub chains: Option<Vec<Chain>>,
}

/// `increment:` in `defaults:` or in a jail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncrement {
    pub enabled: Option<bool>,
    pub factor: Option<Scalar>,
    pub multipliers: Option<Value>,
    pub maxtime: Option<Scalar>,
    pub rndtime: Option<Scalar>,
    pub overalljails: Option<bool>,
}

/// One item of a jail's `sources:` list; exactly one of `file`, `journal`, `container`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub file: Option<String>,
    pub optional: Option<bool>,
    pub journal: Option<Value>,
    pub container: Option<Value>,
}

/// The mapping of a `journal:` source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    pub unit: Option<String>,
    #[serde(rename = "match")]
    pub matches: Option<Vec<String>>,
}

/// The mapping of a `container:` source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainer {
    pub name: Option<String>,
    pub image: Option<String>,
    pub label: Option<String>,
}

/// `docker:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    pub enabled: Option<bool>,
    pub host: Option<String>,
    pub read_mode: Option<ReadMode>,
}

/// `store:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<String>,
}

/// `firewall:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewall {
    pub backend: Option<FirewallBackend>,
    pub mode: Option<FirewallMode>,
    pub keep_bans_on_exit: Option<bool>,
    pub chain_prefix: Option<String>,
}

/// `control:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub socket: Option<String>,
}

/// `metrics:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<LogFormat>,
    pub level: Option<LogLevel>,
}

/// Any YAML scalar, kept as written so validation can explain what is wrong with it
/// (`maxretry: -1`, `bantime: 1.5`, `findtime: soon`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
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
pub fn struct_keys<T: DeserializeOwned>() -> &'static [&'static str] {
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
        assert_eq!(struct_keys::<RawJournal>(), ["unit", "match"]);
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
