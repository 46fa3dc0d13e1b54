//! Names of logjail's chains and sets: short, deterministic, and recognisable as ours.
//!
//! Layout of the names, for a prefix `P` (default `logjail`):
//!
//! - `P-input`, `P-docker`, `P-raw`: one hook chain per builtin chain, jumped to from
//!   `INPUT` and `DOCKER-USER` (filter table) and from `PREROUTING` (raw table);
//! - `P-j-JAIL-i`, `P-j-JAIL-d`, `P-j-JAIL-r`: a jail's chain under each hook;
//! - `P-s-JAIL-4`, `P-s-JAIL-6`: a jail's ban sets, one per address family.
//!
//! iptables allows 28 characters in a chain name and ipset 31 in a set name. A name that
//! does not fit, or a jail name with characters outside `[A-Za-z0-9_-]`, becomes
//! `P-j-HEAD.HASH-i`: the head of the jail name and 6 hex digits of a stable hash of the whole
//! name. Valid jail names never contain `.`, so a hashed name can never equal a plain one; two
//! hashed names that collide are caught when the jail is defined.

use super::target::Target;
use crate::config::Chain;

/// Longest chain name iptables accepts.
pub const MAX_CHAIN_LEN: usize = 28;
/// Longest set name ipset accepts (`IPSET_MAXNAMELEN` less the NUL).
pub const MAX_SET_LEN: usize = 31;
/// Hex digits of the hash in a shortened name.
const HASH_DIGITS: usize = 6;

/// The iptables table a hook lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Where `INPUT`, `FORWARD` and Docker's chains are; after DNAT.
    Filter,
    /// Before conntrack and DNAT: the destination is the one the client used.
    Raw,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Filter, Table::Raw];

    /// As `iptables -t` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Raw => "raw",
        }
    }
}

/// Which builtin chain a hook chain hangs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `INPUT`: traffic to the host itself.
    Input,
    /// `DOCKER-USER`: traffic forwarded to containers, after Docker's DNAT.
    DockerUser,
    /// raw `PREROUTING`: every arriving packet, before conntrack and any DNAT (kube-proxy,
    /// CNI portmap, ServiceLB), so a drop there is final whatever those add later.
    RawPrerouting,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Input, Hook::DockerUser, Hook::RawPrerouting];

    /// Where a jail's `chains:` word bans on a target. `docker-user` means "the ways into
    /// containers": Docker's chain on Docker hosts (and on hosts without a runtime, where
    /// logjail makes it so that a Docker started later finds the bans in place), raw
    /// `PREROUTING` on Kubernetes nodes, where hostPort, NodePort and ServiceLB DNAT before
    /// any filter chain sees the packet and `DOCKER-USER` does not exist.
    pub fn for_chain(chain: Chain, target: Target) -> Hook {
        match (chain, target) {
            (Chain::Input, _) => Hook::Input,
            (Chain::Prerouting, _) | (Chain::DockerUser, Target::Kubernetes) => Hook::RawPrerouting,
            (Chain::DockerUser, Target::Docker | Target::Host) => Hook::DockerUser,
        }
    }

    /// The builtin (or Docker-made) chain the hook chain is jumped to from.
    pub fn parent(self) -> &'static str {
        match self {
            Hook::Input => "INPUT",
            Hook::DockerUser => "DOCKER-USER",
            Hook::RawPrerouting => "PREROUTING",
        }
    }

    /// The table of the parent, the hook chain and the jail chains under it.
    pub fn table(self) -> Table {
        match self {
            Hook::Input | Hook::DockerUser => Table::Filter,
            Hook::RawPrerouting => Table::Raw,
        }
    }

    /// Where the hook is, for logs and reports: `INPUT`, `raw PREROUTING`.
    pub fn place(self) -> String {
        match self.table() {
            Table::Filter => self.parent().to_string(),
            Table::Raw => format!("raw {}", self.parent()),
        }
    }

    fn hook_suffix(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::DockerUser => "docker",
            Hook::RawPrerouting => "raw",
        }
    }

    fn jail_tag(self) -> &'static str {
        match self {
            Hook::Input => "i",
            Hook::DockerUser => "d",
            Hook::RawPrerouting => "r",
        }
    }
}

