//! Per-host failure windows with bounded memory, whatever the number of source addresses.
//!
//! Bounds: a host keeps at most `maxretry` timestamps and [`KEPT_MATCHES`] matched lines of at
//! most [`MATCH_BYTES`] bytes each, and at most `max_hosts` hosts are tracked. Worst case is thus
//! about `max_hosts × min(maxretry, KEPT_MATCHES) × MATCH_BYTES`; typical lines (~100 bytes)
//! keep the default 100 000 hosts in a few tens of megabytes.
//!
//! Expiry and eviction share one queue of arrivals: every recorded failure appends
//! `(host, stamp)` and the host remembers its latest stamp, so an entry whose stamp no longer
//! matches is stale and skipped. The queue front is therefore the host whose latest failure
//! arrived longest ago: the first to expire and the one to evict. Each entry is pushed and
//! popped once, and the queue is compacted when stale entries outnumber live ones, so every
//! operation is amortized O(1). With log lines arriving in time order, "arrived longest ago"
//! is "oldest last failure"; lines slightly out of order only make expiry a little lazy.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// Matched lines kept per host for the ban record (the newest ones).
pub const KEPT_MATCHES: usize = 5;

/// Longest matched line kept, in bytes; longer lines are cut at a character boundary.
pub const MATCH_BYTES: usize = 1024;

/// Stale queue entries tolerated beyond the live ones before compacting, so that small jails
/// do not compact on every failure.
const COMPACTION_SLACK: usize = 1024;

/// One host's failures inside the current window.
#[derive(Debug, Clone)]
pub struct HostFailures {
    /// Failure times, oldest first; at most `maxretry`.
    times: VecDeque<DateTime<Utc>>,
    /// Newest matched lines, in arrival order.
    matches: VecDeque<Box<str>>,
    /// Stamp of this host's latest entry in the arrival queue.
    stamp: u64,
}

impl HostFailures {
    /// Failures in the window.
    pub fn count(&self) -> usize {
        self.times.len()
    }

    /// The kept matched lines, oldest first.
    pub fn into_matches(self) -> Vec<String> {
        self.matches.into_iter().map(String::from).collect()
    }

    fn newest(&self) -> Option<DateTime<Utc>> {
        self.times.back().copied()
    }

    fn trim(&mut self, maxretry: usize) {
        while self.times.len() > maxretry {
            self.times.pop_front();
        }
        while self.matches.len() > maxretry.min(KEPT_MATCHES) {
            self.matches.pop_front();
        }
    }
}

/// All hosts' failure windows for one jail.
#[derive(Debug, Clone, Default)]
pub struct FailureTracker {
    hosts: HashMap<IpAddr, HostFailures>,
    arrivals: VecDeque<(IpAddr, u64)>,
    next_stamp: u64,
    evicted: u64,
}

impl FailureTracker {
    pub fn new() -> Self {
        FailureTracker::default()
    }

    /// Hosts currently tracked.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts dropped to stay under the cap, since the jail started.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Failures of `host` in its window (as of the last failure or purge).
    pub fn count(&self, host: IpAddr) -> usize {
        self.hosts.get(&host).map_or(0, HostFailures::count)
    }

