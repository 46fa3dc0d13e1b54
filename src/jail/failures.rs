//! Per-host failure windows with bounded memory, whatever the number of source addresses, and
//! an eviction policy that a flood of cheap one-off addresses cannot use to wash out a real
//! brute-forcer's count.
//!
//! # Two tiers
//!
//! - **Probation** holds hosts with exactly one failure in the window: a fixed-capacity ring
//!   in arrival order (`max_hosts` slots of 40 bytes, plus an index), with no allocation per
//!   host. When it is full, a new host pushes out the oldest arrival. This is the only tier a
//!   flood of single-failure addresses reaches, so such a flood only churns probation.
//! - **Protected** holds hosts with two or more failures (at most `max_hosts`), with their
//!   failure times and evidence. When it is full, the host with the *fewest* failures goes,
//!   the one whose last failure is oldest among equals; a newcomer that would itself be that
//!   host is not let in (it stays on probation with its newest failure). So a host with `c`
//!   failures is only pushed out by `max_hosts` hosts that each have at least `c` failures;
//!   since every such host is itself banned at `maxretry`, an attacker cannot evict a host
//!   one failure short of a ban without putting `max_hosts` hosts of its own at that level.
//! - **Ghosts**: a host pushed out of probation (or protected) is remembered in a Bloom filter
//!   (two generations of 2 MiB, rotated once a generation is older than findtime, allocated
//!   only while evictions happen). A new host the filter knows goes straight to protected, with
//!   only its current failure counted: the filter may answer yes for a host it never saw
//!   (about 0.05% of lookups after a million insertions), so it may protect a host but never
//!   adds a failure to its count.
//!
//! # Guarantees, for a jail with `maxretry = m` and cap `max_hosts = N`
//!
//! 1. No host is ever banned with fewer than `m` failures of its own within findtime: nothing
//!    approximate ever adds to a count.
//! 2. A host whose consecutive failures are separated by fewer than `N` other new hosts
//!    arriving on probation is counted exactly, however many hosts fail once.
//! 3. Against a flood of one-off addresses of any rate, a host that fails `m + 1` times within
//!    findtime is banned (its first failure may be lost to probation, its second is then
//!    recognised by the ghost filter), as long as the filter is not saturated: with 2 MiB per
//!    generation, false answers stay under 0.1% up to about 1.2 million evictions per findtime
//!    and grow beyond; its false answers then only let one-off hosts into protected, where
//!    they are the first to go.
//! 4. What does get an attacker's count dropped: `N` hosts with at least as many failures
//!    arriving in protected after its last failure (e.g. a million addresses failing twice
//!    each can push out a host with two failures, never one with three or more while fewer
//!    than `N` hosts have three), or `N` new hosts arriving between its first two failures
//!    while the ghost filter is saturated.
//!
//! # Memory
//!
//! Matched lines (at most [`MATCH_BYTES`] each, the newest [`KEPT_MATCHES`] per host) are
//! kept as evidence in two byte rings of fixed size, one per tier ([`PROBATION_EVIDENCE_BYTES`],
//! [`PROTECTED_EVIDENCE_BYTES`]): no allocation per line, and evidence memory is bounded
//! whatever the lines' length. Under a flood the oldest evidence is overwritten; a ban then
//! carries the lines still there (always the one that caused it). Every structure is freed or
//! shrunk when the window empties ([`FailureTracker::purge`]), so memory follows the attack
//! rather than its peak.
//!
//! Expiry uses arrival order: probation is already in arrival order, and protected hosts
//! have a queue of `(host, stamp)` arrivals where an entry whose stamp no longer matches the
//! host's is stale and skipped (compacted when stale entries outnumber live ones). With lines
//! arriving in time order, the queue front is the oldest last failure; lines slightly out of
//! order only make expiry a little lazy.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// Matched lines kept per host for the ban record (the newest ones).
pub const KEPT_MATCHES: usize = 5;

/// Longest matched line kept, in bytes; longer lines are cut at a character boundary.
pub const MATCH_BYTES: usize = 1024;

/// Evidence kept for hosts on probation (one line each): at ~100 bytes a line, the last
/// 10,000 or so one-off hosts keep theirs.
pub const PROBATION_EVIDENCE_BYTES: usize = 1 << 20;

/// Evidence kept for protected hosts: five lines for each of ~8,000 hosts at ~100 bytes.
pub const PROTECTED_EVIDENCE_BYTES: usize = 4 << 20;

/// Bits of one ghost generation (2 MiB): a power of two, indexed by masking.
const GHOST_BITS: usize = 1 << 24;

/// Bit positions per host in the ghost filter: with 2^24 bits and a million hosts, six
/// positions give about 0.05% false answers.
const GHOST_HASHES: u64 = 6;

