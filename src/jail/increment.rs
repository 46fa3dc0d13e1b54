//! How long a host's next ban lasts: the base bantime grown by Fail2Ban-style increments.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::duration::BanTime;

use super::settings::IncrementSettings;

/// Longest finite ban ever ordered (100 years). Growth is exponential and user input is
/// unbounded, so lengths are clamped here to keep every `start + length` representable.
pub const LONGEST_FINITE_BAN: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The exponential formula stops doubling after this many previous bans, as Fail2Ban's does.
const MAX_DOUBLINGS: u32 = 20;

/// The length of a ban for a host with `previous_bans` earlier bans.
///
/// Permanent stays permanent (increments do not apply). Without (enabled) increments the base
/// is used as is. The formula is documented on [`IncrementSettings`]; the result is rounded to
/// whole seconds and is at least one second. `rng` is only drawn from when `rndtime` is set.
pub fn ban_length<R: Rng + ?Sized>(
    base: BanTime,
    increment: Option<&IncrementSettings>,
    previous_bans: u32,
    rng: &mut R,
) -> BanTime {
    let BanTime::Finite(base) = base else {
        return BanTime::Permanent;
    };
    let Some(increment) = increment.filter(|settings| settings.enabled) else {
        return BanTime::Finite(base.min(LONGEST_FINITE_BAN));
    };
    let step = match &increment.multipliers {
        Some(multipliers) => {
            let index = usize::try_from(previous_bans).unwrap_or(usize::MAX);
            multipliers
                .get(index)
                .or(multipliers.last())
                .map_or(1.0, |m| f64::from(*m))
        }
        None => f64::from(1u32 << previous_bans.min(MAX_DOUBLINGS)),
    };
    let mut length = whole_seconds(base.as_secs_f64() * increment.factor * step);
    if let Some(maxtime) = increment.maxtime {
        length = length.min(maxtime);
    }
    if let Some(rndtime) = increment.rndtime
        && rndtime.as_secs() > 0
    {
        let jitter = rng.random_range(0..=rndtime.as_secs());
        length = length.saturating_add(Duration::from_secs(jitter));
    }
    BanTime::Finite(length.min(LONGEST_FINITE_BAN))
}