    /// Adds a failure of `host` at `time` and returns how many failures `host` now has in the
    /// window `cutoff..`. The caller has checked `time >= cutoff`. A new host beyond
    /// `max_hosts` evicts the host whose latest failure arrived longest ago.
    pub fn record(
        &mut self,
        host: IpAddr,
        time: DateTime<Utc>,
        matched_line: &str,
        cutoff: DateTime<Utc>,
        maxretry: usize,
        max_hosts: usize,
    ) -> usize {
        if !self.hosts.contains_key(&host) {
            while self.hosts.len() >= max_hosts.max(1) && self.evict_oldest() {}
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let entry = self.hosts.entry(host).or_insert_with(|| HostFailures {
            times: VecDeque::new(),
            matches: VecDeque::new(),
            stamp,
        });
        // Replayed or multi-source logs can deliver a failure older than the newest one.
        let position = entry.times.partition_point(|t| *t <= time);
        entry.times.insert(position, time);
        while entry.times.front().is_some_and(|t| *t < cutoff) {
            entry.times.pop_front();
        }
        entry.matches.push_back(kept_line(matched_line));
        entry.trim(maxretry);
        entry.stamp = stamp;
        let count = entry.times.len();
        self.arrivals.push_back((host, stamp));
        self.compact_if_bloated();
        count
    }

    /// Removes and returns `host`'s window (when it is banned, or no longer of interest).
    pub fn take(&mut self, host: IpAddr) -> Option<HostFailures> {
        self.hosts.remove(&host)
    }

    /// Forgets hosts whose newest failure is older than `cutoff`, from the queue front until
    /// the first host still inside its window.
    pub fn purge(&mut self, cutoff: DateTime<Utc>) {
        while let Some(&(host, stamp)) = self.arrivals.front() {
            match self.hosts.get(&host) {
                Some(entry) if entry.stamp == stamp => {
                    if entry.newest().is_some_and(|newest| newest >= cutoff) {
                        break;
                    }
                    self.hosts.remove(&host);
                }
                _ => {}
            }
            self.arrivals.pop_front();
        }
    }

    /// Keeps only the hosts for which `keep` says so (used when the ignore list grows).
    pub fn retain(&mut self, mut keep: impl FnMut(IpAddr) -> bool) {
        self.hosts.retain(|host, _| keep(*host));
    }

    /// Applies smaller limits at once (after a settings change), rather than lazily.
    pub fn shrink(&mut self, maxretry: usize, max_hosts: usize) {
        for entry in self.hosts.values_mut() {
            entry.trim(maxretry);
        }
        while self.hosts.len() > max_hosts && self.evict_oldest() {}
        self.compact_if_bloated();
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((host, stamp)) = self.arrivals.pop_front() {
            if self
                .hosts
                .get(&host)
                .is_some_and(|entry| entry.stamp == stamp)
            {
                self.hosts.remove(&host);
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    fn compact_if_bloated(&mut self) {
        if self.arrivals.len() > 2 * self.hosts.len() + COMPACTION_SLACK {
            let hosts = &self.hosts;
            self.arrivals
                .retain(|(host, stamp)| hosts.get(host).is_some_and(|e| e.stamp == *stamp));
        }
    }

    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.arrivals.len()
    }
}

/// The line as kept for the ban record: at most [`MATCH_BYTES`], cut on a char boundary.
fn kept_line(line: &str) -> Box<str> {
    let mut end = line.len().min(MATCH_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.get(..end).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::net::Ipv4Addr;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn host(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    const EARLY: i64 = -1_000_000;

    #[test]
    fn keeps_at_most_maxretry_times_in_order() {
        let mut tracker = FailureTracker::new();
        for (i, t) in [5, 1, 3, 9, 7].into_iter().enumerate() {
            let count = tracker.record(host(1), at(t), "line", at(EARLY), 3, 10);
            assert_eq!(count, (i + 1).min(3));
        }
        let entry = tracker.take(host(1)).unwrap();
        assert_eq!(
            entry.times,
            [at(5), at(7), at(9)],
            "the newest three, sorted"
        );
        assert_eq!(tracker.host_count(), 0);
    }

    #[test]
    fn drops_times_before_the_cutoff() {
        let mut tracker = FailureTracker::new();
        tracker.record(host(1), at(0), "a", at(EARLY), 5, 10);
        tracker.record(host(1), at(10), "b", at(EARLY), 5, 10);
        assert_eq!(tracker.record(host(1), at(20), "c", at(10), 5, 10), 2);
        assert_eq!(tracker.count(host(1)), 2);
    }

    #[test]
    fn keeps_newest_matches_truncated_on_char_boundary() {
        let mut tracker = FailureTracker::new();
        for i in 0..8 {
            tracker.record(host(1), at(i), &format!("line {i}"), at(EARLY), 10, 10);
        }
        let long = "é".repeat(MATCH_BYTES); // two bytes each
        tracker.record(host(1), at(9), &long, at(EARLY), 10, 10);
        let matches = tracker.take(host(1)).unwrap().into_matches();
        assert_eq!(matches.len(), KEPT_MATCHES);
        assert_eq!(matches[0], "line 4");
        assert_eq!(matches[3], "line 7");
        assert_eq!(matches[4].len(), MATCH_BYTES);
        assert!(matches[4].chars().all(|c| c == 'é'));
        let odd = format!("x{}", "é".repeat(MATCH_BYTES));
        assert_eq!(
            kept_line(&odd).len(),
            MATCH_BYTES - 1,
            "never splits a character"
        );
    }

    #[test]
    fn purge_forgets_expired_hosts_only() {
        let mut tracker = FailureTracker::new();
        tracker.record(host(1), at(0), "x", at(EARLY), 5, 10);
        tracker.record(host(2), at(5), "x", at(EARLY), 5, 10);
        tracker.record(host(3), at(10), "x", at(EARLY), 5, 10);
        tracker.record(host(1), at(12), "x", at(EARLY), 5, 10);
        tracker.purge(at(6));
        assert_eq!(tracker.count(host(1)), 2, "host 1 failed again at 12");
        assert_eq!(tracker.count(host(2)), 0);
        assert_eq!(tracker.count(host(3)), 1);
        assert_eq!(tracker.host_count(), 2);
        tracker.purge(at(13));
        assert_eq!(tracker.host_count(), 0);
        assert_eq!(tracker.queue_len(), 0);
    }

    #[test]
    fn eviction_takes_the_stalest_host() {
        let mut tracker = FailureTracker::new();
        tracker.record(host(1), at(0), "x", at(EARLY), 5, 3);
        tracker.record(host(2), at(1), "x", at(EARLY), 5, 3);
        tracker.record(host(3), at(2), "x", at(EARLY), 5, 3);
        tracker.record(host(1), at(3), "x", at(EARLY), 5, 3);
        tracker.record(host(4), at(4), "x", at(EARLY), 5, 3);
        assert_eq!(tracker.host_count(), 3);
        assert_eq!(
            tracker.count(host(2)),
            0,
            "host 2 had the oldest last failure"
        );
        assert_eq!(tracker.count(host(1)), 2);
        assert_eq!(tracker.evicted(), 1);
        tracker.shrink(5, 1);
        assert_eq!(tracker.host_count(), 1);
        assert_eq!(tracker.count(host(4)), 1);
        assert_eq!(tracker.evicted(), 3);
    }

    #[test]
    fn queue_stays_bounded_when_one_host_fails_forever() {
        let mut tracker = FailureTracker::new();
        for i in 0..100_000 {
            tracker.record(host(1), at(i), "x", at(EARLY), 5, 10);
            assert!(tracker.queue_len() <= 2 * tracker.host_count() + COMPACTION_SLACK + 1);
        }
        assert_eq!(tracker.count(host(1)), 5);
    }

    #[test]
    fn retain_and_take() {
        let mut tracker = FailureTracker::new();
        for n in 0..10 {
            tracker.record(host(n), at(0), "x", at(EARLY), 5, 100);
        }
        tracker.retain(|h| h != host(3));
        assert_eq!(tracker.host_count(), 9);
        assert_eq!(tracker.count(host(3)), 0);
        assert_eq!(tracker.take(host(4)).map(|e| e.count()), Some(1));
        assert!(tracker.take(host(4)).is_none());
        // A host taken and failing again starts a fresh window; its stale queue entry is
        // not mistaken for the new one.
        tracker.record(host(4), at(100), "x", at(EARLY), 5, 100);
        tracker.purge(at(50));
        assert_eq!(tracker.count(host(4)), 1);
        assert_eq!(tracker.host_count(), 1);
    }
}