/// Stale queue entries tolerated beyond the live ones before compacting, so that small jails
/// do not compact on every failure.
const COMPACTION_SLACK: usize = 1024;

/// An emptied evidence ring is freed once this much of it was written (its resident part).
const RELEASE_AFTER_BYTES: u64 = 256 << 10;

/// A collection is shrunk when its capacity is more than this many times what it holds
/// (and above [`COMPACTION_SLACK`]), so shrinking stays amortized O(1) per operation.
const SHRINK_FACTOR: usize = 4;

/// What a jail gets back for a host it bans or forgets: its count and evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailures {
    count: usize,
    matches: Vec<String>,
}

impl HostFailures {
    /// Failures in the window.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The kept matched lines, oldest first.
    pub fn into_matches(self) -> Vec<String> {
        self.matches
    }
}

/// All hosts' failure windows for one jail.
#[derive(Debug, Clone)]
pub struct FailureTracker {
    probation: Probation,
    protected: HashMap<IpAddr, Watched>,
    /// Protected hosts by eviction order: fewest failures first, then oldest last failure.
    order: BTreeSet<(usize, u64, IpAddr)>,
    /// Protected hosts' arrivals, for expiry.
    arrivals: VecDeque<(IpAddr, u64)>,
    protected_evidence: Evidence,
    ghosts: Ghosts,
    next_stamp: u64,
    evicted: u64,
}

impl Default for FailureTracker {
    fn default() -> Self {
        FailureTracker {
            probation: Probation::default(),
            protected: HashMap::new(),
            order: BTreeSet::new(),
            arrivals: VecDeque::new(),
            protected_evidence: Evidence::new(PROTECTED_EVIDENCE_BYTES),
            ghosts: Ghosts::default(),
            next_stamp: 0,
            evicted: 0,
        }
    }
}

impl FailureTracker {
    pub fn new() -> Self {
        FailureTracker::default()
    }

    /// Hosts currently tracked, in both tiers.
    pub fn host_count(&self) -> usize {
        self.probation.len() + self.protected.len()
    }

    /// Hosts dropped to stay under the cap (from either tier), since the jail started.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Failures of `host` in its window (as of the last failure or purge).
    pub fn count(&self, host: IpAddr) -> usize {
        match self.protected.get(&host) {
            Some(watched) => watched.times.len(),
            None => usize::from(self.probation.contains(host)),
        }
    }

    /// Adds a failure of `host` at `time` and returns how many failures `host` now has in the
    /// window `cutoff..`. The caller has checked `time >= cutoff`. `max_hosts` caps each tier
    /// (see the module documentation for who is evicted).
    pub fn record(
        &mut self,
        host: IpAddr,
        time: DateTime<Utc>,
        matched_line: &str,
        cutoff: DateTime<Utc>,
        maxretry: usize,
        max_hosts: usize,
    ) -> usize {
        let maxretry = maxretry.max(1);
        let max_hosts = max_hosts.max(1);
        if self.protected.contains_key(&host) {
            return self.count_again(host, time, matched_line, cutoff, maxretry);
        }
        let earlier = self.probation.take(host).filter(|slot| slot.time >= cutoff);
        if let Some(slot) = earlier {
            let mut times = VecDeque::with_capacity(maxretry.clamp(2, KEPT_MATCHES));
            times.push_back(slot.time);
            let position = times.partition_point(|t| *t <= time);
            times.insert(position, time);
            let mut lines = Kept::default();
            if let Some(line) = self.probation.evidence.get(slot.line) {
                lines.push(self.protected_evidence.push(&line), maxretry);
            }
            return self.admit(host, times, lines, matched_line, maxretry, max_hosts);
        }
        if self.ghosts.contains(host) {
            let mut times = VecDeque::with_capacity(maxretry.clamp(2, KEPT_MATCHES));
            times.push_back(time);
            return self.admit(
                host,
                times,
                Kept::default(),
                matched_line,
                maxretry,
                max_hosts,
            );
        }
        self.put_on_probation(host, time, matched_line, max_hosts);
        1
    }

    /// Removes and returns `host`'s window (when it is banned, or no longer of interest).
    pub fn take(&mut self, host: IpAddr) -> Option<HostFailures> {
        if let Some(watched) = self.protected.remove(&host) {
            self.order
                .remove(&(watched.times.len(), watched.stamp, host));
            let evidence = &self.protected_evidence;
            let matches = watched
                .lines
                .refs()
                .iter()
                .filter_map(|line| evidence.get(*line))
                .collect();
            return Some(HostFailures {
                count: watched.times.len(),
                matches,
            });
        }
        let slot = self.probation.take(host)?;
        Some(HostFailures {
            count: 1,
            matches: self.probation.evidence.get(slot.line).into_iter().collect(),
        })
    }

