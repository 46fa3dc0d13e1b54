//! The one rule for addresses entering logjail: which form a host is known by, and which
//! addresses can never be a client.
//!
//! Every entry point goes through here: a filter's `<HOST>` capture, `logjail ban`/`unban`
//! (and the other control requests naming an address), the jail's ignore checks, bans
//! restored from the store, and the firewall's last check. So `::ffff:203.0.113.5` and
//! `203.0.113.5` are one host with one ban wherever they come from, and `0.0.0.0` is refused
//! the same way by the CLI and by a filter.
//!
//! Refused: the unspecified addresses (`0.0.0.0`, `::`), multicast (`224.0.0.0/4`,
//! `ff00::/8`) and the IPv4 limited broadcast (`255.255.255.255`). None of them is ever the
//! source address of a connection, so a ban of one protects nothing; what it can do is put a
//! rule into the firewall that an attacker chose by writing such an address into a log line.

use std::fmt;
use std::net::IpAddr;

/// Why an address is never a client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotAClient {
    /// `0.0.0.0` or `::`.
    Unspecified,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
}

impl fmt::Display for NotAClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotAClient::Unspecified => "the unspecified address, which no client connects from",
            NotAClient::Multicast => "a multicast address, which no client connects from",
            NotAClient::Broadcast => "the broadcast address, which no client connects from",
        })
    }
}

/// An address given as text that logjail will not take as a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not an IP address at all (host names are never resolved).
    #[error("`{0}` is not an IP address")]
    Malformed(String),
    /// A well-formed address that is never a client.
    #[error("{address} is not a client address: it is {reason}")]
    NotAClient { address: IpAddr, reason: NotAClient },
}

/// The form a host is known by: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack
/// sockets report IPv4 peers) is the IPv4 address it carries, since that is what the kernel
/// matches for that client. Every other address is unchanged.
pub fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// Why `address` (taken in canonical form) is never a client, or `None` when it can be one.
pub fn not_a_client(address: IpAddr) -> Option<NotAClient> {
    let address = canonical(address);
    if address.is_unspecified() {
        Some(NotAClient::Unspecified)
    } else if address.is_multicast() {
        Some(NotAClient::Multicast)
    } else if matches!(address, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some(NotAClient::Broadcast)
    } else {
        None
    }
}

/// `address` in canonical form if it can be a client.
pub fn client(address: IpAddr) -> Result<IpAddr, AddressError> {
    let address = canonical(address);
    match not_a_client(address) {
        None => Ok(address),
        Some(reason) => Err(AddressError::NotAClient { address, reason }),
    }
}

/// Parses an address typed by an operator (`logjail ban JAIL ADDRESS`, `unban`, `banned`):
/// surrounding blanks and IPv6 brackets are dropped, the result is canonical and a client's.
pub fn parse_client(text: &str) -> Result<IpAddr, AddressError> {
    let trimmed = text.trim();
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(trimmed);
    let address: IpAddr = bare
        .parse()
        .map_err(|_| AddressError::Malformed(text.to_string()))?;
    client(address)
}

/// How often, at most, a jail warns about log lines that named a non-client address.
pub const REFUSAL_WARNING_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Rate limit for the warning a jail gives when a filter matched a line whose address is never
/// a client.
///
/// Whoever writes such lines chooses how many there are, and there are 2^28 IPv4 and 2^120 IPv6
/// multicast addresses to choose from, so neither "warn once per address" (unbounded memory)
/// nor "warn every time" (an attacker floods the log) holds. Instead each jail warns at the
/// first such line, then at most once per [`REFUSAL_WARNING_INTERVAL`], and that warning says
/// how many lines were refused since the previous one. The operator learns at once that it
/// happens and that it goes on; the lines in between are logged at debug level. Memory is one
/// entry per jail.
#[derive(Debug, Default)]
pub struct RefusalWarnings {
    jails: std::collections::HashMap<std::sync::Arc<str>, RefusalState>,
}

#[derive(Debug, Clone, Copy)]
struct RefusalState {
    last_warning: chrono::DateTime<chrono::Utc>,
    since_warning: u64,
}

impl RefusalWarnings {
    pub fn new() -> Self {
        RefusalWarnings::default()
    }

