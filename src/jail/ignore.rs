//! Which hosts a jail must never ban: `ignoreip` networks, loopback and the host's own
//! addresses, and addresses that are never a client (see [`crate::address`]).
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) is
//! the IPv4 address it carries, both in the list (`::ffff:10.0.0.0/104` is `10.0.0.0/8`) and in
//! the host being checked, so a dual-stack socket logging mapped addresses cannot slip past an
//! IPv4 `ignoreip` entry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use crate::address::{self, NotAClient};

/// Why an `ignoreip` entry was refused; each message names the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreEntryError {
    #[error("empty ignoreip entry")]
    Empty,
    #[error(
        "ignoreip entry `{0}` looks like a host name; logjail never resolves DNS, write an IP address or CIDR network instead"
    )]
    HostName(String),
    #[error(
        "ignoreip entry `{0}` is not an IP address or CIDR network (e.g. 192.0.2.7, 10.0.0.0/8, 2001:db8::/32)"
    )]
    Malformed(String),
}

/// Why a host is never banned by this jail. Shown to the user next to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The host is inside this `ignoreip` network.
    Listed(IpNet),
    /// A loopback address (127.0.0.0/8, ::1), ignored while `ignoreself` is on.
    Loopback,
    /// One of this machine's own addresses, ignored while `ignoreself` is on.
    OwnAddress,
    /// Unspecified, multicast or broadcast: never the source of a connection, whatever the
    /// lists say.
    NotAClient(NotAClient),
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::Listed(net) => write!(f, "in ignoreip ({net})"),
            IgnoreReason::Loopback => f.write_str("loopback address (ignoreself)"),
            IgnoreReason::OwnAddress => {
                f.write_str("one of this host's own addresses (ignoreself)")
            }
            IgnoreReason::NotAClient(reason) => write!(f, "not a client address: {reason}"),
        }
    }
}

/// Parses one `ignoreip` entry: an address (`192.0.2.7`, `2001:db8::1`) or a CIDR network.
///
/// Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`, as Fail2Ban reads it) and IPv4-mapped
/// IPv6 networks become IPv4 networks. The config module calls this per entry so it can report
/// every bad entry at once.
pub fn parse_ignore_entry(entry: &str) -> Result<IpNet, IgnoreEntryError> {
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Err(IgnoreEntryError::Empty);
    }
    let parsed = if trimmed.contains('/') {
        IpNet::from_str(trimmed).ok()
    } else {
        IpAddr::from_str(trimmed).ok().map(IpNet::from)
    };
    match parsed {
        Some(net) => Ok(canonical_net(net).trunc()),
        None if looks_like_host_name(trimmed) => {
            Err(IgnoreEntryError::HostName(trimmed.to_string()))
        }
        None => Err(IgnoreEntryError::Malformed(trimmed.to_string())),
    }
}

/// A name with at least one letter, made only of DNS name characters. `10.0.0.300` has no
/// letter and `2001:db8::zz` has a colon, so both stay "malformed", which is the better hint.
fn looks_like_host_name(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 covers exactly the IPv4 network `a.b.c.d/(n-96)`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4net);
    }
    net
}

/// The set of hosts a jail never bans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreList {
    networks: Vec<IpNet>,
    ignore_self: bool,
    own_addresses: Vec<IpAddr>,
}

impl Default for IgnoreList {
    /// No `ignoreip` entries, `ignoreself` on (Fail2Ban's default), no own addresses known yet.
    fn default() -> Self {
        IgnoreList::new(true, Vec::new())
    }
}

impl IgnoreList {
    /// An empty `ignoreip` list. `own_addresses` are this machine's addresses, which the caller
    /// collects (this module does no I/O); they only matter while `ignore_self` is on.
    pub fn new(ignore_self: bool, own_addresses: Vec<IpAddr>) -> Self {
        IgnoreList {
            networks: Vec::new(),
            ignore_self,
            own_addresses: own_addresses.into_iter().map(address::canonical).collect(),
        }
    }

    /// Builds the list from `ignoreip` entries, stopping at the first bad one. Use
    /// [`parse_ignore_entry`] per entry to collect every error instead.
    pub fn parse<S: AsRef<str>>(
        entries: &[S],
        ignore_self: bool,
        own_addresses: Vec<IpAddr>,
    ) -> Result<Self, IgnoreEntryError> {
        let mut list = IgnoreList::new(ignore_self, own_addresses);
        for entry in entries {
            list.add(entry.as_ref())?;
        }
        Ok(list)
    }

    /// Builds the list from already parsed networks (see [`parse_ignore_entry`]).
    pub fn from_networks(
        networks: impl IntoIterator<Item = IpNet>,
        ignore_self: bool,
        own_addresses: Vec<IpAddr>,
    ) -> Self {
        let mut list = IgnoreList::new(ignore_self, own_addresses);
        for net in networks {
            list.insert(canonical_net(net).trunc());
        }
        list
    }

    /// Adds an entry at runtime (`set JAIL addignoreip`). Returns `false` when the same
    /// network was already listed.
    pub fn add(&mut self, entry: &str) -> Result<bool, IgnoreEntryError> {
        let net = parse_ignore_entry(entry)?;
        Ok(self.insert(net))
    }