/// IP address family: which iptables binary and which set a ban goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(address: &std::net::IpAddr) -> Family {
        match address {
            std::net::IpAddr::V4(_) => Family::V4,
            std::net::IpAddr::V6(_) => Family::V6,
        }
    }

    /// The `family` word of `ipset create`.
    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    fn set_tag(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    /// Display name used in logs and status.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Everything a prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hook chain jumped to from `hook.parent()`.
    pub fn hook_chain(&self, hook: Hook) -> String {
        format!("{}-{}", self.prefix, hook.hook_suffix())
    }

    /// A jail's chain under one hook.
    pub fn jail_chain(&self, jail: &str, hook: Hook) -> String {
        self.fitted(
            &format!("{}-j-", self.prefix),
            jail,
            &format!("-{}", hook.jail_tag()),
            MAX_CHAIN_LEN,
        )
    }

    /// A jail's ban set for one family.
    pub fn jail_set(&self, jail: &str, family: Family) -> String {
        self.fitted(
            &format!("{}-s-", self.prefix),
            jail,
            &format!("-{}", family.set_tag()),
            MAX_SET_LEN,
        )
    }

    /// Whether a chain or set name is in logjail's namespace for this prefix (so it is ours to
    /// reuse or clean).
    pub fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }

    fn fitted(&self, head: &str, jail: &str, tail: &str, limit: usize) -> String {
        let plain_ok = !jail.is_empty()
            && jail
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if plain_ok && head.len() + jail.len() + tail.len() <= limit {
            return format!("{head}{jail}{tail}");
        }
        let hash = format!("{:016x}", stable_hash(jail.as_bytes()));
        let hash = &hash[..HASH_DIGITS];
        let room = limit.saturating_sub(head.len() + tail.len() + 1 + HASH_DIGITS);
        let shortened: String = jail
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(room)
            .collect();
        format!("{head}{shortened}.{hash}{tail}")
    }
}

/// FNV-1a: stable across Rust releases and machines, unlike `DefaultHasher`, so a restarted
/// logjail finds the names it made before.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_plain() {
        let names = Names::new("logjail");
        assert_eq!(names.hook_chain(Hook::Input), "logjail-input");
        assert_eq!(names.hook_chain(Hook::DockerUser), "logjail-docker");
        assert_eq!(names.hook_chain(Hook::RawPrerouting), "logjail-raw");
        assert_eq!(
            names.jail_chain("sshd", Hook::RawPrerouting),
            "logjail-j-sshd-r"
        );
        assert_eq!(names.jail_chain("sshd", Hook::Input), "logjail-j-sshd-i");
        assert_eq!(
            names.jail_chain("sshd", Hook::DockerUser),
            "logjail-j-sshd-d"
        );
        assert_eq!(names.jail_set("sshd", Family::V4), "logjail-s-sshd-4");
        assert_eq!(names.jail_set("sshd", Family::V6), "logjail-s-sshd-6");
    }

    #[test]
    fn long_names_are_hashed_within_limits_and_stable() {
        let names = Names::new("abcdefghijklmnop");
        let jail = "a-very-long-jail-name-for-nginx";
        let chain = names.jail_chain(jail, Hook::DockerUser);
        let set = names.jail_set(jail, Family::V6);
        assert!(chain.len() <= MAX_CHAIN_LEN, "{chain}");
        assert!(set.len() <= MAX_SET_LEN, "{set}");
        assert!(chain.ends_with("-d") && chain.contains('.'), "{chain}");
        assert!(set.ends_with("-6") && set.contains('.'), "{set}");
        // Same input, same name (a restart finds its chains again).
        assert_eq!(chain, names.jail_chain(jail, Hook::DockerUser));
        // The documented hash, so that a change of algorithm is noticed.
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn distinct_long_names_get_distinct_chains() {
        let names = Names::new("logjail");
        let a = names.jail_chain("nginx-http-auth-number-one", Hook::Input);
        let b = names.jail_chain("nginx-http-auth-number-two", Hook::Input);
        assert_ne!(a, b);
        assert!(a.len() <= MAX_CHAIN_LEN && b.len() <= MAX_CHAIN_LEN);
    }

    #[test]
    fn odd_characters_are_never_passed_through() {
        let names = Names::new("lj");
        let chain = names.jail_chain("web app;rm -rf", Hook::Input);
        assert!(
            chain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{chain}"
        );
        assert!(chain.contains('.'));
    }

    #[test]
    fn container_chains_follow_the_target_and_host_chains_do_not() {
        for target in [Target::Docker, Target::Kubernetes, Target::Host] {
            assert_eq!(Hook::for_chain(Chain::Input, target), Hook::Input);
            assert_eq!(
                Hook::for_chain(Chain::Prerouting, target),
                Hook::RawPrerouting
            );
        }
        assert_eq!(
            Hook::for_chain(Chain::DockerUser, Target::Docker),
            Hook::DockerUser
        );
        assert_eq!(
            Hook::for_chain(Chain::DockerUser, Target::Host),
            Hook::DockerUser
        );
        assert_eq!(
            Hook::for_chain(Chain::DockerUser, Target::Kubernetes),
            Hook::RawPrerouting
        );
        assert_eq!(Hook::RawPrerouting.table(), Table::Raw);
        assert_eq!(Hook::RawPrerouting.place(), "raw PREROUTING");
        assert_eq!(Hook::DockerUser.place(), "DOCKER-USER");
    }

    #[test]
    fn ownership_needs_the_exact_prefix() {
        let names = Names::new("ljt1");
        assert!(names.owns("ljt1-input"));
        assert!(names.owns("ljt1-s-sshd-4"));
        assert!(!names.owns("ljt12-input"));
        assert!(!names.owns("ljt1"));
        assert!(!names.owns("DOCKER-USER"));
    }
}