/// Rounds to whole seconds, at least 1, clamped to [`LONGEST_FINITE_BAN`] (also for NaN and
/// infinities, which validation rules out but arithmetic on huge inputs could still produce).
fn whole_seconds(seconds: f64) -> Duration {
    let longest = LONGEST_FINITE_BAN.as_secs_f64();
    if !seconds.is_finite() || seconds >= longest {
        return LONGEST_FINITE_BAN;
    }
    // In range 0..longest, so the cast neither truncates nor saturates.
    Duration::from_secs((seconds.round() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MINUTE: u64 = 60;

    fn minutes(n: u64) -> BanTime {
        BanTime::Finite(Duration::from_secs(n * MINUTE))
    }

    fn lengths(base: BanTime, settings: &IncrementSettings, counts: &[u32]) -> Vec<BanTime> {
        let mut rng = StdRng::seed_from_u64(1);
        counts
            .iter()
            .map(|n| ban_length(base, Some(settings), *n, &mut rng))
            .collect()
    }

    #[test]
    fn without_increment_the_base_is_used() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(ban_length(minutes(10), None, 7, &mut rng), minutes(10));
        let disabled = IncrementSettings {
            enabled: false,
            ..IncrementSettings::default()
        };
        assert_eq!(
            ban_length(minutes(10), Some(&disabled), 7, &mut rng),
            minutes(10)
        );
    }

    #[test]
    fn exponential_formula_doubles_and_saturates() {
        let settings = IncrementSettings::default();
        assert_eq!(
            lengths(minutes(10), &settings, &[0, 1, 2, 3]),
            vec![minutes(10), minutes(20), minutes(40), minutes(80)]
        );
        // 2^20 is the last doubling: 21 and 1000 previous bans ban as long as 20.
        let capped = lengths(
            BanTime::Finite(Duration::from_secs(1)),
            &settings,
            &[20, 21, 1000],
        );
        let expected = BanTime::Finite(Duration::from_secs(1 << 20));
        assert_eq!(capped, vec![expected; 3]);
    }

    #[test]
    fn factor_scales_the_formula() {
        let settings = IncrementSettings {
            factor: 1.5,
            ..IncrementSettings::default()
        };
        assert_eq!(
            lengths(minutes(10), &settings, &[0, 1, 2]),
            vec![minutes(15), minutes(30), minutes(60)]
        );
    }

    #[test]
    fn multipliers_replace_the_formula_and_stick_to_the_last() {
        let settings = IncrementSettings {
            multipliers: Some(vec![1, 5, 30, 60]),
            ..IncrementSettings::default()
        };
        assert_eq!(
            lengths(minutes(1), &settings, &[0, 1, 2, 3, 4, 99]),
            vec![
                minutes(1),
                minutes(5),
                minutes(30),
                minutes(60),
                minutes(60),
                minutes(60)
            ]
        );
        let scaled = IncrementSettings {
            factor: 2.0,
            ..settings
        };
        assert_eq!(lengths(minutes(1), &scaled, &[1]), vec![minutes(10)]);
    }

    #[test]
    fn maxtime_caps_growth() {
        let settings = IncrementSettings {
            maxtime: Some(Duration::from_secs(45 * MINUTE)),
            ..IncrementSettings::default()
        };
        assert_eq!(
            lengths(minutes(10), &settings, &[0, 1, 2, 3, 10]),
            vec![
                minutes(10),
                minutes(20),
                minutes(40),
                minutes(45),
                minutes(45)
            ]
        );
    }

    #[test]
    fn jitter_is_bounded_and_reproducible_with_a_seed() {
        let settings = IncrementSettings {
            maxtime: Some(Duration::from_secs(30 * MINUTE)),
            rndtime: Some(Duration::from_secs(MINUTE)),
            ..IncrementSettings::default()
        };
        let counts: Vec<u32> = (0..200).map(|i| i % 4).collect();
        let first = lengths(minutes(10), &settings, &counts);
        assert_eq!(
            first,
            lengths(minutes(10), &settings, &counts),
            "same seed, same bans"
        );
        for (n, length) in counts.iter().zip(&first) {
            let unjittered = [10, 20, 30, 30][*n as usize] * MINUTE;
            let seconds = length.finite().unwrap().as_secs();
            assert!(
                (unjittered..=unjittered + MINUTE).contains(&seconds),
                "{n} previous bans gave {seconds}s"
            );
        }
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert!(
            distinct.len() > 20,
            "the jitter varies: {} distinct lengths",
            distinct.len()
        );
        let mut other_seed = StdRng::seed_from_u64(2);
        let other: Vec<_> = counts
            .iter()
            .map(|n| ban_length(minutes(10), Some(&settings), *n, &mut other_seed))
            .collect();
        assert_ne!(first, other);
    }

    #[test]
    fn permanent_is_never_incremented() {
        let settings = IncrementSettings {
            maxtime: Some(Duration::from_secs(MINUTE)),
            rndtime: Some(Duration::from_secs(MINUTE)),
            ..IncrementSettings::default()
        };
        assert_eq!(
            lengths(BanTime::Permanent, &settings, &[0, 3]),
            vec![BanTime::Permanent; 2]
        );
    }

    #[test]
    fn huge_lengths_are_clamped() {
        let settings = IncrementSettings {
            factor: 1e300,
            ..IncrementSettings::default()
        };
        let longest = BanTime::Finite(LONGEST_FINITE_BAN);
        assert_eq!(lengths(minutes(10), &settings, &[20]), vec![longest]);
        let mut rng = StdRng::seed_from_u64(1);
        let base = BanTime::Finite(Duration::from_secs(u64::MAX));
        assert_eq!(ban_length(base, None, 0, &mut rng), longest);
        let tiny = IncrementSettings {
            factor: 1e-9,
            ..IncrementSettings::default()
        };
        assert_eq!(
            lengths(minutes(10), &tiny, &[0]),
            vec![BanTime::Finite(Duration::from_secs(1))]
        );
    }
}