    /// Forgets hosts whose newest failure is older than `cutoff` (from the front of each
    /// arrival order until the first host still inside its window), ages the ghost filter,
    /// and gives memory back once the tiers hold far less than they have room for.
    pub fn purge(&mut self, cutoff: DateTime<Utc>) {
        self.probation.purge(cutoff);
        while let Some(&(host, stamp)) = self.arrivals.front() {
            match self.protected.get(&host) {
                Some(watched) if watched.stamp == stamp => {
                    if watched.times.back().is_some_and(|newest| *newest >= cutoff) {
                        break;
                    }
                    self.order.remove(&(watched.times.len(), stamp, host));
                    self.protected.remove(&host);
                }
                _ => {}
            }
            self.arrivals.pop_front();
        }
        self.ghosts.age(cutoff);
        self.compact();
    }

    /// Keeps only the hosts for which `keep` says so (used when the ignore list grows).
    pub fn retain(&mut self, mut keep: impl FnMut(IpAddr) -> bool) {
        let dropped: Vec<IpAddr> = self
            .protected
            .keys()
            .chain(self.probation.index.keys())
            .copied()
            .filter(|host| !keep(*host))
            .collect();
        for host in dropped {
            self.take(host);
        }
    }

    /// Applies smaller limits at once (after a settings change), rather than lazily.
    pub fn shrink(&mut self, maxretry: usize, max_hosts: usize) {
        let maxretry = maxretry.max(1);
        let max_hosts = max_hosts.max(1);
        for watched in self.protected.values_mut() {
            while watched.times.len() > maxretry {
                watched.times.pop_front();
            }
            watched.lines.trim(maxretry);
        }
        self.order = self
            .protected
            .iter()
            .map(|(host, watched)| (watched.times.len(), watched.stamp, *host))
            .collect();
        while self.protected.len() > max_hosts && self.evict_protected() {}
        while self.probation.slots.len() > max_hosts {
            if let Some(slot) = self.probation.pop_front() {
                self.ghosts.insert(slot.host, slot.time);
                self.evicted += 1;
            }
        }
        self.compact();
    }

    /// A protected host fails again.
    fn count_again(
        &mut self,
        host: IpAddr,
        time: DateTime<Utc>,
        matched_line: &str,
        cutoff: DateTime<Utc>,
        maxretry: usize,
    ) -> usize {
        let stamp = self.stamp();
        let line = self.protected_evidence.push(matched_line);
        let Some(watched) = self.protected.get_mut(&host) else {
            return 0;
        };
        self.order
            .remove(&(watched.times.len(), watched.stamp, host));
        // Replayed or multi-source logs can deliver a failure older than the newest one.
        let position = watched.times.partition_point(|t| *t <= time);
        watched.times.insert(position, time);
        while watched.times.front().is_some_and(|t| *t < cutoff) {
            watched.times.pop_front();
        }
        while watched.times.len() > maxretry {
            watched.times.pop_front();
        }
        watched.lines.push(line, maxretry);
        watched.stamp = stamp;
        let count = watched.times.len();
        self.order.insert((count, stamp, host));
        self.arrivals.push_back((host, stamp));
        self.compact_arrivals();
        count
    }

    /// Lets `host` into protected with these failures (its earlier line already in `lines`),
    /// making room by evicting the weakest protected host, unless `host` would be the
    /// weakest itself: then it goes back on probation with its newest failure only.
    fn admit(
        &mut self,
        host: IpAddr,
        mut times: VecDeque<DateTime<Utc>>,
        mut lines: Kept,
        matched_line: &str,
        maxretry: usize,
        max_hosts: usize,
    ) -> usize {
        while times.len() > maxretry {
            times.pop_front();
        }
        let count = times.len();
        if self.protected.len() >= max_hosts {
            // Equal counts: the incumbent's last failure is older than this one, so it goes.
            let weakest_is_weaker = self
                .order
                .first()
                .is_some_and(|(weakest, _, _)| *weakest <= count);
            if !weakest_is_weaker {
                let newest = times.back().copied().unwrap_or_default();
                self.put_on_probation(host, newest, matched_line, max_hosts);
                return 1;
            }
            while self.protected.len() >= max_hosts && self.evict_protected() {}
        }
        lines.push(self.protected_evidence.push(matched_line), maxretry);
        let stamp = self.stamp();
        self.protected.insert(
            host,
            Watched {
                times,
                lines,
                stamp,
            },
        );
        self.order.insert((count, stamp, host));
        self.arrivals.push_back((host, stamp));
        self.compact_arrivals();
        count
    }

