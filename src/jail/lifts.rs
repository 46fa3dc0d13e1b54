//! What a jail remembers of the shared bans it lifted, so that the fleet does not hand them
//! back: a ban that began before this member's unban, read from Redis by a sync just before
//! the unban reached it, or crossing the unban on the feed, is the lifted ban, not a new one.
//!
//! Pure: times are passed in. A lift is forgotten once the ban it lifted would have ended,
//! since no member hands over a ban that is over; the pruning runs when the memory has
//! doubled since the last one, so that lifting 100,000 bans at once (`unban --all`) costs
//! linear time, not quadratic.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// The fewest lifts kept before a prune is worth its walk.
const PRUNE_FLOOR: usize = 64;

/// The lifts of one jail, by address.
#[derive(Debug, Clone, Default)]
pub struct Lifts {
    /// When each address was lifted here, and the end the lifted ban had (`None`: none).
    by_host: HashMap<IpAddr, (DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// The size at which the next prune runs.
    prune_at: usize,
}

impl Lifts {
    /// Notes `host` lifted at `at`, from a ban that ran to `end`.
    pub fn note(&mut self, host: IpAddr, at: DateTime<Utc>, end: Option<DateTime<Utc>>) {
        if self.by_host.len() >= self.prune_at.max(PRUNE_FLOOR) {
            self.by_host
                .retain(|_, (_, end)| end.is_none_or(|end| end > at));
            self.prune_at = self.by_host.len() * 2;
        }
        self.by_host.insert(host, (at, end));
    }

    /// Whether a fleet ban of `host` that began at `start` is one lifted here since (began
    /// at or before the lift).
    pub fn lifted_since(&self, host: IpAddr, start: DateTime<Utc>) -> bool {
        self.by_host.get(&host).is_some_and(|(at, _)| start <= *at)
    }

    /// How many lifts are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_host.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn host(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + n))
    }

    #[test]
    fn a_ban_that_began_by_the_lift_is_the_lifted_one_and_a_later_one_is_new() {
        let mut lifts = Lifts::default();
        lifts.note(host(1), at(10), Some(at(60)));
        assert!(lifts.lifted_since(host(1), at(0)));
        assert!(
            lifts.lifted_since(host(1), at(10)),
            "the same instant: lifted"
        );
        assert!(!lifts.lifted_since(host(1), at(11)), "banned again after");
        assert!(!lifts.lifted_since(host(2), at(0)), "never lifted here");
    }

    #[test]
    fn lifts_whose_ban_has_ended_are_forgotten_in_linear_time() {
        let mut lifts = Lifts::default();
        // 100,000 bans lifted at once, each with an hour left: nothing to forget yet.
        for n in 0..100_000 {
            lifts.note(host(n), at(0), Some(at(60)));
        }
        assert_eq!(lifts.len(), 100_000);
        // Two hours on, the next lifts find those ended and drop them at the next prune.
        for n in 0..200_001 {
            lifts.note(host(200_000 + n), at(120), None);
        }
        assert!(
            !lifts.lifted_since(host(5), at(0)),
            "an ended lift is forgotten"
        );
        assert!(
            lifts.lifted_since(host(200_000), at(100)),
            "a ban without end stays"
        );
        assert_eq!(lifts.len(), 200_001);
    }
}