    fn insert(&mut self, net: IpNet) -> bool {
        if self.networks.contains(&net) {
            return false;
        }
        self.networks.push(net);
        true
    }

    /// Removes an entry at runtime (`set JAIL delignoreip`). The entry must name the same
    /// network as listed (after clearing host bits); returns `false` when it was not listed.
    pub fn remove(&mut self, entry: &str) -> Result<bool, IgnoreEntryError> {
        let net = parse_ignore_entry(entry)?;
        let before = self.networks.len();
        self.networks.retain(|listed| *listed != net);
        Ok(self.networks.len() != before)
    }

    /// The `ignoreip` networks, in the order they were added.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Whether loopback and own addresses are ignored.
    pub fn ignore_self(&self) -> bool {
        self.ignore_self
    }

    /// This machine's addresses as given by the caller.
    pub fn own_addresses(&self) -> &[IpAddr] {
        &self.own_addresses
    }

    /// Replaces the machine's own addresses (they can change while running, e.g. DHCP).
    pub fn set_own_addresses(&mut self, own_addresses: Vec<IpAddr>) {
        self.own_addresses = own_addresses.into_iter().map(address::canonical).collect();
    }

    /// Why `host` must not be banned by failures, if it must not.
    pub fn check(&self, host: IpAddr) -> Option<IgnoreReason> {
        let host = address::canonical(host);
        if let Some(reason) = address::not_a_client(host) {
            return Some(IgnoreReason::NotAClient(reason));
        }
        if let Some(net) = self.networks.iter().find(|net| net.contains(&host)) {
            return Some(IgnoreReason::Listed(*net));
        }
        if self.ignore_self {
            return self.check_self(host);
        }
        None
    }

    /// Whether `host` is loopback or this machine, whatever `ignoreself` says. Manual bans
    /// refuse these always: banning yourself locks out the admin and local services.
    pub fn check_self(&self, host: IpAddr) -> Option<IgnoreReason> {
        let host = address::canonical(host);
        if host.is_loopback() {
            Some(IgnoreReason::Loopback)
        } else if self.own_addresses.contains(&host) {
            Some(IgnoreReason::OwnAddress)
        } else {
            None
        }
    }