    fn put_on_probation(
        &mut self,
        host: IpAddr,
        time: DateTime<Utc>,
        matched_line: &str,
        max_hosts: usize,
    ) {
        while self.probation.slots.len() >= max_hosts {
            if let Some(pushed_out) = self.probation.pop_front() {
                self.ghosts.insert(pushed_out.host, pushed_out.time);
                self.evicted += 1;
            }
        }
        if self.probation.slots.len() == self.probation.slots.capacity() {
            // Doubling, but never past the cap: 100,000 slots take 4 MB, not 5.2.
            let room = self.probation.slots.len().max(16).min(max_hosts);
            let room = room.min(max_hosts - self.probation.slots.len());
            self.probation.slots.reserve_exact(room);
        }
        let line = self.probation.evidence.push(matched_line);
        self.probation.push(Slot { time, line, host });
    }

    /// Drops the protected host with the fewest failures (oldest last failure among equals).
    fn evict_protected(&mut self) -> bool {
        let Some((_, _, host)) = self.order.pop_first() else {
            return false;
        };
        if let Some(watched) = self.protected.remove(&host)
            && let Some(newest) = watched.times.back()
        {
            self.ghosts.insert(host, *newest);
        }
        self.evicted += 1;
        true
    }

    fn stamp(&mut self) -> u64 {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        stamp
    }

    fn compact_arrivals(&mut self) {
        if self.arrivals.len() > 2 * self.protected.len() + COMPACTION_SLACK {
            let protected = &self.protected;
            self.arrivals
                .retain(|(host, stamp)| protected.get(host).is_some_and(|w| w.stamp == *stamp));
        }
    }

    /// Frees what an emptied tier holds and shrinks collections far larger than their
    /// contents: after a flood, the allocator gets the memory back in large blocks. Runs on
    /// every purge, so each check is O(1) and a shrink (O(n)) only follows a fall to a
    /// quarter of the capacity.
    fn compact(&mut self) {
        self.probation.compact();
        if self.protected.is_empty() {
            self.arrivals.clear();
            self.protected_evidence.release_if_used();
        }
        if bloated(self.protected.capacity(), self.protected.len()) {
            self.protected.shrink_to_fit();
        }
        if bloated(self.arrivals.capacity(), self.arrivals.len()) {
            self.arrivals.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.arrivals.len()
    }
}

fn bloated(capacity: usize, len: usize) -> bool {
    capacity > COMPACTION_SLACK && capacity > SHRINK_FACTOR * len
}

/// A protected host's window.
#[derive(Debug, Clone)]
struct Watched {
    /// Failure times, oldest first; at most `maxretry`.
    times: VecDeque<DateTime<Utc>>,
    /// Its newest matched lines, in the protected evidence ring.
    lines: Kept,
    /// Stamp of this host's latest arrival.
    stamp: u64,
}

/// Up to [`KEPT_MATCHES`] line references, oldest first, inline (no allocation per host).
#[derive(Debug, Clone, Copy, Default)]
struct Kept {
    refs: [LineRef; KEPT_MATCHES],
    len: usize,
}

impl Kept {
    fn push(&mut self, line: LineRef, maxretry: usize) {
        let limit = maxretry.clamp(1, KEPT_MATCHES);
        while self.len >= limit {
            self.refs.copy_within(1..self.len, 0);
            self.len -= 1;
        }
        if let Some(slot) = self.refs.get_mut(self.len) {
            *slot = line;
            self.len += 1;
        }
    }

    fn trim(&mut self, maxretry: usize) {
        let limit = maxretry.clamp(1, KEPT_MATCHES);
        if self.len > limit {
            let drop = self.len - limit;
            self.refs.copy_within(drop..self.len, 0);
            self.len = limit;
        }
    }

    fn refs(&self) -> &[LineRef] {
        self.refs.get(..self.len).unwrap_or_default()
    }
}

/// One host on probation: its one failure.
#[derive(Debug, Clone, Copy)]
struct Slot {
    time: DateTime<Utc>,
    line: LineRef,
    host: IpAddr,
}

/// Hosts with one failure, in arrival order; taken hosts leave an empty slot behind until
/// it reaches the front, so a slot's position is its sequence number minus the front's.
#[derive(Debug, Clone)]
struct Probation {
    slots: VecDeque<Option<Slot>>,
    /// Sequence number of `slots[0]`.
    first: u64,
    /// Host to its sequence number, modulo 2^32 (the ring is far shorter than that), which
    /// keeps an index entry at 24 bytes.
    index: HashMap<IpAddr, u32>,
    evidence: Evidence,
}

impl Default for Probation {
    fn default() -> Self {
        Probation {
            slots: VecDeque::new(),
            first: 0,
            index: HashMap::new(),
            evidence: Evidence::new(PROBATION_EVIDENCE_BYTES),
        }
    }
}

impl Probation {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn contains(&self, host: IpAddr) -> bool {
        self.index.contains_key(&host)
    }

