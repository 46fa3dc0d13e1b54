//! What happens to a banned host: drop its packets, reject them, or only log (dry run).
//!
//! In YAML, `action:` is one action or a list of actions. An action is a word (`drop`,
//! `reject`, `log`), the two words `reject-with TYPE`, or a one-key mapping such as
//! `{reject-with: tcp-reset}`. Exactly one of them decides what the firewall does; the list
//! and mapping forms are there so that notification actions (`{webhook: {...}}`,
//! `{command: {...}}`) can later be added next to it without changing what exists.

use std::fmt;

/// Everything a jail does when it bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionConfig {
    /// What the firewall does with the banned host's packets.
    pub firewall: FirewallAction,
}

impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            firewall: FirewallAction::Drop,
        }
    }
}

/// What the firewall does with packets from a banned host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    /// Silently discard them.
    Drop,
    /// Refuse them with an ICMP error or a TCP reset, so clients fail fast.
    Reject(RejectWith),
    /// Touch no firewall; only log the ban (a dry run for new jails).
    Log,
}

/// How a rejected packet is answered (the `--reject-with` of iptables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RejectWith {
    #[default]
    IcmpPortUnreachable,
    IcmpHostUnreachable,
    IcmpNetUnreachable,
    /// Only meaningful for TCP: the jail must say `protocol: tcp`.
    TcpReset,
}

impl RejectWith {
    const ALL: [RejectWith; 4] = [
        RejectWith::IcmpPortUnreachable,
        RejectWith::IcmpHostUnreachable,
        RejectWith::IcmpNetUnreachable,
        RejectWith::TcpReset,
    ];

    /// The name used in the configuration and by iptables.
    pub fn name(self) -> &'static str {
        match self {
            RejectWith::IcmpPortUnreachable => "icmp-port-unreachable",
            RejectWith::IcmpHostUnreachable => "icmp-host-unreachable",
            RejectWith::IcmpNetUnreachable => "icmp-net-unreachable",
            RejectWith::TcpReset => "tcp-reset",
        }
    }

    /// Parses a reject type by its configuration name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                format!(
                    "unknown reject type `{text}` (expected one of: {})",
                    Self::ALL.map(RejectWith::name).join(", ")
                )
            })
    }
}

impl fmt::Display for FirewallAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirewallAction::Drop => f.write_str("drop"),
            FirewallAction::Reject(with) => write!(f, "reject-with {}", with.name()),
            FirewallAction::Log => f.write_str("log"),
        }
    }
}

const EXPECTED: &str = "expected drop, reject, reject-with TYPE or log";

/// The action names that exist; anything else is reported as an unknown action.
pub fn is_action_name(name: &str) -> bool {
    matches!(name, "drop" | "log" | "reject" | "reject-with")
}

fn unknown_action(name: &str) -> String {
    format!("unknown action `{name}` ({EXPECTED})")
}

/// Parses the word form of an action: `drop`, `reject`, `reject-with tcp-reset`, `log`.
pub fn parse_action_word(text: &str) -> Result<FirewallAction, String> {
    let mut words = text.split_whitespace();
    let action = match (words.next(), words.next(), words.next()) {
        (Some("drop"), None, _) => FirewallAction::Drop,
        (Some("log"), None, _) => FirewallAction::Log,
        (Some("reject"), None, _) => FirewallAction::Reject(RejectWith::default()),
        (Some("reject-with"), Some(kind), None) => FirewallAction::Reject(RejectWith::parse(kind)?),
        (Some("reject-with"), None, _) => {
            return Err("`reject-with` needs a type, e.g. `reject-with tcp-reset`".to_string());
        }
        _ => return Err(unknown_action(text.trim())),
    };
    Ok(action)
}

/// Parses the one-key mapping form of an action, given its key and its value as text.
pub fn parse_action_entry(key: &str, argument: Option<&str>) -> Result<FirewallAction, String> {
    match (key, argument) {
        ("reject-with" | "reject", Some(kind)) => {
            Ok(FirewallAction::Reject(RejectWith::parse(kind)?))
        }
        ("reject", None) => Ok(FirewallAction::Reject(RejectWith::default())),
        ("reject-with", None) => {
            Err("`reject-with` needs a type, e.g. `{reject-with: tcp-reset}`".to_string())
        }
        ("drop" | "log", _) => Err(format!(
            "`{key}` takes no argument; write it as a plain word"
        )),
        _ => Err(unknown_action(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_forms() {
        assert_eq!(parse_action_word("drop").unwrap(), FirewallAction::Drop);
        assert_eq!(parse_action_word("log").unwrap(), FirewallAction::Log);
        assert_eq!(
            parse_action_word("reject").unwrap(),
            FirewallAction::Reject(RejectWith::IcmpPortUnreachable)
        );
        assert_eq!(
            parse_action_word("reject-with  tcp-reset").unwrap(),
            FirewallAction::Reject(RejectWith::TcpReset)
        );
        assert_eq!(
            parse_action_word("reject-with icmp-host-unreachable").unwrap(),
            FirewallAction::Reject(RejectWith::IcmpHostUnreachable)
        );
    }

    #[test]
    fn refuses_unknown_words_and_types() {
        assert!(
            parse_action_word("ban")
                .unwrap_err()
                .contains("unknown action `ban`")
        );
        assert!(parse_action_word("drop now").is_err());
        assert!(
            parse_action_word("reject-with")
                .unwrap_err()
                .contains("needs a type")
        );
        assert!(
            parse_action_word("reject-with icmp-foo")
                .unwrap_err()
                .contains("icmp-foo")
        );
    }

    #[test]
    fn mapping_forms() {
        assert_eq!(
            parse_action_entry("reject-with", Some("icmp-net-unreachable")).unwrap(),
            FirewallAction::Reject(RejectWith::IcmpNetUnreachable)
        );
        assert!(parse_action_entry("drop", Some("x")).is_err());
        assert!(
            parse_action_entry("webhook", Some("x"))
                .unwrap_err()
                .contains("unknown action")
        );
    }

    #[test]
    fn displays_as_written() {
        for text in ["drop", "log", "reject-with tcp-reset"] {
            assert_eq!(parse_action_word(text).unwrap().to_string(), text);
        }
    }
}
