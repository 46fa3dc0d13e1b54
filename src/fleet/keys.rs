//! Key and channel names.

use std::net::IpAddr;

/// What a key found by [`Keys::bans_and_unbans_pattern`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanKey {
    Ban,
    Unban,
}

/// The names of everything a fleet keeps in Redis, from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new("logjail")
    }
}

impl Keys {
    /// Names under `prefix` (`logjail` unless several fleets share one server).
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The key holding the ban of `ip` in `jail`.
    pub fn ban(&self, jail: &str, ip: IpAddr) -> String {
        format!("{}:ban:{jail}:{ip}", self.prefix)
    }

    /// The SCAN pattern matching every ban of the fleet. Jail names are words without glob
    /// characters (config's `check_name`), so none needs escaping.
    pub fn ban_pattern(&self) -> String {
        format!("{}:ban:*", self.prefix)
    }

    /// The key recording that the ban of `ip` in `jail` was lifted, kept for what remained of
    /// the ban, so that a member away when the unban was published lifts it on its return.
    pub fn unban(&self, jail: &str, ip: IpAddr) -> String {
        format!("{}:unban:{jail}:{ip}", self.prefix)
    }

    /// The SCAN pattern matching every recorded unban.
    pub fn unban_pattern(&self) -> String {
        format!("{}:unban:*", self.prefix)
    }

    /// One SCAN pattern for bans and recorded unbans together: a SCAN walks the whole
    /// keyspace whatever it matches, so a catch-up makes one walk, not two. It may also match
    /// a failure set whose jail name ends in `ban`; [`Keys::kind_of`] sorts the keys out.
    pub fn bans_and_unbans_pattern(&self) -> String {
        format!("{}:*ban:*", self.prefix)
    }

    /// Whether `key` holds a ban, a recorded unban, or neither.
    pub fn kind_of(&self, key: &str) -> Option<BanKey> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if rest.starts_with("ban:") {
            Some(BanKey::Ban)
        } else if rest.starts_with("unban:") {
            Some(BanKey::Unban)
        } else {
            None
        }
    }

    /// The pub/sub channel of bans and unbans.
    pub fn feed(&self) -> String {
        format!("{}:feed", self.prefix)
    }

    /// The key a member refreshes to say it is alive.
    pub fn member(&self, name: &str) -> String {
        format!("{}:member:{name}", self.prefix)
    }

    /// The SCAN pattern matching every member's heartbeat.
    pub fn member_pattern(&self) -> String {
        format!("{}:member:*", self.prefix)
    }

    /// The sorted set of recent failures of `ip` in `jail`, counted fleet-wide.
    pub fn failures(&self, jail: &str, ip: IpAddr) -> String {
        format!("{}:fail:{jail}:{ip}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_the_prefix_and_tell_jails_and_addresses_apart() {
        let keys = Keys::default();
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(keys.ban("sshd", v4), "logjail:ban:sshd:203.0.113.7");
        assert_eq!(keys.ban("sshd", v6), "logjail:ban:sshd:2001:db8::1");
        assert_ne!(keys.ban("sshd", v4), keys.ban("nginx", v4));
        assert_eq!(keys.ban_pattern(), "logjail:ban:*");
        assert!(
            keys.ban("sshd", v4)
                .starts_with(keys.ban_pattern().trim_end_matches('*'))
        );
        assert_eq!(keys.unban("sshd", v4), "logjail:unban:sshd:203.0.113.7");
        assert!(
            keys.unban("sshd", v4)
                .starts_with(keys.unban_pattern().trim_end_matches('*'))
        );
        assert!(!keys.ban("sshd", v4).starts_with("logjail:unban:"));
        assert_eq!(Keys::new("edge").feed(), "edge:feed");
        assert_eq!(keys.member("a"), "logjail:member:a");
        assert_eq!(keys.failures("sshd", v4), "logjail:fail:sshd:203.0.113.7");
        assert_eq!(keys.kind_of(&keys.ban("sshd", v6)), Some(BanKey::Ban));
        assert_eq!(keys.kind_of(&keys.unban("sshd", v4)), Some(BanKey::Unban));
        // A failure set of a jail named `urban` matches the pattern, and is neither.
        assert_eq!(keys.kind_of(&keys.failures("urban", v4)), None);
        assert_eq!(keys.kind_of("other:ban:sshd:203.0.113.7"), None);
        assert_eq!(keys.bans_and_unbans_pattern(), "logjail:*ban:*");
    }
}