    fn position(&self, sequence: u32) -> usize {
        // Truncation intended: sequence numbers are compared modulo 2^32.
        sequence.wrapping_sub(self.first as u32) as usize
    }

    fn push(&mut self, slot: Slot) {
        let sequence = self.first + self.slots.len() as u64;
        // Truncation intended, see `index`.
        self.index.insert(slot.host, sequence as u32);
        self.slots.push_back(Some(slot));
    }

    /// Removes the front slot; returns it when it held a host.
    fn pop_front(&mut self) -> Option<Slot> {
        let slot = self.slots.pop_front()?;
        self.first += 1;
        let slot = slot?;
        self.index.remove(&slot.host);
        Some(slot)
    }

    fn take(&mut self, host: IpAddr) -> Option<Slot> {
        let sequence = self.index.remove(&host)?;
        let position = self.position(sequence);
        self.slots.get_mut(position)?.take()
    }

    fn purge(&mut self, cutoff: DateTime<Utc>) {
        while let Some(front) = self.slots.front() {
            match front {
                Some(slot) if slot.time >= cutoff => break,
                Some(slot) => {
                    let host = slot.host;
                    self.index.remove(&host);
                }
                None => {}
            }
            self.slots.pop_front();
            self.first += 1;
        }
    }

    fn compact(&mut self) {
        if self.index.is_empty() {
            // Empty slots only: drop them (their count moves the front's sequence on).
            self.first += self.slots.len() as u64;
            self.slots.clear();
            self.evidence.release_if_used();
        }
        if bloated(self.slots.capacity(), self.slots.len()) {
            self.slots.shrink_to_fit();
        }
        if bloated(self.index.capacity(), self.index.len()) {
            self.index.shrink_to_fit();
        }
    }
}

/// Where a kept line is in an [`Evidence`] ring: its absolute start (48 bits, 256 TiB of
/// evidence before it wraps) and its length (at most [`MATCH_BYTES`]), in one word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LineRef(u64);

impl LineRef {
    fn new(at: u64, len: usize) -> Self {
        LineRef((at << 16) | (len as u64 & 0xffff))
    }

    fn at(self) -> u64 {
        self.0 >> 16
    }

    fn len(self) -> usize {
        (self.0 & 0xffff) as usize
    }
}

/// A fixed-size byte ring of matched lines: pushing never allocates once the ring exists,
/// and a line stays readable until `limit` more bytes have been pushed after it.
#[derive(Debug, Clone)]
struct Evidence {
    buffer: Vec<u8>,
    limit: usize,
    /// Bytes pushed since the tracker started (positions are absolute).
    written: u64,
    /// `written` when the buffer was last allocated.
    allocated_at: u64,
}

impl Evidence {
    fn new(limit: usize) -> Self {
        Evidence {
            buffer: Vec::new(),
            limit,
            written: 0,
            allocated_at: 0,
        }
    }

    fn push(&mut self, line: &str) -> LineRef {
        if self.buffer.is_empty() {
            // Zeroed memory from the system: only the pages written become resident.
            self.buffer = vec![0; self.limit];
            self.allocated_at = self.written;
        }
        let bytes = kept_line(line).as_bytes();
        let limit = self.limit as u64;
        let start = (self.written % limit) as usize;
        let first = bytes.len().min(self.limit - start);
        let (head, tail) = bytes.split_at(first);
        if let Some(target) = self.buffer.get_mut(start..start + first) {
            target.copy_from_slice(head);
        }
        if let Some(target) = self.buffer.get_mut(..tail.len()) {
            target.copy_from_slice(tail);
        }
        let at = self.written;
        self.written += bytes.len() as u64;
        LineRef::new(at, bytes.len())
    }

    fn get(&self, line: LineRef) -> Option<String> {
        let limit = self.limit as u64;
        if self.buffer.is_empty() || line.at() < self.written.saturating_sub(limit) {
            return None;
        }
        let start = (line.at() % limit) as usize;
        let first = line.len().min(self.limit - start);
        let mut bytes = Vec::with_capacity(line.len());
        bytes.extend_from_slice(self.buffer.get(start..start + first)?);
        bytes.extend_from_slice(self.buffer.get(..line.len() - first)?);
        String::from_utf8(bytes).ok()
    }