    /// [`check`](Self::check) plus [`check_self`](Self::check_self): what a manual ban refuses.
    pub fn check_manual(&self, host: IpAddr) -> Option<IgnoreReason> {
        self.check(host).or_else(|| self.check_self(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_networks() {
        assert_eq!(
            parse_ignore_entry("192.0.2.7").unwrap(),
            net("192.0.2.7/32")
        );
        assert_eq!(
            parse_ignore_entry(" 10.0.0.0/8 ").unwrap(),
            net("10.0.0.0/8")
        );
        assert_eq!(
            parse_ignore_entry("2001:db8::1").unwrap(),
            net("2001:db8::1/128")
        );
        assert_eq!(
            parse_ignore_entry("2001:db8::/32").unwrap(),
            net("2001:db8::/32")
        );
        // Host bits are cleared, as Fail2Ban reads such entries.
        assert_eq!(parse_ignore_entry("10.1.2.3/8").unwrap(), net("10.0.0.0/8"));
    }

    #[test]
    fn mapped_entries_become_ipv4() {
        assert_eq!(
            parse_ignore_entry("::ffff:192.0.2.7").unwrap(),
            net("192.0.2.7/32")
        );
        assert_eq!(
            parse_ignore_entry("::ffff:10.0.0.0/104").unwrap(),
            net("10.0.0.0/8")
        );
        assert_eq!(
            parse_ignore_entry("::ffff:0:0/96").unwrap(),
            net("0.0.0.0/0")
        );
        // A prefix shorter than the mapped range covers more than IPv4: stays IPv6.
        assert_eq!(parse_ignore_entry("::ffff:0:0/80").unwrap(), net("::/80"));
    }

    #[test]
    fn errors_name_the_entry() {
        assert_eq!(parse_ignore_entry("  "), Err(IgnoreEntryError::Empty));
        let bad = parse_ignore_entry("10.0.0.300").unwrap_err();
        assert_eq!(bad, IgnoreEntryError::Malformed("10.0.0.300".to_string()));
        assert!(bad.to_string().contains("`10.0.0.300`"));
        assert!(matches!(
            parse_ignore_entry("10.0.0.0/33"),
            Err(IgnoreEntryError::Malformed(_))
        ));
        assert!(matches!(
            parse_ignore_entry("2001:db8::zz"),
            Err(IgnoreEntryError::Malformed(_))
        ));
        let host = parse_ignore_entry("gateway.example.org").unwrap_err();
        assert_eq!(
            host,
            IgnoreEntryError::HostName("gateway.example.org".to_string())
        );
        assert!(host.to_string().contains("DNS"));
        let list = IgnoreList::parse(&["10.0.0.0/8", "nope/12"], true, vec![]);
        assert_eq!(
            list,
            Err(IgnoreEntryError::Malformed("nope/12".to_string()))
        );
    }

    #[test]
    fn matches_ipv4_ipv6_cidr_and_mapped_hosts() {
        let list = IgnoreList::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"], false, vec![])
            .unwrap();
        assert_eq!(
            list.check(ip("10.200.3.4")),
            Some(IgnoreReason::Listed(net("10.0.0.0/8")))
        );
        assert_eq!(
            list.check(ip("192.0.2.7")),
            Some(IgnoreReason::Listed(net("192.0.2.7/32")))
        );
        assert_eq!(list.check(ip("192.0.2.8")), None);
        assert_eq!(list.check(ip("11.0.0.1")), None);
        assert_eq!(
            list.check(ip("2001:db8:1::5")),
            Some(IgnoreReason::Listed(net("2001:db8::/32")))
        );
        assert_eq!(list.check(ip("2001:db9::5")), None);
        // A mapped host is its IPv4 address.
        assert_eq!(
            list.check(ip("::ffff:10.9.8.7")),
            Some(IgnoreReason::Listed(net("10.0.0.0/8")))
        );
        assert_eq!(list.check(ip("::ffff:11.9.8.7")), None);
        // And a mapped entry matches a plain IPv4 host.
        let mapped = IgnoreList::parse(&["::ffff:203.0.113.0/120"], false, vec![]).unwrap();
        assert_eq!(
            mapped.check(ip("203.0.113.9")),
            Some(IgnoreReason::Listed(net("203.0.113.0/24")))
        );
    }

    #[test]
    fn ignoreself_covers_loopback_and_own_addresses() {
        let own = vec![ip("198.51.100.4"), ip("2001:db8::4")];
        let on = IgnoreList::new(true, own.clone());
        assert_eq!(on.check(ip("127.0.0.1")), Some(IgnoreReason::Loopback));
        assert_eq!(on.check(ip("127.1.2.3")), Some(IgnoreReason::Loopback));
        assert_eq!(
            on.check(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Some(IgnoreReason::Loopback)
        );
        assert_eq!(
            on.check(ip("::ffff:127.0.0.1")),
            Some(IgnoreReason::Loopback)
        );
        assert_eq!(on.check(ip("198.51.100.4")), Some(IgnoreReason::OwnAddress));
        assert_eq!(
            on.check(ip("::ffff:198.51.100.4")),
            Some(IgnoreReason::OwnAddress)
        );
        assert_eq!(on.check(ip("2001:db8::4")), Some(IgnoreReason::OwnAddress));
        assert_eq!(on.check(ip("198.51.100.5")), None);

        let off = IgnoreList::new(false, own);
        assert_eq!(off.check(ip("127.0.0.1")), None);
        assert_eq!(off.check(ip("198.51.100.4")), None);
        // Manual bans refuse them regardless.
        assert_eq!(
            off.check_manual(ip("127.0.0.1")),
            Some(IgnoreReason::Loopback)
        );
        assert_eq!(
            off.check_manual(ip("198.51.100.4")),
            Some(IgnoreReason::OwnAddress)
        );
        assert_eq!(off.check_manual(ip("198.51.100.5")), None);
    }

    #[test]
    fn add_and_remove_at_runtime() {
        let mut list = IgnoreList::new(false, vec![]);
        assert_eq!(list.check(ip("10.1.1.1")), None);
        assert!(list.add("10.0.0.0/8").unwrap());
        assert!(
            !list.add("10.5.5.5/8").unwrap(),
            "same network after clearing host bits"
        );
        assert!(list.check(ip("10.1.1.1")).is_some());
        assert!(list.add("bogus").is_err());
        assert_eq!(list.networks(), &[net("10.0.0.0/8")]);
        assert!(
            !list.remove("10.0.0.0/16").unwrap(),
            "a different network is not removed"
        );
        assert!(list.remove("10.0.0.0/8").unwrap());
        assert_eq!(list.check(ip("10.1.1.1")), None);
        assert!(list.networks().is_empty());
    }

    #[test]
    fn own_addresses_can_change() {
        let mut list = IgnoreList::new(true, vec![ip("192.0.2.1")]);
        assert_eq!(list.check(ip("192.0.2.1")), Some(IgnoreReason::OwnAddress));
        list.set_own_addresses(vec![ip("::ffff:192.0.2.2")]);
        assert_eq!(list.check(ip("192.0.2.1")), None);
        assert_eq!(list.check(ip("192.0.2.2")), Some(IgnoreReason::OwnAddress));
        assert_eq!(list.own_addresses(), &[ip("192.0.2.2")]);
    }

    #[test]
    fn from_networks_canonicalises() {
        let list = IgnoreList::from_networks(
            [net("::ffff:10.0.0.0/104"), net("10.0.0.0/8")],
            true,
            vec![],
        );
        assert_eq!(list.networks(), &[net("10.0.0.0/8")]);
        assert!(list.ignore_self());
        let default = IgnoreList::default();
        assert!(default.ignore_self() && default.networks().is_empty());
        assert_eq!(default.check(ip("::1")), Some(IgnoreReason::Loopback));
    }
}