    /// Records one refused line of `jail` at `now`. `Some(n)` when it should be logged as a
    /// warning, `n` being the refused lines since the previous warning (this one included);
    /// `None` when it should be logged at debug level only.
    pub fn record(
        &mut self,
        jail: &std::sync::Arc<str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<u64> {
        let Some(state) = self.jails.get_mut(jail) else {
            self.jails.insert(
                jail.clone(),
                RefusalState {
                    last_warning: now,
                    since_warning: 0,
                },
            );
            return Some(1);
        };
        state.since_warning += 1;
        // A clock stepped back must not silence the jail until it catches up.
        if now - state.last_warning >= REFUSAL_WARNING_INTERVAL || now < state.last_warning {
            let count = state.since_warning;
            state.last_warning = now;
            state.since_warning = 0;
            return Some(count);
        }
        None
    }
}

/// This machine's addresses, for `ignoreself`.
pub fn own_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list this machine's addresses; ignoreself covers loopback only");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone, Utc};
    use std::sync::Arc;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn never_a_client() {
        for (text, reason) in [
            ("0.0.0.0", NotAClient::Unspecified),
            ("::", NotAClient::Unspecified),
            ("::ffff:0.0.0.0", NotAClient::Unspecified),
            ("224.0.0.1", NotAClient::Multicast),
            ("239.255.255.250", NotAClient::Multicast),
            ("ff02::1", NotAClient::Multicast),
            ("ff0e::fb", NotAClient::Multicast),
            ("::ffff:224.0.0.251", NotAClient::Multicast),
            ("255.255.255.255", NotAClient::Broadcast),
            ("::ffff:255.255.255.255", NotAClient::Broadcast),
        ] {
            assert_eq!(not_a_client(ip(text)), Some(reason), "{text}");
            let error = client(ip(text)).unwrap_err();
            assert_eq!(
                error,
                AddressError::NotAClient {
                    address: canonical(ip(text)),
                    reason
                }
            );
        }
    }

    #[test]
    fn clients_in_canonical_form() {
        for (text, expected) in [
            ("203.0.113.5", "203.0.113.5"),
            ("::ffff:203.0.113.5", "203.0.113.5"),
            ("2001:db8::5", "2001:db8::5"),
            // Neighbours of the refused ranges are ordinary addresses.
            ("0.0.0.1", "0.0.0.1"),
            ("223.255.255.255", "223.255.255.255"),
            ("240.0.0.1", "240.0.0.1"),
            ("255.255.255.254", "255.255.255.254"),
            ("fe80::1", "fe80::1"),
            ("::1", "::1"),
            // IPv4-compatible (deprecated) is not IPv4-mapped: left as IPv6.
            ("::203.0.113.5", "::203.0.113.5"),
        ] {
            assert_eq!(client(ip(text)), Ok(ip(expected)), "{text}");
        }
    }

    #[test]
    fn operator_text() {
        assert_eq!(parse_client(" 203.0.113.5 "), Ok(ip("203.0.113.5")));
        assert_eq!(parse_client("::ffff:203.0.113.5"), Ok(ip("203.0.113.5")));
        assert_eq!(parse_client("[2001:db8::5]"), Ok(ip("2001:db8::5")));
        assert_eq!(
            parse_client("300.1.2.3"),
            Err(AddressError::Malformed("300.1.2.3".into()))
        );
        assert_eq!(
            parse_client("example.com"),
            Err(AddressError::Malformed("example.com".into()))
        );
        let refused = parse_client("0.0.0.0").unwrap_err().to_string();
        assert_eq!(
            refused,
            "0.0.0.0 is not a client address: it is the unspecified address, which no client connects from"
        );
        let refused = parse_client("::ffff:224.0.0.1").unwrap_err().to_string();
        assert!(refused.starts_with("224.0.0.1 is not a client address: it is a multicast"));
    }

    #[test]
    fn warnings_are_rate_limited_per_jail() {
        let start = Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 0).unwrap();
        let sshd: Arc<str> = Arc::from("sshd");
        let web: Arc<str> = Arc::from("web");
        let mut warnings = RefusalWarnings::new();
        assert_eq!(warnings.record(&sshd, start), Some(1));
        // A flood within the interval: debug only.
        for second in 1..1000 {
            assert_eq!(
                warnings.record(&sshd, start + TimeDelta::milliseconds(second)),
                None
            );
        }
        // Another jail has its own first warning.
        assert_eq!(
            warnings.record(&web, start + TimeDelta::seconds(1)),
            Some(1)
        );
        // After the interval, one warning counting everything since the last one.
        assert_eq!(
            warnings.record(&sshd, start + REFUSAL_WARNING_INTERVAL),
            Some(1000)
        );
        assert_eq!(
            warnings.record(
                &sshd,
                start + REFUSAL_WARNING_INTERVAL + TimeDelta::seconds(1)
            ),
            None
        );
        // A clock stepped back warns again instead of staying silent until it catches up.
        assert_eq!(warnings.record(&sshd, start), Some(2));
    }
}