    /// Frees the ring once enough of it was written to matter (a quiet jail keeps its few
    /// touched pages rather than mapping the ring again for every failure); earlier
    /// references become unreadable. Only called when no reference is held.
    fn release_if_used(&mut self) {
        if !self.buffer.is_empty() && self.written - self.allocated_at > RELEASE_AFTER_BYTES {
            self.buffer = Vec::new();
            self.written += self.limit as u64;
        }
    }
}

/// The ghost filter: hosts recently pushed out, as a Bloom filter keyed with a random
/// per-process key (an attacker cannot aim addresses at chosen bits), in two generations so
/// that old evictions are forgotten.
#[derive(Debug, Clone, Default)]
struct Ghosts {
    key: RandomState,
    current: Generation,
    previous: Generation,
}

#[derive(Debug, Clone, Default)]
struct Generation {
    bits: Vec<u64>,
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
}

/// The filter bits of `host`. Double hashing: h1 + i·h2 with an odd h2 visits distinct bits
/// of a power-of-two filter.
fn ghost_positions(key: &RandomState, host: IpAddr) -> impl Iterator<Item = usize> {
    let hash = key.hash_one(host);
    let step = hash.rotate_right(32) | 1;
    (0..GHOST_HASHES)
        .map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) as usize) & (GHOST_BITS - 1))
}

impl Ghosts {
    fn insert(&mut self, host: IpAddr, time: DateTime<Utc>) {
        let positions = ghost_positions(&self.key, host);
        let generation = &mut self.current;
        if generation.bits.is_empty() {
            generation.bits = vec![0; GHOST_BITS / 64];
        }
        for position in positions {
            if let Some(word) = generation.bits.get_mut(position / 64) {
                *word |= 1 << (position % 64);
            }
        }
        generation.oldest = Some(generation.oldest.map_or(time, |t| t.min(time)));
        generation.newest = Some(generation.newest.map_or(time, |t| t.max(time)));
    }

    fn contains(&self, host: IpAddr) -> bool {
        [&self.current, &self.previous]
            .into_iter()
            .any(|generation| {
                !generation.bits.is_empty()
                    && ghost_positions(&self.key, host).all(|position| {
                        generation
                            .bits
                            .get(position / 64)
                            .is_some_and(|word| word & (1 << (position % 64)) != 0)
                    })
            })
    }

    /// Starts a new generation once the current one holds a failure older than `cutoff`
    /// (so each spans about one findtime), and frees one whose failures all are.
    fn age(&mut self, cutoff: DateTime<Utc>) {
        if self.current.oldest.is_some_and(|oldest| oldest < cutoff) {
            self.previous = std::mem::take(&mut self.current);
        }
        if self.previous.newest.is_some_and(|newest| newest < cutoff) {
            self.previous = Generation::default();
        }
    }

    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        (self.current.bits.len() + self.previous.bits.len()) * 8
    }
}

