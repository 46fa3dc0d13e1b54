//! Where a jail learns how often a host was banned before, to lengthen repeat offenders' bans.
//!
//! The jail asks [`BanHistory::previous_bans`] right before each ban and reports the ban with
//! [`BanHistory::record_ban`] right after, so the history only has to answer counts. The SQLite
//! store implements the trait over its ban table; [`MemoryBanHistory`] serves tests and runs
//! without a database (its counts are lost on restart).
//!
//! The trait is infallible on purpose: a ban must not fail because its history could not be
//! read. An implementation backed by I/O logs its error and answers 0 (no increment).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::BanOrder;

/// Past bans, by host and jail.
pub trait BanHistory {
    /// How many bans of `host` are recorded in the jail named `jail` (in any jail when `None`,
    /// for `bantime.overalljails`), counting only bans that started at or after `since` when
    /// given (older ones are forgiven).
    fn previous_bans(&self, host: IpAddr, jail: Option<&str>, since: Option<DateTime<Utc>>) -> u32;

    /// Remembers a ban the jail just ordered (automatic or manual), so the next
    /// [`previous_bans`](Self::previous_bans) counts it. Restored bans are not recorded again.
    fn record_ban(&mut self, order: &BanOrder);
}

/// Bans remembered per host; older ones are dropped first. Beyond a few dozen previous bans the
/// exponential formula has long saturated (2^20) and multiplier lists are shorter than this.
const REMEMBERED_BANS_PER_HOST: usize = 64;

/// One remembered ban: enough to filter by jail and age.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PastBan {
    jail: String,
    start: DateTime<Utc>,
}

/// A [`BanHistory`] in memory.
///
/// Each banned host costs a few kilobytes at most (its 64 newest records);
/// a long-running process without a store should call [`forget_before`](Self::forget_before)
/// now and then, as the store purges its old rows.
#[derive(Debug, Clone, Default)]
pub struct MemoryBanHistory {
    hosts: HashMap<IpAddr, VecDeque<PastBan>>,
}

impl MemoryBanHistory {
    pub fn new() -> Self {
        MemoryBanHistory::default()
    }

    /// Drops bans that started before `cutoff`, and hosts left with none.
    pub fn forget_before(&mut self, cutoff: DateTime<Utc>) {
        self.hosts.retain(|_, bans| {
            bans.retain(|ban| ban.start >= cutoff);
            !bans.is_empty()
        });
    }

    /// How many hosts have remembered bans.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }
}

impl BanHistory for MemoryBanHistory {
    fn previous_bans(&self, host: IpAddr, jail: Option<&str>, since: Option<DateTime<Utc>>) -> u32 {
        let Some(bans) = self.hosts.get(&crate::address::canonical(host)) else {
            return 0;
        };
        let count = bans
            .iter()
            .filter(|ban| jail.is_none_or(|name| ban.jail == name))
            .filter(|ban| since.is_none_or(|cutoff| ban.start >= cutoff))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    fn record_ban(&mut self, order: &BanOrder) {
        let bans = self
            .hosts
            .entry(crate::address::canonical(order.host))
            .or_default();
        if bans.len() >= REMEMBERED_BANS_PER_HOST {
            bans.pop_front();
        }
        bans.push_back(PastBan {
            jail: order.jail.clone(),
            start: order.start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::BanTime;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn order(jail: &str, host: &str, start: DateTime<Utc>) -> BanOrder {
        BanOrder {
            jail: jail.to_string(),
            host: host.parse().unwrap(),
            failures: 5,
            bantime: BanTime::Permanent,
            ban_count: 1,
            start,
            end: None,
            matches: vec![],
        }
    }

    #[test]
    fn counts_per_jail_across_jails_and_since() {
        let mut history = MemoryBanHistory::new();
        let host: IpAddr = "203.0.113.5".parse().unwrap();
        history.record_ban(&order("sshd", "203.0.113.5", at(0)));
        history.record_ban(&order("sshd", "203.0.113.5", at(100)));
        history.record_ban(&order("nginx", "203.0.113.5", at(200)));
        history.record_ban(&order("sshd", "203.0.113.6", at(300)));
        assert_eq!(history.previous_bans(host, Some("sshd"), None), 2);
        assert_eq!(history.previous_bans(host, Some("nginx"), None), 1);
        assert_eq!(history.previous_bans(host, Some("postfix"), None), 0);
        assert_eq!(history.previous_bans(host, None, None), 3);
        assert_eq!(history.previous_bans(host, None, Some(at(100))), 2);
        assert_eq!(history.previous_bans(host, Some("sshd"), Some(at(101))), 0);
        // A mapped address is the same host.
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert_eq!(history.previous_bans(mapped, None, None), 3);
    }

    #[test]
    fn forgets_old_bans_and_bounds_each_host() {
        let mut history = MemoryBanHistory::new();
        let host: IpAddr = "198.51.100.1".parse().unwrap();
        for i in 0..100 {
            history.record_ban(&order("sshd", "198.51.100.1", at(i)));
        }
        assert_eq!(
            history.previous_bans(host, None, None),
            REMEMBERED_BANS_PER_HOST as u32
        );
        history.record_ban(&order("sshd", "198.51.100.2", at(10)));
        history.forget_before(at(90));
        assert_eq!(history.previous_bans(host, None, None), 10);
        assert_eq!(
            history.host_count(),
            1,
            "the host with only old bans is gone"
        );
    }
}