/// The line as kept for the ban record: at most [`MATCH_BYTES`], cut on a char boundary.
fn kept_line(line: &str) -> &str {
    let mut end = line.len().min(MATCH_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::net::{Ipv4Addr, Ipv6Addr};

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
            let count = tracker.record(host(1), at(t), &format!("t{t}"), at(EARLY), 3, 10);
            assert_eq!(count, (i + 1).min(3));
        }
        // The newest three times are kept, sorted: dropping the oldest (1) then (3) from
        // the front means a late cutoff of 6 leaves 7 and 9.
        assert_eq!(tracker.record(host(1), at(10), "t10", at(6), 3, 10), 3);
        let entry = tracker.take(host(1)).unwrap();
        assert_eq!(entry.count(), 3);
        assert_eq!(entry.into_matches(), ["t9", "t7", "t10"], "arrival order");
        assert_eq!(tracker.host_count(), 0);
    }

    #[test]
    fn drops_times_before_the_cutoff() {
        let mut tracker = FailureTracker::new();
        tracker.record(host(1), at(0), "a", at(EARLY), 5, 10);
        tracker.record(host(1), at(10), "b", at(EARLY), 5, 10);
        assert_eq!(tracker.record(host(1), at(20), "c", at(10), 5, 10), 2);
        assert_eq!(tracker.count(host(1)), 2);
        // A probation failure older than the cutoff is not promoted with the new one.
        tracker.record(host(2), at(0), "a", at(EARLY), 5, 10);
        assert_eq!(tracker.record(host(2), at(30), "b", at(10), 5, 10), 1);
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
        // A host on probation keeps its one line too.
        tracker.record(host(2), at(0), "only", at(EARLY), 10, 10);
        assert_eq!(tracker.take(host(2)).unwrap().into_matches(), ["only"]);
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
    fn probation_pushes_out_the_oldest_arrival() {
        let mut tracker = FailureTracker::new();
        for n in 1..=3 {
            tracker.record(host(n), at(i64::from(n)), "x", at(EARLY), 5, 3);
        }
        // Taking host 2 leaves its slot empty; the ring still holds the last three arrivals.
        tracker.take(host(2));
        tracker.record(host(4), at(4), "x", at(EARLY), 5, 3);
        assert_eq!(tracker.count(host(1)), 0, "host 1 arrived first");
        assert_eq!(tracker.evicted(), 1);
        tracker.record(host(5), at(5), "x", at(EARLY), 5, 3);
        assert_eq!(tracker.evicted(), 1, "the empty slot of host 2 made room");
        assert_eq!((tracker.count(host(3)), tracker.count(host(4))), (1, 1));
        assert_eq!(tracker.host_count(), 3);
    }

    /// The policy's point: a million one-off addresses churn probation only; a host with two
    /// or more failures keeps its count, however many others fail once.
    #[test]
    fn one_off_flood_never_pushes_out_a_repeat_offender() {
        let cap = 1_000;
        let mut tracker = FailureTracker::new();
        let attacker = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66));
        assert_eq!(tracker.record(attacker, at(0), "a1", at(EARLY), 5, cap), 1);
        assert_eq!(tracker.record(attacker, at(0), "a2", at(EARLY), 5, cap), 2);
        for n in 0..1_000_000 {
            tracker.record(host(n), at(1), "flood", at(EARLY), 5, cap);
            if n % 250_000 == 0 {
                tracker.record(attacker, at(1), "a", at(EARLY), 5, cap);
            }
        }
        assert_eq!(
            tracker.count(attacker),
            5,
            "2 + 4 failures, at most maxretry kept"
        );
        assert!(tracker.host_count() <= 2 * cap);
        assert!(
            tracker.evicted() >= 900_000,
            "evicted {}",
            tracker.evicted()
        );
        let matches = tracker.take(attacker).unwrap().into_matches();
        assert_eq!(
            matches.len(),
            5,
            "protected evidence is not churned by probation"
        );
    }

    /// Failures further apart than probation's capacity: the first is pushed out, the
    /// second is recognised by the ghost filter and the host is protected from then on, its
    /// count one short (never more than the truth).
    #[test]
    fn ghosts_protect_a_host_pushed_out_of_probation_without_counting_for_it() {
        let cap = 1_000;
        let mut tracker = FailureTracker::new();
        let attacker = host(5_000_000);
        let mut counts = Vec::new();
        for round in 0..6 {
            counts.push(tracker.record(attacker, at(round), "attack", at(EARLY), 5, cap));
            for n in 0..10 * cap as u32 {
                tracker.record(
                    host(round as u32 * 100_000 + n),
                    at(round),
                    "x",
                    at(EARLY),
                    5,
                    cap,
                );
            }
        }
        assert_eq!(counts, [1, 1, 2, 3, 4, 5]);
        assert!(tracker.ghosts.allocated_bytes() > 0);
    }

    /// The documented limit: `cap` hosts with two failures each push out a host with two,
    /// never one with three; a newcomer weaker than every protected host stays on probation.
    #[test]
    fn protected_evicts_the_fewest_failures_then_the_oldest() {
        let cap = 100;
        let mut tracker = FailureTracker::new();
        let two = host(1_000_001);
        let three = host(1_000_002);
        for _ in 0..2 {
            tracker.record(two, at(0), "x", at(EARLY), 5, cap);
        }
        for _ in 0..3 {
            tracker.record(three, at(0), "x", at(EARLY), 5, cap);
        }
        for n in 0..10 * cap as u32 {
            tracker.record(host(n), at(1), "x", at(EARLY), 5, cap);
            tracker.record(host(n), at(1), "x", at(EARLY), 5, cap);
        }
        assert_eq!(
            tracker.count(three),
            3,
            "only hosts with 3+ could push it out"
        );
        assert_eq!(
            tracker.count(two),
            0,
            "pushed out by newer hosts with as many"
        );
        assert_eq!(tracker.protected.len(), cap);

        // Fill protected with hosts of four failures: a new host with two is not let in.
        for n in 0..cap as u32 {
            for _ in 0..4 {
                tracker.record(host(2_000_000 + n), at(2), "x", at(EARLY), 5, cap);
            }
        }
        // They pushed out the hosts with two, but each had to come in with two: once only
        // `three` was weaker than they would become, the last of them was kept out.
        assert_eq!(
            tracker.count(three),
            3,
            "never pushed out by hosts with two"
        );
        assert_eq!(tracker.count(host(2_000_000 + cap as u32 - 1)), 1);
        assert_eq!(tracker.protected.len(), cap);
        let newcomer = host(3_000_000);
        tracker.record(newcomer, at(3), "x", at(EARLY), 5, cap);
        assert_eq!(tracker.record(newcomer, at(3), "x", at(EARLY), 5, cap), 1);
        assert!(tracker.probation.contains(newcomer));
        assert_eq!(tracker.count(host(2_000_000)), 4);
    }

    /// Whatever the mix of hosts and caps, a count never exceeds the host's real failures in
    /// the window, and equals it while nothing was evicted.
    #[test]
    fn counts_never_exceed_the_truth() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for cap in [4, 50] {
            let mut tracker = FailureTracker::new();
            let mut truth: HashMap<IpAddr, Vec<i64>> = HashMap::new();
            for step in 0..20_000i64 {
                let now = step / 10;
                let cutoff = now - 60;
                let h = host((next() % 200) as u32);
                let time = now - (next() % 5) as i64;
                tracker.purge(at(cutoff));
                let count = tracker.record(h, at(time), "x", at(cutoff), 4, cap);
                let real = truth.entry(h).or_default();
                real.push(time);
                real.retain(|t| *t >= cutoff);
                assert!(count <= real.len().min(4), "count {count} > {}", real.len());
                if tracker.evicted() == 0 {
                    assert_eq!(count, real.len().min(4));
                }
                if count == 4 {
                    tracker.take(h);
                    truth.remove(&h);
                }
            }
            assert!(tracker.host_count() <= 2 * cap);
        }
    }

    #[test]
    fn evidence_ring_keeps_the_newest_lines() {
        let mut ring = Evidence::new(64);
        let first = ring.push("0123456789abcdefghij");
        assert_eq!(ring.get(first).as_deref(), Some("0123456789abcdefghij"));
        let mut last = first;
        for i in 0..10 {
            last = ring.push(&format!("line number {i}"));
        }
        assert_eq!(ring.get(first), None, "overwritten");
        assert_eq!(ring.get(last).as_deref(), Some("line number 9"));
        // A line across the end of the buffer reads back whole.
        let across = ring.push("wrapping around the end!");
        assert_eq!(
            ring.get(across).as_deref(),
            Some("wrapping around the end!")
        );
        assert_eq!(ring.buffer.len(), 64);
    }

    /// After a flood, once findtime has passed, every tier gives its memory back.
    #[test]
    fn memory_is_released_once_the_window_empties() {
        let mut tracker = FailureTracker::new();
        for n in 0..300_000 {
            tracker.record(
                host(n),
                at(0),
                "a flood line of some length",
                at(EARLY),
                5,
                100_000,
            );
            if n % 3 == 0 {
                tracker.record(host(n), at(0), "again", at(EARLY), 5, 100_000);
            }
        }
        assert!(tracker.probation.slots.capacity() >= 100_000);
        assert!(tracker.protected.capacity() >= 50_000);
        assert!(tracker.ghosts.allocated_bytes() > 0);
        tracker.purge(at(1));
        assert_eq!(tracker.host_count(), 0);
        tracker.purge(at(2));
        assert_eq!(tracker.probation.slots.capacity(), 0);
        assert_eq!(tracker.probation.index.capacity(), 0);
        assert!(tracker.probation.evidence.buffer.is_empty());
        assert_eq!(tracker.protected.capacity(), 0);
        assert_eq!(tracker.arrivals.capacity(), 0);
        assert!(tracker.protected_evidence.buffer.is_empty());
        assert_eq!(tracker.ghosts.allocated_bytes(), 0);
        // And it works as before afterwards.
        assert_eq!(tracker.record(host(1), at(3), "x", at(2), 5, 10), 1);
        assert_eq!(tracker.record(host(1), at(3), "y", at(2), 5, 10), 2);
        assert_eq!(tracker.take(host(1)).unwrap().into_matches(), ["x", "y"]);
    }

    #[test]
    fn shrink_applies_smaller_limits() {
        let mut tracker = FailureTracker::new();
        for n in 0..4 {
            for _ in 0..=n {
                tracker.record(host(n), at(i64::from(n)), "x", at(EARLY), 5, 10);
            }
        }
        for n in 10..20 {
            tracker.record(host(n), at(5), "x", at(EARLY), 5, 10);
        }
        tracker.shrink(3, 2);
        assert_eq!(tracker.count(host(3)), 3, "trimmed to maxretry");
        assert_eq!(tracker.count(host(2)), 3);
        assert_eq!(tracker.count(host(1)), 0, "fewest failures evicted");
        assert_eq!((tracker.count(host(18)), tracker.count(host(19))), (1, 1));
        assert_eq!(tracker.host_count(), 4);
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
        tracker.record(host(5), at(0), "x", at(EARLY), 5, 100);
        tracker.retain(|h| h != host(3) && h != host(5));
        assert_eq!(tracker.host_count(), 8);
        assert_eq!((tracker.count(host(3)), tracker.count(host(5))), (0, 0));
        assert_eq!(tracker.take(host(4)).map(|e| e.count()), Some(1));
        assert!(tracker.take(host(4)).is_none());
        // A host taken and failing again starts a fresh window; its old slot is not
        // mistaken for the new one.
        tracker.record(host(4), at(100), "x", at(EARLY), 5, 100);
        tracker.purge(at(50));
        assert_eq!(tracker.count(host(4)), 1);
        assert_eq!(tracker.host_count(), 1);
    }
}
